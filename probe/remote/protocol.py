"""The Open Inference Protocol (KServe v2 REST) as probe speaks it: pure Python and NumPy.

* Model metadata (``GET /v2/models/{name}``) -> :class:`ModelMeta` (the input's name,
  shape and datatype; the outputs).
* Points -> an inference request (``POST /v2/models/{name}/infer``): JSON ``data`` (any
  v2 server), or the binary tensor extension (Triton's: a JSON header of
  ``Inference-Header-Content-Length`` bytes, then the raw little-endian tensor), which
  ``probe serve`` also reads and which saves the JSON encoding of every float. JSON numbers
  are written and read by orjson when it is installed (the serve extra), else by the
  standard library (float32 values as ``%.9g``); either way each float32 comes back exact.
* An inference response -> top-1 labels: an INT output of shape (k,) or (k, 1) is read
  as labels, a BYTES one as class names (mapped through the user's class list), a
  numeric (k, C) output as scores (argmax, ties to the lowest index); anything else is
  not a classifier.

Errors follow the protocol: ``{"error": "message"}``; ``probe serve`` adds a ``code``
(``budget_exhausted``, ``rate_limited``, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe.errors import ParameterError, ProbeError
from probe.remote.classes import Classes
from probe.spec import InputSpec

try:  # optional (the serve extra): number lists written 20x and read 6x faster than the standard library
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the installation
    _orjson = None
FAST_JSON = _orjson is not None

DTYPES: dict[str, np.dtype] = {
    "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "FP16": np.dtype("<f2"),
    "UINT8": np.dtype("u1"), "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
}  # fmt: skip
INPUT_DTYPES = ("FP32", "UINT8")  # what an image input may be
HEADER_LENGTH = "Inference-Header-Content-Length"
BUDGET_HEADER = "X-Probe-Budget-Remaining"
BUDGET_CODE = "budget_exhausted"


@dataclass(frozen=True)
class TensorMeta:
    """One tensor of the metadata: name, datatype, shape (-1 for a variable dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMeta:
    """What ``GET /v2/models/{name}`` says about a model."""

    name: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    platform: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


def _tensor(item: Any, where: str) -> TensorMeta:
    try:
        shape = tuple(int(d) for d in item["shape"])
        return TensorMeta(str(item["name"]), str(item["datatype"]).upper(), shape)
    except (KeyError, TypeError, ValueError):
        raise ProbeError(f"the endpoint's model metadata has a malformed {where} tensor: {str(item)[:120]}") from None


def parse_metadata(body: Any) -> ModelMeta:
    """Model metadata from its JSON; a ProbeError when it is not v2 metadata."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ProbeError(f"the endpoint did not answer v2 model metadata (no 'inputs'): {str(body)[:120]}")
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    return ModelMeta(
        name=str(body.get("name", "")),
        inputs=tuple(_tensor(t, "input") for t in body["inputs"]),
        outputs=tuple(_tensor(t, "output") for t in body.get("outputs") or []),
        platform=str(body.get("platform", "")),
        parameters=params,
    )


@dataclass(frozen=True)
class ImageInput:
    """How points travel: the input tensor, its layout, whether it has a batch dimension."""

    name: str
    datatype: str
    layout: str  # NCHW or NHWC
    size: tuple[int, int] | None  # (H, W), None when the server leaves it open
    batched: bool  # a leading batch dimension: several points per request


def image_input(meta: ModelMeta, layout: str | None = None) -> ImageInput:
    """The one image input of a model: rank 4 with a batch dimension, or rank 3 without.

    The layout comes from ``layout`` or the position of the 3 channels.
    """
    if len(meta.inputs) != 1:
        raise ProbeError(f"the endpoint's model has {len(meta.inputs)} inputs; probe needs one image input")
    t = meta.inputs[0]
    if t.datatype not in INPUT_DTYPES:
        raise ProbeError(f"input {t.name!r} is {t.datatype}; probe sends FP32 or UINT8 images")
    if len(t.shape) not in (3, 4):
        raise ProbeError(f"input {t.name!r} has shape {list(t.shape)}: not an image batch")
    batched = len(t.shape) == 4
    dims = t.shape[1:] if batched else t.shape
    if layout is None:
        layout = "NHWC" if dims[-1] == 3 and dims[0] != 3 else "NCHW"
    channels = dims[0] if layout == "NCHW" else dims[-1]
    if channels not in (-1, 3):
        raise ProbeError(f"input {t.name!r} has {channels} channels in {layout}; probe sends RGB images")
    hw = dims[1:] if layout == "NCHW" else dims[:2]
    size = None if min(hw) < 1 else (int(hw[0]), int(hw[1]))
    return ImageInput(t.name, t.datatype, layout, size, batched)


def encode(x: np.ndarray, spec: ImageInput, *, request_id: str, binary: bool) -> tuple[bytes, dict[str, str]]:
    """The body and extra headers of an inference request for wire-ready points ``x``.

    x : (k, ...) already in the server's layout and datatype; without a batch
        dimension k must be 1.
    binary : the binary tensor extension instead of a JSON ``data`` list.
    """
    shape = list(x.shape) if spec.batched else list(x.shape[1:])
    tensor: dict[str, Any] = {"name": spec.name, "shape": shape, "datatype": spec.datatype}
    request: dict[str, Any] = {"id": request_id, "inputs": [tensor]}
    if not binary:
        return _json_body(request, x.ravel()), {"Content-Type": "application/json"}
    raw = np.ascontiguousarray(x, dtype=DTYPES[spec.datatype]).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(request, separators=(",", ":")).encode()
    return header + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def _json_body(request: dict[str, Any], flat: np.ndarray) -> bytes:
    """``request`` as JSON, ``flat`` as the ``data`` of its one input tensor.

    Every number reads back exactly in the datatype sent: orjson writes float32 values as
    their shortest float64 repr; the standard library as ``%.9g`` (9 significant digits are
    within 5e-9 of the value, relatively, well inside its float32 rounding interval, whose
    half-width is at least 2**-25 = 3e-8: a parse to float64 then a cast to float32, or a
    parse to float32, gives the value back). NaN and infinities (never sent by probe) keep
    the standard library's literals.
    """
    finite = flat.dtype.kind != "f" or bool(np.isfinite(flat).all())
    if _orjson is not None and finite:
        data = flat.astype(np.float64 if flat.dtype.kind == "f" else np.int64)
        return _orjson.dumps({**request, "inputs": [{**request["inputs"][0], "data": data}]},
                             option=_orjson.OPT_SERIALIZE_NUMPY)  # fmt: skip
    if flat.dtype == np.float32 and finite:
        texts = list(map("%.9g".__mod__, flat.tolist()))
        if np.signbit(flat).any():  # "-0" would read back as the integer 0
            texts = ["-0.0" if t == "-0" else t for t in texts]
        numbers = ",".join(texts)
    else:
        numbers = json.dumps(flat.tolist(), separators=(",", ":"))[1:-1]
    head = json.dumps(request, separators=(",", ":"))  # ...,"inputs":[{TENSOR}]}: data goes last in TENSOR
    return f'{head[:-3]},"data":[{numbers}]}}]}}'.encode()


def loads(text: bytes | str) -> Any:
    """JSON text -> Python (orjson when installed). A ValueError when it is not JSON; a
    RecursionError when it is nested deeper than the parser goes."""
    if _orjson is None:
        return json.loads(text)
    try:
        return _orjson.loads(text)
    except _orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):
            raise RecursionError(str(exc)) from None
        raise


def decode_request(body: bytes, header_length: int | None) -> tuple[dict, bytes]:
    """A request's JSON header and its binary part (empty without the binary extension)."""
    if header_length is None:
        return loads(body), b""
    if not 0 <= header_length <= len(body):
        raise ValueError(f"{HEADER_LENGTH} {header_length} is not within the body's {len(body)} bytes")
    return loads(body[:header_length]), body[header_length:]


def top1(body: Any, k: int, output: str | None = None, classes: Classes | None = None) -> np.ndarray:
    """Top-1 labels (k,) int64 from an inference response's JSON.

    output : the output to read (default: the only one, else the first INT, BYTES or 2-D one).
    classes : maps the class names of a BYTES output to indices.
    A ProbeError when no output is a classifier's answer for k points.
    """
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, list) or not outputs:
        raise ProbeError(f"the endpoint's answer has no outputs: {str(body)[:120]}")
    if output is not None:
        chosen = [o for o in outputs if isinstance(o, dict) and o.get("name") == output]
        if not chosen:
            raise ProbeError(f"the endpoint's answer has no output {output!r}")
        outputs = chosen
    for item in outputs:
        labels = _names_of(item, k, classes) if _is_bytes(item) else _labels_of(item, k)
        if labels is not None:
            return labels
    shapes = [o.get("shape") if isinstance(o, dict) else o for o in outputs]
    raise ProbeError(f"the endpoint's output is not a classifier's answer for {k} point(s): shapes {shapes}")


