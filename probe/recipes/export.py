"""Export ResNet50 checkpoints to ONNX files that probe can read.

The checkpoint formats (``torchvision``, ``cohen``, ``madry``) and their safe loading
are in :mod:`probe.recipes.checkpoints`; this module fetches torchvision's weights,
names the variants and writes the ONNX file.

Normalization. In all three formats the convolutional weights expect
ImageNet-normalized input: torchvision's models are trained on
``(x - mean) / std`` with mean (0.485, 0.456, 0.406) and std (0.229, 0.224,
0.225); Cohen et al.'s ``NormalizeLayer`` and the robustness library's
``InputNormalize`` apply the same mean and std inside the model. The exported
graph therefore starts with ``(x - mean) / std`` for these values and takes
canonical input (float32 RGB in [0, 1], NCHW, 224x224); its
``probe.input_spec`` metadata is the canonical spec with ``dataset="imagenet"``.
Noise of randomized smoothing is added in the canonical space, as in Cohen et
al., where the normalization layer comes after the noise.
"""

from __future__ import annotations

import datetime as _dt
import re
import socket
import sys
import urllib.error
from pathlib import Path

from probe.errors import ProbeError
from probe.recipes.checkpoints import FORMATS, first_line, load_checkpoint, load_resnet50, unknown_format
from probe.recipes.onnx_file import OPSET, require_torch, sha256_file, torch_to_onnx, write_model
from probe.spec import InputSpec

# load_checkpoint, load_resnet50 and FORMATS live in probe.recipes.checkpoints; they are
# named here too, so that one import serves the command line and the tests.
__all__ = [
    "FORMATS",
    "WEIGHTS_SOURCES",
    "default_variant",
    "download_torchvision_weights",
    "export_resnet50",
    "load_checkpoint",
    "load_resnet50",
]

WEIGHTS_SOURCES = ("torchvision",)
INPUT_SIZE = (224, 224)

TORCHVISION_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
TORCHVISION_SHA256_PREFIX = "0676ba61"
DOWNLOAD_TIMEOUT_S = 15.0

_VARIANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def download_torchvision_weights(dest_dir: Path | None = None, url: str | None = None) -> Path:
    """Fetch torchvision's ResNet50 IMAGENET1K_V1 weights (cached under torch.hub's dir).

    Fails fast with a ProbeError when there is no network.
    """
    torch = require_torch("downloading the ResNet50 weights")
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
        raise ProbeError(offline.format(why=first_line(exc))) from None
    except RuntimeError as exc:  # hash mismatch
        raise ProbeError(offline.format(why=first_line(exc))) from None
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
    raise unknown_format(fmt)


def _source(checkpoint: Path | str | None, fmt: str, weights: str | None) -> tuple[Path, str | None]:
    """The checkpoint file to read (downloaded for ``weights="torchvision"``) and its URL, if any."""
    if fmt not in FORMATS:
        raise unknown_format(fmt)
    if weights is None:
        if checkpoint is None:
            raise ProbeError("no checkpoint given: pass a checkpoint file (or weights='torchvision')")
        return Path(checkpoint), None
    if weights not in WEIGHTS_SOURCES:
        raise ProbeError(f"unknown weights {weights!r}; choose one of: {', '.join(WEIGHTS_SOURCES)}")
    if checkpoint is not None:
        raise ProbeError("give either a checkpoint file or weights='torchvision', not both")
    if fmt != "torchvision":
        raise ProbeError("weights='torchvision' goes with format 'torchvision'")
    return download_torchvision_weights(url=TORCHVISION_URL), TORCHVISION_URL


def export_resnet50(
    checkpoint: Path | str | None,
    fmt: str,
    out: Path | str,
    *,
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
    torch = require_torch("exporting ResNet50")
    from probe.recipes.resnet50 import IMAGENET_MEAN, IMAGENET_STD, Normalized

    checkpoint, source_url = _source(checkpoint, fmt, weights)
    variant = variant or default_variant(fmt, checkpoint)
    if not _VARIANT_RE.match(variant):
        raise ProbeError(f"invalid variant name {variant!r}: use letters, digits, '.', '-' and '_'")

    model = load_resnet50(checkpoint, fmt)
    wrapped = Normalized(model, IMAGENET_MEAN, IMAGENET_STD).eval()

    out = Path(out)
    if out.is_dir():
        out = out / f"{variant}.onnx"
    try:  # before the slow part
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProbeError(f"cannot create {out.parent}: {exc.strerror or exc}") from None

    proto = torch_to_onnx(wrapped, torch.zeros(1, 3, *INPUT_SIZE, dtype=torch.float32), opset=OPSET)
    proto.producer_name = "probe"
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
    return write_model(
        proto,
        out,
        spec=InputSpec(size=INPUT_SIZE, dataset="imagenet"),
        provenance=provenance,
        variant=variant,
        doc=f"ResNet50 ({variant}); canonical RGB [0,1] NCHW input, ImageNet normalization folded in",
    )
