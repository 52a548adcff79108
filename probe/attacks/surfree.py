"""SurFree (Maho, Furon, Le Merrer, CVPR 2021): a surrogate-free L2 attack, framework-free.

SurFree needs no gradient estimate: it rotates the current adversarial direction in
random 2-D planes and keeps the rotations that stay adversarial and get closer.

1. Start: ``x_init``, or ``clip(x0 + 0.5 N(0, I))`` until misclassified (bounded), then a
   boundary search on the blend toward x0 (the "boost": 0.8 of the way first).
2. A new direction v from the DCT domain (``scipy.fft.idctn`` on each channel; the
   generators are in :mod:`probe.attacks.directions`): the low-frequency band is the
   first ``freq_ratio`` of each channel's zig-zag order, its
   coefficients weighted by a function of the original image's DCT (constant 1 by
   default). ``directions="ternary"`` is the paper's draw: random {-1, 0, +1}
   coefficients on the band, then Gram-Schmidt against ``u = unit(x_b - x0)`` and the
   last ``n_ortho`` directions. ``directions="orthogonal"`` (default) draws the
   coefficient vectors from a random orthonormal basis of the band (random signs times
   a DCT basis of the band's coefficient list, in random order, never repeated): every
   direction is then orthogonal to ALL the previous ones of its band at no cost (no
   Gram-Schmidt over a history, which costs O(n_ortho d) per direction), and only the
   projection on u is removed.
3. Circle search in the plane (u, v): z(theta) = x0 + D cos(theta) (cos(theta) u +
   sin(theta) v), D = ||x_b - x0||, trying theta = +-theta_max, +-(T-1)/T theta_max, ...
   (every z(theta) is closer than x_b by the factor cos(theta)). On failure theta_max
   *= rho and a new direction is drawn; on success theta_max /= rho.
4. Bisection of the angle between the adversarial angle found and the next larger one
   (at most ``bs_max_iter`` steps, down to a relative width ``bs_gamma``; ``bs_rule="cos"``,
   ``opposite``, ``final_search``, ``ortho="first"``, ``start="official"``: the official
   code's rules, :mod:`probe.attacks.official`, the ``paper`` preset).
5. Optional interpolation (the paper's step, in radians, with a re-check): the boundary
   distance r(psi) along rays of the plane is known at psi = 0 and at the bisected
   angle (on the circle), and measured at a third angle by a boundary search; a
   quadratic fit of 1 / r(psi) gives the angle of the closest boundary point; the ray at
   that angle is searched from an adversarial point only, so the result is verified.

Choices made for strength at a fixed budget (measured on linear models, where the
optimum is known; see benchmarks/attack_quality.py):

* ``bs_max_iter=0`` by default. A success at theta means the crossing of the circle is
  beyond theta; without bisection, the accepted point keeps that slack inside the
  adversarial region and the following circle searches spend it (on a flat boundary
  nothing is lost), while each bisection step costs a query that a new direction would
  use better: at 2,000 queries, d = 3x32x32, 10 steps give 3.0x the optimum, 1 step
  2.1x, none 2.0x (bisections are also what randomized smoothing disturbs most).
* ``band="adaptive"`` by default: each direction comes from the low band or from the
  rest of the spectrum, chosen by Thompson sampling on the circle-search success of
  each band. Natural-image models favour the low band (the paper's prior), but a
  boundary normal with high frequencies is still reached (a random linear model at
  d = 3x8x8: 1.4x the optimum with the low band alone, 1.01x adaptive).
  ``band="low"`` is the paper's choice.
* ``directions="orthogonal"``: on the same model at d = 3x32x32, 2.0x against 2.2x
  with the paper's ternary draws and Gram-Schmidt over the last 100 directions.
"""

from __future__ import annotations

import math
from typing import Generator

import numpy as np

from probe.attacks.base import Answers, Attack, Points, Tracker, distance
from probe.attacks.directions import AnchoredDirections, BandBasis, PastDirections, band_bases
from probe.attacks.directions import zigzag_mask as zigzag_mask  # re-exported
from probe.attacks.noisy_search import BISECTIONS, bisections
from probe.attacks.official import angle_bisection, boosted_search
from probe.attacks.search import blend, gallop_down, unit
from probe.attacks.start import nearest_start
from probe.validate import check_choice, check_int, check_real

