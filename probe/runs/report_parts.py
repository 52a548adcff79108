"""The parts of a report that read more than the records: pictures, counts, what was run, words.

* :func:`image_rows`: one row per image of a configuration, with the thumbnail triplet of its
  closest adversarial (original, adversarial, perturbation amplified, its factor stated),
  the true, clean and adversarial class names and, one line per attack, the distortion,
  the verdict with p_adv and its interval, queries, confirmation and the 8-bit verdict.
  The adversarial is the float32 ``.npy`` named by the record's ``adv_file``; the original
  is ``originals/<image>.npy`` when the run saved it, else found again by its file name
  (the sweep's images, or the model's bundled samples).
* :func:`counts_rows`, :func:`run_rows`, :data:`GLOSSARY`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from probe.runs import robust, thumbs

THUMBS = "images"
ORIGINALS = "originals"
MAX_IMAGES = 200  # rows of the per-image table of one configuration (the records hold them all)


def original_path(folder: Path, image: str) -> Path:
    """Where ``probe attack --out`` keeps the float32 original of an image."""
    return Path(folder) / ORIGINALS / f"{Path(image).stem}.npy"


def save_original(out_dir: Path, image: str, x0: np.ndarray) -> None:
    """The float32 original beside the adversarials (``originals/``), for the report's pictures."""
    path = original_path(out_dir, image)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray(x0, dtype=np.float32))


def _load_original(folder: Path, rec: dict, shape: tuple[int, ...], sources: list[str]) -> np.ndarray | None:
    saved = original_path(folder, rec["image"])
    if saved.is_file():
        return np.load(saved)
    from probe.data import expand_sources, load_image
    from probe.zoo import default_images

    candidates = []
    try:
        candidates += [p for p in expand_sources(sources) if p.name == rec["image"]] if sources else []
    except Exception:  # a source that is gone: look elsewhere
        pass
    try:
        bundled = default_images(rec.get("model") or "")
        if bundled is not None:
            candidates.append(bundled / rec["image"])
    except Exception:
        pass
    candidates.append(Path(rec["image"]))
    for path in candidates:
        if path.is_file():
            try:
                return load_image(path, tuple(shape[1:]))
            except Exception:
                continue
    return None


def class_namer(model: str | None):
    """label -> "3 cat" from the model's metadata (the number alone when unknown)."""
    names = None
    try:
        from probe.zoo import read_spec, resolve_model

        spec = read_spec(resolve_model(model)) if model else None
        names = spec.class_names if spec else None
    except Exception:
        names = None

    def name(label) -> str:
        if label is None:
            return "-"
        if names and 0 <= int(label) < len(names):
            return f"{label} {names[int(label)]}"
        return str(label)

    return name


