"""Writing results: JSON Lines as they arrive, a summary JSON, adversarial PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from probe.errors import ProbeError


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def prepare_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProbeError(f"cannot create output folder {path}: {exc.strerror}") from None
    return path


class ResultsWriter:
    """Appends one JSON line per result and flushes it at once (nothing lost on Ctrl-C)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, default=_json_default) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_results(path: Path) -> list[dict]:
    """Records of a results.jsonl (a torn last line from an interrupted run is ignored)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Canonical (3, H, W) [0, 1] -> (H, W, 3) uint8."""
    return (np.clip(x, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def save_adversarial(folder: Path, stem: str, x0: np.ndarray, x_adv: np.ndarray, amplify: float | None = None) -> Path:
    """Save the adversarial PNG and a side-by-side original | adversarial | amplified difference.

    The difference is shown as 0.5 + amplify * (x_adv - x0), amplify chosen so the
    largest change spans half the range unless given. Returns the adversarial PNG path.
    (The PNG is 8-bit: re-reading it rounds each pixel by at most 1/510.)
    """
    diff = x_adv - x0
    peak = float(np.max(np.abs(diff))) or 1.0
    amplify = amplify or 0.5 / peak
    panel = np.concatenate([to_uint8(x0), to_uint8(x_adv), to_uint8(0.5 + amplify * diff)], axis=1)
    adv_path = folder / f"{stem}_adv.png"
    Image.fromarray(to_uint8(x_adv)).save(adv_path)
    Image.fromarray(panel).save(folder / f"{stem}_compare.png")
    return adv_path
