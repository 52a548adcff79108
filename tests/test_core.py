"""Runtime, oracle and certification on linear ONNX models with exact answers."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from probe import smoothing
from probe.runs.certify import certify_images
from probe.data import ImageSet
from probe.errors import ProbeError
from probe.oracle import BudgetExceeded, Criterion, Oracle, estimate_p_adv
from probe.smoothing import SmoothedClassifier
from probe.runtime import Runtime
from tests.onnx_models import linear_weights, margin


@pytest.fixture(scope="module")
def linear(make_linear):
    lin = make_linear((3, 8, 8), seed=3)
    return Runtime(lin.model, batch_size=256), lin.w, lin.b


def point_at(w: np.ndarray, b: float, m: float) -> np.ndarray:
    """A point at signed distance m from the hyperplane, inside [0, 1]."""
    u = w / np.linalg.norm(w)
    x0 = np.full(w.shape, 0.5, np.float32)  # on the hyperplane by construction
    x = (x0 + m * u).astype(np.float32)
    assert x.min() >= 0 and x.max() <= 1
    return x


def test_runtime_labels_match_linear_rule(linear):
    runtime, w, b = linear
    x = np.random.default_rng(0).random((300, 3, 8, 8), dtype=np.float32)
    expected = ((x.reshape(300, -1) @ w.ravel() + b) > 0).astype(np.int64)
    assert np.array_equal(runtime.labels(x), expected)
    assert runtime.num_classes == 2
    assert runtime.info.providers[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize("m", [0.02, 0.05, -0.04])
def test_smoothed_frequency_in_binomial_interval(linear, m):
    runtime, w, b = linear
    sigma, n = 0.05, 20000
    x = point_at(w, b, m)
    assert margin(x, w, b) == pytest.approx(m, abs=1e-5)
    counts = SmoothedClassifier(runtime, sigma, n).votes([(x[None], np.random.default_rng(1))])[0][0]
    assert counts.sum() == n
    p_true = stats.norm.cdf(m / sigma)  # P[f(x + sigma N) = 1]
    ci = stats.binomtest(int(counts[1]), n).proportion_ci(0.999)
    assert ci.low <= p_true <= ci.high


def test_certified_radius_below_true_distance_and_approaches_it(linear):
    runtime, w, b = linear
    sigma, m = 0.1, 0.12
    x = point_at(w, b, m)
    images = ImageSet(x[None], ["x"], np.array([1]))
    radii = []
    for n in (200, 2000, 50000):
        rec = certify_images(SmoothedClassifier(runtime, sigma, n), images, n0=100, n=n, alpha=0.001, seed=0)[0]
        assert rec["predicted"] == 1 and rec["correct"]
        assert 0 < rec["radius"] < m
        radii.append(rec["radius"])
    assert radii[0] < radii[1] < radii[2]
    assert radii[2] > 0.85 * m  # Clopper-Pearson at n = 50,000 is within 15% of the truth here


@pytest.mark.parametrize("early_stop", [False, True])
def test_budget_is_exact_and_inferences_are_n_per_query(linear, early_stop):
    """Full votes: n inferences a query. Votes that stop when decided (the default): the
    model rows really run, at least the 4 of 7 that can decide a two-class vote."""
    runtime, w, b = linear
    classifier = SmoothedClassifier(runtime, 0.05, 7, early_stop=early_stop)
    oracle = Oracle(classifier, Criterion(0), budget=10, rng=np.random.default_rng(0))
    x = np.random.default_rng(2).random((4, 3, 8, 8), dtype=np.float32)
    before = runtime.inferences
    oracle(x)
    oracle(x)
    oracle(x[:2])
    assert oracle.queries == 10 and oracle.remaining == 0
    assert oracle.inferences == runtime.inferences - before
    if early_stop:
        assert 4 * 10 <= oracle.inferences < 7 * 10
    else:
        assert oracle.inferences == 7 * 10
    with pytest.raises(BudgetExceeded):
        oracle(x[:1])
    assert oracle.queries == 10


def test_budget_refuses_a_batch_that_would_overshoot(linear):
    runtime, _, _ = linear
    oracle = Oracle(SmoothedClassifier(runtime, 0.0, 5), Criterion(0), budget=3, rng=np.random.default_rng(0))
    with pytest.raises(BudgetExceeded):
        oracle(np.zeros((4, 3, 8, 8), np.float32))
    assert oracle.queries == 0
    assert oracle.classifier.n == 1  # no smoothing: one plain inference per query


def test_oracle_answers_booleans_only(linear):
    runtime, w, b = linear
    x = np.stack([point_at(w, b, 0.2), point_at(w, b, -0.2)])
    answers = Oracle(SmoothedClassifier(runtime, 0.01, 11), Criterion(1), budget=10, rng=np.random.default_rng(0))(x)
    assert answers.dtype == bool and answers.tolist() == [False, True]


def test_level_pa_criterion_counts_micro_decisions():
    votes = np.array([[3, 7], [2, 8], [5, 5]])
    assert Criterion(0, rule="paper", pa=0.8)(votes).tolist() == [False, True, False]
    assert Criterion(0, rule="paper", pa=0.5)(votes).tolist() == [True, True, True]
    assert Criterion(1, targeted=True, rule="paper", pa=0.7)(votes).tolist() == [True, True, False]
    # majority vote, ties to the lowest class index
    assert Criterion(0)(votes).tolist() == [True, True, False]


def test_noise_stream_does_not_depend_on_batch_size(make_linear):
    path = make_linear((3, 8, 8), seed=5).model
    x = np.full((3, 3, 8, 8), 0.5, np.float32)
    results = []
    for batch in (1, 7, 64):
        clf = SmoothedClassifier(Runtime(path, batch_size=batch), 0.1, 30)
        results.append(clf.votes([(x, np.random.default_rng(9))])[0])
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[1], results[2])


def test_p_adv_of_a_linear_point_matches_theory(linear):
    runtime, w, b = linear
    sigma, n = 0.05, 11
    x = point_at(w, b, 0.01)  # class 1 side; adversarial for a class-1 original means label 0
    p_micro = stats.norm.cdf(-0.01 / sigma)  # one micro-decision wrong
    p_theory = stats.binom.sf(5, n, p_micro)  # plurality (>= 6 of 11) wrong
    # at P_a = p_theory the sequential test has no side to stop on: it spends (nearly) all 4000
    est = estimate_p_adv(SmoothedClassifier(runtime, sigma, n), x, label=1, pa=p_theory, rng=np.random.default_rng(0),
                         max_evaluations=4000)
    assert est.evaluations >= 1000
    assert abs(est.p - p_theory) < 4 * np.sqrt(p_theory * (1 - p_theory) / est.evaluations) + 1e-3
    assert est.low <= p_theory <= est.high


CONVENTIONS = [
    dict(layout="NCHW", channels="RGB", scale=1.0),
    dict(layout="NHWC", channels="BGR", scale=255.0, mean=(103.9, 116.8, 123.7), std=(57.4, 57.1, 58.4)),
    dict(layout="NCHW", channels="RGB", scale=1.0, batch=1),
    dict(layout="NHWC", channels="RGB", scale=255.0, batch=1, mean=(120.0, 110.0, 100.0)),
]


def test_input_conventions_give_identical_labels(make_linear):
    w, b = linear_weights((3, 8, 8), seed=11)
    x = np.random.default_rng(4).random((50, 3, 8, 8), dtype=np.float32)
    expected = ((x.reshape(50, -1) @ w.ravel() + b) > 0).astype(np.int64)
    assert 5 < expected.sum() < 45
    for conv in CONVENTIONS:
        runtime = Runtime(make_linear((3, 8, 8), seed=11, **conv).model, batch_size=16)
        assert np.array_equal(runtime.labels(x), expected), conv
        if conv.get("batch") == 1:
            assert runtime.batch_size == 1


def test_flags_override_missing_metadata(make_linear):
    conv = dict(layout="NHWC", channels="BGR", scale=255.0, mean=(10.0, 20.0, 30.0), std=(50.0, 60.0, 70.0))
    lin = make_linear((3, 8, 8), seed=11, write_spec=False, **conv)
    path = lin.model
    x = np.random.default_rng(4).random((40, 3, 8, 8), dtype=np.float32)
    expected = ((x.reshape(40, -1) @ lin.w.ravel() + lin.b) > 0).astype(np.int64)
    assert np.array_equal(Runtime(path, overrides=conv).labels(x), expected)
    assert not np.array_equal(Runtime(path, overrides={"layout": "NHWC"}).labels(x), expected)


def test_softmax_and_several_outputs(make_linear):
    soft = make_linear((3, 8, 8), seed=2, softmax=True)
    x = np.random.default_rng(4).random((20, 3, 8, 8), dtype=np.float32)
    expected = ((x.reshape(20, -1) @ soft.w.ravel() + soft.b) > 0).astype(np.int64)
    assert np.array_equal(Runtime(soft.model).labels(x), expected)
    multi = make_linear((3, 8, 8), seed=2, extra_output=True).model
    with pytest.raises(ProbeError, match="choose the logits with output") as error:
        Runtime(multi)  # the library names its own parameter; the command line renders its flag
    from probe.cli import FLAGS

    assert error.value.render(FLAGS).endswith("choose the logits with --output")
    assert np.array_equal(Runtime(multi, output="logits").labels(x), expected)
    with pytest.raises(ProbeError, match="no output named"):
        Runtime(multi, output="nope")


def test_bad_model_files_are_clear_errors(tmp_path, make_linear):
    with pytest.raises(ProbeError, match="not found"):
        Runtime(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(ProbeError, match="not a valid ONNX model"):
        Runtime(junk)
    good = make_linear((3, 8, 8)).model
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ProbeError, match="not a valid ONNX model"):
        Runtime(truncated)


@pytest.mark.parametrize("n", [1, 2, 10, 11, 50, 51, 100, 101])
@pytest.mark.parametrize("pa", [0.07, 0.29, 0.5, 0.8, 1.0])
def test_level_criterion_flips_exactly_at_ceil_n_pa(n, pa):
    """Adversarial from ceil(n P_a) votes on (targeted) or off (untargeted) the label, not one vote fewer."""
    need = math.ceil(Fraction(str(pa)) * n)  # exact: no floating-point product
    assert need == smoothing.level_vote_count(n, pa)

    def spread(k: int) -> tuple[int, int]:  # k votes over two other classes, uneven
        return k - k // 3, k // 3

    for hits in (need - 1, need):
        # untargeted, away from class 0: `hits` votes off it, over classes 1 and 2
        untargeted = np.array([[n - hits, *spread(hits)]])
        assert Criterion(0, rule="paper", pa=pa)(untargeted).tolist() == [hits >= need], (n, pa, hits)
        # targeted at class 2: `hits` votes on it, the rest over classes 0 and 1
        targeted = np.array([[*spread(n - hits), hits]])
        assert Criterion(2, targeted=True, rule="paper", pa=pa)(targeted).tolist() == [hits >= need], (n, pa, hits)
    # a batch of rows: one answer per row, each by its own count
    rows = np.array([[n - k, k, 0] for k in range(n + 1)])
    assert Criterion(0, rule="paper", pa=pa)(rows).tolist() == [k >= need for k in range(n + 1)]
    assert Criterion(1, targeted=True, rule="paper", pa=pa)(rows).tolist() == [k >= need for k in range(n + 1)]
    # the default rule reads only the plurality label, whatever P_a: 1 vote of n off class 0 is not enough
    if n > 2:
        assert Criterion(0, pa=pa)(np.array([[n - 1, 1, 0]])).tolist() == [False]
