"""Robust accuracy at eps: the answer of a run.

For one configuration (model, sigma, n, P_a, budget) and a set of attacks, robust
accuracy at eps is the fraction of the evaluated images that the defended model
classifies correctly and for which no attack found an adversarial within eps (per
image, the smallest distortion among its records whose verdict is "adversarial").

* An image skipped as misclassified (or for any other reason) is not robust.
* An image without a true label counts as correct: its attacks aim at the model's own label.
* A record whose verdict is "undecided" (or could not be measured) is counted both ways:
  ``robust`` counts its image as broken at its distortion, ``robust_upper`` as robust. The
  interval runs from the Clopper-Pearson lower bound of the first to the upper bound of
  the second (95%), so it covers both readings.

Every figure and gate reads these numbers; nothing here draws or prints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from probe.runs.settings import ATTACK_NAMES
from probe.errors import ProbeError
from probe.oracle import clopper_pearson
from probe.runs.eps import DEFAULT_EPS, NORM_NAMES, NORMS, SMALL_INPUT, default_eps, eps_key, eps_label, parse_eps
from probe.runs.results import record_config

CONFIDENCE = 0.95
BEST = "best"
VERDICTS = ("adversarial", "not adversarial", "undecided")
def read_json(path: Path) -> dict:
    """A JSON object file, {} when missing or unreadable."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def input_dimension(folder: Path, records: list[dict]) -> int | None:
    """C x H x W of the model's input: from summary.json, else a saved adversarial's shape."""
    summary = read_json(Path(folder) / "summary.json")
    if summary.get("dimension"):
        return int(summary["dimension"])
    for rec in records:
        path = Path(folder) / str(rec.get("adv_file") or "")
        if rec.get("adv_file") and path.is_file():
            return int(np.load(path, mmap_mode="r").size)
    return None


def folder_eps(folder: Path, records: list[dict], specs: list[str] | None = None) -> dict[str, list[float]]:
    """The table's eps of a results folder: ``specs`` (``--eps``) when given, else those of the run
    (summary.json), else the defaults for its input size."""
    if specs:
        return parse_eps(specs, input_dimension(folder, records))
    stored = read_json(Path(folder) / "summary.json").get("eps")
    if isinstance(stored, dict) and any(k in NORMS for k in stored):
        return {k: [float(v) for v in vals] for k, vals in stored.items() if k in NORMS}
    return default_eps(input_dimension(folder, records))


# --------------------------------------------------------------------------- records


def status_of(record: dict) -> str:
    """One of: skipped, not found, adversarial, not adversarial, undecided, not measured.

    Tolerant of older records: without a three-valued ``verdict``, ``success`` decides."""
    if record.get("skipped"):
        return "skipped"
    verdict = record.get("verdict")
    if verdict in VERDICTS:
        return verdict
    found = record.get("found")
    if found is None:
        found = record.get("l2") is not None
    if not found:
        return "not found"
    success = record.get("success")
    if success is True:
        return "adversarial"
    if success is False:
        return "not adversarial"
    return "not measured"


def budget_spent(record: dict) -> bool:
    """The endpoint's budget cut the record short (``stopped``) or left its verdict unmeasured."""
    return bool(record.get("stopped")) or status_of(record) == "not measured"


def _distance(record: dict, norm: str) -> float | None:
    value = record.get(norm)
    return None if value is None else float(value)


def group_configs(records: list[dict]) -> dict[str, list[dict]]:
    """Records per configuration id, in the order first seen."""
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(record_config(rec), []).append(rec)
    return groups


def image_distances(records: list[dict], norm: str, attacks: list[str] | None = None) -> list[dict]:
    """Per image (of one configuration): correct, and the smallest distortion in ``norm`` of an
    adversarial (``adv``) and of an undecided or unmeasured point (``open``) over ``attacks``."""
    per: dict[str, dict] = {}
    for rec in records:
        if attacks is not None and rec["attack"] not in attacks:
            continue
        image = per.setdefault(rec["image"], {"image": rec["image"], "correct": True, "adv": math.inf, "open": math.inf})
        status = status_of(rec)
        if status == "skipped":
            image["correct"] = False
            continue
        d = _distance(rec, norm)
        if d is None:
            continue
        if status == "adversarial":
            image["adv"] = min(image["adv"], d)
        elif status in ("undecided", "not measured"):
            image["open"] = min(image["open"], d)
    return list(per.values())


