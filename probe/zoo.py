"""The model registry: built-in models shipped with probe and exported ones in the model dir.

Names resolve in this order: an existing file path, a built-in model
(``efficientnet-lite0``, the default, and ``cifar10-cnn``), then
``MODEL_DIR/NAME.onnx``. The model directory is ``$PROBE_MODEL_DIR``, else
``$XDG_CACHE_HOME/probe/models``, else ``~/.cache/probe/models``; ``probe models
export`` writes its ResNet50 variants there (``resnet50-vanilla.onnx``,
``resnet50-randtrain-0.25.onnx``, ``resnet50-advtrain.onnx``, ...).

No torch here: metadata is read straight from the ONNX protobuf header fields
without parsing the graph.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.spec import METADATA_KEY, InputSpec

DEFAULT_MODEL = "efficientnet-lite0"
# metadata keys the recipes write next to probe.spec.METADATA_KEY (probe.recipes imports them)
PROVENANCE_KEY = "probe.provenance"
VARIANT_KEY = "probe.variant"

# name -> (ONNX file under assets/models, dataset of its bundled sample images)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "efficientnet-lite0": ("efficientnet_lite0.onnx", "imagenet"),
    "cifar10-cnn": ("cifar10_cnn.onnx", "cifar10"),
}
SAMPLE_DATASETS = ("imagenet", "cifar10")


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """A model of the registry: where its file is and what its metadata says."""

    name: str
    path: Path
    builtin: bool
    size_bytes: int
    spec: InputSpec | None
    provenance: dict[str, Any] | None


def _assets() -> Path:
    return Path(str(resources.files("probe") / "assets"))


def builtin_path(name: str) -> Path:
    """Where the built-in model ``name`` is installed (the file may be missing)."""
    return _assets() / "models" / BUILTIN_MODELS[name][0]


def dataset_images(dataset: str | None) -> Path | None:
    """The bundled sample folder of a dataset ("imagenet", "cifar10"), if shipped."""
    if dataset not in SAMPLE_DATASETS:
        return None
    folder = _assets() / "images" / str(dataset)
    return folder if folder.is_dir() else None


def model_dir() -> Path:
    """Directory of exported models: $PROBE_MODEL_DIR, $XDG_CACHE_HOME/probe/models or ~/.cache/probe/models."""
    explicit = os.environ.get("PROBE_MODEL_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "probe" / "models"


def _user_models() -> list[Path]:
    folder = model_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.onnx") if p.is_file() and not p.name.startswith("."))


def available_names() -> list[str]:
    """Built-in names whose file is installed, then the models in the model dir."""
    names = [name for name in BUILTIN_MODELS if builtin_path(name).is_file()]
    names += [p.stem for p in _user_models() if p.stem not in names]
    return names


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The ONNX file for a path, a built-in name or a name in the model dir."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        raise ProbeError(f"{candidate} is a directory, not an ONNX model file")
    if text in BUILTIN_MODELS:
        path = builtin_path(text)
        if path.is_file():
            return path
        raise ProbeError(f"built-in model '{text}' is missing from this installation (expected {path})")
    stem = text[: -len(".onnx")] if text.endswith(".onnx") else text
    if stem and "/" not in stem and os.sep not in stem:
        path = model_dir() / f"{stem}.onnx"
        if path.is_file():
            return path
    if text.endswith(".onnx") or "/" in text or os.sep in text:
        raise ProbeError(
            f"model file not found: {text}. Built-in models: {', '.join(BUILTIN_MODELS)}; a ResNet50 is made with "
            "`probe models export resnet50 --checkpoint CKPT.pth` (or --weights torchvision), then used by name"
        )
    names = available_names()
    listing = ", ".join(names) if names else "none installed"
    raise ProbeError(
        f"unknown model '{text}'; available: {listing}. Export a ResNet50 into {model_dir()} "
        "with `probe models export`, or pass the path of an ONNX file"
    )


# --------------------------------------------------------------------------- metadata


def _varint(handle) -> int:
    shift = result = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise EOFError
        value = byte[0]
        result |= (value & 0x7F) << shift
        if not value & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("bad varint")


def _parse_entry(raw: bytes) -> tuple[str, str]:
    """A StringStringEntryProto: key = field 1, value = field 2."""
    handle = io.BytesIO(raw)
    fields = {1: "", 2: ""}
    while handle.tell() < len(raw):
        tag = _varint(handle)
        if tag & 7 != 2:
            raise ValueError("unexpected wire type in metadata entry")
        length = _varint(handle)
        fields[tag >> 3] = handle.read(length).decode("utf-8")
    return fields[1], fields[2]


def read_metadata(path: Path | str) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX model, read without loading the graph.

    Scans the top-level fields of the ModelProto and seeks over the graph, so it
    costs a few reads even for a 100 MB model. Falls back to ``onnx.load`` on any
    surprise. Raises ProbeError when the file cannot be read as ONNX.
    """
    path = Path(path)
    try:
        return _scan_metadata(path)
    except OSError as exc:
        raise ProbeError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (EOFError, ValueError, UnicodeDecodeError):
        pass
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf errors have many types
        raise ProbeError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    return {p.key: p.value for p in proto.metadata_props}


