"""The seed paper's closed forms (Maho, Furon & Le Merrer, ICASSP 2022), by equation.

eq. (2) :func:`certified_radius`, eq. (3) :func:`sorm_probability`, eq. (5)
:func:`pa_vote_threshold` / :func:`pa_vote_threshold_exact`, eq. (6)
:func:`distance_bound`, the paper's simulation of eq. (4) :func:`level_vote_count`,
and :func:`smoothed_probability_linear`.

Notation: ``Phi`` is the standard normal CDF, ``Phi^-1`` its inverse, ``I_x(a, b)``
the regularized incomplete beta function and ``I^-1_p(a, b)`` its inverse in ``x``;
``n~ = 1 + floor(n / 2)`` is the smallest strict majority of ``n`` votes.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import special

from probe.errors import ProbeError
from probe.validate import check_int, check_real, check_sigma


def _n_tilde(n: int) -> int:
    """Smallest strict majority of ``n`` votes: ``n~ = 1 + floor(n / 2)`` (paper, after eq. 5)."""
    return 1 + n // 2


def certified_radius(p: float, sigma: float) -> float:
    """Eq. (2): ``R(x, sigma) = sigma * Phi^-1(p)``, ``p = pi_{g_sigma(x)}(x)``.

    ``p`` is the probability that a noisy copy ``x + sigma N`` keeps the smoothed
    label. The value is returned as is: it is positive only for ``p > 1/2``; zero
    or negative means *not certified* (``p <= 1/2`` is not the top class of a
    binary problem). ``p = 1`` gives ``+inf``, ``p = 0`` gives ``-inf``.
    """
    pv = check_real("p", p, 0.0, 1.0)
    s = check_sigma(sigma, positive=True)
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
    b = check_real("beta", beta)
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
    n_i = check_int("n", n, 1)
    p = check_real("pa", pa, 0.0, 1.0)
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
    n_i = check_int("n", n, 1)
    p = check_real("pa", pa, 0.0, 1.0)
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
    s = check_sigma(sigma, positive=True)
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
    n_i = check_int("n", n, 1)
    p = check_real("pa", pa, 0.0, 1.0, low_closed=False)
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
    m = check_real("margin", margin)
    s = check_sigma(sigma, positive=True)
    return float(special.ndtr(m / s))
