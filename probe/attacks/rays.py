"""RayS (Chen, Gu, KDD 2020): hard-label Linf attack by ray search, framework-free.

RayS searches over sign directions s in {+1, -1}^d: the ray x(s, r) = clip(x0 + r s)
(r is the radius of the Linf ball, ||s||_inf = 1) and its boundary radius r(s). The
attack keeps the best direction s* and its radius r*:

1. start: s = all +1 (then all -1, then random signs if needed): a line search
   r = 0.1, 0.2, ..., 1.0 finds an adversarial radius, a bisection the boundary;
   with ``x_init``, the signs of ``x_init - x0`` are tried first;
2. hierarchical search: at level k the flattened vector is cut into 2^k blocks; each
   block in turn is flipped, and the new direction is asked at the current best radius
   r* (ONE query). If it is not adversarial there, it cannot beat r*: skip. If it is,
   bisect its radius (it is now < r*) and keep it. After the last block, level k + 1;
   once the blocks are single coordinates, start again at level 0.

The bisections start from r* downward (galloping by the last improvement, then
halving), since a flipped block moves the boundary only a little: this saves most of
a bisection from 0. Native norm: Linf (the Tracker keeps the best point by Linf; its
L2 distortion is the caller's to compute).
"""

from __future__ import annotations

import math
from typing import Callable, Generator

import numpy as np

from probe.attacks.base import Answers, Attack, Points, Tracker
from probe.attacks.noisy_search import BISECTIONS, bisections
from probe.attacks.search import corner_start, check_start
from probe.validate import check_choice, check_int, check_real


