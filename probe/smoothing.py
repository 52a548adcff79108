"""Randomized smoothing: Cohen et al.'s PREDICT / CERTIFY and the theory of the seed paper.

Pure NumPy/SciPy. Two families of functions live here:

* The Monte Carlo procedures of Cohen, Rosenfeld & Kolter (ICML 2019) working on
  *vote-count vectors* (``counts[c]`` = number of noisy copies that the base
  classifier labelled ``c``): :func:`predict`, :func:`majority_vote`,
  :func:`pa_lower_bound`, :func:`certify` and the ``*_sampled`` conveniences.
* The closed forms of Maho, Furon & Le Merrer, "Randomized smoothing under
  attack: how good is it in practice?" (ICASSP 2022), cited below by equation
  number: eq. (2) :func:`certified_radius`, eq. (3) :func:`sorm_probability`,
  eq. (5) :func:`pa_vote_threshold` / :func:`pa_vote_threshold_exact`, eq. (6)
  :func:`distance_bound`, the simulation of eq. (4) :func:`level_vote_count`,
  and :func:`smoothed_probability_linear`.

Notation: ``Phi`` is the standard normal CDF, ``Phi^-1`` its inverse,
``I_x(a, b)`` the regularized incomplete beta function and ``I^-1_p(a, b)`` its
inverse in ``x``; ``n~ = 1 + floor(n / 2)`` is the smallest strict majority of
``n`` votes.

Invalid parameters raise :class:`probe.errors.ProbeError` with a message naming
the parameter, its value and the accepted range.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Callable

import numpy as np
from scipy import special, stats

from probe.errors import ProbeError

__all__ = [
    "ABSTAIN",
    "predict",
    "majority_vote",
    "pa_lower_bound",
    "certify",
    "certify_sampled",
    "predict_sampled",
    "certified_radius",
    "sorm_probability",
    "pa_vote_threshold",
    "pa_vote_threshold_exact",
    "distance_bound",
    "level_vote_count",
    "smoothed_probability_linear",
]

ABSTAIN: int = -1
"""Label returned when the smoothed classifier abstains. Never a valid class index."""


# --------------------------------------------------------------------------- #
# Parameter validation (scikit-learn style: name, value, accepted range).
# --------------------------------------------------------------------------- #


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ProbeError(
            f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    ivalue = int(value)
    if ivalue < minimum:
        raise ProbeError(f"{name} must be an integer >= {minimum}, got {ivalue}")
    return ivalue


def _check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_closed: bool = True,
    high_closed: bool = True,
) -> float:
    """Return ``value`` as a finite float inside the given interval, or raise ProbeError."""
    lo_txt = "-inf" if low is None else repr(low)
    hi_txt = "inf" if high is None else repr(high)
    left = "[" if low_closed and low is not None else "("
    right = "]" if high_closed and high is not None else ")"
    interval = f"{left}{lo_txt}, {hi_txt}{right}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ProbeError(
            f"{name} must be a real number in {interval}, got {value!r} ({type(value).__name__})"
        )
    fvalue = float(value)
    if not math.isfinite(fvalue):
        raise ProbeError(f"{name} must be a finite real number in {interval}, got {fvalue!r}")
    if low is not None and (fvalue < low or (fvalue == low and not low_closed)):
        raise ProbeError(f"{name} must be in {interval}, got {fvalue!r}")
    if high is not None and (fvalue > high or (fvalue == high and not high_closed)):
        raise ProbeError(f"{name} must be in {interval}, got {fvalue!r}")
    return fvalue


def _check_sigma(sigma: object) -> float:
    return _check_real("sigma", sigma, 0.0, None, low_closed=False)


def _check_alpha(alpha: object) -> float:
    return _check_real("alpha", alpha, 0.0, 1.0, low_closed=False, high_closed=False)


def _check_pa(pa: object) -> float:
    return _check_real("pa", pa, 0.0, 1.0)


def _check_counts(name: str, counts: object) -> np.ndarray:
    """Validate a vote-count vector: 1-D, non-empty, non-negative integers, not all zero."""
    try:
        arr = np.asarray(counts)
    except Exception as exc:  # pragma: no cover - exotic array-likes
        raise ProbeError(f"{name} must be a 1-D array of vote counts: {exc}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ProbeError(
            f"{name} must be a non-empty 1-D array of vote counts (one per class), "
            f"got shape {arr.shape}"
        )
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ProbeError(f"{name} must hold integer vote counts, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
            raise ProbeError(f"{name} must hold whole-number vote counts, got {arr!r}")
    if np.any(arr < 0):
        raise ProbeError(f"{name} must hold non-negative vote counts, got {arr!r}")
    out = arr.astype(np.int64)
    if int(out.sum()) == 0:
        raise ProbeError(f"{name} holds no votes at all (every count is 0)")
    return out


def _n_tilde(n: int) -> int:
    """Smallest strict majority of ``n`` votes: ``n~ = 1 + floor(n / 2)`` (paper, after eq. 5)."""
    return 1 + n // 2


# --------------------------------------------------------------------------- #
# Cohen et al.: PREDICT, majority vote, Clopper-Pearson bound, CERTIFY.
# --------------------------------------------------------------------------- #


def majority_vote(counts: np.ndarray) -> int:
    """The paper's practical classifier ``g_{sigma,n}``: the most voted class.

    Returns ``argmax(counts)``. **Tie rule:** among classes sharing the top count,
    the lowest class index wins (NumPy's ``argmax`` returns the first maximum).
    For a binary problem with an even ``n`` this means an ``n/2 : n/2`` split goes
    to class 0, whatever the original class was. Never abstains.

    Raises ProbeError when ``counts`` is not a valid vote-count vector (including
    the all-zero vector: no votes, no majority).
    """
    arr = _check_counts("counts", counts)
    return int(np.argmax(arr))


def _top_two(counts: np.ndarray) -> tuple[int, int, int]:
    """Index of the top class and the two largest counts; ties: lower class index first."""
    order = np.argsort(-counts, kind="stable")
    c1 = int(counts[order[0]])
    c2 = int(counts[order[1]]) if counts.size > 1 else 0
    return int(order[0]), c1, c2


def predict(counts: np.ndarray, alpha: float) -> int:
    """Cohen et al.'s PREDICT from a vote-count vector (their Algorithm, "PREDICT").

    Let ``c1 >= c2`` be the two largest counts (ties: lower class index first) and
    ``cA`` the class of ``c1``. Return ``cA`` when the two-sided binomial test of
    ``c1`` successes out of ``c1 + c2`` trials at ``p = 0.5`` rejects, i.e. its
    p-value is ``<= alpha``; otherwise return :data:`ABSTAIN`. With probability at
    least ``1 - alpha`` the returned class (when not abstaining) is ``g_sigma(x)``.

    A tie between the two top counts always abstains (p-value 1). **Small n:** the
    smallest p-value reachable with ``n`` votes is ``2 * 0.5**n`` (unanimity), so
    with ``n = 10`` and ``alpha = 0.001`` PREDICT *always* abstains (10/10 gives
    ``p = 0.00195``); at ``alpha = 0.001`` at least ``n = 11`` votes are needed.
    The seed paper's defense is therefore :func:`majority_vote`, not this.

    Parameters
    ----------
    counts : 1-D array of non-negative integers, one per class (at least one vote).
    alpha : float in (0, 1), the test level.
    """
    arr = _check_counts("counts", counts)
    a = _check_alpha(alpha)
    top, c1, c2 = _top_two(arr)
    pvalue = stats.binomtest(c1, c1 + c2, 0.5).pvalue
    if pvalue > a:
        return ABSTAIN
    return top


def pa_lower_bound(n_a: int, n: int, alpha: float) -> float:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower confidence bound on ``p_A``.

    Given ``n_a`` successes out of ``n`` Bernoulli trials, returns
    ``Beta.ppf(alpha, n_a, n - n_a + 1)`` (0 when ``n_a = 0``): the smallest ``p``
    with ``P[Bin(n, p) >= n_a] >= alpha``. It is the ``pA_lower`` of Cohen et al.'s
    CERTIFY (their ``proportion_confint(..., alpha=2*alpha, method="beta")[0]``)
    and satisfies ``P[pA_lower <= p_A] >= 1 - alpha``.
    """
    n_i = _check_int("n", n, 1)
    na_i = _check_int("n_a", n_a, 0)
    if na_i > n_i:
        raise ProbeError(f"n_a must be <= n, got n_a={na_i}, n={n_i}")
    a = _check_alpha(alpha)
    if na_i == 0:
        return 0.0
    return float(stats.beta.ppf(a, na_i, n_i - na_i + 1))


def certify(
    counts0: np.ndarray, counts: np.ndarray, sigma: float, alpha: float
) -> tuple[int, float, float]:
    """Cohen et al.'s CERTIFY from the selection and the estimation vote counts.

    ``counts0`` (from ``n0`` noisy samples) only selects the candidate class
    ``cA = argmax(counts0)`` (ties: lowest index). ``counts`` (from ``n`` *fresh*
    samples) estimates it: ``pA_lower = pa_lower_bound(counts[cA], n, alpha)``.
    When ``pA_lower > 0.5`` the result is ``(cA, pA_lower, R)`` with the certified
    radius of eq. (2), ``R = sigma * Phi^-1(pA_lower)`` (Cohen et al.'s Theorem 1
    with ``pB <= 1 - pA``); with probability at least ``1 - alpha`` ``g_sigma`` is
    constant on the L2 ball of radius ``R``. Otherwise (``pA_lower <= 0.5``, a
    radius of 0 certifies nothing) it abstains: ``(ABSTAIN, pA_lower, 0.0)``.

    Returns
    -------
    (label, pA_lower, radius) : the class or :data:`ABSTAIN`, the bound, the radius.
    """
    c0 = _check_counts("counts0", counts0)
    c = _check_counts("counts", counts)
    if c0.shape != c.shape:
        raise ProbeError(
            f"counts0 and counts must have one entry per class each, got lengths "
            f"{c0.size} and {c.size}"
        )
    s = _check_sigma(sigma)
    a = _check_alpha(alpha)
    c_a = int(np.argmax(c0))
    p_lower = pa_lower_bound(int(c[c_a]), int(c.sum()), a)
    if p_lower > 0.5:
        return c_a, p_lower, float(s * special.ndtri(p_lower))
    return ABSTAIN, p_lower, 0.0


def _sample_checked(sample_counts: Callable[[int], np.ndarray], k: int, name: str) -> np.ndarray:
    counts = _check_counts(f"sample_counts({k})", sample_counts(k))
    total = int(counts.sum())
    if total != k:
        raise ProbeError(
            f"sample_counts({k}) for {name} returned {total} votes; it must return the "
            f"vote counts of exactly {k} noisy samples"
        )
    return counts


def certify_sampled(
    sample_counts: Callable[[int], np.ndarray],
    n0: int,
    n: int,
    sigma: float,
    alpha: float,
) -> tuple[int, float, float]:
    """CERTIFY with sampling: ``certify(sample_counts(n0), sample_counts(n), sigma, alpha)``.

    ``sample_counts(k)`` must draw ``k`` fresh noisy copies, classify them and return
    the vote-count vector (its sum must be ``k``, else ProbeError). Parameters are
    validated before any sampling, so no query is wasted on a bad ``sigma``.
    Cohen et al.'s defaults: ``n0 = 100``, ``n = 100_000``, ``alpha = 0.001``.
    """
    n0_i = _check_int("n0", n0, 1)
    n_i = _check_int("n", n, 1)
    s = _check_sigma(sigma)
    a = _check_alpha(alpha)
    if not callable(sample_counts):
        raise ProbeError("sample_counts must be a callable k -> vote-count vector")
    counts0 = _sample_checked(sample_counts, n0_i, "selection (n0)")
    counts = _sample_checked(sample_counts, n_i, "estimation (n)")
    return certify(counts0, counts, s, a)


def predict_sampled(
    sample_counts: Callable[[int], np.ndarray], n: int, alpha: float
) -> int:
    """PREDICT with sampling: ``predict(sample_counts(n), alpha)``; see :func:`predict`."""
    n_i = _check_int("n", n, 1)
    a = _check_alpha(alpha)
    if not callable(sample_counts):
        raise ProbeError("sample_counts must be a callable k -> vote-count vector")
    return predict(_sample_checked(sample_counts, n_i, "prediction (n)"), a)


# --------------------------------------------------------------------------- #
# Theory of the seed paper.
# --------------------------------------------------------------------------- #


def certified_radius(p: float, sigma: float) -> float:
    """Eq. (2): ``R(x, sigma) = sigma * Phi^-1(p)``, ``p = pi_{g_sigma(x)}(x)``.

    ``p`` is the probability that a noisy copy ``x + sigma N`` keeps the smoothed
    label. The value is returned as is: it is positive only for ``p > 1/2``; zero
    or negative means *not certified* (``p <= 1/2`` is not the top class of a
    binary problem). ``p = 1`` gives ``+inf``, ``p = 0`` gives ``-inf``.
    """
    pv = _check_real("p", p, 0.0, 1.0)
    s = _check_sigma(sigma)
    return float(s * special.ndtri(pv))


def sorm_probability(beta: float, curvatures: np.ndarray) -> float:
    """Eq. (3), SORM (Breitung) approximation of ``pi_0(x)``.

    ``pi_0(x) ~= Phi(-beta) * prod_i 1 / sqrt(1 + beta * kappa_i)``, for a point
    ``x`` with ``f(x) = 1`` at distance ``delta = beta * sigma`` from the boundary
    ``df`` whose principal curvatures at the closest point are ``kappa_i``
    (``i = 1 .. d-1``; an empty array means flat).

    Units and sign: the formula lives in the noise-normalized space ``z = x / sigma``,
    so ``kappa_i`` are curvatures measured in units of ``1 / sigma``: a physical
    curvature ``K`` (in input units) enters as ``kappa = sigma * K`` and then
    ``beta * kappa = delta * K``. Negative ``kappa_i`` mean the boundary bends
    toward ``x`` (class-0 region convex toward ``x``), which *raises* ``pi_0``;
    positive ones lower it. With all curvatures 0 (flat boundary) it is exact:
    ``Phi(-beta)``.

    It is an asymptotic (large ``beta``, small ``beta * |kappa|``) approximation,
    returned unclipped: for strongly negative curvatures it can exceed 1, which
    signals that the approximation is out of its range. The product is computed in
    log space so that thousands of curvatures neither overflow nor underflow.

    Raises ProbeError when any ``1 + beta * kappa_i <= 0`` (the paraboloid
    approximation has no meaning there) or on non-finite inputs.
    """
    b = _check_real("beta", beta)
    try:
        k = np.asarray(curvatures, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProbeError(f"curvatures must be a 1-D array of real numbers: {exc}") from exc
    if k.ndim > 1:
        raise ProbeError(
            f"curvatures must be a 1-D array (the d-1 principal curvatures), got shape {k.shape}"
        )
    k = k.reshape(-1)
    if not np.all(np.isfinite(k)):
        raise ProbeError("curvatures must all be finite")
    factors = 1.0 + b * k
    if np.any(factors <= 0.0):
        bad = float(factors[factors <= 0.0][0])
        raise ProbeError(
            f"SORM needs 1 + beta * kappa_i > 0 for every curvature; got {bad!r} "
            f"(beta={b!r}): the boundary curves too strongly toward x"
        )
    log_p = float(special.log_ndtr(-b)) - 0.5 * float(np.sum(np.log1p(b * k)))
    return float(math.exp(log_p))


def pa_vote_threshold(n: int, pa: float) -> float:
    """Eq. (5) as printed: ``1 - I^-1_{P_a}(n~, n~)``, ``n~ = 1 + floor(n / 2)``.

    Meaning: with ``n`` binary micro-decisions, ``sum y_i ~ Bin(n, 1 - pi_0(x_a))``
    and the majority vote is wrong when ``sum y_i >= n~`` (strictly more than
    ``n / 2``). Since ``P[Bin(n, q) >= a] = I_q(a, n - a + 1)``, eq. (4),
    ``P[g_{sigma,n}(x_a) != g_sigma(x_o)] >= P_a``, holds iff
    ``pi_0(x_a) <= 1 - I^-1_{P_a}(n~, n - n~ + 1)`` (:func:`pa_vote_threshold_exact`).

    * **Odd n** (``n = 2k + 1``): ``n - n~ + 1 = k + 1 = n~``, so the paper's
      parameters ``(n~, n~)`` are exact and this equals the exact threshold. For
      ``P_a = 1/2`` the threshold is exactly ``1/2`` (``Beta(n~, n~)`` is symmetric),
      so the paper's strict ``< 1/2`` in eq. (5) is ``<= 1/2`` at ``P_a = 1/2``;
      it is strict for ``P_a > 1/2``.
    * **Even n** (``n = 2k``): the exact parameters are ``(k + 1, k)``, not
      ``(k + 1, k + 1)``. The paper's formula equals the exact threshold for
      ``n + 1`` votes, i.e. a tie ``k : k`` broken by one extra micro-decision.
      It is *larger* (less demanding) than the exact threshold, so for even ``n``
      ``pi_0(x_a)`` below it does **not** guarantee level ``P_a`` (e.g. ``n = 10``,
      ``P_a = 0.8``: 0.3779 here vs 0.3268 exact; at 0.3779 the true level is only
      about 0.69). At ``P_a = 1/2`` it gives exactly 1/2 for every ``n``.

    Returns a value in ``[0, 1]``; ``pa`` must be in ``[0, 1]``.
    """
    n_i = _check_int("n", n, 1)
    p = _check_pa(pa)
    nt = _n_tilde(n_i)
    return float(1.0 - special.betaincinv(nt, nt, p))


def pa_vote_threshold_exact(n: int, pa: float) -> float:
    """Exact form of eq. (5): the ``t`` with ``P[Bin(n, 1 - t) >= n~] = P_a``.

    ``t = 1 - I^-1_{P_a}(n~, n - n~ + 1)``, ``n~ = 1 + floor(n / 2)``: eq. (4) holds
    for the binary majority vote of ``n`` micro-decisions (wrong when strictly more
    than ``n / 2`` are wrong; an even split is *not* counted as a success of the
    attacker) iff ``pi_0(x_a) <= t``. Identical to :func:`pa_vote_threshold` for
    odd ``n``; strictly smaller for even ``n`` and ``0 < P_a < 1`` (see there).
    """
    n_i = _check_int("n", n, 1)
    p = _check_pa(pa)
    nt = _n_tilde(n_i)
    return float(1.0 - special.betaincinv(nt, n_i - nt + 1, p))


def distance_bound(
    p_original: float, sigma: float, n: int, pa: float, *, exact: bool = False
) -> float:
    """Eq. (6): lower bound on ``||x_o - x_a||`` for an adversarial example of level ``P_a``.

    ``R(x_o, sigma) + sigma * Phi^-1(I^-1_{P_a}(n~, n~))``: the certified radius of
    eq. (2) around ``x_o`` (``p_original = pi_{g_sigma(x_o)}(x_o)``) to reach the
    frontier of ``g_sigma`` at ``x_b``, plus the radius certified around ``x_a`` for
    the adversarial class, whose probability is at least ``1 - `` eq. (5).

    ``exact=True`` uses the exact parameters ``(n~, n - n~ + 1)`` (see
    :func:`pa_vote_threshold_exact`); it differs only for even ``n``, where it is
    larger. For ``P_a >= 1/2`` the second term is ``>= 0``, so the bound is at least
    eq. (2); it equals eq. (2) at ``P_a = 1/2`` (for every ``n`` with the paper's
    formula, for odd ``n`` with the exact one).
    """
    r_o = certified_radius(p_original, sigma)
    s = _check_sigma(sigma)
    threshold = pa_vote_threshold_exact(n, pa) if exact else pa_vote_threshold(n, pa)
    return float(r_o + s * special.ndtri(1.0 - threshold))


def level_vote_count(n: int, pa: float) -> int:
    """``ceil(n * P_a)``: the paper's simulation of eq. (4) (Sect. 4.1, Protocol).

    A point counts as adversarial of level ``P_a`` when at least this many of the
    ``n`` micro-decisions are wrong. Computed exactly on the decimal value of ``pa``
    (its shortest ``repr``), so that binary floating point cannot push the product
    over an integer: ``n = 100, P_a = 0.07`` gives 7 (``100 * 0.07`` is
    ``7.000000000000001`` in floats), ``n = 100, P_a = 0.29`` gives 29, ``n = 10,
    P_a = 0.8`` gives 8.

    Note: for ``P_a = 1/2`` and even ``n`` this is ``n / 2``, a tie of the vote, not
    a strict majority; and with more than two classes a point can be misclassified
    by the plurality vote with fewer wrong votes. ``pa`` must be in ``(0, 1]``.
    """
    n_i = _check_int("n", n, 1)
    p = _check_real("pa", pa, 0.0, 1.0, low_closed=False)
    exact = Fraction(repr(p)) * n_i
    return int(math.ceil(exact))


def smoothed_probability_linear(margin: float, sigma: float) -> float:
    """``Phi(margin / sigma)``: probability that ``x + sigma N`` keeps its side of a hyperplane.

    For a linear binary classifier and a point at signed distance ``margin`` from
    its hyperplane (positive on the side whose probability is measured), the
    projection of the noise on the unit normal is ``N(0, sigma^2)``, so the noisy
    copy lands on that side with probability ``Phi(margin / sigma)``; a negative
    ``margin`` gives the probability of crossing over to it (below 1/2). This is
    ``pi`` of eq. (2) for a
    linear ``f`` (for which ``g_sigma = f``), and ``certified_radius`` of it is
    exactly ``margin``.
    """
    m = _check_real("margin", margin)
    s = _check_sigma(sigma)
    return float(special.ndtr(m / s))
