"""Cohen, Rosenfeld & Kolter (ICML 2019): PREDICT and CERTIFY on vote counts.

``counts[c]`` is the number of noisy copies ``x + sigma N(0, I)`` that the base
classifier f labelled ``c``. The smoothed classifier is
``g_sigma(x) = argmax_c P[f(x + sigma N) = c]``.

* :func:`majority_vote` is the seed paper's practical classifier ``g_{sigma,n}``.
* :func:`predict` returns ``g_sigma(x)`` or abstains; **guarantee:** it returns a
  wrong class with probability at most ``alpha``.
* :func:`certify` returns ``(cA, pA_lower, R)``; **guarantee:** with probability at
  least ``1 - alpha`` over the sampling, ``g_sigma`` is constant and equal to ``cA``
  on the L2 ball of radius ``R = sigma Phi^-1(pA_lower)`` around ``x``.

Sampling is not done here: :mod:`probe.smoothing.classifier` draws the counts.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import special, stats

from probe.errors import ProbeError
from probe.validate import check_alpha, check_int, check_sigma

ABSTAIN: int = -1
"""Label returned when the smoothed classifier abstains. Never a valid class index."""


def check_counts(name: str, counts: object) -> np.ndarray:
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


def majority_vote(counts: np.ndarray) -> int:
    """The paper's practical classifier ``g_{sigma,n}``: the most voted class.

    Returns ``argmax(counts)``. **Tie rule:** among classes sharing the top count,
    the lowest class index wins (NumPy's ``argmax`` returns the first maximum).
    For a binary problem with an even ``n`` this means an ``n/2 : n/2`` split goes
    to class 0, whatever the original class was. Never abstains.

    Raises ProbeError when ``counts`` is not a valid vote-count vector (including
    the all-zero vector: no votes, no majority).
    """
    arr = check_counts("counts", counts)
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
    arr = check_counts("counts", counts)
    a = check_alpha(alpha)
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
    n_i = check_int("n", n, 1)
    na_i = check_int("n_a", n_a, 0)
    if na_i > n_i:
        raise ProbeError(f"n_a must be <= n, got n_a={na_i}, n={n_i}")
    a = check_alpha(alpha)
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
    c0 = check_counts("counts0", counts0)
    c = check_counts("counts", counts)
    if c0.shape != c.shape:
        raise ProbeError(
            f"counts0 and counts must have one entry per class each, got lengths "
            f"{c0.size} and {c.size}"
        )
    s = check_sigma(sigma, positive=True)
    a = check_alpha(alpha)
    c_a = int(np.argmax(c0))
    p_lower = pa_lower_bound(int(c[c_a]), int(c.sum()), a)
    if p_lower > 0.5:
        return c_a, p_lower, float(s * special.ndtri(p_lower))
    return ABSTAIN, p_lower, 0.0


def _sample_checked(sample_counts: Callable[[int], np.ndarray], k: int, name: str) -> np.ndarray:
    counts = check_counts(f"sample_counts({k})", sample_counts(k))
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
    n0_i = check_int("n0", n0, 1)
    n_i = check_int("n", n, 1)
    s = check_sigma(sigma, positive=True)
    a = check_alpha(alpha)
    if not callable(sample_counts):
        raise ProbeError("sample_counts must be a callable k -> vote-count vector")
    counts0 = _sample_checked(sample_counts, n0_i, "selection (n0)")
    counts = _sample_checked(sample_counts, n_i, "estimation (n)")
    return certify(counts0, counts, s, a)


def predict_sampled(
    sample_counts: Callable[[int], np.ndarray], n: int, alpha: float
) -> int:
    """PREDICT with sampling: ``predict(sample_counts(n), alpha)``; see :func:`predict`."""
    n_i = check_int("n", n, 1)
    a = check_alpha(alpha)
    if not callable(sample_counts):
        raise ProbeError("sample_counts must be a callable k -> vote-count vector")
    return predict(_sample_checked(sample_counts, n_i, "prediction (n)"), a)