def _scan_metadata(path: Path) -> dict[str, str]:
    size = path.stat().st_size
    out: dict[str, str] = {}
    with open(path, "rb") as handle:
        while handle.tell() < size:
            tag = _varint(handle)
            field, wire = tag >> 3, tag & 7
            if field == 0:
                raise ValueError("field number 0")
            if wire == 0:
                _varint(handle)
            elif wire == 1:
                handle.seek(8, 1)
            elif wire == 5:
                handle.seek(4, 1)
            elif wire == 2:
                length = _varint(handle)
                if handle.tell() + length > size:
                    raise ValueError("truncated field")
                if field == 14:  # ModelProto.metadata_props
                    key, value = _parse_entry(handle.read(length))
                    out[key] = value
                else:
                    handle.seek(length, 1)
            else:
                raise ValueError(f"wire type {wire}")
    return out


def read_spec(path: Path | str) -> InputSpec | None:
    """The InputSpec in the model's ``probe.input_spec`` metadata, or None."""
    text = read_metadata(path).get(METADATA_KEY)
    return InputSpec.from_json(text) if text else None


def _provenance(metadata: dict[str, str]) -> dict[str, Any] | None:
    text = metadata.get(PROVENANCE_KEY)
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def default_images(model_name_or_path: str | os.PathLike) -> Path | None:
    """The bundled sample images that fit a model (a folder with labels.csv), or None.

    Built-in models have their own; other models get the samples of the dataset
    named in their ``probe.input_spec`` metadata ("imagenet" or "cifar10").
    """
    text = str(model_name_or_path)
    if text in BUILTIN_MODELS and not Path(text).exists():
        return dataset_images(BUILTIN_MODELS[text][1])
    path = resolve_model(text)
    for name, (filename, dataset) in BUILTIN_MODELS.items():
        if path.name == filename and path.parent == builtin_path(name).parent:
            return dataset_images(dataset)
    try:
        spec = read_spec(path)
    except ProbeError:
        return None
    return dataset_images(spec.dataset) if spec is not None else None


def model_entry(name: str, path: Path, *, builtin: bool = False) -> ModelEntry:
    """The registry entry of one file; unreadable metadata gives spec/provenance None."""
    try:
        metadata = read_metadata(path)
    except ProbeError:
        metadata = {}
    spec = None
    if metadata.get(METADATA_KEY):
        try:
            spec = InputSpec.from_json(metadata[METADATA_KEY])
        except (ProbeError, TypeError, ValueError):
            spec = None
    return ModelEntry(
        name=name,
        path=path,
        builtin=builtin,
        size_bytes=path.stat().st_size,
        spec=spec,
        provenance=_provenance(metadata),
    )


def list_models() -> list[ModelEntry]:
    """Installed built-in models, then the ``*.onnx`` files of the model dir."""
    entries = []
    for name in BUILTIN_MODELS:
        path = builtin_path(name)
        if path.is_file():
            entries.append(model_entry(name, path, builtin=True))
    seen = {entry.name for entry in entries}
    for path in _user_models():
        if path.stem not in seen:
            entries.append(model_entry(path.stem, path))
    return entries
