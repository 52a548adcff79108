"""The one results store: file names, writing records as they arrive, reading them back.

A results folder (of ``probe attack --out`` or ``probe sweep``) holds ``results.jsonl``
(one record per image and attack, appended and flushed as each finishes),
``summary.json`` (``probe attack``), ``configs.jsonl``, ``certify.jsonl`` and
``sweep.json`` (sweeps), and optionally ``images/`` (adversarial PNGs).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from probe.errors import ProbeError

RESULTS, CONFIGS, CERTIFY, SWEEP = "results.jsonl", "configs.jsonl", "certify.jsonl", "sweep.json"
RUN, LOCK = "run.json", ".probe.lock"
TIMING_FIELDS = ("seconds",)


def json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def prepare_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProbeError(f"cannot create output folder {path}: {exc.strerror}") from None
    return path


class ResultsWriter:
    """Appends one JSON line per result and flushes it at once (nothing lost on Ctrl-C).

    A torn last line left by an interrupted run is cut first, so appends stay line-aligned.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        repair_tail(path)
        self._handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, default=json_default) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ResultsWarning(UserWarning):
    """A results file holds a line that is not a record (it is ignored)."""


def read_results(path: Path) -> list[dict]:
    """Records of a results.jsonl. A torn last line (an interrupted write) is ignored
    silently; any other line that is not a JSON record is ignored with a warning naming
    its line number."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().split("\n")
    torn = len(lines) - 1  # the text after the last newline: empty, or a torn write
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif number - 1 != torn:
            warnings.warn(f"{path}:{number}: not a JSON record, ignored", ResultsWarning, stacklevel=2)
    return records


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=json_default) + "\n", encoding="utf-8")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Canonical (3, H, W) [0, 1] -> (H, W, 3) uint8."""
    return (np.clip(x, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def save_adversarial(
    folder: Path, stem: str, x0: np.ndarray, x_adv: np.ndarray, *, amplify: float | None = None, suffix: str = "adv"
) -> Path:
    """Save the adversarial PNG and a labelled side-by-side original | adversarial | amplified
    perturbation (``{stem}_compare.png``, each picture at least 192 px, the amplification stated).

    The perturbation is shown as 0.5 + amplify * (x_adv - x0), amplify chosen so the largest
    change spans half the range unless given. Returns the adversarial PNG path.
    (The PNG is 8-bit: re-reading it rounds each pixel by at most 1/510.)
    """
    from probe.runs.thumbs import compare_panel

    adv_path = folder / f"{stem}_{suffix}.png"
    Image.fromarray(to_uint8(x_adv)).save(adv_path)
    compare_panel(x0, x_adv, amplify=amplify).save(folder / f"{stem}_compare.png")
    return adv_path


PNG_SUFFIX = {"adversarial": "adv", "not adversarial": "not-adversarial-at-8bit", "undecided": "undecided-at-8bit"}


def image_stem(image: str) -> str:
    """A file-name stem for an image id: ``x.png`` -> ``x``, ``dA/x.png`` -> ``dA_x`` (ids of one
    run are distinct, see :func:`probe.data.image_ids`)."""
    parts = Path(str(image).replace("\\", "/")).with_suffix("").parts
    return "_".join(p for p in parts if p not in ("/", ".", "..")) or "image"


def save_record_image(folder: Path, record: dict, x0: np.ndarray, x_adv: np.ndarray) -> Path:
    """Save a record's PNGs in ``folder`` (created), named after its image and attack.

    A PNG holds the adversarial rounded to 8 bits, so it is named by that point's verdict
    (``verdict_8bit``): ``..._adv.png`` only when it is adversarial at 8 bits, else
    ``..._not-adversarial-at-8bit.png`` or ``..._undecided-at-8bit.png``."""
    prepare_dir(folder)
    suffix = PNG_SUFFIX.get(record.get("verdict_8bit") or "adversarial", "adv")
    return save_adversarial(folder, f"{image_stem(record['image'])}_{record['attack']}", x0, x_adv, suffix=suffix)


def start_run(folder: Path, settings: dict, *, resume: bool = False, overwrite: bool = False) -> list[dict]:
    """Prepare the results folder of one ``probe attack`` run; returns the records kept.

    A folder that already holds results is never silently emptied: ``resume`` keeps them
    (the run's settings, stored in ``run.json``, must be the same) and the caller skips
    their jobs; ``overwrite`` deletes the previous run's files first; neither is an error.
    """
    import shutil

    prepare_dir(folder)
    existing = read_jsonl(folder / RESULTS)
    settings = json.loads(json.dumps(settings, default=json_default))
    if existing and not (resume or overwrite):
        raise ProbeError(
            f"{folder} already holds {len(existing)} results: --resume continues that run, --overwrite replaces it"
        )
    if resume and existing:
        stored = json.loads((folder / RUN).read_text(encoding="utf-8")) if (folder / RUN).is_file() else None
        if stored != settings:
            raise ProbeError(f"--resume: {folder} holds a run with other settings ({RUN}); use another folder")
        return existing
    for name in (RESULTS, "summary.json", RUN):
        (folder / name).unlink(missing_ok=True)
    for name in ("adversarial", "images"):
        shutil.rmtree(folder / name, ignore_errors=True)
    write_json(folder / RUN, settings)
    return []


@contextmanager
def locked(folder: Path) -> Iterator[Path]:
    """Hold an OS lock on a results folder (created) for a run's whole life.

    A second run into the same folder fails at once with a ProbeError naming the PID of
    the first (two writers would duplicate records). The lock goes with the process, so a
    killed run leaves nothing to clean up.
    """
    import fcntl

    prepare_dir(folder)
    handle = open(folder / LOCK, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise ProbeError(f"{folder} is in use by another probe run (PID {pid}); wait for it or use another folder")
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        yield folder
    finally:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def save_record_array(out_dir: Path, record: dict, x_adv: np.ndarray) -> Path:
    """Save a record's float32 adversarial (the point that was measured) as ``.npy`` under
    ``out_dir/adversarial/``; returns its path relative to ``out_dir``."""
    folder = prepare_dir(Path(out_dir) / "adversarial" / str(record.get("config", "")))
    identity = [record["image"], record.get("params")]  # the image's id too: never two images in one file
    key = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    path = folder / f"{image_stem(record['image'])}_{record['attack']}_{key}.npy"
    np.save(path, np.asarray(x_adv, dtype=np.float32))
    return path.relative_to(out_dir)


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON Lines file; missing file -> []; unreadable (torn) lines are skipped."""
    if not path.is_file():
        return []
    return read_results(path)


def repair_tail(path: Path) -> None:
    """Drop a torn last line (no newline: an interrupted write) so that appends stay line-aligned."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        data = path.read_bytes()
        handle.truncate(data.rfind(b"\n") + 1)


def config_id(identity: dict[str, Any]) -> str:
    """A short stable id of a configuration's parameters."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return "c" + hashlib.sha1(text.encode()).hexdigest()[:10]


def job_key(record: dict) -> tuple[str, str, str]:
    return (record.get("config", ""), record["image"], record["attack"])


def load_results_dir(folder: Path) -> tuple[list[dict], dict[str, dict], list[dict], dict]:
    """(results, configs by id, certification records, sweep.json) of a sweep or attack folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ProbeError(f"no such results folder: {folder}")
    path = folder / RESULTS
    if not path.is_file():
        raise ProbeError(f"{folder} holds no {RESULTS}: run `probe sweep CONFIG --out {folder}` first")
    records = read_jsonl(path)
    if not records:
        raise ProbeError(f"{path} holds no results")
    configs = {r["config"]: r for r in read_jsonl(folder / CONFIGS)}
    status = {}
    if (folder / SWEEP).is_file():
        try:
            status = json.loads((folder / SWEEP).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            status = {}
    return records, configs, read_jsonl(folder / CERTIFY), status


def record_config(record: dict) -> str:
    """The configuration id of a record (records of `probe attack` get one from their parameters).

    The attack's norm is no part of it: the attacks of one run (HSJA in L2, RayS in Linf) are one
    configuration, whose best-of-the-attacks robust accuracy covers them all."""
    if record.get("config"):
        return record["config"]
    return config_id({k: record.get(k) for k in ("model", "sigma", "n", "pa", "budget", "seed")})


def strip_timing(record: dict) -> dict:
    """A record without its timing fields (to compare runs)."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}