def _is_bytes(item: Any) -> bool:
    return isinstance(item, dict) and str(item.get("datatype", "")).upper() == "BYTES"


def _names_of(item: dict, k: int, classes: Classes | None) -> np.ndarray | None:
    """A BYTES output of k class names, shape (k,) or (k, 1), as indices of the class list."""
    try:
        shape = [int(d) for d in item["shape"]]
    except (KeyError, TypeError, ValueError):
        return None
    data = np.asarray(item.get("data"), dtype=object).ravel()
    if data.size != k or not (shape in ([k], [k, 1]) or (k == 1 and shape in ([], [1]))):
        return None
    return np.array([(classes or Classes()).index(name) for name in data], dtype=np.int64)


def _labels_of(item: Any, k: int) -> np.ndarray | None:
    if not isinstance(item, dict) or item.get("datatype") not in DTYPES or "data" not in item:
        return None
    try:
        shape = [int(d) for d in item["shape"]]
        data = np.asarray(item["data"], dtype=np.float64).ravel()
    except (KeyError, TypeError, ValueError):
        return None
    if int(np.prod(shape)) != data.size or not np.all(np.isfinite(data)):
        return None
    integer = item["datatype"].startswith(("INT", "UINT"))
    if integer and (shape in ([k], [k, 1]) or (k == 1 and shape in ([], [1]))):
        return data.astype(np.int64).reshape(k)
    if len(shape) == 2 and shape[0] == k and shape[1] >= 2:
        return np.argmax(data.reshape(k, shape[1]), axis=1).astype(np.int64)
    if k == 1 and len(shape) == 1 and shape[0] >= 2 and not integer:  # an unbatched model's score vector
        return np.array([int(np.argmax(data))], dtype=np.int64)
    return None