class RayS(Attack):
    """RayS, from "RayS: A Ray Searching Method for Hard-label Adversarial Attack"
    (Jinghui Chen, Quanquan Gu; KDD 2020).

    Untargeted (or targeted through ``x_init``); the search is described in the module
    notes. The best point is kept by Linf; its L2 distortion is the caller's to compute.

    Distance measure: Linf

    Arguments:
        norm (str): "linf" only (RayS is an Linf attack). (Default: 'linf')
        rtol (float): in (0, 1), relative precision of the radius bisections.
            (Default: 0.001)
        line_steps (int): >= 1; the initial line search tries r = r_max k / line_steps,
            k = 1..line_steps. (Default: 10)
        max_init_tries (int): >= 0, random sign vectors tried when neither all +1 nor
            all -1 gives an adversarial ray. (Default: 20)
        bisection (str): "plain" (the deterministic bisection) or "bayes" (the noise-aware
            info-max search of :mod:`probe.attacks.noisy_search`). (Default: 'plain')
        search (str): "gallop" (down from the current best radius, to a relative rtol) or
            "bisect" (the official code: from 0, down to an absolute tol on the radius along
            the unit sign vector s / ||s||_2, i.e. tol / sqrt(d) in Linf). (Default: 'gallop')
        tol (float): > 0, the absolute tolerance of ``search="bisect"``. (Default: 0.001)
        start (str): "probe" (all +1, then all -1, then random signs, each with a line search
            up to the largest useful radius) or "official" (no start of its own: the block
            search begins at once, its first attempt the level-0 flip, all -1, and any attempt
            made before a first success is line searched at Linf radii 1, 2, ..., line_steps,
            as the official code; the levels then grow without a reset). (Default: 'probe')

    Shape:
        - x0: (C, H, W), float32 in [0, 1] (any shape works).
        - candidates: (k, C, H, W), float32 in [0, 1] (each answered by one boolean).
        - returns: :class:`~probe.attacks.base.AttackOutcome` (best verified adversarial).

    Examples::

        >>> import numpy as np
        >>> from probe.attacks import RayS, run_attack
        >>> w = np.random.default_rng(0).standard_normal((1, 8, 8))
        >>> x0 = np.full((1, 8, 8), 0.5, dtype=np.float32)
        >>> b = -float(w.ravel() @ x0.ravel()) - 0.02 * np.abs(w).sum()
        >>> oracle = lambda pts: (pts.reshape(len(pts), -1) @ w.ravel() + b) > 0
        >>> outcome = run_attack(RayS(), x0, oracle, budget=1000, rng=np.random.default_rng(0))
        >>> outcome.found, outcome.queries, outcome.norm
        (True, 1000, 'linf')
        >>> optimum = abs(w.ravel() @ x0.ravel() + b) / np.abs(w).sum()  # Linf optimum: 0.02
        >>> bool(optimum <= outcome.distance <= 1.05 * optimum)
        True
        >>> RayS(rtol=0.01)
        RayS(norm='linf', rtol=0.01, line_steps=10, max_init_tries=20, bisection='plain', search='gallop', tol=0.001, start='probe')
    """

    name = "rays"
    norms = ("linf",)

    def __init__(
        self,
        *,
        norm: str = "linf",
        rtol: float = 1e-3,
        line_steps: int = 10,
        max_init_tries: int = 20,
        bisection: str = "plain",
        search: str = "gallop",
        tol: float = 1e-3,
        start: str = "probe",
    ) -> None:
        self.norm = self._check_norm(norm)
        self.rtol = check_real("rtol", rtol, 0.0, 1.0, low_closed=False, high_closed=False)
        self.line_steps = check_int("line_steps", line_steps, 1)
        self.max_init_tries = check_int("max_init_tries", max_init_tries, 0)
        self.bisection = check_choice("bisection", bisection, BISECTIONS)
        self.search = check_choice("search", search, ("gallop", "bisect"))
        self.tol = check_real("tol", tol, 0.0, None, low_closed=False)
        self.start = check_choice("start", start, ("probe", "official"))

    def _search(
        self, x0: np.ndarray, tracker: Tracker, rng: np.random.Generator, x_init: np.ndarray | None
    ) -> Generator[Points, Answers, None]:
        shape = x0.shape
        d = int(x0.size)
        bisect, gallop_down = bisections(self.bisection)
        flat0 = x0.ravel()
        # the largest useful radius: beyond it every coordinate is clipped
        r_max = float(max(flat0.max(), 1.0 - flat0.min(), 1e-6))

        def ray(s: np.ndarray) -> Callable[[float], np.ndarray]:
            def point_at(r: float) -> np.ndarray:
                return np.clip(flat0 + np.float32(r) * s, 0.0, 1.0).reshape(shape)

            return point_at

        def radius(s: np.ndarray, hi: float, step: float, x_hi: np.ndarray | None = None):
            """Boundary radius of direction s below the adversarial radius hi."""
            if self.search == "bisect":  # from 0, to tol along the unit vector s / sqrt(d)
                tol = self.tol / math.sqrt(d)
                return (yield from bisect(tracker, ray(s), 0.0, hi, tol=tol, x_hi=x_hi, max_steps=200))
            return (
                yield from gallop_down(
                    tracker, ray(s), hi, step=step, tol=0.0, x_hi=x_hi, rtol=self.rtol, max_steps=64
                )
            )

        def from_point(start: np.ndarray):
            """The sign direction of an adversarial start, and its radius."""
            s = np.where(start.ravel() >= flat0, 1.0, -1.0).astype(np.float32)
            r0 = float(np.max(np.abs(start.ravel() - flat0)))
            if r0 > 0.0 and (yield from tracker.is_adversarial(ray(s)(r0))):
                r, _ = yield from radius(s, r0, 0.5 * r0)
                return s, r
            return None, math.inf

        s_best = None
        r_best = math.inf
        start = yield from check_start(tracker, x0, x_init)
        if start is not None:
            s_best, r_best = yield from from_point(start)
        if s_best is None and self.start == "official":
            yield from self._official(tracker, d, ray, radius)
            return
        if s_best is None:
            candidates = [np.ones(d, np.float32), -np.ones(d, np.float32)]
            for i in range(2 + self.max_init_tries):
                s = candidates[i] if i < 2 else rng.choice(np.array([-1.0, 1.0], np.float32), size=d)
                hit = None
                for k in range(1, self.line_steps + 1):
                    r = r_max * k / self.line_steps
                    if (yield from tracker.is_adversarial(ray(s)(r))):
                        hit = r
                        break
                if hit is not None:
                    r_best, _ = yield from radius(s, hit, r_max / self.line_steps / 2.0)
                    s_best = s
                    break
        if s_best is None and tracker.remaining > 0:  # sign corners and strong noise, with what is left
            start = yield from corner_start(tracker, x0, rng, max_tries=tracker.remaining)
            if start is not None:
                s_best, r_best = yield from from_point(start)
        if s_best is None:
            return

        rel = 0.1  # last relative improvement: the first step of the next downward search
        level, block = 0, 0
        while tracker.remaining > 0:
            n_blocks = 1 << level
            size = -(-d // n_blocks)
            lo, hi = block * size, min((block + 1) * size, d)
            attempt = s_best.copy()
            attempt[lo:hi] *= -1.0
            x_try = ray(attempt)(r_best)
            if (yield from tracker.is_adversarial(x_try)):
                r_new, _ = yield from radius(attempt, r_best, max(rel, self.rtol) * r_best, x_hi=x_try)
                rel = min(max((r_best - r_new) / r_best, self.rtol), 0.5)
                s_best, r_best = attempt, r_new
            block += 1
            if block >= n_blocks or hi >= d:
                block = 0
                level = 0 if size <= 1 else level + 1

    def _official(self, tracker: Tracker, d: int, ray, radius) -> Generator[Points, Answers, None]:
        """The official code's loop from s = all +1 and no radius: attempt k flips block k of
        the current level (the first, all -1); before a first success each attempt is line
        searched at Linf radii 1..line_steps (all clipped to one corner), after it asked at the
        best radius; the levels grow without a reset (blocks of one coordinate, cycled)."""
        s_best, r_best = np.ones(d, np.float32), math.inf
        level, block = 0, 0
        while tracker.remaining > 0:
            size = max(-(-d // (1 << level)), 1)
            lo, hi = block * size, min((block + 1) * size, d)
            attempt = s_best.copy()
            attempt[lo:hi] *= -1.0
            if math.isinf(r_best):
                for k in range(1, self.line_steps + 1):
                    if (yield from tracker.is_adversarial(ray(attempt)(float(k)))):
                        r_best, _ = yield from radius(attempt, float(k), 0.5)
                        s_best = attempt
                        break
            elif (yield from tracker.is_adversarial(ray(attempt)(r_best))):
                r_new, _ = yield from radius(attempt, r_best, 0.1 * r_best)
                if r_new < r_best:
                    s_best, r_best = attempt, r_new
            block += 1
            if block == (1 << level) or hi == d:
                level, block = level + 1, 0
