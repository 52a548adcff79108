"""PSJ: probe's noise-aware HSJA, framework-free (NOT the published PopSkipJump).

HSJA's walk along the boundary (:mod:`probe.attacks.hsja`) assumes that every answer is
true. Against a randomized defense the boundary is a band: near it the answers are
coin flips. PSJ keeps HSJA's iteration and changes what the noise breaks, borrowing the
idea of a Bayesian boundary search from PopSkipJump (Simon-Gabriel, Sheikh, Krause, ICML
2021); everything else is probe's own. The published attack (its step dist / sqrt(t)
without halving, its x1.5 move away from x0, its info-max search with its stopping rule and
its cosine-matched probe counts) is :class:`~probe.attacks.popskipjump.PopSkipJump`.

1. every boundary search is the Bayesian info-max bisection of
   :mod:`probe.attacks.noisy_search` under a logistic noisy-answer likelihood whose band
   width it fits from its own answers: its queries, repeats included, stay near the
   estimated boundary;
2. the probe size of the gradient-direction estimate is set from the measured band width
   ``s`` (distance units), so that the probes reach out of the band where the answers
   carry the gradient's sign. A unit probe drawn in a k-dimensional space meets the
   boundary's normal at about 1/sqrt(k): to move the answer's odds by a band width it
   must be sqrt(k) band widths long (RND, Qin et al. 2021: the noise against the probe
   size). Once the searches' answers have contradicted each other (the oracle is
   random), the probes are drawn in a small, fixed low-frequency subspace
   (``noise_subspace``, k dimensions) and
   ``delta = max(noise_delta * s, min(noise_delta * s * sqrt(k), noise_radius * dist))``
   (the published PopSkipJump's probes are dist sqrt(d) / grid_size long, about 0.2 dist
   on CIFAR-10: longer ones average the boundary over a region as wide as the distance);
3. the number of probes grows with the measured noise: HSJA's ``init_num_evals sqrt(t)``
   times ``min(max_noise_factor, 1 + s / (0.01 dist))``: the wider the band, the more
   often a probe's answer is wrong.

Against an oracle not yet seen to be random the probes are HSJA's (``subspace``, grown
each iteration) and the probe size is at least ``noise_delta`` band widths:
its fitted band is the search's resolution, how far x_b may lie from the boundary, and
probes shorter than that all land on one side. A band narrower than 0.01 dist counts as
no noise for the probe count (HSJA's then). The boundary point is the posterior median
(the band's middle), so that the probes around it see both sides. A batch whose answers
all agree did not reach across the boundary (x_b lies further from it than the probes
reach, e.g. along a normal that the probes' subspace barely holds): the next probe size
doubles (while the probes are shorter than the distance) and halves back toward 1x after
each mixed batch.

The geometric step is HSJA's ``step="sum"`` with accumulated estimates (``memory``),
halved until adversarial. L2 only (the paper's setting).

Every query goes through the Tracker: the budget is exact and the result is the best
verified adversarial.
"""

from __future__ import annotations

import math
from typing import Generator

import numpy as np

from probe.attacks.base import Answers, Attack, Points, Tracker, distance
from probe.attacks.directions import probe_dim, unit_probes
from probe.attacks.noisy_search import bayes_search, crossing_probe_size, noise_probe_size
from probe.attacks.search import blend, halving_step, sum_step
from probe.attacks.start import first_adversarial
from probe.validate import check_int, check_real

RESOLUTION = 0.01  # a fitted band narrower than this share of the distance counts as no noise