def _verdict_line(r: dict) -> str:
    status = robust.status_of(r)
    if status in ("not found", "skipped"):
        return status
    note = r.get("verdict_note") or (r.get("verdict") if r.get("verdict") not in (None, *robust.VERDICTS) else None)
    if status == "not measured":
        return status + (f" ({note})" if note else "")
    interval = r.get("p_adv_interval")
    p = "" if r.get("p_adv") is None else f", {r['p_adv']:.2f}" + (
        f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
    return status + p


def _eight_bit(r: dict) -> str:
    if r.get("verdict_8bit"):
        return r["verdict_8bit"]
    if r.get("p_adv_8bit") is None:
        return "-"
    return f"p_adv {r['p_adv_8bit']:.2f}"


def _confirmed(r: dict) -> str:
    c = r.get("confirmed")
    return "-" if c is None else ("yes" if c else "no")


def _best(recs: list[dict]) -> dict | None:
    found = [r for r in recs if r.get("l2") is not None and not r.get("skipped")]
    adv = [r for r in found if robust.status_of(r) == "adversarial"]
    pool = adv or found
    return min(pool, key=lambda r: r["l2"]) if pool else None


def image_rows(folder: Path, recs: list[dict], tag: str, sources: list[str],
               model: str | None = None, order: list[str] | None = None) -> tuple[list[str], list[list]]:
    """The per-image table of one configuration (thumbnails written under figures/images/);
    ``model``: the run's model, for records that do not name theirs."""
    folder = Path(folder)
    out_dir = folder / "figures" / THUMBS
    model = (recs[0].get("model") if recs else None) or model
    name = class_namer(model)
    headers = ["image", "original, adversarial, perturbation", "classes", "attack",
               "L2 / Linf", "verdict, p_adv [interval]", "queries", "confirmed", "8-bit verdict"]
    rows = []
    position = {name: i for i, name in enumerate(order or [])}
    attack_order = robust.attacks_of(recs)
    images = sorted(dict.fromkeys(r["image"] for r in recs), key=lambda k: position.get(k, len(position)))
    for image in images[:MAX_IMAGES]:
        mine = sorted((r for r in recs if r["image"] == image), key=lambda r: attack_order.index(r["attack"]))
        best = _best(mine)
        cell: dict = {"thumbs": [], "text": ""}
        if best is not None and best.get("adv_file") and (folder / best["adv_file"]).is_file():
            x_adv = np.load(folder / best["adv_file"])
            x0 = _load_original(folder, {**best, "model": model}, x_adv.shape, sources)
            stem = f"{tag}_{Path(image).stem}"
            out_dir.mkdir(parents=True, exist_ok=True)
            size = 96 if max(x_adv.shape[1:]) <= 96 else 128
            if x0 is not None:
                diff, amp = thumbs.perturbation(x0, x_adv)
                pics = [("original", x0), (f"{robust.attack_names([best['attack']])}", x_adv), (f"x{amp:.3g}", diff)]
            else:
                pics = [(f"{robust.attack_names([best['attack']])}", x_adv)]
                cell["text"] = "original not found"
            for i, (caption, x) in enumerate(pics):
                path = out_dir / f"{stem}_{i}.png"
                thumbs.resized(x, size).save(path)
                cell["thumbs"].append((caption, path))
        elif best is None:
            cell["text"] = "skipped" if all(r.get("skipped") for r in mine) else "no adversarial found"
        else:
            cell["text"] = "no saved adversarial (run with --out)"
        first = mine[0]
        adv_label = best.get("adv_label", best.get("adversarial_label")) if best else None
        classes = (f"true: {name(first.get('label'))}\nclean: {name(first.get('clean_label'))}\n"
                   f"adversarial: {name(adv_label)}")
        lines = [[robust.attack_names([r["attack"]]),
                  "-" if r.get("l2") is None else f"{r['l2']:.3f} / {r['linf']:.4f}",
                  _verdict_line(r), "-" if r.get("skipped") else f"{r.get('queries', 0):,}",
                  _confirmed(r), _eight_bit(r)] for r in mine]
        columns = ["\n".join(col) for col in zip(*lines)]
        rows.append([image, cell, classes, *columns])
    return headers, rows


def counts_rows(recs: list[dict], pa: float | None) -> list[list[str]]:
    """Per attack: images, misclassified, adversarial / not / undecided / unmeasured / not found,
    adversarial at float32 but not at 8 bits, confirmed."""
    rows = []
    for attack in robust.attacks_of(recs):
        mine = [r for r in recs if r["attack"] == attack]
        status = [robust.status_of(r) for r in mine]
        adv = [r for r, s in zip(mine, status) if s == "adversarial"]

        def eight_bit_fails(r: dict) -> bool:
            if r.get("verdict_8bit") is not None:
                return r["verdict_8bit"] != "adversarial"
            return r.get("p_adv_8bit") is not None and pa is not None and r["p_adv_8bit"] < pa

        ran = [r for r in mine if r.get("confirmed") is not None]
        rows.append([robust.attack_names([attack]), str(len(mine)), str(status.count("skipped")),
                     str(len(adv)), str(status.count("not adversarial")), str(status.count("undecided")),
                     str(status.count("not measured")), str(status.count("not found")),
                     str(sum(1 for r in adv if eight_bit_fails(r))),
                     f"{sum(1 for r in ran if r['confirmed'])}/{len(ran)}" if ran else "-"])
    return rows


COUNT_HEADERS = ["attack", "images", "misclassified (skipped)", "adversarial", "not adversarial", "undecided",
                 "not measured", "nothing found", "8-bit failures", "confirmed"]


@functools.lru_cache(maxsize=16)
def sha256(path: Path) -> str | None:
    """SHA-256 of a file (each file read once per process: a sweep's configurations share their model)."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _model_file(model: str | None) -> Path | None:
    if not model:
        return None
    try:
        from probe.zoo import resolve_model

        return resolve_model(model)
    except Exception:
        return Path(model) if Path(model).is_file() else None


def run_rows(recs: list[dict], run: dict, summary: dict, status: dict) -> list[list[str]]:
    """What was run, from the records, run.json (``probe attack``), summary.json and sweep.json."""
    first = next((r for r in recs if not r.get("skipped")), recs[0])
    model = first.get("model") or run.get("model") or summary.get("model")
    path = _model_file(model)
    rows = [["model", str(model)], ["model file", str(path) if path else "-"],
            ["model SHA-256", (sha256(path) if path else None) or "-"]]
    try:
        from probe.zoo import read_spec

        spec = read_spec(path) if path else None
    except Exception:
        spec = None
    if spec is not None:
        rows.append(["input convention", f"{spec.layout} {spec.channels}, scale {spec.scale:g}, mean "
                     f"{list(spec.mean)}, std {list(spec.std)}, size {spec.size}"])
    seen = set(r["image"] for r in recs)
    images = [i for i in run.get("images") or [] if i in seen] or list(dict.fromkeys(r["image"] for r in recs))
    listed = ", ".join(images) if len(images) <= 12 else (
        f"{len(images)} images, SHA-256 of their names (one a line) "
        + hashlib.sha256("\n".join(images).encode()).hexdigest())
    rows.append(["images", f"{len(images)}: {listed}" if len(images) <= 12 else listed])
    config = run.get("config") or {}
    for key in ("sigma", "n", "pa", "budget", "criterion", "domain", "seed", "preset", "targeted", "early_stop"):
        value = first.get(key, config.get(key, run.get(key)))
        rows.append([{"pa": "P_a"}.get(key, key), json.dumps(value) if not isinstance(value, str) else value])
    for key in ("p_adv_samples", "confidence", "certify_n0", "certify_n", "certify_alpha"):
        if key in config:
            rows.append([key, json.dumps(config[key])])
    for attack in robust.attacks_of(recs):
        params = next((r.get("params") for r in recs if r["attack"] == attack and r.get("params")), None)
        if params:
            rows.append([f"{attack} parameters", json.dumps(params, sort_keys=True)])
    providers = summary.get("providers") or status.get("providers")
    if providers:
        rows.append(["providers", json.dumps(providers)])
    seconds = summary.get("seconds", status.get("seconds"))
    rows.append(["wall time", f"{seconds:.0f} s" if seconds is not None else
                 f"{sum(r.get('seconds') or 0 for r in recs):.0f} s (sum over the records)"])
    inferences = summary.get("inferences")
    rows.append(["model inferences", f"{inferences:,}" if inferences is not None else
                 f"{sum(r.get('inferences') or 0 for r in recs):,} (attacks only, sum over the records)"])
    return rows


GLOSSARY = [
    "**g(sigma, n)**: the defended model. Each query adds Gaussian noise of standard deviation sigma "
    "(in [0, 1] pixels) to the image n times and answers the class most of the n noisy copies get.",
    "**Robust accuracy at eps**: the share of the images that the defended model classifies correctly "
    "and for which no attack found an adversarial within distance eps. Misclassified images count as "
    "not robust. It can only go down as attacks improve: it is an upper bound on the true robust accuracy.",
    "**p_adv** (eq. 4): the probability that g(sigma, n) answers another class than the original's at the "
    "adversarial point, estimated from fresh noisy evaluations the attacker did not pay for, with a Clopper-Pearson "
    "interval (99% unless the run chose another confidence; a sequential test, eq. 4 as a test).",
    "**P_a**: the level p_adv must reach. The verdict is 'adversarial' when the whole interval lies at or "
    "above P_a, 'not adversarial' when it lies below, 'undecided' otherwise (shown as a band).",
    "**8-bit verdict**: the same test on the adversarial rounded to 8-bit pixels, as a PNG would deliver it.",
    "**Confirmed**: the attack's own final check of its point, when a confirmation phase ran.",
    "**Certified radius** (CERTIFY, Cohen et al.): a distance within which smoothing guarantees the class "
    "of the original (with probability 1 - alpha). Practical adversarials are usually far larger.",
    "**L2 / Linf**: the distortion over the whole C x H x W image in [0, 1] pixels; Linf is the largest "
    "change of any one pixel value (8/255 is about 0.031).",
]
