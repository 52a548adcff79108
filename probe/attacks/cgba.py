"""CGBA (Reza, Rahmati, Wu, Dai, ICCV 2023): curvature-aware geometric attack, framework-free.

Both variants walk from a boundary point ``x_b`` (distance D to x0) with an estimate of
the boundary's normal there, in the 2-D plane spanned by ``v = (x_b - x0) / D`` and the
normal ``eta`` (angle theta between them). Points of that plane are taken on the circle
of diameter [x0, x_b]:

    p(alpha) = x0 + D cos(alpha) (cos(alpha) v + sin(alpha) w),

w the unit part of eta orthogonal to v, alpha the angle from v. Every such point is
closer to x0 than x_b (D cos alpha), and on a flat boundary the arc alpha in (0, theta)
is adversarial, its end alpha = theta being the foot of the perpendicular from x0 (the
optimum): the circle finds a boundary point whatever the curvature.

1. start: ``x_init`` (targeted) or random images until one is adversarial, then a
   bisection of the segment to x0 (the boundary point x_b);
2. normal estimate at x_b from the signs of ``n_t = init_num_evals sqrt(t)`` probes
   ``x_b + delta u`` sent as one batch, u drawn in the low-frequency DCT subspace (the
   paper's dimension reduction): ``eta = mean(phi u)``, phi = +-1 (adversarial = +1);
3. CGBA (untargeted, low curvature side): alpha_k = (pi / 2)(1 - 2^-k), k = 1, 2, ...
   until p(alpha_k) is not adversarial, then a bisection of the angle on the semicircle
   between an adversarial end and alpha_k (the adversarial end is the new x_b).
   CGBA-H (targeted, high curvature): alpha_k = theta / 2^k until p(alpha_k) is
   adversarial, then a bisection of the segment from x0 to it.

Improvements (preset ``probe``; the ``paper`` preset switches each off): the estimate's
probes minus their mean answer (HSJA's baseline), the subspace grown x1.1 an iteration.
Chosen on EfficientNet-Lite0 (8 ImageNet images, 1,000 and 2,000 queries, median L2 at
1,000: the paper's settings 4.24, a x1.5 growth with probes of 0.01 D and the bracketed
angle bisection 5.99, no growth 4.31, the baseline on the paper's 4.06, the bracket on the
paper's 4.51); the x1.1 growth keeps the linear check at 3x32x32 (2.1x the optimum at
2,000 queries, 2.7x with a fixed subspace), at no clear cost on the real model. The angle
bisection bracketed from the last adversarial alpha_k (``bracket``) is an option, off.

Noise aware (``bisection="bayes"``, an adaptive attack against a randomized defense):
each line and arc search is the info-max search of :mod:`probe.attacks.noisy_search`
(``search_steps`` queries, repeats included), the new boundary point is its posterior's
0.9 quantile (just outside the noisy band, on the adversarial side, never re-queried),
and the probes of the normal estimate are at least ``noise_delta`` measured band widths
long: probes inside the band see coin flips. Once the answers have contradicted each
other, they reach ``noise_delta * sqrt(k)`` band widths (k: the probes' dimension), up to
``noise_radius * D``, as PSJ's (:mod:`probe.attacks.psj`); a batch whose answers all agree
doubles the next probe size. CGBA-H's halving steps stay single queries; its line search
is the noise-aware one. Against a deterministic oracle it costs a little (3x8x8
linear, 2,000 queries: 1.09x the optimum against 1.05x), against a random one it pays
(sigma 0.05, Confirmed, 5 seeds: median 2.4x the optimum against 6.9x at n 4, 2.6x
against 6.7x at n 5; EfficientNet-Lite0, sigma 0.05, n 10, 1,000 queries, 18 images: median
L2 15.20 against 22.85, PSJ 11.43; see benchmarks/README.md).

Every query goes through the Tracker: the budget is exact and the result is the best
verified adversarial.
"""

from __future__ import annotations

import math
from typing import Generator