def _entry(k_low: int, k_high: int, total: int) -> dict:
    if total == 0:
        return {"images": 0, "robust": 0, "robust_upper": 0, "undecided": 0, "accuracy": None,
                "accuracy_upper": None, "interval": None}
    low, _ = clopper_pearson(k_low, total, CONFIDENCE)
    _, high = clopper_pearson(k_high, total, CONFIDENCE)
    return {"images": total, "robust": k_low, "robust_upper": k_high, "undecided": k_high - k_low,
            "accuracy": k_low / total, "accuracy_upper": k_high / total, "interval": [low, high]}


def robust_at(images: list[dict], eps: float) -> dict:
    """Robust accuracy at ``eps`` of :func:`image_distances`'s images, with its interval."""
    low = sum(1 for i in images if i["correct"] and i["adv"] > eps and i["open"] > eps)
    high = sum(1 for i in images if i["correct"] and i["adv"] > eps)
    return _entry(low, high, len(images))


def robust_curve(images: list[dict], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust accuracy (counting undecided as broken, then as robust) at every eps of ``grid``."""
    if not images:
        return np.zeros(len(grid)), np.zeros(len(grid))
    correct = np.array([i["correct"] for i in images])
    adv = np.array([i["adv"] for i in images])
    opn = np.array([i["open"] for i in images])
    g = np.asarray(grid, dtype=float)[:, None]
    low = (correct & (adv > g) & (opn > g)).mean(axis=1)
    high = (correct & (adv > g)).mean(axis=1)
    return low, high


ORDER = ATTACK_NAMES


def attacks_of(records: list[dict]) -> list[str]:
    """The attacks of the records: the bundled ones in their usual order, then the others as met."""
    names = list(dict.fromkeys(r["attack"] for r in records))
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), names.index(n)))


def robust_table(records: list[dict], eps: dict[str, list[float]]) -> dict:
    """{norm: {eps_key: {attack | "best": entry}}} for the records of one configuration."""
    table: dict[str, dict] = {}
    names = attacks_of(records)
    for norm, points in eps.items():
        per = {name: image_distances(records, norm, [name]) for name in names}
        per[BEST] = image_distances(records, norm)
        table[norm] = {eps_key(e): {who: robust_at(images, e) for who, images in per.items()} for e in points}
    return table


def clean_entry(records: list[dict]) -> dict:
    """Robust accuracy at eps 0: the evaluated images the defended model classifies correctly."""
    images = image_distances(records, "l2")
    k = sum(1 for i in images if i["correct"])
    return _entry(k, k, len(images))


def robust_accuracy(records: list[dict], eps: dict[str, list[float]]) -> dict:
    """Per configuration id: its clean entry, its table and its headline eps."""
    out = {}
    for cid, recs in group_configs(records).items():
        out[cid] = {"clean": clean_entry(recs), "eps": {n: list(v) for n, v in eps.items()},
                    "table": robust_table(recs, eps), "attacks": attacks_of(recs)}
    return out


# --------------------------------------------------------------------------- over the query budget


def trajectory_at(record: dict, norm: str, queries: int) -> float:
    """The record's best distortion after ``queries`` queries (inf before any was found)."""
    traj = record.get("trajectory") or {}
    checkpoints, values = traj.get("queries") or [], traj.get(norm) or []
    best = math.inf
    for q, v in zip(checkpoints, values):
        if q > queries:
            break
        if v is not None:
            best = min(best, float(v))
    return best


def has_trajectory(records: list[dict]) -> bool:
    """Whether some record's trajectory has a point before its end: a curve over queries says
    something. Under a confirmation phase (smoothing) a point counts only once confirmed, at
    the end of the attack, so such records alone draw no curve (runs at several budgets do)."""
    for r in records:
        if r.get("skipped"):
            continue
        traj = r.get("trajectory") or {}
        if any(v is not None for v in (traj.get("l2") or [])[:-1]):
            return True
    return False


def query_grid(records: list[dict]) -> list[int]:
    """Every checkpoint of the records' trajectories, in order."""
    points = {int(q) for r in records for q in ((r.get("trajectory") or {}).get("queries") or [])}
    return sorted(points)


def over_queries(records: list[dict], norm: str, eps: float) -> dict:
    """Robust accuracy at ``eps`` and the median distortion per attack (and the best of them,
    each attack with q queries) at every query checkpoint of the records' trajectories.

    A point counts at q when the record's final verdict is adversarial (undecided and
    unmeasured ones make the band); the median is over the correctly classified images,
    an image without any point yet counting as infinitely far (the median is then None)."""
    grid = query_grid(records)
    names = [a for a in attacks_of(records) if has_trajectory([r for r in records if r["attack"] == a])]
    out: dict = {"queries": grid, "eps": eps, "norm": norm, "attacks": {}}
    if not grid or not names:
        return out
    images = list(dict.fromkeys(r["image"] for r in records))
    correct = {i: True for i in images}
    for r in records:
        if r.get("skipped"):
            correct[r["image"]] = False
    series = {}
    for who in [*names, BEST] if len(names) > 1 else names:
        chosen = names if who == BEST else [who]
        low, high, median = [], [], []
        for q in grid:
            adv = {i: math.inf for i in images}
            opn = {i: math.inf for i in images}
            dist = {i: math.inf for i in images}
            for r in records:
                if r["attack"] not in chosen or r.get("skipped"):
                    continue
                d = trajectory_at(r, norm, q)
                status = status_of(r)
                dist[r["image"]] = min(dist[r["image"]], d)
                if status == "adversarial":
                    adv[r["image"]] = min(adv[r["image"]], d)
                elif status in ("undecided", "not measured"):
                    opn[r["image"]] = min(opn[r["image"]], d)
            low.append(sum(1 for i in images if correct[i] and adv[i] > eps and opn[i] > eps) / len(images))
            high.append(sum(1 for i in images if correct[i] and adv[i] > eps) / len(images))
            kept = [dist[i] for i in images if correct[i]]
            m = float(np.median(kept)) if kept else math.inf
            median.append(None if not math.isfinite(m) else m)
        series[who] = {"robust": low, "robust_upper": high, "median": median}
    out["attacks"] = series
    return out


# --------------------------------------------------------------------------- words


def attack_names(names: list[str]) -> str:
    """['hsja', 'surfree', 'rays'] -> 'HSJA, SurFree and RayS'."""
    pretty = {"hsja": "HSJA", "surfree": "SurFree", "rays": "RayS", "cgba": "CGBA", "psj": "PSJ"}
    words = [pretty.get(n, n) for n in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def headline_norm(records: list[dict], eps: dict[str, list[float]]) -> str:
    """L2 unless every attack of the records works in Linf (or only Linf points were asked)."""
    norms = {r.get("norm") for r in records if not r.get("skipped")}
    if "l2" in eps and (norms - {"linf"} or not norms or "linf" not in eps):
        return "l2"
    return "linf" if "linf" in eps else next(iter(eps))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def headline(records: list[dict], eps: dict[str, list[float]], *, budget: int | None = None) -> str:
    """The sentence of one configuration, e.g. "Against the best of HSJA, SurFree and RayS with
    1,000 queries each, the defended model keeps 41% [28%, 55%] of 20 images at L2 <= 0.5
    (clean accuracy 85%)." """
    names = attacks_of(records)
    if not names:
        return "No result."
    norm = headline_norm(records, eps)
    value = eps[norm][0]
    entry = robust_at(image_distances(records, norm), value)
    clean = clean_entry(records)
    budget = budget if budget is not None else records[0].get("budget")
    who = (f"the best of {attack_names(names)}" if len(names) > 1 else attack_names(names)) + (
        f" with {budget:,} queries{' each' if len(names) > 1 else ''}" if budget else "")
    sigma = records[0].get("sigma")
    model = "the defended model" if sigma else "the model (no smoothing)"
    band = ""
    if entry["undecided"]:
        band = f" (up to {_pct(entry['accuracy_upper'])} if the {entry['undecided']} undecided are not adversarial)"
    lo, hi = entry["interval"]
    return (f"Against {who}, {model} keeps {_pct(entry['accuracy'])} [{_pct(lo)}, {_pct(hi)}] of "
            f"{entry['images']} images at {NORM_NAMES[norm]} <= {eps_label(norm, value)}{band} "
            f"(clean accuracy {_pct(clean['accuracy'])}).")


GOOD_BAD = ("Higher is better for the defense: robust accuracy near the clean accuracy means the attacks found no "
            "adversarial within eps; near 0 means almost every image has one. The interval is 95% "
            "(Clopper-Pearson) over the images: with few images it is wide.")


def answer(records: list[dict], eps: dict) -> dict:
    """summary.json's answer: the eps of the table, the headline and robust accuracy by norm and eps."""
    norm = headline_norm(records, eps)
    return {"eps": eps, "headline": headline(records, eps) if records else None,
            "headline_eps": {"norm": norm, "eps": eps[norm][0]},
            "clean": clean_entry(records), "robust_accuracy": robust_table(records, eps)}
