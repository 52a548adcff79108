"""Randomized smoothing inside one ONNX Runtime session: points in, vote counts out.

On a GPU the NumPy path would draw n noisy copies of every point on the host and
push them over the bus (n x 600 KB per ImageNet query). This module wraps the
model's graph instead:

    points (k, C, H, W), keys (k, n) uint64, sigma ()
      -> noise z (k, n, d) drawn in the graph from the keys (below)
      -> x + sigma z, reshaped to (k n, C, H, W)
      -> input mapping + model + ArgMax (the runtime's wrapped graph)
      -> votes: Equal(label, class) summed over the n copies -> counts (k, K) int64

run with I/O binding, so only the points, the keys (8 bytes a copy) and the vote
counts cross the bus; the noisy batch lives and dies on the device.
:class:`probe.oracle.SmoothedClassifier` uses it automatically when the session
really runs on CUDA (``session.get_providers()``), or with ``in_graph=True``.

Why not ``RandomNormalLike``? Its seed is a static attribute: a session's
generator is seeded once when the session is built and then advances from call
to call, so a request's noise would depend on every call made before it and
could not be seeded per request. Instead each noisy copy gets its own 64-bit
key, drawn from the request's generator (one raw word a copy, in order), and the
graph derives the copy's noise from (key, counter) with Widynski's counter-based
generator *Squares* (squares32: four rounds of square, add, swap halves; it
passes BigCrush), written with uint64 Mul/Add/Div only (all have CUDA kernels;
no bit operators needed: ``x >> 32 = x / 2**32``, ``x << 32 = x * 2**32`` and
the halves are disjoint so ``|`` is ``+``). Word j of a row is
``lo = squares32(j, key)``, ``hi = squares32(h + j, key)`` (h = ceil(d / 2)),
and the Box-Muller transform is the NumPy sampler's (:mod:`probe.smoothing.noise`): same
distribution, same 6.77 sigma tail cut, different stream. Results are
reproducible for a seed and independent of how the rows are split into calls;
they differ from the CPU path's, which draws its bits with the request's own
bit generator.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from probe.errors import ProbeError

P = "probe_rs_"
POINTS, KEYS, SIGMA, COUNTS = P + "points", P + "keys", P + "sigma", P + "counts"
_TWO32 = 1 << 32


def _opset(model: onnx.ModelProto) -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 1


class _Builder:
    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), P + name))
        return P + name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        self._count += 1
        out = out or f"{P}{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{P}n{self._count}", **attrs))
        return out

    def reduce_sum(self, x: str, axis: int) -> str:
        if self.opset >= 13:
            return self.op("ReduceSum", [x, self.const(f"axes_{axis}", np.array([axis], np.int64))], keepdims=0)
        return self.op("ReduceSum", [x], axes=[axis], keepdims=0)

    def slice_last(self, x: str, start: int, end: int, tag: str) -> str:
        s = self.const(f"s_{tag}", np.array([start], np.int64))
        e = self.const(f"e_{tag}", np.array([end], np.int64))
        a = self.const(f"a_{tag}", np.array([-1], np.int64))
        return self.op("Slice", [x, s, e, a])


def add_squares32(b: _Builder, ctr: str, key: str) -> str:
    """Nodes computing Widynski's squares32(ctr, key) (uint64 tensors, broadcasting);
    the result is a uint64 tensor of values < 2**32."""
    two32 = b.const("two32", np.array(_TWO32, np.uint64))

    def rot(x: str) -> str:  # (x >> 32) | (x << 32)
        return b.op("Add", [b.op("Div", [x, two32]), b.op("Mul", [x, two32])])

    y = b.op("Mul", [ctr, key])
    z = b.op("Add", [y, key])
    x = rot(b.op("Add", [b.op("Mul", [y, y]), y]))
    x = rot(b.op("Add", [b.op("Mul", [x, x]), z]))
    x = rot(b.op("Add", [b.op("Mul", [x, x]), y]))
    return b.op("Div", [b.op("Add", [b.op("Mul", [x, x]), z]), two32])


def add_noise(b: _Builder, keys: str, sigma: str, d: int) -> str:
    """Nodes giving sigma * z, shape (k, n, d) float32, from keys (k, n) uint64 and sigma ()."""
    h = (d + 1) // 2
    ctr = b.const("ctr", np.arange(2 * h, dtype=np.uint64).reshape(1, 1, 2 * h))
    key3 = b.op("Reshape", [keys, b.const("key_shape", np.array([0, 0, 1], np.int64))])
    bits = add_squares32(b, ctr, key3)  # (k, n, 2h): lo words then hi words
    lo = b.op("Cast", [b.slice_last(bits, 0, h, "lo")], to=TensorProto.FLOAT)
    hi = b.op("Cast", [b.slice_last(bits, h, 2 * h, "hi")], to=TensorProto.FLOAT)
    u = b.op("Add", [b.op("Mul", [lo, b.const("u_scale", np.array(2.0**-32, np.float32))]),
                     b.const("u_offset", np.array(2.0**-33, np.float32))])
    var2 = b.op("Mul", [b.op("Mul", [sigma, sigma]), b.const("minus2", np.array(-2.0, np.float32))])
    r = b.op("Sqrt", [b.op("Mul", [b.op("Log", [u]), var2])])
    theta = b.op("Mul", [hi, b.const("angle", np.array(2.0 * math.pi * 2.0**-32, np.float32))])
    z = b.op("Concat", [b.op("Mul", [r, b.op("Cos", [theta])]), b.op("Mul", [r, b.op("Sin", [theta])])], axis=-1)
    return b.slice_last(z, 0, d, "d") if 2 * h != d else z


def noise_model(d: int, opset: int = 17) -> onnx.ModelProto:
    """A graph of the noise alone (keys (k, n) uint64, sigma () -> noise (k, n, d)), for tests."""
    b = _Builder(opset)
    noise = add_noise(b, KEYS, SIGMA, d)
    b.op("Identity", [noise], "noise")
    graph = helper.make_graph(
        b.nodes,
        "probe_noise",
        [helper.make_tensor_value_info(KEYS, TensorProto.UINT64, ["k", "n"]),
         helper.make_tensor_value_info(SIGMA, TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["k", "n", d])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def smoothing_model(wrapped: onnx.ModelProto, input_shape: tuple[int, int, int], num_classes: int) -> onnx.ModelProto:
    """Wrap a runtime's graph (``canonical`` -> ``label``) into points, keys, sigma -> vote counts."""
    opset = _opset(wrapped)
    if opset < 10:
        raise ProbeError(f"in-graph smoothing needs an opset >= 10 model (this one has {opset})")
    c, hgt, wid = input_shape
    d = c * hgt * wid
    b = _Builder(opset)
    noise = add_noise(b, KEYS, SIGMA, d)  # (k, n, d)
    flat = b.op("Reshape", [POINTS, b.const("pt_shape", np.array([0, 1, d], np.int64))])  # (k, 1, d)
    noisy = b.op("Add", [flat, noise])
    b.op("Reshape", [noisy, b.const("img_shape", np.array([-1, c, hgt, wid], np.int64))], "canonical")
    pre_nodes = list(b.nodes)
    b.nodes.clear()
    # votes: (k n,) labels -> (k, n, 1) == classes (K,) -> sum over n
    lab = b.op("Reshape", ["label", b.op("Shape", [KEYS])])
    lab3 = b.op("Reshape", [lab, b.const("lab_shape", np.array([0, 0, 1], np.int64))])
    eq = b.op("Equal", [lab3, b.const("classes", np.arange(num_classes, dtype=np.int64))])
    counts = b.reduce_sum(b.op("Cast", [eq], to=TensorProto.FLOAT), 1)
    b.op("Cast", [counts], COUNTS, to=TensorProto.INT64)

    model = onnx.ModelProto()
    model.CopyFrom(wrapped)
    g = model.graph
    names = {n for node in g.node for n in list(node.input) + list(node.output)} | {i.name for i in g.initializer}
    clash = sorted(n for n in names if n.startswith(P))
    if clash:
        raise ProbeError(f"the model already uses tensor names with the prefix {P!r}: {clash[:3]}")
    kept = [i for i in g.input if i.name != "canonical"]
    del g.input[:]
    g.input.extend([
        helper.make_tensor_value_info(POINTS, TensorProto.FLOAT, ["k", c, hgt, wid]),
        helper.make_tensor_value_info(KEYS, TensorProto.UINT64, ["k", "n"]),
        helper.make_tensor_value_info(SIGMA, TensorProto.FLOAT, []),
    ])
    g.input.extend(kept)
    body = list(g.node)
    del g.node[:]
    g.node.extend(pre_nodes + body + b.nodes)
    g.initializer.extend(b.inits)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(COUNTS, TensorProto.INT64, ["k", num_classes]))
    return model


