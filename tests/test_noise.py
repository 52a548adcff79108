"""The oracle's Gaussian sampler (probe.smoothing.noise): distribution, independence, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from probe.smoothing.noise import TAIL, NormalSampler, normal, words_per_row


def sample(seed: int, size: int, d: int = 3072) -> np.ndarray:
    rows = -(-size // d)
    return normal(np.random.default_rng(seed), (rows, d)).ravel()[:size].astype(np.float64)


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    return sample(1, 4_000_000)


def test_mean_and_variance(big):
    n = len(big)
    assert abs(big.mean()) < 5 / np.sqrt(n)
    assert abs(big.var() - 1.0) < 5 * np.sqrt(2.0 / n)
    # third and fourth moments of N(0, 1): 0 and 3
    assert abs(np.mean(big**3)) < 5 * np.sqrt(15.0 / n)
    assert abs(np.mean(big**4) - 3.0) < 5 * np.sqrt(96.0 / n)


def test_kolmogorov_smirnov_against_standard_normal(big):
    for part in np.array_split(big[:1_000_000], 4):
        assert stats.kstest(part, "norm").pvalue > 1e-4


def test_tails_up_to_five_sigma():
    """P(|z| > t) for t = 2..5 within a Poisson interval, over 6e7 samples, and nothing beyond TAIL."""
    counts = np.zeros(4, dtype=np.int64)
    thresholds = np.array([2.0, 3.0, 4.0, 5.0], dtype=np.float32)
    sampler = NormalSampler()
    rng = np.random.default_rng(7)
    out = np.empty((100, 150_528), np.float32)  # ImageNet-size rows (the large-row code path)
    total, peak = 0, 0.0
    for _ in range(4):
        sampler.fill(rng, out, 1.0)
        a = np.abs(out)
        counts += [(a > t).sum() for t in thresholds]
        peak = max(peak, float(a.max()))
        total += out.size
    expected = total * 2 * stats.norm.sf(thresholds.astype(np.float64))
    for c, e, t in zip(counts, expected, thresholds):
        lo, hi = stats.poisson.ppf(1e-5, e), stats.poisson.isf(1e-5, e)
        assert lo <= c <= hi, (t, c, e)
    assert peak <= TAIL * (1 + 1e-6)
    assert 5.0 < peak  # 6e7 samples reach beyond 5 sigma (expected count ~34)


def test_the_two_normals_of_a_word_are_independent():
    d = 2 * 4096
    z = normal(np.random.default_rng(3), (250, d)).astype(np.float64)
    h = words_per_row(d)
    c, s = z[:, :h].ravel(), z[:, h:].ravel()  # cosine and sine halves: same words
    n = len(c)
    bound = 5 / np.sqrt(n)
    assert abs(np.corrcoef(c, s)[0, 1]) < bound
    assert abs(np.corrcoef(c**2, s**2)[0, 1]) < bound  # a shared radius would correlate the squares
    assert abs(np.corrcoef(np.abs(c), np.abs(s))[0, 1]) < bound
    # joint distribution: uniform on a 10 x 10 grid of (Phi(c), Phi(s))
    grid, _, _ = np.histogram2d(stats.norm.cdf(c), stats.norm.cdf(s), bins=10, range=[[0, 1], [0, 1]])
    assert stats.chisquare(grid.ravel()).pvalue > 1e-4
    # neighbouring words and neighbouring rows are independent too
    assert abs(np.corrcoef(c[:-1], c[1:])[0, 1]) < bound
    assert abs(np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]) < 5 / np.sqrt(z[1:].size)


def test_sigma_scales_and_seed_reproduces():
    a = normal(np.random.default_rng(5), (3, 1000), sigma=0.25)
    b = normal(np.random.default_rng(5), (3, 1000))
    np.testing.assert_allclose(a, 0.25 * b, rtol=1e-6, atol=1e-7)
    assert np.array_equal(normal(np.random.default_rng(5), (3, 1000)), b)
    assert not np.array_equal(normal(np.random.default_rng(6), (3, 1000)), b)


@pytest.mark.parametrize("d", [3072, 147, 150_528, 1])
def test_stream_does_not_depend_on_chunking_or_block_size(d):
    rows = 9 if d > 10_000 else 40
    ref = np.empty((rows, d), np.float32)
    NormalSampler().fill(np.random.default_rng(11), ref, 0.5)
    for block_words in (1 << 12, 1 << 16, 77):
        for splits in ([rows], [1] * rows, [2, 5, rows - 7]):
            rng = np.random.default_rng(11)
            out = np.empty_like(ref)
            sampler = NormalSampler(block_words)
            at = 0
            for k in splits:
                sampler.fill(rng, out[at : at + k], 0.5)
                at += k
            assert np.array_equal(out, ref), (block_words, splits)
    # each row consumed exactly ceil(d / 2) raw words
    rng = np.random.default_rng(11)
    NormalSampler().fill(rng, np.empty((rows, d), np.float32))
    follow = np.random.default_rng(11)
    follow.bit_generator.random_raw(rows * words_per_row(d))
    assert rng.bit_generator.random_raw() == follow.bit_generator.random_raw()


def test_points_are_added_row_by_row():
    d = 3 * 8 * 8
    base = np.random.default_rng(0).random((4, d), dtype=np.float32)
    index = np.array([0, 0, 0, 1, 1, 3, 3, 3, 3, 3])
    noise = np.empty((10, d), np.float32)
    NormalSampler().fill(np.random.default_rng(2), noise, 0.1)
    with_base = np.empty_like(noise)
    NormalSampler(block_words=200).fill(np.random.default_rng(2), with_base, 0.1, base, index)
    np.testing.assert_allclose(with_base, noise + base[index], rtol=0, atol=1e-6)


@pytest.mark.parametrize("early_stop", [False, True])
def test_engine_cuts_requests_without_changing_the_answers(make_linear, early_stop):
    """The engine cuts requests at point boundaries to fill batches; each job's noise
    stream is consumed in order (votes that stop when decided: one stream a point, drawn
    when the request is made), so its answers do not depend on the batch size."""
    from probe.engine import Engine, Job
    from probe.oracle import Criterion, Oracle
    from probe.smoothing import SmoothedClassifier
    from probe.runtime import Runtime

    path = make_linear((3, 8, 8), seed=5).model

    def fake_attack(x0, rng, log):
        for k in (1, 5, 9, 2, 7, 1, 1):
            log.append((yield x0 + np.float32(0.2) * rng.standard_normal((k, *x0.shape), dtype=np.float32)))
        return None

    results, spent = [], []
    for batch, cap in ((7, None), (64, None), (1000, None), (7, 1)):
        runtime = Runtime(path, batch_size=batch)
        clf = SmoothedClassifier(runtime, 0.1, 3, early_stop=early_stop)
        logs = [[] for _ in range(6)]
        jobs = [
            Job(
                fake_attack(np.full((3, 8, 8), 0.3 + 0.08 * i, np.float32), np.random.default_rng([1, i]), logs[i]),
                Oracle(clf, Criterion(0), budget=100, rng=np.random.default_rng([2, i])),
            )
            for i in range(6)
        ]
        Engine(clf, max_batches_per_round=cap).run(jobs)
        assert all(job.oracle.queries == 26 for job in jobs)
        spent.append(sum(job.oracle.inferences for job in jobs))
        assert runtime.rows == spent[-1]
        if not early_stop:
            assert runtime.rows == 6 * 26 * 3
        if batch == 7 and not early_stop:  # whole batches but for the last rounds
            assert runtime.rows / runtime.calls > 0.8 * 7
        results.append([np.concatenate(log) for log in logs])
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other))
    assert len(set(spent)) == 1 and (spent[0] < 6 * 26 * 3) == early_stop  # votes too do not depend on batching