class PSJ(Attack):
    """PSJ, probe's noise-aware variant of the attack from "HopSkipJumpAttack: A
    Query-Efficient Decision-Based Attack" (Jianbo Chen, Michael I. Jordan, Martin J.
    Wainwright; IEEE S&P 2020).

    HSJA's "sum" step with memory and halving, with noise-aware boundary searches (the idea of
    PopSkipJump, Simon-Gabriel et al., ICML 2021), probe sizes and probe counts of probe's own;
    untargeted (or targeted through ``x_init``); see the module notes. The published
    PopSkipJump is :class:`~probe.attacks.popskipjump.PopSkipJump`.

    Distance measure: L2

    Arguments:
        norm (str): "l2" only. (Default: 'l2')
        gamma (float): > 0; theta = gamma / d^1.5 sets HSJA's probe size and the
            searches' relative precision. (Default: 1.0)
        init_num_evals (int): >= 1; probes at iteration t: init_num_evals * sqrt(t),
            times the noise factor. (Default: 50)
        max_num_evals (int): >= 1, cap on the probes per iteration. (Default: 10000)
        noise_delta (float): >= 0; the probe size is at least noise_delta times the
            measured band width. (Default: 2.0)
        max_noise_factor (float): >= 1, cap on the growth of the probe count with the
            noise (2: on EfficientNet-Lite0 under smoothing, more iterations pay more than
            more probes per iteration). (Default: 2.0)
        memory (float): in [0, 1], weight of the previous gradient estimate in the
            accumulated one. (Default: 1.0)
        max_halvings (int): >= 0, step-size halvings tried per iteration. (Default: 20)
        search_steps (int): >= 1, queries per boundary search. (Default: 40)
        max_init_tries (int): >= 1, random images tried to find a first adversarial.
            (Default: 100)
        subspace (float): in (0, 1]; probes on the lowest ``subspace`` of each side's DCT
            frequencies (at least 16 a side; 1: the whole space). (Default: 0.25)
        subspace_growth (float): >= 0; the subspace's side grows by this factor each
            iteration, up to the whole space. (Default: 0.5)
        noise_subspace (float): in (0, 1]; under measured noise, the probes' subspace
            (the lowest ``noise_subspace`` of each side's DCT frequencies, at least 16 a
            side; not grown), whose dimension k sets the probe size. (Default: 0.1)
        noise_radius (float): >= 0; under noise, the probe size reaches no further than
            ``noise_radius * dist`` beyond ``noise_delta`` band widths. (Default: 0.2)

    Shape:
        - x0: (C, H, W), float32 in [0, 1] (any shape works).
        - candidates: (k, C, H, W), float32 in [0, 1] (each answered by one boolean).
        - returns: :class:`~probe.attacks.base.AttackOutcome` (best verified adversarial).

    Examples::

        >>> import numpy as np
        >>> from probe.attacks import PSJ, run_attack
        >>> w = np.random.default_rng(0).standard_normal((1, 8, 8))
        >>> x0 = np.full((1, 8, 8), 0.5, dtype=np.float32)
        >>> b = -float(w.ravel() @ x0.ravel()) - 0.1 * np.linalg.norm(w)
        >>> oracle = lambda pts: (pts.reshape(len(pts), -1) @ w.ravel() + b) > 0
        >>> outcome = run_attack(PSJ(), x0, oracle, budget=500, rng=np.random.default_rng(0))
        >>> outcome.found, outcome.queries, outcome.norm
        (True, 500, 'l2')
        >>> optimum = abs(w.ravel() @ x0.ravel() + b) / np.linalg.norm(w)  # 0.1
        >>> bool(optimum <= outcome.distance <= 1.3 * optimum)
        True
        >>> PSJ(noise_delta=4.0)  # doctest: +ELLIPSIS
        PSJ(norm='l2', gamma=1.0, init_num_evals=50, max_num_evals=10000, noise_delta=4.0, ...)
    """

    name = "psj"
    norms = ("l2",)

    def __init__(
        self,
        *,
        norm: str = "l2",
        gamma: float = 1.0,
        init_num_evals: int = 50,
        max_num_evals: int = 10000,
        noise_delta: float = 2.0,
        max_noise_factor: float = 2.0,
        memory: float = 1.0,
        max_halvings: int = 20,
        search_steps: int = 40,
        max_init_tries: int = 100,
        subspace: float = 0.25,
        subspace_growth: float = 0.5,
        noise_subspace: float = 0.1,
        noise_radius: float = 0.2,
    ) -> None:
        self.norm = self._check_norm(norm)
        self.gamma = check_real("gamma", gamma, 0.0, None, low_closed=False)
        self.init_num_evals = check_int("init_num_evals", init_num_evals, 1)
        self.max_num_evals = check_int("max_num_evals", max_num_evals, 1)
        self.noise_delta = check_real("noise_delta", noise_delta, 0.0, None)
        self.max_noise_factor = check_real("max_noise_factor", max_noise_factor, 1.0, None)
        self.memory = check_real("memory", memory, 0.0, 1.0)
        self.max_halvings = check_int("max_halvings", max_halvings, 0)
        self.search_steps = check_int("search_steps", search_steps, 1)
        self.max_init_tries = check_int("max_init_tries", max_init_tries, 1)
        self.subspace = check_real("subspace", subspace, 0.0, 1.0, low_closed=False)
        self.subspace_growth = check_real("subspace_growth", subspace_growth, 0.0, None)
        self.noise_subspace = check_real("noise_subspace", noise_subspace, 0.0, 1.0, low_closed=False)
        self.noise_radius = check_real("noise_radius", noise_radius, 0.0, None)

    def _to_boundary(self, tracker: Tracker, x0: np.ndarray, x_adv: np.ndarray, rtol: float, expect: float | None):
        """Bayesian search on the segment x0 -> x_adv: (boundary point, its distance, band width,
        whether its answers contradicted each other)."""
        full = distance(x_adv, x0, "l2")
        lo = 0.0 if expect is None or full == 0.0 else 0.5 * min(expect / full, 1.0)
        point_at = blend(x0, x_adv)
        out = yield from bayes_search(tracker, point_at, lo, 1.0, tol=0.0, rtol=rtol, max_steps=self.search_steps)
        contradicted = out.contradicted
        if lo > 0.0 and out.median <= lo + 0.01 * (1.0 - lo):  # the boundary lies below lo: search there
            out = yield from bayes_search(
                tracker, point_at, 0.0, out.t, tol=0.0, rtol=rtol, max_steps=self.search_steps
            )
            contradicted = contradicted or out.contradicted
        x_b = point_at(out.median)  # the band's middle: the probes around it see both sides
        return x_b, distance(x_b, x0, "l2"), out.scale * full, contradicted

    def _search(
        self, x0: np.ndarray, tracker: Tracker, rng: np.random.Generator, x_init: np.ndarray | None
    ) -> Generator[Points, Answers, None]:
        shape = x0.shape
        d = int(x0.size)
        theta = self.gamma / d**1.5
        rtol = min(theta, 1e-3)  # the searches' relative precision (HSJA's: the probes must reach across)
        x_adv = yield from first_adversarial(tracker, x0, rng, x_init, kind="uniform", max_tries=self.max_init_tries)
        if x_adv is None:
            return
        x_b, dist, band, contradicted = yield from self._to_boundary(tracker, x0, x_adv, rtol, None)
        ratio = self.subspace
        draw = unit_probes(shape, rng, True, ratio)
        acc = np.zeros(d, dtype=np.float64)
        reach = 1.0  # doubled after each batch whose answers all agree: its probes did not reach across
        t = 1
        while tracker.remaining > 0 and dist > 0.0:
            base = 0.1 if t == 1 else math.sqrt(d) * theta * dist
            # a band no wider than the searches' resolution is no measured noise
            noise = band if band > RESOLUTION * dist else 0.0
            if contradicted:  # a small fixed subspace; probes long enough to cross the band, within noise_radius dist
                want = self.noise_subspace
                cap = self.noise_radius * dist
                delta = crossing_probe_size(band, base, self.noise_delta, probe_dim(shape, want), cap)
            else:
                # HSJA's growing subspace; the probes still reach across the fitted band, which is
                # how well the search placed x_b (a deterministic oracle's band is the search's
                # resolution): probes shorter than that all land on one side and say nothing
                want = self.subspace
                if self.subspace_growth and self.subspace < 1.0:
                    want = min(1.0, self.subspace * (1.0 + self.subspace_growth) ** (t - 1))
                delta = noise_probe_size(band, base, self.noise_delta)
            delta = max(delta * reach, 1e-12)
            if want != ratio:
                ratio = want
                draw = unit_probes(shape, rng, True, ratio)
            factor = min(self.max_noise_factor, 1.0 + noise / (RESOLUTION * dist))
            n_t = int(min(self.init_num_evals * math.sqrt(t) * factor, self.max_num_evals))
            n_t = max(1, min(n_t, tracker.remaining))
            pts = draw(n_t)
            pts *= np.float32(delta)
            pts += x_b[None]
            np.clip(pts, 0.0, 1.0, out=pts)
            answers = yield from tracker.query(pts)
            pts -= x_b[None]  # the directions actually probed (after clipping)
            u = pts.reshape(n_t, d)
            phi = np.where(answers, 1.0, -1.0)
            if abs(float(phi.mean())) < 1.0:
                phi = phi - phi.mean()
                reach = max(1.0, reach / 2.0)
            elif delta < dist:  # one side only: x_b lies further from the boundary than the probes reach
                reach *= 2.0
            acc = self.memory * acc + (phi.astype(np.float32) @ u).astype(np.float64) / (n_t * delta)
            t += 1
            norm_acc = float(np.linalg.norm(acc))
            if not np.isfinite(norm_acc) or norm_acc == 0.0:
                acc = np.zeros(d, dtype=np.float64)
                continue
            v = (acc / norm_acc).astype(np.float32).reshape(shape)
            # HSJA's "sum" step: toward the point at distance dist along the accumulated estimate
            step, eps = sum_step(x0, x_b, dist, v)
            if eps == 0.0:
                continue
            x_new = yield from halving_step(tracker, x_b, step, eps, self.max_halvings)
            if x_new is not None:
                x_b2, dist2, band2, contradicted2 = yield from self._to_boundary(tracker, x0, x_new, rtol, dist)
                contradicted = contradicted or contradicted2
                if dist2 > 0.0:
                    x_b, dist, band = x_b2, dist2, band2
