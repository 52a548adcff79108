"""Export ResNet50 checkpoints to ONNX files that probe can read.

Three checkpoint formats are understood:

``torchvision``
    A plain state dict of torchvision's ``resnet50`` (``conv1.weight``, ...,
    ``fc.bias``), e.g. ``resnet50-0676ba61.pth`` (IMAGENET1K_V1 weights). A
    ``module.`` prefix left by ``DataParallel`` is tolerated.
``cohen``
    Cohen, Rosenfeld and Kolter's randomized-smoothing checkpoints
    (``models/imagenet/resnet50/noise_0.25/checkpoint.pth.tar``): a dict with
    ``arch`` and ``state_dict``; the model is ``Sequential(NormalizeLayer,
    DataParallel(resnet50))``, so weights are named ``1.module.conv1.weight``.
    Buffers of the normalization layer (``0.*``), if any, are ignored.
``madry``
    The ``robustness`` library format (Madry Lab ImageNet L2/Linf models): a dict
    with ``model`` (and ``epoch``); the ResNet50 weights are the
    ``module.model.*`` entries. The ``module.attacker.model.*`` duplicates and
    the ``module.normalizer.*`` buffers are ignored.

Normalization. In all three cases the convolutional weights expect
ImageNet-normalized input: torchvision's models are trained on
``(x - mean) / std`` with mean (0.485, 0.456, 0.406) and std (0.229, 0.224,
0.225); Cohen et al.'s ``NormalizeLayer`` and the robustness library's
``InputNormalize`` apply the same mean and std inside the model. The exported
graph therefore starts with ``(x - mean) / std`` for these values and takes
canonical input (float32 RGB in [0, 1], NCHW, 224x224); its
``probe.input_spec`` metadata is the canonical spec with ``dataset="imagenet"``.
Noise of randomized smoothing is added in the canonical space, as in Cohen et
al., where the normalization layer comes after the noise.

Checkpoints are always read with ``torch.load(..., weights_only=True)``: a file
that needs arbitrary unpickling is refused and never executed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import pickle
import re
import socket
import sys
import urllib.error
import warnings
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.spec import METADATA_KEY, InputSpec

FORMATS = ("torchvision", "cohen", "madry")
WEIGHTS_SOURCES = ("torchvision",)

PROVENANCE_KEY = "probe.provenance"
VARIANT_KEY = "probe.variant"

OPSET = 17
INPUT_SIZE = (224, 224)
INPUT_NAME = "input"
OUTPUT_NAME = "logits"

TORCHVISION_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
TORCHVISION_SHA256_PREFIX = "0676ba61"
DOWNLOAD_TIMEOUT_S = 15.0

_TORCH_HINT = "needs the export extra: pip install torch==2.13.0 && pip install 'probe[export]'"
_VARIANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _torch():
    try:
        import torch
    except ImportError:
        raise ProbeError(f"exporting ResNet50 {_TORCH_HINT}") from None
    return torch


# --------------------------------------------------------------------------- loading


def _safe_load(path: Path) -> Any:
    """torch.load with weights_only=True; every failure becomes a one-line ProbeError."""
    torch = _torch()
    if not path.exists():
        raise ProbeError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise ProbeError(f"checkpoint is not a file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            raise ProbeError(
                f"refused to load {path.name}: it needs arbitrary unpickling (of {found.group(1)}), "
                "which could execute code; probe only loads plain tensors (torch.load weights_only=True). "
                "Re-save the state dict with torch.save(model.state_dict(), ...) where you trust the file"
            ) from None
        if "Weights only load failed" in text:
            detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, re.S)
            why = " ".join(detail.group(1).split()) if detail else "unsupported content"
            raise ProbeError(
                f"refused to load {path.name}: the safe weights-only loader rejects it ({why}); "
                "probe never falls back to arbitrary unpickling. Re-save it as a plain state dict with torch.save"
            ) from None
        raise ProbeError(f"cannot read checkpoint {path.name}: corrupt or not a torch file ({_first_line(exc)})") from None
    except ProbeError:
        raise
    except MemoryError:
        raise ProbeError(f"cannot read checkpoint {path.name}: out of memory") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, KeyError, ...
        raise ProbeError(
            f"cannot read checkpoint {path.name}: truncated, corrupt or not a torch file ({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    line = line.split(". ")[0].rstrip(".")
    line = line if len(line) <= 140 else line[:137] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _is_tensor_dict(obj: Any) -> bool:
    torch = _torch()
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _guess_format(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    inner = obj.get("state_dict")
    if isinstance(inner, dict) and any(str(k).startswith(("1.module.", "1.")) for k in inner):
        return "cohen"
    for key in ("model", "state_dict"):
        inner = obj.get(key)
        if isinstance(inner, dict) and any(str(k).startswith(("module.model.", "model.")) for k in inner):
            return "madry"
    if _is_tensor_dict(obj):
        return "torchvision"
    return None


def _wrong_format(path: Path, fmt: str, obj: Any, expected: str) -> ProbeError:
    guess = _guess_format(obj)
    if isinstance(obj, dict):
        keys = [str(k) for k in list(obj)[:4]]
        found = f"top-level keys {', '.join(keys)}{', ...' if len(obj) > 4 else ''}"
    else:
        found = f"a {type(obj).__name__}"
    hint = f"; it looks like format '{guess}'" if guess and guess != fmt else ""
    return ProbeError(f"{path.name} is not a {fmt} checkpoint: expected {expected}, found {found}{hint}")


def _take_prefix(state: dict, prefixes: tuple[str, ...], ignore: tuple[str, ...]) -> dict:
    """Entries under the first prefix that matches any key, prefix stripped; others kept as-is
    (they show up as unexpected keys) unless they start with an ignored prefix."""
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            out = {}
            for k, v in state.items():
                if k.startswith(prefix):
                    out[k[len(prefix):]] = v
                elif not k.startswith(ignore):
                    out[k] = v
            return out
    return {k: v for k, v in state.items() if not k.startswith(ignore)}


def _extract(obj: Any, fmt: str, path: Path) -> dict:
    if fmt == "torchvision":
        if not _is_tensor_dict(obj):
            raise _wrong_format(path, fmt, obj, "a plain state dict (parameter name -> tensor)")
        if all(k.startswith("module.") for k in obj):
            return {k[len("module."):]: v for k, v in obj.items()}
        return dict(obj)
    if fmt == "cohen":
        if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
            raise _wrong_format(path, fmt, obj, "a dict with 'arch' and 'state_dict'")
        arch = obj.get("arch")
        if arch is not None and str(arch) != "resnet50":
            raise ProbeError(f"{path.name} holds a '{arch}' model, not a ResNet50 (arch 'resnet50')")
        state = obj["state_dict"]
        if not any(str(k).startswith("1.") for k in state):
            raise _wrong_format(path, fmt, obj, "'state_dict' keys like '1.module.conv1.weight'")
        return _take_prefix(state, ("1.module.", "1."), ignore=("0.",))
    if fmt == "madry":
        state = None
        if isinstance(obj, dict):
            for key in ("model", "state_dict"):
                if isinstance(obj.get(key), dict):
                    state = obj[key]
                    break
        if state is None or not any(str(k).startswith(("module.model.", "model.")) for k in state):
            raise _wrong_format(path, fmt, obj, "a dict with 'model' holding 'module.model.*' keys")
        ignore = ("module.attacker.", "module.normalizer.", "attacker.", "normalizer.")
        return _take_prefix(state, ("module.model.", "model."), ignore=ignore)
    raise ProbeError(f"unknown checkpoint format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def _check_architecture(state: dict, path: Path) -> dict:
    """Compare names and shapes with the reference ResNet50; fill missing BN counters."""
    torch = _torch()
    from probe.recipes.resnet50 import build_resnet50

    with torch.device("meta"):
        reference = build_resnet50().state_dict()
    bad_values = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad_values:
        raise ProbeError(f"{path.name}: entry {bad_values[0]!r} is not a tensor; not a ResNet50 state dict")
    missing = [k for k in reference if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in reference]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        raise ProbeError(f"{path.name} is not a torchvision-layout ResNet50: {'; '.join(parts)}")
    for key, ref in reference.items():
        if key in state and tuple(state[key].shape) != tuple(ref.shape):
            raise ProbeError(
                f"{path.name} is not a ResNet50 with 1000 classes: {key} has shape "
                f"{tuple(state[key].shape)}, expected {tuple(ref.shape)}"
            )
    full = dict(state)
    for key in reference:
        if key not in full:  # num_batches_tracked of old checkpoints: unused in eval mode
            full[key] = torch.zeros((), dtype=torch.long)
    return full


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def load_checkpoint(path: Path | str, fmt: str) -> dict:
    """Read a ResNet50 checkpoint of format ``fmt`` and return a torchvision-named state dict.

    Safe (``weights_only=True``). Raises ProbeError for a missing, unsafe, corrupt or
    truncated file, a file of another format and a network that is not a ResNet50.
    """
    if fmt not in FORMATS:
        raise ProbeError(f"unknown checkpoint format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    path = Path(path)
    obj = _safe_load(path)
    state = _extract(obj, fmt, path)
    return _check_architecture(state, path)


def load_resnet50(path: Path | str, fmt: str):
    """A ResNet50 (eval mode, float32) with the weights of the checkpoint."""
    from probe.recipes.resnet50 import build_resnet50

    model = build_resnet50()
    state = load_checkpoint(path, fmt)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - _check_architecture catches these first
        raise ProbeError(f"{Path(path).name}: weights do not fit ResNet50 ({_first_line(exc)})") from None
    return model.float().eval()


# --------------------------------------------------------------------------- weights download


def download_torchvision_weights(dest_dir: Path | None = None, url: str | None = None) -> Path:
    """Fetch torchvision's ResNet50 IMAGENET1K_V1 weights (cached under torch.hub's dir).

    Fails fast with a ProbeError when there is no network.
    """
    torch = _torch()
    url = url or TORCHVISION_URL
    dest_dir = Path(dest_dir) if dest_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    dest = dest_dir / url.rsplit("/", 1)[-1]
    if dest.is_file():
        return dest
    offline = (
        f"could not download the torchvision ResNet50 weights from {url} ({{why}}); "
        "download that file on a machine with internet and run the export with "
        "--format torchvision --checkpoint PATH"
    )
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProbeError(f"cannot create {dest_dir}: {exc.strerror or exc}") from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        prefix = TORCHVISION_SHA256_PREFIX if url == TORCHVISION_URL else None
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=prefix, progress=sys.stderr.isatty())
    except urllib.error.URLError as exc:
        raise ProbeError(offline.format(why=f"no network: {exc.reason}")) from None
    except (socket.timeout, TimeoutError):
        raise ProbeError(offline.format(why=f"timed out after {DOWNLOAD_TIMEOUT_S:.0f} s")) from None
    except OSError as exc:
        raise ProbeError(offline.format(why=_first_line(exc))) from None
    except RuntimeError as exc:  # hash mismatch
        raise ProbeError(offline.format(why=_first_line(exc))) from None
    finally:
        socket.setdefaulttimeout(previous)
    return dest


# --------------------------------------------------------------------------- export


def default_variant(fmt: str, checkpoint: Path | str | None = None) -> str:
    """The registry name of an export: resnet50-vanilla, resnet50-randtrain-SIGMA, resnet50-advtrain."""
    if fmt == "torchvision":
        return "resnet50-vanilla"
    if fmt == "cohen":
        found = re.search(r"noise_(\d+(?:\.\d+)?)", str(checkpoint or ""))
        # Cohen et al.'s folders are noise_0.25, noise_0.50, noise_1.00 -> 0.25, 0.5, 1.0
        return f"resnet50-randtrain-{float(found.group(1))}" if found else "resnet50-randtrain"
    if fmt == "madry":
        return "resnet50-advtrain"
    raise ProbeError(f"unknown checkpoint format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file (read in 1 MiB blocks); recorded as provenance by every recipe."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_resnet50(
    checkpoint: Path | None,
    fmt: str,
    out: Path,
    variant: str | None = None,
    weights: str | None = None,
) -> Path:
    """Export a ResNet50 checkpoint to ONNX with ImageNet normalization folded in.

    Parameters
    ----------
    checkpoint : the checkpoint file, or None with ``weights="torchvision"``.
    fmt : "torchvision", "cohen" or "madry".
    out : the .onnx file to write, or an existing directory (then ``DIR/VARIANT.onnx``).
    variant : registry name written to the metadata; default from :func:`default_variant`.
    weights : "torchvision" downloads the official IMAGENET1K_V1 weights instead of
        reading ``checkpoint``.

    Returns the path written. The graph takes canonical float32 RGB [0, 1] NCHW input
    (dynamic batch, 224x224), outputs logits (batch, 1000), opset 17, and carries the
    metadata ``probe.input_spec``, ``probe.provenance`` (JSON) and ``probe.variant``.
    """
    torch = _torch()
    import onnx

    from probe.recipes.resnet50 import IMAGENET_MEAN, IMAGENET_STD, Normalized

    if fmt not in FORMATS:
        raise ProbeError(f"unknown checkpoint format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    source_url = None
    if weights is not None:
        if weights not in WEIGHTS_SOURCES:
            raise ProbeError(f"unknown weights {weights!r}; choose one of: {', '.join(WEIGHTS_SOURCES)}")
        if checkpoint is not None:
            raise ProbeError("give either a checkpoint file or weights='torchvision', not both")
        if fmt != "torchvision":
            raise ProbeError("weights='torchvision' goes with format 'torchvision'")
        source_url = TORCHVISION_URL
        checkpoint = download_torchvision_weights(url=source_url)
    elif checkpoint is None:
        raise ProbeError("no checkpoint given: pass a checkpoint file (or weights='torchvision')")
    checkpoint = Path(checkpoint)
    variant = variant or default_variant(fmt, checkpoint)
    if not _VARIANT_RE.match(variant):
        raise ProbeError(f"invalid variant name {variant!r}: use letters, digits, '.', '-' and '_'")

    model = load_resnet50(checkpoint, fmt)
    wrapped = Normalized(model, IMAGENET_MEAN, IMAGENET_STD).eval()

    out = Path(out)
    if out.is_dir():
        out = out / f"{variant}.onnx"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProbeError(f"cannot create {out.parent}: {exc.strerror or exc}") from None

    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, *INPUT_SIZE, dtype=torch.float32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    del buffer

    spec = InputSpec(size=INPUT_SIZE, dataset="imagenet")
    provenance = {
        "architecture": "resnet50",
        "source_format": fmt,
        "checkpoint": checkpoint.name,
        "sha256": sha256_file(checkpoint),
        "weights_url": source_url,
        "variant": variant,
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "onnx_opset": OPSET,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "folded": True},
    }
    metadata = {METADATA_KEY: spec.to_json(), PROVENANCE_KEY: json.dumps(provenance), VARIANT_KEY: variant}
    kept = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "probe"
    proto.doc_string = f"ResNet50 ({variant}); canonical RGB [0,1] NCHW input, ImageNet normalization folded in"

    tmp = out.with_name(f".{out.name}.partial")
    try:
        onnx.save_model(proto, str(tmp))
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ProbeError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
