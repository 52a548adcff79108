"""Reading ResNet50 checkpoints: format detection, safe loading, architecture check.

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

Checkpoints are always read with ``torch.load(..., weights_only=True)``: a file
that needs arbitrary unpickling is refused and never executed. Every failure is a
one-line ProbeError. Torch is imported inside the functions.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.recipes.onnx_file import require_torch

FORMATS = ("torchvision", "cohen", "madry")


def _torch():
    return require_torch("exporting ResNet50")


def unknown_format(fmt: str) -> ProbeError:
    """The error for a checkpoint format that is not one of :data:`FORMATS`."""
    return ProbeError(f"unknown checkpoint format {fmt!r}; choose one of: {', '.join(FORMATS)}")


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
        raise ProbeError(f"cannot read checkpoint {path.name}: corrupt or not a torch file ({first_line(exc)})") from None
    except ProbeError:
        raise
    except MemoryError:
        raise ProbeError(f"cannot read checkpoint {path.name}: out of memory") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, KeyError, ...
        raise ProbeError(
            f"cannot read checkpoint {path.name}: truncated, corrupt or not a torch file ({first_line(exc)})"
        ) from None


def first_line(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception, at most 140 characters: for one-line errors."""
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


def _wrong_format(path: Path, fmt: str, obj: Any, *, expected: str) -> ProbeError:
    guess = _guess_format(obj)
    if isinstance(obj, dict):
        keys = [str(k) for k in list(obj)[:4]]
        found = f"top-level keys {', '.join(keys)}{', ...' if len(obj) > 4 else ''}"
    else:
        found = f"a {type(obj).__name__}"
    hint = f"; it looks like format '{guess}'" if guess and guess != fmt else ""
    return ProbeError(f"{path.name} is not a {fmt} checkpoint: expected {expected}, found {found}{hint}")


def _take_prefix(state: dict, prefixes: tuple[str, ...], *, ignore: tuple[str, ...]) -> dict:
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
            raise _wrong_format(path, fmt, obj, expected="a plain state dict (parameter name -> tensor)")
        if all(k.startswith("module.") for k in obj):
            return {k[len("module."):]: v for k, v in obj.items()}
        return dict(obj)
    if fmt == "cohen":
        if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
            raise _wrong_format(path, fmt, obj, expected="a dict with 'arch' and 'state_dict'")
        arch = obj.get("arch")
        if arch is not None and str(arch) != "resnet50":
            raise ProbeError(f"{path.name} holds a '{arch}' model, not a ResNet50 (arch 'resnet50')")
        state = obj["state_dict"]
        if not any(str(k).startswith("1.") for k in state):
            raise _wrong_format(path, fmt, obj, expected="'state_dict' keys like '1.module.conv1.weight'")
        return _take_prefix(state, ("1.module.", "1."), ignore=("0.",))
    if fmt == "madry":
        state = None
        if isinstance(obj, dict):
            for key in ("model", "state_dict"):
                if isinstance(obj.get(key), dict):
                    state = obj[key]
                    break
        if state is None or not any(str(k).startswith(("module.model.", "model.")) for k in state):
            raise _wrong_format(path, fmt, obj, expected="a dict with 'model' holding 'module.model.*' keys")
        ignore = ("module.attacker.", "module.normalizer.", "attacker.", "normalizer.")
        return _take_prefix(state, ("module.model.", "model."), ignore=ignore)
    raise unknown_format(fmt)


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
        raise unknown_format(fmt)
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
        raise ProbeError(f"{Path(path).name}: weights do not fit ResNet50 ({first_line(exc)})") from None
    return model.float().eval()
