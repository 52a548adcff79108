"""Votes that stop when decided: the same answers as the full vote, for fewer inferences.

``Criterion.needed`` is checked against an exhaustive enumeration of every completion of
every partial vote; the answers of ``SmoothedClassifier.decide`` on a linear ONNX model
against the exact binomial probability of the full vote and against full votes drawn
beside them (chi-square); the votes it draws against the exact expected stopping time.
On the linear model each noisy copy votes class 1 with probability q = Phi(margin / sigma).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import pytest
from scipy import stats

from probe.engine import Engine, Job
from probe.oracle import Criterion, Oracle, estimate_p_adv
from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier
from tests.onnx_models import linear_weights, save_linear

SIGMA = 0.1


def _completions(counts: tuple[int, ...], left: int):
    if left == 0:
        yield counts
        return
    for j in range(len(counts)):
        yield from _completions(tuple(c + (i == j) for i, c in enumerate(counts)), left - 1)


def _check_exhaustively(criterion: Criterion, n: int, k: int) -> None:
    @lru_cache(None)
    def answers(counts):  # every answer a full vote of n can still give
        full = _completions(counts, n - sum(counts))
        return frozenset(bool(criterion(np.array([f]), n=n)[0]) for f in full)

    @lru_cache(None)
    def fewest(counts):  # fewest further votes after which some outcome is decided
        if len(answers(counts)) == 1:
            return 0
        return 1 + min(fewest(tuple(c + (i == j) for i, c in enumerate(counts))) for j in range(k))

    for drawn in range(n + 1):
        for counts in itertools.product(range(drawn + 1), repeat=k):
            if sum(counts) != drawn:
                continue
            got = int(criterion.needed(np.array([counts]), n)[0])
            assert got == fewest(counts), (criterion, n, counts)
            if got == 0:  # decided: the partial counts give the answer every full vote gives
                assert answers(counts) == {bool(criterion(np.array([counts]), n=n)[0])}, (criterion, n, counts)


@pytest.mark.parametrize("n", [4, 5, 6])
@pytest.mark.parametrize("k", [2, 3])
def test_needed_is_the_fewest_votes_that_can_decide_and_decided_means_every_completion_agrees(n, k):
    """Ties go to the lowest class index (even n included); ``label`` untargeted and
    targeted, ``paper`` at P_a = 0.5, 0.8 and 0.3, every class as the label."""
    for label in range(k):
        for targeted in (False, True):
            _check_exhaustively(Criterion(label, targeted=targeted), n, k)
            for pa in (0.5, 0.8, 0.3):
                _check_exhaustively(Criterion(label, targeted=targeted, rule="paper", pa=pa), n, k)


def test_needed_rows_are_independent_and_never_exceed_the_votes_left():
    crit = Criterion(1)
    votes = np.array([[0, 0, 0], [5, 0, 0], [2, 2, 1], [0, 9, 0]])
    assert crit.needed(votes, 10).tolist() == [5, 0, 3, 0]
    # [2, 2, 1] with 5 left: 3 votes to class 1 make 2:5:1 with 2 left (sure), 3 to class 0 make 5:2:1 (lost)
    assert crit.needed(votes[2:3], 10).tolist() == [3]


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    w, b = linear_weights((3, 8, 8), seed=6)
    path = save_linear(tmp_path_factory.mktemp("early") / "lin.onnx", w, b)
    unit = (w / np.linalg.norm(w)).astype(np.float32)

    def at(margin: float) -> np.ndarray:
        return (np.full(w.shape, 0.5, np.float32) + np.float32(margin) * unit).astype(np.float32)

    return path, at


def _exact(criterion: Criterion, n: int, q: float) -> tuple[float, float]:
    """P[answer] of the full vote and the exact mean number of votes the early stop draws."""
    k = np.arange(n + 1)
    full = np.stack([n - k, k], axis=1)
    p_answer = float(stats.binom.pmf(k, n, q)[criterion(full, n=n)].sum())
    # the stop is a function of the vote sequence: a walk over (votes for 0, votes for 1)
    mean, prob = 0.0, {(0, 0): 1.0}
    while prob:
        nxt: dict = {}
        for (a, b), p in prob.items():
            need = int(criterion.needed(np.array([[a, b]]), n)[0])
            if need == 0:
                mean += p * (a + b)
                continue
            for i in range(need + 1):  # the next ``need`` votes: i of them for class 1
                key = (a + need - i, b + i)
                nxt[key] = nxt.get(key, 0.0) + p * stats.binom.pmf(i, need, q)
        prob = nxt
    return p_answer, mean


CASES = [(n, rule, m) for n in (10, 11) for rule in ("label", "paper") for m in (0.0, 0.9)]


@pytest.mark.parametrize("n, rule, margin_sigmas", CASES)
def test_early_answers_have_the_full_votes_distribution(line, n, rule, margin_sigmas):
    """Near (on) and far (0.9 sigma) from the boundary, plurality and ceil(n P_a = 0.8)
    rules, even and odd n: 3,000 early answers against the exact full-vote probability,
    and against 3,000 full votes drawn beside them (chi-square); the votes drawn against
    the exact expected stopping time, and always fewer than n on average."""
    path, at = line
    runtime = Runtime(path, batch_size=256)
    crit = Criterion(0, rule=rule, pa=0.8)
    x = at(margin_sigmas * SIGMA)
    points = np.broadcast_to(x, (3000, *x.shape))
    clf = SmoothedClassifier(runtime, SIGMA, n)
    counts, drawn = clf.decide([(points, clf.point_streams(np.random.default_rng(n), len(points)), crit)])[0]
    early = crit(counts, n=n)
    full = crit(clf.votes([(points, np.random.default_rng(100 + n))])[0], n=n)
    q = float(stats.norm.cdf(margin_sigmas))
    p_exact, mean_exact = _exact(crit, n, q)
    assert stats.binomtest(int(early.sum()), len(early), p_exact).pvalue > 1e-3, (early.mean(), p_exact)
    table = np.array([[early.sum(), len(early) - early.sum()], [full.sum(), len(full) - full.sum()]])
    assert stats.chi2_contingency(table).pvalue > 1e-3, table
    se = drawn.std() / np.sqrt(len(drawn))
    assert abs(drawn.mean() - mean_exact) < 4 * se + 1e-9, (drawn.mean(), mean_exact)
    assert drawn.min() >= 1 and drawn.max() <= n and mean_exact < n


def test_a_job_answers_the_same_alone_and_cut_across_rounds_between_companions(line):
    """Per-point noise streams, drawn when a request is made: a request cut into parts by
    a small batch and busy companions gets the answers (and spends the inferences) it gets
    from one direct oracle call."""
    path, at = line
    runtime = Runtime(path, batch_size=16)
    clf = SmoothedClassifier(runtime, SIGMA, 10)
    x = np.stack([at(m) for m in np.linspace(-0.15, 0.15, 60)])
    crit = Criterion(0)
    alone = Oracle(clf, crit, budget=1000, rng=np.random.default_rng(4))
    expected = alone(x)

    got = {}

    def once():
        got["answers"] = yield x
        return None

    def singles(i):
        for _ in range(30):
            yield at(0.01 * (i - 3))[None]
        return None

    job = Job(once(), Oracle(clf, crit, budget=1000, rng=np.random.default_rng(4)))
    companions = [Job(singles(i), Oracle(clf, crit, budget=1000, rng=np.random.default_rng([9, i]))) for i in range(8)]
    engine = Engine(clf)
    before = runtime.inferences
    engine.run(companions[:4] + [job] + companions[4:])
    assert engine.stats.rounds > 1
    assert np.array_equal(got["answers"], expected)
    assert job.oracle.inferences == alone.inferences < 10 * len(x)
    assert runtime.inferences - before == sum(j.oracle.inferences for j in [job, *companions])


def test_full_votes_switch_and_in_graph_path(line):
    """``early_stop=False`` spends n a query; the in-graph session (run here on CPU)
    stops early too, with answers of the exact full-vote frequency."""
    path, at = line
    runtime = Runtime(path, batch_size=512)
    x = at(0.0)
    crit = Criterion(0)
    full = SmoothedClassifier(runtime, SIGMA, 11, early_stop=False)
    assert not full.early_stop
    oracle = Oracle(full, crit, budget=100, rng=np.random.default_rng(0))
    oracle(np.broadcast_to(x, (20, *x.shape)))
    assert oracle.inferences == 20 * 11
    graph = SmoothedClassifier(runtime, SIGMA, 11, in_graph=True)
    assert graph.early_stop and graph.in_graph
    oracle = Oracle(graph, crit, budget=2000, rng=np.random.default_rng(1))
    answers = oracle(np.broadcast_to(x, (2000, *x.shape)))
    assert graph.in_graph  # it did not fall back to the NumPy path
    assert stats.binomtest(int(answers.sum()), 2000, 0.5).pvalue > 1e-3  # odd n on the boundary: 1/2
    _, mean_exact = _exact(crit, 11, 0.5)
    assert abs(oracle.inferences / 2000 - mean_exact) < 0.2 and oracle.inferences < 2000 * 11


def test_p_adv_with_early_votes_matches_the_exact_plurality_probability(line):
    path, at = line
    clf = SmoothedClassifier(Runtime(path), SIGMA, 10)
    q = float(stats.norm.cdf(0.2))
    exact = float(stats.binom.sf(5, 10, q))  # plurality class 1: 6 or more of 10 (5:5 stays 0)
    est = estimate_p_adv(clf, at(0.2 * SIGMA), label=0, pa=0.99, rng=np.random.default_rng(2), max_evaluations=1024)
    assert est.low <= exact <= est.high