def num_scores(meta: ModelMeta) -> int | None:
    """The class count a (k, C) score output declares, if any."""
    for t in meta.outputs:
        if len(t.shape) == 2 and t.shape[1] >= 2:
            return int(t.shape[1])
        if len(t.shape) == 1 and t.shape[0] >= 2 and len(meta.inputs[0].shape) == 3:
            return int(t.shape[0])
    return None


def error_message(body: bytes) -> tuple[str, str | None]:
    """(message, code) of an error answer (v2: ``{"error": ...}``), or its first bytes."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "(empty answer)", None
    if isinstance(data, dict):
        message = data.get("error") or data.get("detail") or data
        return str(message)[:300], data.get("code") if isinstance(data.get("code"), str) else None
    return str(data)[:300], None


def wire_spec(spec: ImageInput, overrides: dict[str, Any]) -> InputSpec:
    """The server's input convention: its layout and size, 255 scale for UINT8, then the flags given."""
    scale = 255.0 if spec.datatype == "UINT8" else 1.0
    given = {k: v for k, v in overrides.items() if v is not None}
    if spec.size is not None and given.get("size") and tuple(given["size"]) != spec.size:
        raise ProbeError(f"--size {tuple(given['size'])} does not match the endpoint's {spec.size}")
    out = InputSpec(layout=spec.layout, scale=scale, size=spec.size)
    out = out.with_overrides(**given) if given else out
    if out.size is None:
        raise ParameterError("the endpoint's input size is dynamic: give it with {name}", name="size")
    if spec.datatype == "UINT8" and (out.scale != 255.0 or tuple(out.mean) != (0.0,) * 3 or tuple(out.std) != (1.0,) * 3):
        raise ProbeError("a UINT8 input takes 8-bit pixels: --scale, --mean and --std do not apply")
    return out


def as_sent(x: np.ndarray, datatype: str) -> np.ndarray:
    """Canonical points as the server receives them: rounded to the 8-bit grid for UINT8."""
    x = np.asarray(x, dtype=np.float32)
    if datatype != "UINT8":
        return x
    return (np.clip(np.rint(x * 255.0), 0, 255) / np.float32(255.0)).astype(np.float32)


def to_wire(x: np.ndarray, spec: InputSpec, tensor: ImageInput) -> np.ndarray:
    """Canonical points (k, 3, H, W) in the server's convention (``spec``) and datatype."""
    if spec.channels == "BGR":
        x = x[:, ::-1]
    if tensor.datatype == "UINT8":
        y = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    elif spec.scale == 1.0 and tuple(spec.mean) == (0.0,) * 3 and tuple(spec.std) == (1.0,) * 3:
        y = x
    else:
        a = (np.float32(spec.scale) / np.asarray(spec.std, np.float32)).reshape(1, 3, 1, 1)
        b = (-np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)).reshape(1, 3, 1, 1)
        y = (x * a + b).astype(np.float32)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1) if spec.layout == "NHWC" else y)
