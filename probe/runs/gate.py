"""The CI gate: does a results folder still show the robustness it should?

Checks, per (configuration, attack) of a sweep (or of a `probe attack --out` folder):

* ``min_success_l2``: the median L2 of the successful adversarials must be at
  least X (an attack without any success passes: nothing got through);
* ``min_accuracy``: the clean accuracy of the defended classifier must be at least A;
* ``baseline`` + ``max_drop``: neither the median L2 per attack nor the defended
  accuracy may fall more than ``max_drop`` (a fraction) below a stored baseline;
  an entry of the baseline missing from the results fails too.

A baseline is a JSON file written by :func:`write_baseline` from a results folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from probe.errors import ProbeError
from probe.runs.results import load_results_dir
from probe.runs.summary import summarize_sweep

BASELINE_VERSION = 1


@dataclass
class Check:
    """One verdict: a metric of one configuration (and attack), its value, what it had to be."""

    config: str
    label: str
    attack: str | None
    metric: str
    value: float | None
    threshold: float | None
    ok: bool
    note: str = ""


def parse_fraction(text: str | float) -> float:
    """'10%' -> 0.1, '0.1' -> 0.1; ProbeError outside [0, 1)."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ProbeError(f"--max-drop expects a fraction like 0.1 or 10%, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise ProbeError(f"--max-drop must be in [0, 1) (or 0% to 99%), got {text!r}")
    return value


def baseline_entries(rows: list[dict]) -> dict:
    """The baseline document of a summary (one entry per configuration and attack)."""
    return {
        "version": BASELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "entries": [
            {
                "config": r["config"],
                "label": r["label"],
                "attack": r["attack"],
                "median_l2": r["median_l2"],
                "success_rate": r["success_rate"],
                "defended_accuracy": r["defended_accuracy"],
            }
            for r in rows
        ],
    }


def write_baseline(folder: Path, path: Path) -> dict:
    """Store the current results of ``folder`` as a baseline JSON file; returns it."""
    records, configs, _, _ = load_results_dir(folder)
    doc = baseline_entries(summarize_sweep(records, configs))
    try:
        Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ProbeError(f"cannot write baseline {path}: {exc.strerror or exc}") from None
    return doc


def read_baseline(path: Path) -> dict:
    """A baseline written by :func:`write_baseline`; ProbeError when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"no such baseline file: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProbeError(f"unreadable baseline {path}: {exc}") from None
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "config" in e and "attack" in e for e in entries):
        raise ProbeError(f"{path} is not a probe baseline (write one with `probe check DIR --write-baseline FILE`)")
    return doc


def run_checks(
    folder: Path,
    *,
    min_success_l2: float | None = None,
    min_accuracy: float | None = None,
    baseline: Path | None = None,
    max_drop: float = 0.1,
) -> tuple[list[Check], list[dict]]:
    """Every check asked for, and the summary rows they were made on."""
    if min_success_l2 is None and min_accuracy is None and baseline is None:
        raise ProbeError("nothing to check: give --min-success-l2, --min-accuracy and/or --baseline")
    records, configs, _, _ = load_results_dir(folder)
    rows = summarize_sweep(records, configs)
    checks: list[Check] = []
    if min_success_l2 is not None:
        for r in rows:
            value = r["median_l2"]
            note = "no success within the budget" if value is None else ""
            checks.append(Check(r["config"], r["label"], r["attack"], "median L2", value,
                                min_success_l2, value is None or value >= min_success_l2, note))
    accuracy = {r["config"]: r for r in rows}
    if min_accuracy is not None:
        for cid, r in accuracy.items():
            value = r["defended_accuracy"]
            checks.append(Check(cid, r["label"], None, "defended accuracy", value, min_accuracy,
                                value is not None and value >= min_accuracy,
                                "no labelled images" if value is None else ""))
    if baseline is not None:
        checks += _baseline_checks(read_baseline(baseline), rows, max_drop)
    return checks, rows


def _baseline_checks(doc: dict, rows: list[dict], max_drop: float) -> list[Check]:
    current = {(r["config"], r["attack"]): r for r in rows}
    keep = 1.0 - max_drop
    checks: list[Check] = []
    seen_configs: set[str] = set()
    for entry in doc["entries"]:
        key = (entry["config"], entry["attack"])
        label = entry.get("label", entry["config"])
        row = current.get(key)
        if row is None:
            checks.append(Check(key[0], label, key[1], "median L2", None, entry.get("median_l2"), False,
                                "missing from the results"))
            continue
        old, new = entry.get("median_l2"), row["median_l2"]
        if old is None:  # no success in the baseline: any success now is a regression
            ok, threshold, note = new is None, None, "baseline had no success"
        else:
            threshold = old * keep
            ok = new is None or new >= threshold
            note = f"baseline {old:.4g}" + ("; no success now" if new is None else f", {100 * (new / old - 1):+.1f}%")
        checks.append(Check(key[0], label, key[1], "median L2", new, threshold, ok, note))
        if entry["config"] not in seen_configs and entry.get("defended_accuracy") is not None:
            seen_configs.add(entry["config"])
            old_acc, new_acc = entry["defended_accuracy"], row["defended_accuracy"]
            threshold = old_acc * keep
            checks.append(Check(key[0], label, None, "defended accuracy", new_acc, threshold,
                                new_acc is not None and new_acc >= threshold, f"baseline {old_acc:.3f}"))
    return checks


def checks_json(checks: list[Check]) -> dict:
    return {"passed": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}