class GraphSmoother:
    """Runs :func:`smoothing_model` for a :class:`probe.runtime.Runtime`, with I/O binding.

    ``votes(requests, n, sigma)`` has the meaning of ``SmoothedClassifier.votes``. Each
    noisy copy takes one raw 64-bit word of its request's generator as its key, in
    order, so results do not depend on how the rows are split into calls (about
    ``runtime.batch_size`` rows a call; a point whose n copies exceed it is split).
    """

    def __init__(self, runtime, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        if runtime.info.fixed_batch:
            raise ProbeError("in-graph smoothing needs a model with a dynamic batch dimension")
        self.runtime = runtime
        model = smoothing_model(runtime.wrapped_model(), runtime.input_shape, runtime.num_classes)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        available = set(ort.get_available_providers())
        providers = [p for p in (providers or runtime.info.providers) if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        except Exception as exc:
            raise ProbeError(f"ONNX Runtime cannot run the smoothing graph: {str(exc).splitlines()[0][:200]}") from None
        self.providers = tuple(self.session.get_providers())

    def _run(self, points: np.ndarray, keys: np.ndarray, sigma: float) -> np.ndarray:
        binding = self.session.io_binding()
        binding.bind_cpu_input(POINTS, np.ascontiguousarray(points, dtype=np.float32))
        binding.bind_cpu_input(KEYS, np.ascontiguousarray(keys, dtype=np.uint64))
        binding.bind_cpu_input(SIGMA, np.array(sigma, dtype=np.float32))
        binding.bind_output(COUNTS, "cpu")
        start = time.perf_counter()
        self.session.run_with_iobinding(binding)
        rt = self.runtime
        rt.session_seconds += time.perf_counter() - start
        rt.calls += 1
        rt.rows += keys.size
        rt.inferences += keys.size
        return binding.copy_outputs_to_cpu()[0]

    def votes(self, requests, n: int, sigma: float) -> list[np.ndarray]:
        batch = self.runtime.batch_size
        k_classes = self.runtime.num_classes
        out = [np.zeros((len(p), k_classes), np.int64) for p, _ in requests]
        keys = []
        for points, rng in requests:  # one word a copy, request after request
            bitgen = rng.bit_generator if isinstance(rng, np.random.Generator) else rng
            keys.append(bitgen.random_raw(len(points) * n).reshape(len(points), n))
        if n > batch:  # a point at a time, its copies in slices
            for (points, _), key, counts in zip(requests, keys, out):
                for i in range(len(points)):
                    for a in range(0, n, batch):
                        counts[i] += self._run(points[i : i + 1], key[i : i + 1, a : a + batch], sigma)[0]
            return out
        per_call = max(1, batch // n)
        pending: list[tuple[int, int, int]] = []  # (request, first point, last point)
        size = 0

        def flush() -> None:
            nonlocal size
            if not pending:
                return
            pts = np.concatenate([requests[r][0][a:b] for r, a, b in pending])
            ks = np.concatenate([keys[r][a:b] for r, a, b in pending])
            counts = self._run(pts, ks, sigma)
            at = 0
            for r, a, b in pending:
                out[r][a:b] = counts[at : at + b - a]
                at += b - a
            pending.clear()
            size = 0

        for r, (points, _) in enumerate(requests):
            a = 0
            while a < len(points):
                take = min(per_call - size, len(points) - a)
                pending.append((r, a, a + take))
                size += take
                a += take
                if size == per_call:
                    flush()
        flush()
        return out


def squares32_reference(ctr: int, key: int) -> int:
    """Pure-Python squares32 (Widynski 2020), for tests."""
    m = (1 << 64) - 1
    y = x = (ctr * key) & m
    z = (y + key) & m
    x = (x * x + y) & m
    x = ((x >> 32) | (x << 32)) & m
    x = (x * x + z) & m
    x = ((x >> 32) | (x << 32)) & m
    x = (x * x + y) & m
    x = ((x >> 32) | (x << 32)) & m
    return ((x * x + z) & m) >> 32