BANDS = ("low", "full", "adaptive")
BS_RULES = ("width", "cos")
ORTHO = ("current", "first")
STARTS = ("probe", "official")
WEIGHTINGS = ("constant", "tanh")
DIRECTIONS = ("orthogonal", "ternary")


class SurFree(Attack):
    """SurFree, from "SurFree: a fast surrogate-free black-box attack"
    (Thibault Maho, Teddy Furon, Erwan Le Merrer; CVPR 2021).

    Untargeted (or targeted through ``x_init``); the steps and the default choices are
    explained in the module notes.

    Distance measure: L2

    Arguments:
        norm (str): "l2" only (SurFree is an L2 attack). (Default: 'l2')
        theta_max (float): in (0, 90), initial maximal rotation angle, in degrees.
            (Default: 30.0)
        rho (float): in (0, 1); theta_max *= rho on failure, /= rho on success.
            (Default: 0.98)
        T (int): >= 1, angles tried per direction: +-theta_max * k / T, k = T..1.
            (Default: 1)
        n_ortho (int): >= 0, past directions a new one is made orthogonal to by
            Gram-Schmidt, with ``directions="ternary"`` (orthogonal ones need none).
            (Default: 100)
        bs_gamma (float): in (0, 1]; the angle bisection stops when the bracket is
            narrower than bs_gamma times the angle. (Default: 0.01)
        bs_max_iter (int): >= 0, maximal angle-bisection steps per accepted direction
            (the reference uses 7-10; see the module notes for why 0 is stronger).
            (Default: 0)
        freq_ratio (float): in (0, 1], the low-frequency band: this fraction of each
            channel's DCT coefficients in zig-zag order. (Default: 0.5)
        weighting (str): "constant" or "tanh": the function of the original image's DCT
            that weights the coefficients (tanh(|DCT(x0)| / mean over the band)).
            (Default: 'constant')
        band (str): "adaptive", "low" (the paper) or "full". (Default: 'adaptive')
        directions (str): "orthogonal" or "ternary" (the paper's draw).
            (Default: 'orthogonal')
        interpolation (bool): the paper's interpolation step after each accepted
            rotation (two boundary searches; for curved boundaries). (Default: False)
        init_scale (float): > 0, standard deviation of the starting noise.
            (Default: 0.5)
        starts (int): >= 1, random starts compared (:func:`~probe.attacks.start.nearest_start`).
            (Default: 1)
        max_init_tries (int): >= 1, noisy images tried to find a first adversarial.
            (Default: 100)
        init_tol (float): in (0, 1], relative precision of the first boundary search.
            (Default: 0.0001)
        bisection (str): "plain" (the deterministic bisections) or "bayes" (the noise-aware
            info-max search of :mod:`probe.attacks.noisy_search`). (Default: 'plain')
        bs_rule (str): "width" (the bracket [theta, theta_max (k + 1) / T] bisected down to a
            width of bs_gamma * theta) or "cos" (the official code: the bracket [theta, theta +
            theta_max / T], theta_max already updated, bisected until |cos(upper) - cos(lower)|
            <= bs_gamma). (Default: 'width')
        opposite (bool): at each angle-bisection step also ask the opposite angle -mid (the
            official code, while the opposite side keeps answering True). (Default: False)
        final_search (bool): keep 1 + bs_max_iter queries for a last boosted line search
            toward x0 (one query at 0.2 x0 + 0.8 x_b, then bs_max_iter bisection steps).
            (Default: False)
        max_angle (float): in (0, 180], the cap on theta_max in degrees (the official code has
            none: 180). (Default: 81.0)
        ortho (str): "current" (a new direction is made orthogonal to the current direction u)
            or "first" (the official code: to the start's direction and the last n_ortho
            draws, ternary draws only). (Default: 'current')
        start (str): "probe" (noise of growing scale, then corner starts, then a bisection to
            init_tol) or "official" (0.5 N(0, I) noise of fixed scale until adversarial, then
            the boosted line search of final_search). (Default: 'probe')

    Shape:
        - x0: (C, H, W), float32 in [0, 1] (other shapes are searched as (1, 1, d)).
        - candidates: (k, C, H, W), float32 in [0, 1] (each answered by one boolean).
        - returns: :class:`~probe.attacks.base.AttackOutcome` (best verified adversarial).

    Examples::

        >>> import numpy as np
        >>> from probe.attacks import SurFree, run_attack
        >>> w = np.random.default_rng(0).standard_normal((1, 8, 8))
        >>> x0 = np.full((1, 8, 8), 0.5, dtype=np.float32)
        >>> b = -float(w.ravel() @ x0.ravel()) - 0.1 * np.linalg.norm(w)
        >>> oracle = lambda pts: (pts.reshape(len(pts), -1) @ w.ravel() + b) > 0
        >>> outcome = run_attack(SurFree(), x0, oracle, budget=300, rng=np.random.default_rng(0))
        >>> outcome.found, outcome.queries, outcome.norm
        (True, 300, 'l2')
        >>> optimum = abs(w.ravel() @ x0.ravel() + b) / np.linalg.norm(w)  # 0.1
        >>> bool(optimum <= outcome.distance <= 1.3 * optimum)
        True
        >>> SurFree(band="low").params()["band"]
        'low'
    """

    name = "surfree"
    added = {"starts": 1}  # issue #37 (2026-12-06)
    norms = ("l2",)

    def __init__(
        self,
        *,
        norm: str = "l2",
        theta_max: float = 30.0,
        rho: float = 0.98,
        T: int = 1,
        n_ortho: int = 100,
        bs_gamma: float = 0.01,
        bs_max_iter: int = 0,
        freq_ratio: float = 0.5,
        weighting: str = "constant",
        band: str = "adaptive",
        directions: str = "orthogonal",
        interpolation: bool = False,
        init_scale: float = 0.5,
        starts: int = 1,
        max_init_tries: int = 100,
        init_tol: float = 1e-4,
        bisection: str = "plain",
        bs_rule: str = "width",
        opposite: bool = False,
        final_search: bool = False,
        max_angle: float = 81.0,
        ortho: str = "current",
        start: str = "probe",
    ) -> None:
        self.norm = self._check_norm(norm)
        self.theta_max = check_real("theta_max", theta_max, 0.0, 90.0, low_closed=False, high_closed=False)
        self.rho = check_real("rho", rho, 0.0, 1.0, low_closed=False, high_closed=False)
        self.T = check_int("T", T, 1)
        self.n_ortho = check_int("n_ortho", n_ortho, 0)
        self.bs_gamma = check_real("bs_gamma", bs_gamma, 0.0, 1.0, low_closed=False)
        self.bs_max_iter = check_int("bs_max_iter", bs_max_iter, 0)
        self.freq_ratio = check_real("freq_ratio", freq_ratio, 0.0, 1.0, low_closed=False)
        self.weighting = check_choice("weighting", weighting, WEIGHTINGS)
        self.band = check_choice("band", band, BANDS)
        self.directions = check_choice("directions", directions, DIRECTIONS)
        self.interpolation = bool(interpolation)
        self.init_scale = check_real("init_scale", init_scale, 0.0, None, low_closed=False)
        self.max_init_tries = check_int("max_init_tries", max_init_tries, 1)
        self.starts = check_int("starts", starts, 1)
        self.init_tol = check_real("init_tol", init_tol, 0.0, 1.0, low_closed=False)
        self.bisection = check_choice("bisection", bisection, BISECTIONS)
        self.bs_rule = check_choice("bs_rule", bs_rule, BS_RULES)
        self.opposite = bool(opposite)
        self.final_search = bool(final_search)
        self.max_angle = check_real("max_angle", max_angle, 0.0, 180.0, low_closed=False)
        self.ortho = check_choice("ortho", ortho, ORTHO)
        self.start = check_choice("start", start, STARTS)

    # -- directions ---------------------------------------------------------------

    def _bases(self, x0: np.ndarray) -> list[BandBasis]:
        """The direction generators: one per band arm (see :func:`~probe.attacks.directions.band_bases`)."""
        return band_bases(x0, self.freq_ratio, self.weighting, self.band, self.directions)

    # -- main loop ------------------------------------------------------------------

    def _search(
        self, x0: np.ndarray, tracker: Tracker, rng: np.random.Generator, x_init: np.ndarray | None
    ) -> Generator[Points, Answers, None]:
        d = int(x0.size)
        bisect = bisections(self.bisection)[0]
        official = self.start == "official"
        x_adv = yield from nearest_start(
            tracker, x0, rng, x_init, candidates=self.starts, kind="gaussian", scale=self.init_scale,
            max_tries=self.max_init_tries, growth=1.0 if official else 1.5,
        )
        if x_adv is None:
            return
        if official:
            x_b = yield from boosted_search(tracker, x0, x_adv, self.bs_gamma, self.bs_max_iter)
        else:  # boost: a blend 0.8 of the way is usually still adversarial; then bisect
            _, x_b = yield from bisect(
                tracker, blend(x0, x_adv), 0.0, 1.0, tol=0.0, guess=0.8, x_hi=x_adv, rtol=self.init_tol
            )
        bases = self._bases(x0)
        theta_max = math.radians(self.theta_max)
        cap = math.radians(self.max_angle)
        if self.ortho == "first" and self.directions == "ternary":
            past = AnchoredDirections(self.n_ortho, unit(x_b - x0))
        else:
            past = PastDirections(self.n_ortho if self.directions == "ternary" else 0, d)
        reserve = 1 + self.bs_max_iter if self.final_search else 0
        yield from self._walk(tracker, x0, x_b, rng, bases, theta_max, cap, past, reserve)
        if self.final_search and tracker.best is not None:  # on the queries kept for it
            yield from boosted_search(tracker, x0, tracker.best, self.bs_gamma, self.bs_max_iter)

    def _walk(self, tracker, x0, x_b, rng, bases, theta_max, cap, past, reserve):
        """The rotations (steps 2 to 5 of the module notes) while more than ``reserve`` queries are left."""
        shape, d = x0.shape, int(x0.size)
        bisect = bisections(self.bisection)[0]
        x0f = x0.ravel()
        # Thompson sampling between the bands: Beta(wins, losses) per band
        wins = np.ones(len(bases))
        losses = np.ones(len(bases))
        dry = 0

        while tracker.remaining > reserve:
            diff = x_b.ravel() - x0f
            D = math.sqrt(float(np.dot(diff, diff)))  # float32 BLAS: 1e-7 relative here
            if not np.isfinite(D) or D == 0.0:
                return
            u = diff / np.float32(D)

            # 1. new direction, orthogonal to u (and, for ternary draws, to the history)
            arm = 0 if len(bases) == 1 else int(np.argmax(rng.beta(wins, losses)))
            v = past.unit_orthogonal(bases[arm].draw(rng), u)
            if v is None:
                # no direction left besides u (tiny d): this iteration asked nothing, so
                # bound the retries instead of looping for ever
                dry += 1
                if dry > 100:
                    return
                continue
            dry = 0

            def z(theta: float, u=u, v=v, D=D) -> np.ndarray:
                c = D * math.cos(theta)
                p = x0f + np.float32(c * math.cos(theta)) * u + np.float32(c * math.sin(theta)) * v
                return np.clip(p, 0.0, 1.0).reshape(shape)

            # 2. circle search: +-theta_max, +-(T-1)/T theta_max, ...
            found = None
            for k in range(self.T, 0, -1):
                for sgn in (1.0, -1.0):
                    th = sgn * theta_max * k / self.T
                    cand = z(th)
                    if (yield from tracker.is_adversarial(cand)):
                        found = (th, k, cand)
                        break
                if found:
                    break
            if found is None:
                theta_max *= self.rho
                losses[arm] += 1
                continue
            wins[arm] += 1
            th, k, x_th = found
            sgn = 1.0 if th > 0 else -1.0

            # 3. bisection of the angle between th (adversarial) and the next larger one
            upper = min(theta_max * (k + 1) / self.T, 0.5 * math.pi * 0.999)
            theta_max = min(theta_max / self.rho, cap)
            lo_abs = abs(th)
            best_abs, x_b = lo_abs, x_th
            if self.bs_rule == "cos" and self.bs_max_iter:
                best, x_b = yield from angle_bisection(
                    tracker, z, th, theta_max / self.T, x_th, self.bs_gamma, self.bs_max_iter, self.opposite,
                    search_up=abs(abs(th) - theta_max) < 1e-12,
                )
                best_abs, sgn = abs(best), (1.0 if best > 0 else -1.0)
            elif upper > lo_abs and self.bs_max_iter:
                # parameter a in [0, span]: a = 0 at the upper angle (believed non-adversarial)
                a, x_b = yield from bisect(
                    tracker,
                    lambda a: z(sgn * (upper - a)),
                    0.0,
                    upper - lo_abs,
                    tol=self.bs_gamma * lo_abs,
                    x_hi=x_th,
                    max_steps=self.bs_max_iter,
                )
                best_abs = upper - a

            # 4. interpolation (optional)
            if self.interpolation:
                x_i = yield from self._interpolate(tracker, x0f, u, v, D, sgn * best_abs, shape)
                if x_i is not None and distance(x_i, x0, "l2") < distance(x_b, x0, "l2"):
                    x_b = x_i

    def _interpolate(
        self,
        tracker: Tracker,
        x0f: np.ndarray,
        u: np.ndarray,
        v: np.ndarray,
        D: float,
        theta: float,
        shape: tuple[int, ...],
    ) -> Generator[Points, Answers, "np.ndarray | None"]:
        """Quadratic interpolation of the boundary in the plane (u, v), all angles in radians.

        In polar coordinates around x0, the boundary is at radius r(psi) along the ray of
        angle psi. Known: r(0) = D (x_b on the boundary) and r(theta) = D cos(theta) (the
        bisected circle point). Measured: r(theta / 2) by a boundary search on that ray
        (its circle point is adversarial if the region between is). A parabola through
        the three values of 1 / r(psi) peaks at the angle of the closest boundary point;
        the ray at that angle is searched from a verified adversarial point.
        """

        def ray(psi: float, r: float) -> np.ndarray:
            p = x0f + r * (math.cos(psi) * u + math.sin(psi) * v)
            return np.clip(p, 0.0, 1.0).astype(np.float32).reshape(shape)

        half = 0.5 * theta
        r_circ = D * math.cos(half)
        x_half = ray(half, r_circ)
        if not (yield from tracker.is_adversarial(x_half)):
            return None
        r_flat = D * math.cos(theta) / math.cos(half)  # where a flat boundary would cross this ray
        hi, _ = yield from gallop_down(
            tracker,
            lambda a: ray(half, a * r_circ),
            1.0,
            step=max(1.0 - r_flat / r_circ, 1e-3),
            tol=1e-4,
            x_hi=x_half,
        )
        r_half = hi * r_circ
        # parabola through (0, 1/D), (theta/2, 1/r_half), (theta, 1/(D cos theta)) in s = psi / theta
        f0, f1, f2 = 1.0 / D, 1.0 / r_half, 1.0 / (D * math.cos(theta))
        curv = f0 - 2.0 * f1 + f2  # second difference: negative when the peak is inside
        if curv >= 0.0:
            return None
        s_star = (3.0 * f0 - 4.0 * f1 + f2) / (4.0 * curv)  # argmax of the parabola in s
        s_star = min(max(s_star, 0.0), 1.5)
        psi = s_star * theta
        peak = f0 + s_star * (-3.0 * f0 + 4.0 * f1 - f2) + 2.0 * s_star * s_star * curv
        if peak <= 0.0:
            return None
        # re-check: start the ray search a little outside the interpolated radius
        r_start = min(1.05 / peak, D)
        x_start = ray(psi, r_start)
        if not (yield from tracker.is_adversarial(x_start)):
            return None
        _, x_i = yield from gallop_down(
            tracker, lambda a: ray(psi, a * r_start), 1.0, step=0.05, tol=1e-4, x_hi=x_start
        )
        return x_i
