"""Tests of probe.smoothing against independent computations (closed forms, direct
binomial sums, root finding, quadrature and Monte Carlo), never against values
printed by the implementation itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from probe.errors import ProbeError
from probe.smoothing import (
    ABSTAIN,
    certified_radius,
    certify,
    certify_sampled,
    distance_bound,
    level_vote_count,
    majority_vote,
    pa_lower_bound,
    pa_vote_threshold,
    pa_vote_threshold_exact,
    predict,
    predict_sampled,
    smoothed_probability_linear,
    sorm_probability,
)


def binom_upper_tail(n: int, q: float, a: int) -> float:
    """P[Bin(n, q) >= a] by direct summation (no incomplete beta involved)."""
    return math.fsum(math.comb(n, k) * q**k * (1.0 - q) ** (n - k) for k in range(a, n + 1))


def two_sided_half_pvalue(c1: int, c2: int) -> float:
    """Exact two-sided binomial test p-value at p = 1/2 for c1 >= c2 (symmetric null)."""
    m = c1 + c2
    tail = sum(math.comb(m, k) for k in range(c1, m + 1)) / 2**m
    return min(1.0, 2.0 * tail)


# --------------------------------------------------------------------------- #
# PREDICT and the majority vote
# --------------------------------------------------------------------------- #


def test_abstain_is_one_value_that_is_never_a_class_index():
    # a tie, 10/10 at alpha = 0.001 (too few votes to pass the test), and CERTIFY below 1/2
    abstained = {
        predict(np.array([5, 5]), 0.05),
        predict(np.array([10, 0]), 0.001),
        predict(np.array([0, 0, 10]), 0.001),
        predict_sampled(lambda k: np.array([0, k]), 10, 0.001),
        certify(np.array([60, 40]), np.array([52, 48]), 0.5, 0.001)[0],
    }
    assert abstained == {ABSTAIN}
    assert isinstance(ABSTAIN, int) and ABSTAIN < 0  # outside range(k) for every number of classes k
    assert all(ABSTAIN not in range(k) for k in range(1, 1001))
    # the same counts with one vote more (11/11) decide, and name a real class
    assert predict(np.array([0, 0, 11]), 0.001) == 2 != ABSTAIN


@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=6).filter(any), alpha=st.sampled_from([0.001, 0.05, 0.3]))
def test_predict_returns_a_class_index_or_abstain(counts, alpha):
    label = predict(np.array(counts), alpha)
    assert label == ABSTAIN or (0 <= label < len(counts) and counts[label] == max(counts))


def test_predict_abstains_on_even_split():
    assert predict(np.array([5, 5]), 0.05) == ABSTAIN
    assert predict(np.array([0, 50, 50]), 0.05) == ABSTAIN


def test_predict_always_abstains_with_ten_samples_at_alpha_0001():
    # Unanimity is the best case: p = 2 * 0.5**10 = 0.00195 > 0.001.
    assert 2 * 0.5**10 > 0.001
    for k in range(11):
        assert predict(np.array([k, 10 - k]), 0.001) == ABSTAIN
        assert predict(np.array([10 - k, 0, k]), 0.001) == ABSTAIN


def test_predict_eleven_unanimous_votes_suffice_at_alpha_0001():
    assert 2 * 0.5**11 < 0.001
    assert predict(np.array([0, 11]), 0.001) == 1


def test_predict_pvalue_equal_to_alpha_predicts():
    # 11/11 gives p = 2 * 2**-11 = 2**-10 exactly; PREDICT abstains only when p > alpha.
    assert predict(np.array([11, 0]), 2.0**-10) == 0
    assert predict(np.array([11, 0]), 2.0**-10 * 0.999) == ABSTAIN


def test_predict_returns_clear_winner():
    assert predict(np.array([990, 10]), 0.001) == 0
    assert predict(np.array([10, 990]), 0.001) == 1
    assert predict(np.array([3, 990, 7]), 0.001) == 1
    assert predict([0, 0, 5, 995], 0.001) == 3


def test_predict_uses_only_the_top_two_counts():
    # 40 vs 30 (the third class is ignored): p-value about 0.28.
    assert two_sided_half_pvalue(40, 30) > 0.05
    assert predict(np.array([40, 30, 30]), 0.05) == ABSTAIN
    # 60 vs 20 (a third class with 15 votes does not enter the test): clear.
    assert two_sided_half_pvalue(60, 20) < 0.001
    assert predict(np.array([20, 60, 15]), 0.001) == 1


@settings(max_examples=150, deadline=None)
@given(
    c1=st.integers(0, 300),
    c2=st.integers(0, 300),
    alpha=st.sampled_from([0.001, 0.01, 0.05, 0.2]),
    swap=st.booleans(),
)
def test_predict_matches_exact_binomial_test(c1, c2, alpha, swap):
    if c1 + c2 == 0:
        return
    hi, lo = max(c1, c2), min(c1, c2)
    counts = np.array([lo, hi]) if swap else np.array([hi, lo])
    winner = int(np.flatnonzero(counts == hi)[0])
    expected = winner if two_sided_half_pvalue(hi, lo) <= alpha else ABSTAIN
    if hi == lo:
        assert expected == ABSTAIN
    assert predict(counts, alpha) == expected


def test_majority_vote_tie_rule_lowest_index():
    assert majority_vote(np.array([5, 5])) == 0
    assert majority_vote(np.array([3, 7, 7])) == 1
    assert majority_vote(np.array([1, 2, 9, 9, 9])) == 2
    assert majority_vote(np.array([0, 0, 1])) == 2
    assert majority_vote(np.array([6, 4])) == 0
    assert majority_vote(np.array([4, 6])) == 1
    assert majority_vote(np.array([3.0, 4.0])) == 1


# --------------------------------------------------------------------------- #
# Clopper-Pearson lower bound
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "n_a,n,alpha", [(1, 10, 0.05), (5, 10, 0.001), (9, 10, 0.05), (80, 100, 0.001), (999, 1000, 0.01), (37, 50, 0.2)]
)
def test_pa_lower_bound_inverts_the_binomial_tail(n_a, n, alpha):
    # The bound is the p with P[Bin(n, p) >= n_a] = alpha.
    def tail_minus_alpha(p: float) -> float:
        return stats.binom.sf(n_a - 1, n, p) - alpha

    root = optimize.brentq(tail_minus_alpha, 1e-15, 1 - 1e-15, xtol=1e-14)
    assert pa_lower_bound(n_a, n, alpha) == pytest.approx(root, rel=1e-8, abs=1e-12)
    assert pa_lower_bound(n_a, n, alpha) < n_a / n


@pytest.mark.parametrize("n,alpha", [(1, 0.05), (10, 0.001), (100, 0.01)])
def test_pa_lower_bound_unanimous_closed_form(n, alpha):
    # P[Bin(n, p) >= n] = p**n = alpha.
    assert pa_lower_bound(n, n, alpha) == pytest.approx(alpha ** (1.0 / n), rel=1e-10)


def test_pa_lower_bound_zero_successes():
    assert pa_lower_bound(0, 10, 0.05) == 0.0


def test_pa_lower_bound_monotone():
    n = 60
    values = [pa_lower_bound(k, n, 0.01) for k in range(n + 1)]
    assert all(b > a for a, b in zip(values, values[1:]))
    # Larger alpha (less confidence) gives a larger lower bound.
    by_alpha = [pa_lower_bound(30, 60, a) for a in (0.1, 0.01, 0.001)]
    assert by_alpha[0] > by_alpha[1] > by_alpha[2]


@pytest.mark.parametrize("p,n,alpha", [(0.7, 50, 0.05), (0.95, 200, 0.01), (0.5, 20, 0.1)])
def test_pa_lower_bound_coverage(p, n, alpha):
    bounds = np.array([pa_lower_bound(k, n, alpha) for k in range(n + 1)])
    # Exact coverage: sum of pmf over the outcomes whose bound is below p.
    exact = float(stats.binom.pmf(np.arange(n + 1), n, p)[bounds <= p].sum())
    assert exact >= 1 - alpha - 1e-12
    # Simulated coverage.
    rng = np.random.default_rng(1234)
    draws = rng.binomial(n, p, size=20_000)
    covered = float(np.mean(bounds[draws] <= p))
    assert covered >= (1 - alpha) - 0.01


# --------------------------------------------------------------------------- #
# CERTIFY
# --------------------------------------------------------------------------- #


def test_certify_radius_formula():
    sigma, alpha, n = 0.25, 0.001, 1000
    label, p_lower, radius = certify(np.array([2, 98]), np.array([0, n]), sigma, alpha)
    assert label == 1
    assert p_lower == pytest.approx(alpha ** (1.0 / n), rel=1e-10)
    assert radius == pytest.approx(sigma * stats.norm.ppf(alpha ** (1.0 / n)), rel=1e-10)

    label, p_lower, radius = certify(np.array([90, 5, 5]), np.array([900, 60, 40]), 0.5, 0.01)
    assert label == 0
    assert radius == pytest.approx(0.5 * stats.norm.ppf(p_lower), rel=1e-12)
    assert p_lower == pytest.approx(stats.beta.ppf(0.01, 900, 101), rel=1e-12)


def test_certify_abstains_below_half():
    label, p_lower, radius = certify(np.array([60, 40]), np.array([52, 48]), 0.5, 0.001)
    assert p_lower < 0.5
    assert (label, radius) == (ABSTAIN, 0.0)


def test_certify_threshold_is_one_half():
    alpha = 0.001
    # Independent bounds: 5100/10000 gives about 0.4945, 5200/10000 about 0.5045.
    below = stats.beta.ppf(alpha, 5100, 10_000 - 5100 + 1)
    above = stats.beta.ppf(alpha, 5200, 10_000 - 5200 + 1)
    assert 0.45 < below < 0.5 < above < 0.51
    assert certify(np.array([9, 1]), np.array([5100, 4900]), 1.0, alpha) == (
        ABSTAIN,
        pytest.approx(below),
        0.0,
    )
    label, _, radius = certify(np.array([9, 1]), np.array([5200, 4800]), 1.0, alpha)
    assert label == 0 and 0 < radius == pytest.approx(stats.norm.ppf(above))


def test_certify_selection_and_estimation_are_separate():
    # counts0 elects class 0, the fresh estimation does not support it: abstain.
    label, p_lower, radius = certify(np.array([55, 45]), np.array([100, 900]), 1.0, 0.001)
    assert label == ABSTAIN and radius == 0.0
    assert p_lower < 0.2


def test_certify_linear_classifier_radius_approaches_margin():
    margin, sigma, alpha = 0.5, 0.5, 0.001
    p = smoothed_probability_linear(margin, sigma)
    assert p == pytest.approx(stats.norm.cdf(1.0))
    rng = np.random.default_rng(7)
    gaps = []
    for n in [100, 1_000, 10_000, 100_000, 1_000_000]:
        n0 = 100
        k0 = rng.binomial(n0, p)
        k = rng.binomial(n, p)
        label, _, radius = certify(np.array([n0 - k0, k0]), np.array([n - k, k]), sigma, alpha)
        assert label == 1
        assert 0 < radius < margin
        gaps.append(margin - radius)
    assert gaps[-1] < 0.01
    assert gaps[-1] < gaps[2] < gaps[0]


def _binary_sampler(p: float, seed: int):
    rng = np.random.default_rng(seed)
    calls: list[int] = []

    def sample(k: int) -> np.ndarray:
        calls.append(k)
        ones = int(rng.binomial(k, p))
        return np.array([k - ones, ones])

    return sample, calls


def test_certify_sampled_calls_n0_then_n():
    sample, calls = _binary_sampler(0.99, 3)
    label, p_lower, radius = certify_sampled(sample, 100, 10_000, 0.25, 0.001)
    assert calls == [100, 10_000]
    assert label == 1 and p_lower > 0.97
    assert radius == pytest.approx(0.25 * stats.norm.ppf(p_lower))


def test_predict_sampled():
    sample, calls = _binary_sampler(0.0, 5)
    assert predict_sampled(sample, 50, 0.001) == 0
    assert calls == [50]
    sample, _ = _binary_sampler(1.0, 5)
    assert predict_sampled(sample, 10, 0.001) == ABSTAIN


def test_sampled_rejects_wrong_vote_totals_and_validates_before_sampling():
    with pytest.raises(ProbeError, match="exactly"):
        certify_sampled(lambda k: np.array([k, 1]), 10, 100, 0.5, 0.01)
    with pytest.raises(ProbeError, match="exactly"):
        predict_sampled(lambda k: np.array([0, k - 1]), 10, 0.01)
    sample, calls = _binary_sampler(0.5, 0)
    with pytest.raises(ProbeError, match="sigma"):
        certify_sampled(sample, 10, 100, -1.0, 0.01)
    assert calls == []


# --------------------------------------------------------------------------- #
# Eq. (2) and the linear classifier
# --------------------------------------------------------------------------- #


def test_certified_radius_eq2():
    assert certified_radius(0.5, 0.3) == 0.0
    assert certified_radius(stats.norm.cdf(2.0), 0.25) == pytest.approx(0.5)
    assert certified_radius(0.2, 1.0) < 0  # not certified
    assert certified_radius(1.0, 0.5) == math.inf


@pytest.mark.parametrize("margin,sigma", [(0.1, 0.25), (-0.3, 0.5), (0.2, 0.1)])
def test_smoothed_probability_linear_monte_carlo(margin, sigma):
    rng = np.random.default_rng(11)
    d = 6
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    x = margin * w  # signed distance `margin` from the hyperplane w.x = 0 (positive side: w.x > 0)
    noisy = x + sigma * rng.normal(size=(200_000, d))
    keep = float(np.mean(noisy @ w > 0))
    p = smoothed_probability_linear(margin, sigma)
    assert keep == pytest.approx(p, abs=0.005)
    if margin > 0:
        assert certified_radius(p, sigma) == pytest.approx(margin, rel=1e-9)


# --------------------------------------------------------------------------- #
# Eq. (3): SORM
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 3.5])
def test_sorm_flat_is_phi_minus_beta(beta):
    assert sorm_probability(beta, np.zeros(10)) == pytest.approx(stats.norm.cdf(-beta), rel=1e-12)
    assert sorm_probability(beta, np.array([])) == pytest.approx(stats.norm.cdf(-beta), rel=1e-12)


def test_sorm_curvature_sign():
    base = stats.norm.cdf(-2.0)
    assert sorm_probability(2.0, np.array([-0.1, -0.2])) > base
    assert sorm_probability(2.0, np.array([0.1, 0.2])) < base
    expected = base / math.sqrt(0.8)
    assert sorm_probability(2.0, np.array([-0.1])) == pytest.approx(expected, rel=1e-12)


def test_sorm_many_curvatures_in_log_space():
    d1 = 150_000
    kappa = -1e-6
    expected = stats.norm.cdf(-2.0) * (1 + 2.0 * kappa) ** (-d1 / 2)
    assert sorm_probability(2.0, np.full(d1, kappa)) == pytest.approx(expected, rel=1e-9)


def test_sorm_quadrature_one_curvature():
    # Parabolic boundary z1 = beta + kappa/2 z2^2 in normalized space:
    # exact P[z1 >= beta + kappa/2 z2^2] = E[Phi(-beta - kappa z2^2 / 2)].
    for beta, kappa in [(2.0, -0.1), (2.0, 0.1), (3.0, -0.05), (3.0, 0.05)]:
        exact, _ = integrate.quad(
            lambda z: stats.norm.cdf(-beta - kappa * z * z / 2) * stats.norm.pdf(z), -np.inf, np.inf
        )
        assert sorm_probability(beta, np.array([kappa])) == pytest.approx(exact, rel=0.03)


def test_sorm_monte_carlo_curved_boundary():
    # Physical space, sigma = 0.5, x at the origin, f(x) = 1; class 0 beyond the
    # quadric y1 >= delta + K1/2 y2^2 + K2/2 y3^2. Normalized curvatures kappa = sigma*K.
    sigma, beta = 0.5, 2.0
    delta = beta * sigma
    kappas = np.array([-0.1, 0.06])
    k_phys = kappas / sigma
    rng = np.random.default_rng(2024)
    y = sigma * rng.normal(size=(400_000, 3))
    class0 = y[:, 0] >= delta + 0.5 * (k_phys[0] * y[:, 1] ** 2 + k_phys[1] * y[:, 2] ** 2)
    mc = float(np.mean(class0))
    assert sorm_probability(beta, kappas) == pytest.approx(mc, rel=0.06)
    assert mc > stats.norm.cdf(-beta) * 1.01  # the net curvature is toward x


# --------------------------------------------------------------------------- #
# Eq. (5)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("n", [11, 51, 101])
@pytest.mark.parametrize("pa", [0.5, 0.8])
def test_eq5_exact_threshold_odd_n(n, pa):
    n_tilde = 1 + n // 2
    t = pa_vote_threshold_exact(n, pa)
    assert binom_upper_tail(n, 1 - t, n_tilde) == pytest.approx(pa, abs=1e-9)
    # For odd n the paper's (n~, n~) parameters are exact.
    assert pa_vote_threshold(n, pa) == pytest.approx(t, abs=1e-12)
    if pa == 0.5:
        assert t == pytest.approx(0.5, abs=1e-12)
    else:
        assert t < 0.5
    # Lower pi_0 than t: the level is exceeded; higher: not reached.
    assert binom_upper_tail(n, 1 - (t - 0.01), n_tilde) > pa
    assert binom_upper_tail(n, 1 - (t + 0.01), n_tilde) < pa


@pytest.mark.parametrize("n", [10, 50, 100])
@pytest.mark.parametrize("pa", [0.5, 0.8, 0.95])
def test_eq5_even_n(n, pa):
    n_tilde = 1 + n // 2
    exact = pa_vote_threshold_exact(n, pa)
    paper = pa_vote_threshold(n, pa)
    # The exact threshold solves the strict-majority tail for n votes.
    assert binom_upper_tail(n, 1 - exact, n_tilde) == pytest.approx(pa, abs=1e-9)
    # The paper's formula is the exact threshold of n + 1 votes ...
    assert paper == pytest.approx(pa_vote_threshold_exact(n + 1, pa), abs=1e-12)
    assert binom_upper_tail(n + 1, 1 - paper, n_tilde) == pytest.approx(pa, abs=1e-9)
    # ... hence less demanding than the exact one: below it the level is not guaranteed.
    assert paper > exact
    assert binom_upper_tail(n, 1 - paper, n_tilde) < pa
    # Eq. (5)'s "< 1/2" holds for the exact threshold even at pa = 1/2.
    assert exact < 0.5
    if pa == 0.5:
        assert paper == pytest.approx(0.5, abs=1e-12)


def test_eq5_documented_example_n10_pa08():
    assert pa_vote_threshold(10, 0.8) == pytest.approx(0.3779, abs=1e-4)
    assert pa_vote_threshold_exact(10, 0.8) == pytest.approx(0.3268, abs=1e-4)
    assert binom_upper_tail(10, 1 - pa_vote_threshold(10, 0.8), 6) == pytest.approx(0.69, abs=0.01)


def test_eq5_monotone_in_pa_and_extremes():
    values = [pa_vote_threshold_exact(51, pa) for pa in np.linspace(0.0, 1.0, 21)]
    assert all(b < a for a, b in zip(values, values[1:]))
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.0)


# --------------------------------------------------------------------------- #
# Eq. (6)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("n", [10, 11, 50, 51, 100])
@pytest.mark.parametrize("pa", [0.5, 0.6, 0.8, 0.95])
@pytest.mark.parametrize("exact", [False, True])
def test_eq6_at_least_eq2(n, pa, exact):
    p0, sigma = 0.9, 0.25
    r2 = sigma * stats.norm.ppf(p0)
    r6 = distance_bound(p0, sigma, n, pa, exact=exact)
    assert r6 >= r2 - 1e-12
    n_tilde = 1 + n // 2
    b = n_tilde if not exact else n - n_tilde + 1
    second_term = sigma * stats.norm.ppf(stats.beta.ppf(pa, n_tilde, b))
    assert r6 == pytest.approx(r2 + second_term, rel=1e-9)
    if pa > 0.5:
        assert r6 > r2


@pytest.mark.parametrize("n", [1, 11, 51, 101])
def test_eq6_equals_eq2_at_half_for_odd_n(n):
    p0, sigma = 0.75, 0.5
    r2 = certified_radius(p0, sigma)
    assert distance_bound(p0, sigma, n, 0.5) == pytest.approx(r2, abs=1e-12)
    assert distance_bound(p0, sigma, n, 0.5, exact=True) == pytest.approx(r2, abs=1e-12)


def test_eq6_exact_strictly_larger_for_even_n_at_half():
    assert distance_bound(0.75, 0.5, 10, 0.5, exact=True) > certified_radius(0.75, 0.5) + 1e-3


# --------------------------------------------------------------------------- #
# Simulation of eq. (4)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "n,pa,expected",
    [(10, 0.8, 8), (100, 0.29, 29), (100, 0.07, 7), (100, 0.57, 57), (10, 0.5, 5), (11, 0.5, 6), (50, 0.8, 40),
     (100, 0.8, 80), (10, 0.85, 9), (10, 0.01, 1), (3, 1.0, 3), (1, 0.5, 1), (1000, 0.001, 1)],
)
def test_level_vote_count_edges(n, pa, expected):
    assert level_vote_count(n, pa) == expected


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 5000), k=st.integers(1, 1000))
def test_level_vote_count_integer_ceiling(n, k):
    pa = k / 1000
    assert level_vote_count(n, pa) == -((-n * k) // 1000)


# --------------------------------------------------------------------------- #
# Parameter validation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "call",
    [
        lambda: predict(np.array([5, 5]), 0.0),
        lambda: predict(np.array([5, 5]), 1.0),
        lambda: predict(np.array([5, 5]), float("nan")),
        lambda: predict(np.array([0, 0]), 0.05),
        lambda: predict(np.array([-1, 5]), 0.05),
        lambda: predict(np.array([1.5, 5]), 0.05),
        lambda: predict(np.array([[1, 2], [3, 4]]), 0.05),
        lambda: predict(np.array([]), 0.05),
        lambda: predict(np.array(["a", "b"]), 0.05),
        lambda: majority_vote(np.array([0, 0, 0])),
        lambda: pa_lower_bound(5, 0, 0.05),
        lambda: pa_lower_bound(11, 10, 0.05),
        lambda: pa_lower_bound(-1, 10, 0.05),
        lambda: pa_lower_bound(5.0, 10, 0.05),
        lambda: pa_lower_bound(True, 10, 0.05),
        lambda: pa_lower_bound(5, 10, 1.5),
        lambda: certify(np.array([1, 2]), np.array([1, 2, 3]), 0.5, 0.01),
        lambda: certify(np.array([1, 2]), np.array([1, 2]), 0.0, 0.01),
        lambda: certify(np.array([1, 2]), np.array([1, 2]), -0.5, 0.01),
        lambda: certify(np.array([1, 2]), np.array([1, 2]), float("inf"), 0.01),
        lambda: certify(np.array([1, 2]), np.array([1, 2]), 0.5, 0.0),
        lambda: certify_sampled(lambda k: np.array([0, k]), 0, 100, 0.5, 0.01),
        lambda: certify_sampled(lambda k: np.array([0, k]), 10, 0, 0.5, 0.01),
        lambda: certify_sampled("not callable", 10, 100, 0.5, 0.01),
        lambda: predict_sampled(lambda k: np.array([0, k]), 0, 0.01),
        lambda: certified_radius(1.2, 0.5),
        lambda: certified_radius(-0.1, 0.5),
        lambda: certified_radius(0.7, 0.0),
        lambda: sorm_probability(2.0, np.array([-0.5])),
        lambda: sorm_probability(2.0, np.array([-0.6, 0.1])),
        lambda: sorm_probability(float("nan"), np.array([0.1])),
        lambda: sorm_probability(2.0, np.array([np.inf])),
        lambda: sorm_probability(2.0, np.zeros((2, 2))),
        lambda: sorm_probability(2.0, ["x"]),
        lambda: pa_vote_threshold(0, 0.5),
        lambda: pa_vote_threshold(10, 1.5),
        lambda: pa_vote_threshold(10, -0.1),
        lambda: pa_vote_threshold_exact(10.5, 0.5),
        lambda: pa_vote_threshold_exact(10, float("nan")),
        lambda: distance_bound(0.9, 0.25, 0, 0.8),
        lambda: distance_bound(1.1, 0.25, 10, 0.8),
        lambda: distance_bound(0.9, -0.25, 10, 0.8),
        lambda: distance_bound(0.9, 0.25, 10, 2.0),
        lambda: level_vote_count(0, 0.5),
        lambda: level_vote_count(10, 0.0),
        lambda: level_vote_count(10, 1.01),
        lambda: level_vote_count(10, "0.5"),
        lambda: smoothed_probability_linear(0.1, 0.0),
        lambda: smoothed_probability_linear(float("inf"), 0.5),
    ],
)
def test_invalid_parameters_raise_probe_error(call):
    with pytest.raises(ProbeError):
        call()


def test_error_messages_name_the_parameter():
    with pytest.raises(ProbeError, match="alpha"):
        predict(np.array([5, 5]), 2.0)
    with pytest.raises(ProbeError, match="sigma"):
        certified_radius(0.7, -1.0)
    with pytest.raises(ProbeError, match="n_a"):
        pa_lower_bound(11, 10, 0.05)
    with pytest.raises(ProbeError, match="1 \\+ beta"):
        sorm_probability(4.0, np.array([-0.3]))
