"""The in-graph smoothing session (probe.smoothing.graph), run here with the CPU provider.

On CUDA the smoothed oracle runs noise, model and vote in one session; these tests
check that graph on CPU: its generator is squares32 bit for bit, its noise is
N(0, 1), its vote frequencies match Phi(margin / sigma) on a linear model, and they
agree in distribution with the NumPy path.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from scipy import stats

from probe.smoothing.graph import KEYS, SIGMA, _Builder, add_squares32, noise_model, squares32_reference
from probe.smoothing import SmoothedClassifier
from probe.runtime import Runtime
from tests.onnx_models import margin

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def linear(make_linear):
    lin = make_linear((3, 8, 8), seed=3)
    return lin.model, lin.w, lin.b


def point_at(w: np.ndarray, m: float) -> np.ndarray:
    u = w / np.linalg.norm(w)
    return (np.full(w.shape, 0.5, np.float32) + m * u).astype(np.float32)


def test_in_graph_generator_is_squares32():
    b = _Builder(17)
    b.op("Identity", [add_squares32(b, "ctr", "key")], "bits")
    graph = helper.make_graph(
        b.nodes,
        "squares",
        [helper.make_tensor_value_info(n, TensorProto.UINT64, [None]) for n in ("ctr", "key")],
        [helper.make_tensor_value_info("bits", TensorProto.UINT64, [None])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=CPU)
    rng = np.random.default_rng(0)
    ctr = np.concatenate([np.arange(20, dtype=np.uint64), rng.integers(0, 2**40, 20, dtype=np.uint64)])
    key = rng.bit_generator.random_raw(40)
    bits = session.run(None, {"ctr": ctr, "key": key})[0]
    assert bits.tolist() == [squares32_reference(int(c), int(k)) for c, k in zip(ctr, key)]


def test_in_graph_noise_is_standard_normal():
    d = 3 * 16 * 15 + 1  # odd: the last sine is dropped
    session = ort.InferenceSession(noise_model(d).SerializeToString(), providers=CPU)
    keys = np.random.default_rng(1).bit_generator.random_raw(200 * 10).reshape(200, 10)
    z = session.run(None, {KEYS: keys, SIGMA: np.array(1.0, np.float32)})[0]
    assert z.shape == (200, 10, d)
    flat = z.ravel().astype(np.float64)
    n = flat.size
    assert abs(flat.mean()) < 5 / np.sqrt(n)
    assert abs(flat.var() - 1) < 5 * np.sqrt(2 / n)
    assert stats.kstest(flat[::3], "norm").pvalue > 1e-4
    h = (d + 1) // 2
    assert abs(np.corrcoef(z[..., : h - 1].ravel() ** 2, z[..., h:].ravel() ** 2)[0, 1]) < 5 / np.sqrt(n / 2)
    half = session.run(None, {KEYS: keys[:3], SIGMA: np.array(0.5, np.float32)})[0]
    np.testing.assert_allclose(half, 0.5 * z[:3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m", [0.02, -0.04])
def test_in_graph_vote_frequency_matches_phi(linear, m):
    path, w, b = linear
    sigma, n = 0.05, 20000
    x = point_at(w, m)
    assert margin(x, w, b) == pytest.approx(m, abs=1e-5)
    clf = SmoothedClassifier(Runtime(path, batch_size=4096), sigma, n, in_graph=True)
    counts = clf.votes([(x[None], np.random.default_rng(1))])[0][0]
    assert counts.sum() == n
    ci = stats.binomtest(int(counts[1]), n).proportion_ci(0.999)
    assert ci.low <= stats.norm.cdf(m / sigma) <= ci.high


def test_in_graph_and_numpy_paths_agree_in_distribution(linear):
    path, w, _ = linear
    runtime = Runtime(path, batch_size=2048)
    sigma, n = 0.05, 4000
    points = np.stack([point_at(w, m) for m in (-0.06, -0.01, 0.0, 0.03, 0.08)])
    graph = SmoothedClassifier(runtime, sigma, n, in_graph=True).votes([(points, np.random.default_rng(5))])[0]
    numpy_ = SmoothedClassifier(runtime, sigma, n, in_graph=False).votes([(points, np.random.default_rng(5))])[0]
    assert not np.array_equal(graph, numpy_)  # different streams ...
    for g, c in zip(graph, numpy_):  # ... same distribution
        table = np.array([g, c])
        if table[:, 1].sum() in (0, 2 * n):
            continue
        assert stats.chi2_contingency(table).pvalue > 1e-4, table


def test_in_graph_votes_do_not_depend_on_batching(linear):
    path, w, _ = linear
    x = np.stack([point_at(w, 0.0), point_at(w, 0.01), point_at(w, -0.02)])
    results = []
    for batch in (7, 64, 1000):
        clf = SmoothedClassifier(Runtime(path, batch_size=batch), 0.1, 30, in_graph=True)
        a, b = clf.votes([(x[:2], np.random.default_rng(9)), (x[2:], np.random.default_rng(10))])
        results.append(np.concatenate([a, b]))
        assert clf.runtime.rows == 90 and clf.runtime.calls >= 1
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[1], results[2])


def test_cpu_sessions_use_the_numpy_path(linear):
    path, _, _ = linear
    runtime = Runtime(path, device="cpu")
    assert not runtime.on_cuda
    assert not SmoothedClassifier(runtime, 0.1, 10).in_graph
    assert not SmoothedClassifier(runtime, 0.0, 10, in_graph=True).in_graph  # nothing to smooth


def test_a_cuda_session_switches_to_the_graph_automatically(linear):
    """Selection looks at the providers the session really uses; faked here (no GPU)."""
    from dataclasses import replace

    path, w, _ = linear
    runtime = Runtime(path, batch_size=512)
    runtime.info = replace(runtime.info, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert runtime.on_cuda
    clf = SmoothedClassifier(runtime, 0.05, 2000)
    assert clf.in_graph
    counts = clf.votes([(point_at(w, 0.03)[None], np.random.default_rng(3))])[0][0]
    assert clf._graph is not None and runtime.calls == 4  # 2000 copies in slices of 512 rows
    ci = stats.binomtest(int(counts[1]), 2000).proportion_ci(0.999)
    assert ci.low <= stats.norm.cdf(0.03 / 0.05) <= ci.high
