"""Rules of the reference codes that the ``paper`` preset follows (NumPy only).

Written from the published algorithms and from reading the authors' code (nothing copied):

* SurFree (t-maho/SurFree at c9920f2, ``surfree.py``): the boosted line search toward x0
  (:func:`boosted_search`) and the angle bisection with its cosine stopping rule and its
  opposite-angle check (:func:`angle_bisection`).
* PopSkipJump (cjsg/PopSkipJump, ``infomax.py``): the expected cosine between the true
  gradient and a sign estimate from n probes of a sigmoid-shaped noisy classifier, and its
  inverse, the probe count for a target cosine (:func:`expected_cos`, :func:`probes_for_cos`).

Every helper that queries is a generator over a :class:`~probe.attacks.base.Tracker`, bounded
by its own step count and by the budget.
"""

from __future__ import annotations

import math
from typing import Callable, Generator

import numpy as np
from scipy import special

from probe.attacks.base import Answers, Points, Tracker
from probe.attacks.search import bisect, blend


def boosted_search(
    tracker: Tracker, x0: np.ndarray, x_adv: np.ndarray, bs_gamma: float, max_iter: int
) -> Generator[Points, Answers, np.ndarray]:
    """SurFree's line search toward x0: one query at 0.2 x0 + 0.8 x_adv (the "boost"), then at
    most ``max_iter`` bisection steps, down to a blend width bs_gamma / d^1.5 (never reached in
    practice: the step count stops it). Returns the adversarial end."""
    tol = bs_gamma / x0.size**1.5
    _, x_b = yield from bisect(
        tracker, blend(x0, x_adv), 0.0, 1.0, tol=tol, guess=0.8, x_hi=x_adv, max_steps=1 + max_iter
    )
    return x_b


def angle_bisection(
    tracker: Tracker,
    z: Callable[[float], np.ndarray],
    th: float,
    step: float,
    x_th: np.ndarray,
    bs_gamma: float,
    max_iter: int,
    opposite: bool,
    search_up: bool = False,
) -> Generator[Points, Answers, "tuple[float, np.ndarray]"]:
    """SurFree's angle bisection on the circle ``z`` (angles in radians), from the adversarial
    angle ``th`` (answered True at ``x_th``).

    The bracket is [th, th + sign(th) step], step = theta_max / T with theta_max already updated
    by the success; with ``search_up`` (the reference's case |th| = theta_max, i.e. rho = 1) its
    upper end is searched upward by ``step``, up to 180 degrees. It is halved at most ``max_iter`` times while
    |cos(upper) - cos(lower)| > bs_gamma. With ``opposite``, each step also asks -mid (one batch
    of two) while the opposite side keeps answering True, starting only from a positive angle;
    when mid is not adversarial and -mid is, the bracket moves to the opposite side. Returns
    (lower, z(lower)): the last angle answered True.
    """
    sgn = 1.0 if th > 0 else -1.0
    lower, x_lo = th, x_th
    if not search_up:
        upper = lower + sgn * step
    else:
        upper = None
        while upper is None:
            new = sgn * min(abs(lower) + step, math.pi)
            x = z(new)
            if (yield from tracker.is_adversarial(x)) and abs(new) < math.pi:
                lower, x_lo = new, x
            else:
                upper = new
    check = opposite and lower > 0
    for _ in range(max_iter):
        if abs(math.cos(upper) - math.cos(lower)) <= bs_gamma:
            break
        mid = 0.5 * (upper + lower)
        pts = [z(mid), z(-mid)] if check else [z(mid)]
        answers = yield from tracker.query(np.stack(pts))
        if answers[0]:
            lower, x_lo = mid, pts[0]
        elif check and answers[1]:
            lower, upper, x_lo = -mid, -upper, pts[1]
        else:
            upper = mid
        check = check and bool(answers[-1]) and lower > 0
    return lower, x_lo


def _alpha(s: float, theta: float, delta: float, d: int, eps: float) -> float:
    """PopSkipJump's E[Y(X - theta) X] for probes of standard deviation delta / sqrt(d) per
    coordinate against a sigmoid of inverse scale s (s = inf: a step) with flip rate eps."""
    s_ = s * delta / math.sqrt(d)
    th = theta * math.sqrt(d) / delta
    if math.isinf(s_):
        a = math.sqrt(2.0 / math.pi) * math.exp(-th * th / 2.0)
    else:
        a = s_ * float(special.erf((th + 1.0 / (2.0 * s_)) / math.sqrt(2.0)) - special.erf((th - 1.0 / (2.0 * s_)) / math.sqrt(2.0)))
    return (1.0 - 2.0 * eps) * a


def expected_cos(n: float, d: int, *, s: float = math.inf, theta: float = 0.0, delta: float = 1.0, eps: float = 0.0) -> float:
    """The expected cosine between the true gradient and the sign estimate from n probes:
    1 / sqrt(1 + (d - 1) / (n alpha^2)) (cjsg/PopSkipJump, ``get_cos_from_n``)."""
    a = _alpha(s, theta, delta, d, eps)
    if a * a == 0.0 or n <= 0:
        return 0.0
    return 1.0 / math.sqrt(1.0 + (d - 1) / (n * a * a))


def probes_for_cos(cos: float, d: int, *, s: float = math.inf, theta: float = 0.0, delta: float = 1.0, eps: float = 0.0) -> float:
    """The inverse of :func:`expected_cos`: the probe count n that reaches the expected cosine
    ``cos``, (d - 1) cos^2 / (alpha^2 (1 - cos^2)) (``get_n_from_cos``; inf when alpha = 0)."""
    a = _alpha(s, theta, delta, d, eps)
    if a * a == 0.0:
        return math.inf
    return (d - 1) * cos * cos / (a * a * (1.0 - cos * cos))
