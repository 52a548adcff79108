"""The start every boundary attack shares: a first adversarial point, and optionally the
nearest of several (issue #37: one start routine for HSJA, PSJ, PopSkipJump, CGBA, SurFree).

:func:`first_adversarial`: the caller's ``x_init`` (one query), else random starts
(:func:`~probe.attacks.search.noise_init`), else sign corners and strong noise with what is
left (:func:`~probe.attacks.search.corner_start`). With ``candidates=1`` this is the
prologue the attacks had each copied, query for query (the ``paper`` presets keep it).

:func:`nearest_start`: with ``candidates=k > 1`` and no ``x_init``, ``k - 1`` more random
starts are drawn and compared along their blends ``x0 + a (x - x0)``: each candidate is
asked once at the distance of the nearest boundary found so far (not adversarial there: its
boundary is farther, dropped after that one query), and one that is adversarial there is
bisected to a coarse relative precision ``rtol``. The start returned is the adversarial side
of the nearest bracket; the attack's own boundary search refines it. A random start decides
which stretch of the boundary the walk begins on, and a walk that begins on a far stretch
often stays there (the far-boundary images of issue #37): the comparison costs about
``k (1 + tries)`` queries plus one bisection per improvement, and is held under ``share`` of
the budget.
"""

from __future__ import annotations

from typing import Generator

import numpy as np

from probe.attacks.base import Answers, Points, Tracker
from probe.attacks.search import bisect, blend, check_start, corner_start, noise_init

StartGen = Generator[Points, Answers, "np.ndarray | None"]


def _distance(x: np.ndarray, x0: np.ndarray, norm: str) -> float:
    """In float64 (``base.distance`` sums float32 points in float32): the candidates compare, and
    the starts come out, bit for bit as in the split benchmark's runs."""
    diff = (x - x0).ravel().astype(np.float64)
    return float(np.abs(diff).max() if norm == "linf" else np.linalg.norm(diff))


def first_adversarial(
    tracker: Tracker,
    x0: np.ndarray,
    rng: np.random.Generator,
    x_init: np.ndarray | None,
    *,
    kind: str = "uniform",
    scale: float = 0.5,
    max_tries: int = 100,
    growth: float = 1.5,
) -> StartGen:
    """``x_init`` if adversarial, else the first adversarial random start (``noise_init``'s
    ``kind``, ``scale``, ``max_tries``, ``growth``), else a corner or strong noise; None if the
    budget ends first."""
    x_adv = yield from check_start(tracker, x0, x_init)
    if x_adv is None:
        x_adv = yield from noise_init(tracker, x0, rng, kind=kind, scale=scale, max_tries=max_tries, growth=growth)
    if x_adv is None:  # sign corners and strong noise, with what is left
        x_adv = yield from corner_start(tracker, x0, rng, max_tries=tracker.remaining)
    return x_adv


def nearest_start(
    tracker: Tracker,
    x0: np.ndarray,
    rng: np.random.Generator,
    x_init: np.ndarray | None,
    *,
    candidates: int = 1,
    rtol: float = 0.05,
    share: float = 0.1,
    kind: str = "uniform",
    scale: float = 0.5,
    max_tries: int = 100,
    growth: float = 1.5,
    norm: str = "l2",
) -> StartGen:
    """The nearest of ``candidates`` adversarial starts along their blends (module notes).

    ``candidates=1`` or a caller's ``x_init``: :func:`first_adversarial` alone. Otherwise the
    extra candidates stop when ``share`` of the budget (as it stood on entry) is spent; each
    extra draw gets at most ``max(1, max_tries // candidates)`` tries; ``norm`` ("l2", "linf")
    measures the distances (either scales linearly along a blend). Returns an adversarial
    point (answered so), or None.
    """
    cap = tracker.spent + max(0, int(share * tracker.remaining))
    x_adv = yield from first_adversarial(
        tracker, x0, rng, x_init, kind=kind, scale=scale, max_tries=max_tries, growth=growth
    )
    if x_adv is None or x_init is not None or candidates <= 1:
        return x_adv
    start = blend(x0, x_adv)
    _, x_hi = yield from bisect(tracker, start, 0.0, 1.0, tol=0.0, x_hi=x_adv, rtol=rtol, max_steps=16)
    best = _distance(x_hi, x0, norm)
    tries = max(1, max_tries // candidates)
    for _ in range(candidates - 1):
        if tracker.spent >= cap or tracker.remaining <= 1:
            break
        x = yield from noise_init(
            tracker, x0, rng, kind=kind, scale=scale, max_tries=min(tries, cap - tracker.spent), growth=growth
        )
        if x is None:
            continue
        length = _distance(x, x0, norm)
        if tracker.spent >= cap or length == 0.0:
            continue
        line = blend(x0, x)
        a = min(1.0, best / length)  # the candidate's point at the best distance so far
        x_a = x if a == 1.0 else line(a)
        if a < 1.0 and not (yield from tracker.is_adversarial(x_a)):
            continue  # its boundary is farther than the best one's
        _, x_new = yield from bisect(
            tracker, line, 0.0, a, tol=0.0, x_hi=x_a, rtol=rtol, max_steps=max(0, min(16, cap - tracker.spent))
        )
        dist = _distance(x_new, x0, norm)
        if dist < best:
            best, x_hi = dist, x_new
    return x_hi