import numpy as np

from probe.attacks.base import Answers, Attack, Points, Tracker, distance
from probe.attacks.directions import probe_dim, unit_probes
from probe.attacks.noisy_search import BISECTIONS, bayes_search, crossing_probe_size, noise_probe_size
from probe.attacks.search import bisect, blend
from probe.attacks.start import first_adversarial
from probe.validate import check_choice, check_int, check_real

METHODS = ("auto", "cgba", "cgba_h")


class CGBA(Attack):
    """CGBA and CGBA-H, from "CGBA: Curvature-aware Geometric Black-box Attack"
    (Md Farhamdur Reza, Ali Rahmati, Tianfu Wu, Huaiyu Dai; ICCV 2023).

    CGBA (semicircular boundary search) untargeted, CGBA-H (halved angles, then a
    line search) targeted through ``x_init``; see the module notes.

    Distance measure: L2

    Arguments:
        norm (str): "l2" only. (Default: 'l2')
        method (str): "cgba", "cgba_h", or "auto" (CGBA-H when ``x_init`` is given,
            i.e. targeted, else CGBA). (Default: 'auto')
        init_num_evals (int): >= 1; probes of the normal estimate at iteration t:
            init_num_evals * sqrt(t) (the paper's N0). (Default: 30)
        max_num_evals (int): >= 1, cap on the probes per iteration. (Default: 10000)
        delta (float): > 0, each probe's L2 length as a fraction of the distance D to x0.
            (Default: 0.001)
        subspace (float): in (0, 1]; probes on the lowest ``subspace`` of each side's DCT
            frequencies (at least ``min_side`` a side; the paper's dimension reduction factor 4 is
            0.25). (Default: 0.25)
        min_side (int): >= 1, the subspace keeps at least this many frequencies a side
            (the official code: none, 1; 16 keeps 3x16x16 on CIFAR's 32 a side). (Default: 16)
        subspace_growth (float): >= 0; the subspace's side grows by this factor each
            iteration, up to the whole space (0: fixed, the paper). (Default: 0.1)
        memory (float): in [0, 1], weight of the previous normal estimate in the
            accumulated one (0: a fresh estimate every iteration, the paper; measured
            best on linear models too). (Default: 0.0)
        baseline (bool): subtract the mean answer from the probe signs (HSJA's variance
            reduction; False: the paper's plain mean). (Default: True)
        bracket (bool): bisect the angle from the last adversarial alpha_k (False: from
            alpha = 0, the paper). (Default: False)
        tol (float): > 0; bisections stop when the ends are within tol * D.
            (Default: 0.0001)
        max_steps (int): >= 1, queries per angle search and per bisection (the paper's
            100). (Default: 100)
        max_init_tries (int): >= 1, random images tried to find a first adversarial.
            (Default: 100)
        bisection (str): "plain" (the paper's deterministic searches) or "bayes" (noise
            aware: every line and arc search is the info-max search of
            :mod:`probe.attacks.noisy_search`, and the probes reach across the band it
            measures; see the module notes). (Default: 'plain')
        search_steps (int): >= 1, queries per noise-aware search. (Default: 40)
        noise_delta (float): >= 0; noise aware, the probes are at least noise_delta
            measured band widths long. (Default: 2.0)
        noise_radius (float): >= 0; noise aware, once the answers have contradicted each
            other, the probes grow to noise_delta band widths times sqrt(k) (k: the
            probes' dimension) but no longer than noise_radius * D. (Default: 0.2)
        start (str): "uniform" (uniform random images until one is adversarial) or "ramp"
            (the official code: x0 + k init_scale N(0, I), k = 1, 2, ...). (Default: 'uniform')
        init_scale (float): > 0, the step of the "ramp" start's noise. (Default: 0.02)
        sigma (float): >= 0; when > 0, the probes are sigma * N(0, I_k) on the k-dimensional
            subspace (the official code's: random lengths of about sigma sqrt(k), an absolute
            size in pixel units, not a fraction of D; plain bisection only) instead of unit
            probes of length delta * D. (Default: 0.0)

    Shape:
        - x0: (C, H, W), float32 in [0, 1] (any shape works).
        - candidates: (k, C, H, W), float32 in [0, 1] (each answered by one boolean).
        - returns: :class:`~probe.attacks.base.AttackOutcome` (best verified adversarial).

    Examples::

        >>> import numpy as np
        >>> from probe.attacks import CGBA, run_attack
        >>> w = np.random.default_rng(0).standard_normal((1, 8, 8))
        >>> x0 = np.full((1, 8, 8), 0.5, dtype=np.float32)
        >>> b = -float(w.ravel() @ x0.ravel()) - 0.1 * np.linalg.norm(w)
        >>> oracle = lambda pts: (pts.reshape(len(pts), -1) @ w.ravel() + b) > 0
        >>> outcome = run_attack(CGBA(), x0, oracle, budget=300, rng=np.random.default_rng(0))
        >>> outcome.found, outcome.queries, outcome.norm
        (True, 300, 'l2')
        >>> optimum = abs(w.ravel() @ x0.ravel() + b) / np.linalg.norm(w)  # 0.1
        >>> bool(optimum <= outcome.distance <= 1.15 * optimum)
        True
        >>> CGBA(method="cgba_h", bracket=True)  # doctest: +ELLIPSIS
        CGBA(norm='l2', method='cgba_h', init_num_evals=30, ..., bracket=True, ...)
        >>> CGBA(bisection="bayes")  # noise aware: against a randomized defense  # doctest: +ELLIPSIS
        CGBA(norm='l2', ..., bisection='bayes', search_steps=40, noise_delta=2.0, noise_radius=0.2, ...)
    """

    name = "cgba"
    added = {"min_side": 16}  # issue #37 (2026-12-06)
    norms = ("l2",)

    def __init__(
        self,
        *,
        norm: str = "l2",
        method: str = "auto",
        init_num_evals: int = 30,
        max_num_evals: int = 10000,
        delta: float = 0.001,
        subspace: float = 0.25,
        min_side: int = 16,
        subspace_growth: float = 0.1,
        memory: float = 0.0,
        baseline: bool = True,
        bracket: bool = False,
        tol: float = 1e-4,
        max_steps: int = 100,
        max_init_tries: int = 100,
        bisection: str = "plain",
        search_steps: int = 40,
        noise_delta: float = 2.0,
        noise_radius: float = 0.2,
        start: str = "uniform",
        init_scale: float = 0.02,
        sigma: float = 0.0,
    ) -> None:
        self.norm = self._check_norm(norm)
        self.method = check_choice("method", method, METHODS)
        self.init_num_evals = check_int("init_num_evals", init_num_evals, 1)
        self.max_num_evals = check_int("max_num_evals", max_num_evals, 1)
        self.delta = check_real("delta", delta, 0.0, None, low_closed=False)
        self.subspace = check_real("subspace", subspace, 0.0, 1.0, low_closed=False)
        self.min_side = check_int("min_side", min_side, 1)
        self.subspace_growth = check_real("subspace_growth", subspace_growth, 0.0, None)
        self.memory = check_real("memory", memory, 0.0, 1.0)
        self.baseline = bool(baseline)
        self.bracket = bool(bracket)
        self.tol = check_real("tol", tol, 0.0, None, low_closed=False)
        self.max_steps = check_int("max_steps", max_steps, 1)
        self.max_init_tries = check_int("max_init_tries", max_init_tries, 1)
        self.bisection = check_choice("bisection", bisection, BISECTIONS)
        self.search_steps = check_int("search_steps", search_steps, 1)
        self.noise_delta = check_real("noise_delta", noise_delta, 0.0, None)
        self.noise_radius = check_real("noise_radius", noise_radius, 0.0, None)
        self.start = check_choice("start", start, ("uniform", "ramp"))
        self.init_scale = check_real("init_scale", init_scale, 0.0, None, low_closed=False)
        self.sigma = check_real("sigma", sigma, 0.0, None)

    def _line(self, tracker: Tracker, x0: np.ndarray, x_adv: np.ndarray, guess: float | None = None):
        """Search the segment from x0 to the adversarial x_adv: (boundary point on its adversarial
        side, band width in L2 units (0 for the plain bisection), whether the answers contradicted
        each other)."""
        if self.bisection == "bayes":
            out = yield from bayes_search(
                tracker, blend(x0, x_adv), 0.0, 1.0, tol=0.0, rtol=self.tol, max_steps=self.search_steps
            )
            return out.x, out.scale * distance(x_adv, x0, "l2"), out.contradicted
        _, x_b = yield from bisect(
            tracker, blend(x0, x_adv), 0.0, 1.0, tol=0.0, guess=guess, x_hi=x_adv, rtol=self.tol,
            max_steps=self.max_steps,
        )
        return x_b, 0.0, False

    def _normal(self, tracker: Tracker, x_b: np.ndarray, step: float, draw, n: int, lengths=None):
        """The normal estimate at x_b from n probes of length ``step`` (one batch; ``lengths``: one
        length each, then divided by ``step``), flat (d,), and whether the answers were mixed
        (probes that all land on one side did not reach across)."""
        pts = draw(n)
        pts *= np.float32(step) if lengths is None else lengths.astype(np.float32).reshape(-1, *([1] * x_b.ndim))
        pts += x_b[None]
        np.clip(pts, 0.0, 1.0, out=pts)
        answers = yield from tracker.query(pts)
        pts -= x_b[None]  # the directions actually probed (after clipping)
        u = pts.reshape(n, -1)
        phi = np.where(answers, 1.0, -1.0)
        mixed = abs(float(phi.mean())) < 1.0
        if self.baseline and mixed:
            phi = phi - phi.mean()
        return (phi.astype(np.float32) @ u).astype(np.float64) / (n * step), mixed

    def _search(
        self, x0: np.ndarray, tracker: Tracker, rng: np.random.Generator, x_init: np.ndarray | None
    ) -> Generator[Points, Answers, None]:
        shape = x0.shape
        d = int(x0.size)
        method = self.method if self.method != "auto" else ("cgba_h" if x_init is not None else "cgba")
        x_adv = yield from first_adversarial(
            tracker, x0, rng, x_init, kind="uniform" if self.start == "uniform" else "ramp",
            scale=self.init_scale, max_tries=self.max_init_tries,
        )
        if x_adv is None:
            return
        x_b, band, contradicted = yield from self._line(tracker, x0, x_adv)
        x0f = x0.ravel().astype(np.float64)
        ratio = self.subspace
        draw = unit_probes(shape, rng, True, ratio, self.min_side)
        acc = np.zeros(d, dtype=np.float64)
        reach = 1.0  # noise aware: doubled after a batch whose answers all agree
        t = 1
        while tracker.remaining > 0:
            diff = x_b.ravel().astype(np.float64) - x0f
            D = float(np.linalg.norm(diff))
            if not np.isfinite(D) or D == 0.0:
                return
            v = diff / D
            if self.subspace_growth and ratio < 1.0:
                grown = min(1.0, self.subspace * (1.0 + self.subspace_growth) ** (t - 1))
                if grown != ratio:
                    ratio = grown
                    draw = unit_probes(shape, rng, True, ratio, self.min_side)
            n_t = max(1, min(int(self.init_num_evals * math.sqrt(t)), self.max_num_evals, tracker.remaining))
            step = self.delta * D
            if self.bisection == "bayes":  # probes that reach across the measured band
                if contradicted:
                    cap = self.noise_radius * D
                    k_dim = probe_dim(shape, ratio, self.min_side)
                    step = crossing_probe_size(band, step, self.noise_delta, k_dim, cap)
                else:
                    step = noise_probe_size(band, step, self.noise_delta)
                step *= reach
            lengths = None
            if self.sigma > 0.0 and self.bisection == "plain":  # sigma N(0, I_k): random lengths
                step = self.sigma
                lengths = self.sigma * np.sqrt(rng.chisquare(probe_dim(shape, ratio, self.min_side), size=n_t))
            g, mixed = yield from self._normal(tracker, x_b, step, draw, n_t, lengths)
            if self.bisection == "bayes":
                reach = max(1.0, reach / 2.0) if mixed else (2.0 * reach if step < D else reach)
            t += 1
            acc = self.memory * acc + g
            w = acc - float(acc @ v) * v
            nw = float(np.linalg.norm(w))
            if not np.isfinite(nw) or nw == 0.0:
                continue
            w /= nw
            theta = math.atan2(nw, float(acc @ v))  # angle between the normal and v, in (0, pi)

            def arc(alpha: float, D=D, v=v, w=w) -> np.ndarray:
                c = D * math.cos(alpha)
                p = x0f + c * math.cos(alpha) * v + c * math.sin(alpha) * w
                return np.clip(p, 0.0, 1.0).astype(np.float32).reshape(shape)

            if method == "cgba" and self.bisection == "bayes":
                x_b, band, noisy = yield from self._arc(tracker, arc, D)
            elif method == "cgba":
                x_b, band, noisy = (yield from self._semicircle(tracker, arc, x_b, D)), 0.0, False
            else:
                x_b, band, noisy = yield from self._halving(tracker, x0, arc, x_b, theta, band)
            contradicted = contradicted or noisy

    def _arc(self, tracker: Tracker, arc, D: float):
        """CGBA's semicircle searched by the noise-aware search: on a = pi / 2 - alpha (a = 0 is
        x0, a = pi / 2 the boundary point x_b), the crossing nearest x0; returns as :meth:`_line`."""
        half = 0.5 * math.pi
        out = yield from bayes_search(
            tracker, lambda a: arc(half - a), 0.0, half, tol=0.0, rtol=self.tol, max_steps=self.search_steps
        )
        return out.x, out.scale * D, out.contradicted

    def _semicircle(self, tracker: Tracker, arc, x_b: np.ndarray, D: float):
        """CGBA: alpha_k = (pi / 2)(1 - 2^-k) until not adversarial, then the angle bisection."""
        lo, x_lo = 0.0, x_b  # adversarial end (alpha = 0 is x_b itself)
        hi = None
        for k in range(1, self.max_steps + 1):
            alpha = 0.5 * math.pi * (1.0 - 2.0**-k)
            x = arc(alpha)
            if not (yield from tracker.is_adversarial(x)):
                hi = alpha
                break
            if self.bracket:
                lo, x_lo = alpha, x
        if hi is None:
            return x_lo
        # bisection of the angle; parameter a = hi - alpha, a = 0 believed non-adversarial
        _, x_adv = yield from bisect(
            tracker, lambda a: arc(hi - a), 0.0, hi - lo, tol=self.tol, x_hi=x_lo, max_steps=self.max_steps
        )
        return x_adv

    def _halving(self, tracker: Tracker, x0: np.ndarray, arc, x_b: np.ndarray, theta: float, band: float):
        """CGBA-H: alpha_k = theta / 2^k until adversarial, then the line search to x0; returns as
        :meth:`_line` (x_b and ``band`` unchanged when no alpha_k was adversarial)."""
        for k in range(1, self.max_steps + 1):
            alpha = theta / 2.0**k
            x = arc(alpha)
            if (yield from tracker.is_adversarial(x)):
                # on a flat boundary the line to x lies on it at cos(theta) / (cos(alpha) cos(theta - alpha))
                guess = None
                if self.bracket:
                    guess = min(math.cos(theta) / max(math.cos(alpha) * math.cos(theta - alpha), 1e-12), 1.0)
                return (yield from self._line(tracker, x0, x, guess=guess if guess and guess < 1.0 else None))
        return x_b, band, False
