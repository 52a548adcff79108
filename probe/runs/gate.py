"""The CI gate: does a results folder still show the robustness it should?

Checks, per (configuration, attack) of a sweep (or of a `probe attack --out` folder):

* ``min_success_l2``: the median L2 of the successful adversarials must be at
  least X (an attack without any success passes: nothing got through);
* ``min_accuracy``: the clean accuracy of the defended classifier must be at least A;
* ``min_robust``: the robust accuracy of the best of the attacks at NORM <= EPS must be at
  least V (:mod:`probe.runs.robust`; undecided verdicts count as adversarial here);
* ``baseline`` + ``max_drop``: neither the median L2 per attack, nor the defended
  accuracy, nor the robust accuracy (best of the attacks) at the eps of the baseline's
  table may fall more than ``max_drop`` (a fraction) below a stored baseline;
  an entry of the baseline missing from the results fails too.

A baseline is a JSON file written by :func:`write_baseline` from a results folder.
:func:`junit_xml` and :func:`markdown_summary` write the checks for CI (one test case per check).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from probe.errors import ProbeError
from probe.runs import robust
from probe.runs.results import load_results_dir
from probe.runs.summary import summarize_sweep

BASELINE_VERSION = 2


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


def parse_min_robust(text: str) -> tuple[str, float, float]:
    """'l2:0.5=0.3' or 'linf:8/255=40%' -> (norm, eps, minimum); ProbeError when malformed."""
    point, sep, value = str(text).rpartition("=")
    if not sep or ":" not in point:
        raise ProbeError(f"--min-robust-accuracy expects NORM:EPS=VALUE, e.g. l2:0.5=0.3 or linf:8/255=40%, got {text!r}")
    eps = robust.parse_eps([point])
    norm = point.partition(":")[0].strip().lower()
    if len(eps[norm]) != 1:
        raise ProbeError(f"--min-robust-accuracy takes one eps per gate, got {point!r}")
    raw = value.strip()
    try:
        minimum = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ProbeError(f"--min-robust-accuracy: {raw!r} is not a fraction (write 0.3 or 30%)") from None
    if not 0.0 <= minimum <= 1.0:
        raise ProbeError(f"--min-robust-accuracy: the value must be in [0, 1] (or 0% to 100%), got {raw!r}")
    return norm, eps[norm][0], minimum


def robust_entries(records: list[dict], eps: dict[str, list[float]], labels: dict[str, str]) -> list[dict]:
    """Robust accuracy of the best of the attacks per configuration and (norm, eps) of the table."""
    out = []
    for cid, doc in robust.robust_accuracy(records, eps).items():
        for norm, points in doc["table"].items():
            for e in eps[norm]:
                entry = points[robust.eps_key(e)][robust.BEST]
                out.append({"config": cid, "label": labels.get(cid, cid), "norm": norm, "eps": e,
                            "accuracy": entry["accuracy"], "accuracy_upper": entry["accuracy_upper"],
                            "images": entry["images"], "robust": entry["robust"], "undecided": entry["undecided"]})
    return out


def _metric(norm: str, eps: float) -> str:
    return f"robust accuracy {robust.NORM_NAMES[norm]}<={robust.eps_label(norm, eps)}"


def baseline_entries(rows: list[dict], robust_rows: list[dict] | None = None) -> dict:
    """The baseline document of a summary (one entry per configuration and attack, and the
    robust accuracy of the best of the attacks per configuration and eps of the table)."""
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
        "robust_accuracy": robust_rows or [],
    }


def write_baseline(folder: Path, path: Path) -> dict:
    """Store the current results of ``folder`` as a baseline JSON file; returns it."""
    records, configs, _, _ = load_results_dir(folder)
    rows = summarize_sweep(records, configs)
    labels = {r["config"]: r["label"] for r in rows}
    doc = baseline_entries(rows, robust_entries(records, robust.folder_eps(folder, records), labels))
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
    min_robust: list[tuple[str, float, float]] | None = None,
) -> tuple[list[Check], list[dict]]:
    """Every check asked for, and the summary rows they were made on."""
    if min_success_l2 is None and min_accuracy is None and baseline is None and not min_robust:
        raise ProbeError("nothing to check: give --min-robust-accuracy, --min-success-l2, --min-accuracy "
                         "and/or --baseline")
    doc = read_baseline(baseline) if baseline is not None else None
    records, configs, _, _ = load_results_dir(folder)
    rows = summarize_sweep(records, configs)
    labels = {r["config"]: r["label"] for r in rows}
    checks: list[Check] = []
    for norm, eps, minimum in min_robust or []:
        for entry in robust_entries(records, {norm: [eps]}, labels):
            value = entry["accuracy"]
            checks.append(Check(entry["config"], entry["label"], "best", _metric(norm, eps), value, minimum,
                                value is not None and value >= minimum,
                                f"{entry['robust']}/{entry['images']} images robust"
                                + (f", {entry['undecided']} undecided (counted as adversarial)"
                                   if entry["undecided"] else "")))
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
    if doc is not None:
        checks += _baseline_checks(doc, rows, max_drop)
        checks += _baseline_robust_checks(doc, records, labels, max_drop)
    return checks, rows


def _baseline_robust_checks(doc: dict, records: list[dict], labels: dict[str, str], max_drop: float) -> list[Check]:
    """Robust accuracy (best of the attacks) at each (norm, eps) of the baseline, per configuration."""
    wanted = [e for e in doc.get("robust_accuracy") or [] if e.get("accuracy") is not None]
    eps: dict[str, list[float]] = {}
    for e in wanted:
        eps.setdefault(e["norm"], [])
        if e["eps"] not in eps[e["norm"]]:
            eps[e["norm"]].append(e["eps"])
    current = {(e["config"], e["norm"], e["eps"]): e for e in robust_entries(records, eps, labels)} if eps else {}
    checks = []
    for e in wanted:
        now = current.get((e["config"], e["norm"], e["eps"]))
        threshold = e["accuracy"] * (1.0 - max_drop)
        value = None if now is None else now["accuracy"]
        note = "missing from the results" if now is None else f"baseline {e['accuracy']:.3f}"
        checks.append(Check(e["config"], e.get("label", e["config"]), "best", _metric(e["norm"], e["eps"]), value,
                            threshold, value is not None and value >= threshold, note))
    return checks


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


def _case_name(c: Check) -> str:
    return f"{c.metric}" + (f" ({c.attack})" if c.attack else "")


def junit_xml(checks: list[Check]) -> str:
    """The checks as JUnit XML: one test suite, one test case per check (a failure per failed one)."""
    from xml.etree import ElementTree as ET

    failed = sum(1 for c in checks if not c.ok)
    suites = ET.Element("testsuites", name="probe check", tests=str(len(checks)), failures=str(failed))
    suite = ET.SubElement(suites, "testsuite", name="probe check", tests=str(len(checks)), failures=str(failed),
                          errors="0", skipped="0")
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=c.label, name=_case_name(c))
        text = (f"{c.metric}: {'-' if c.value is None else f'{c.value:.4g}'}, required "
                f"{'-' if c.threshold is None else f'>= {c.threshold:.4g}'}" + (f" ({c.note})" if c.note else ""))
        if not c.ok:
            ET.SubElement(case, "failure", message=text, type="regression").text = text
        else:
            ET.SubElement(case, "system-out").text = text
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def markdown_summary(checks: list[Check], headlines: list[str]) -> str:
    """The checks as Markdown (for ``$GITHUB_STEP_SUMMARY``): the headlines, then a table."""
    failed = [c for c in checks if not c.ok]
    lines = ["## probe check: " + (f"{len(failed)} of {len(checks)} checks failed" if failed
                                   else f"all {len(checks)} checks passed"), ""]
    lines += [f"> {h}" for h in headlines] + ([""] if headlines else [])
    lines += ["| configuration | attack | metric | value | required | result | note |", "|---|---|---|---|---|---|---|"]
    for c in failed + [c for c in checks if c.ok]:
        cells = [c.label, c.attack or "-", c.metric, "-" if c.value is None else f"{c.value:.4g}",
                 "-" if c.threshold is None else f">= {c.threshold:.4g}", "ok" if c.ok else "**REGRESSED**", c.note]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def headlines(folder: Path) -> list[str]:
    """The headline sentence of every configuration of a results folder."""
    records, configs, _, _ = load_results_dir(folder)
    eps = robust.folder_eps(folder, records)
    labels = {r["config"]: r["label"] for r in summarize_sweep(records, configs)}
    groups = robust.group_configs(records)
    return [(f"{labels.get(cid, cid)}: " if len(groups) > 1 else "") + robust.headline(recs, eps)
            for cid, recs in groups.items()]
