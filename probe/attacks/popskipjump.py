"""PopSkipJump (Simon-Gabriel, Sheikh, Krause, ICML 2021) as published, framework-free.

HSJA's walk along the boundary for a classifier whose answers are random near it. Written
from the paper and from reading the authors' code (cjsg/PopSkipJump, ``popskip.py``,
``abstract_attack.py``, ``infomax.py``); probe's own noise-aware variant is :class:`~probe.attacks.psj.PSJ`.

1. Start: uniform random images until one is adversarial, then the info-max search below on
   the segment to x0.
2. Info-max search on a segment, t in [0, 1] (t = 0 the adversarial end, t = 1 x0): a
   posterior over the answer model ``P(original class | t') = e + (1 - 2 e) sigmoid(s (t' - t))``
   (sigmoid(z) = (1 + tanh 2z) / 2) on a grid of the boundary position t (``grid_size`` + 1
   values, 2 ``grid_size`` + 1 after the first search), of the inverse scale s (31 values,
   10^-1..10^2, then +-3 decades around the last fit) and of the flip rate e (7 values in
   [0, 0.3], then the last fit, fixed). Each query goes where its answer's mutual information
   with (t, s, e) is largest; the search stops when the maximum a posteriori (t, log10 s, e)
   has moved by at most one grid step over the last ``window`` + 1 queries. The boundary point
   is the MAP t (not re-queried, possibly on the clean side).
3. Probe count matched to a cosine: the target is the expected cosine between gradient and
   estimate that HSJA reaches with ``init_num_evals sqrt(t + 1)`` probes on a deterministic
   boundary; the probe count is the one that reaches it against the fitted sigmoid (s, e), by
   the paper's closed form :func:`~probe.attacks.official.probes_for_cos`.
4. Gradient direction at the boundary point from that many probes of radius
   ``delta = dist_post_update sqrt(d) / grid_size`` (dist_post_update: the distance of the point
   the last search started from), Gaussian directions, HSJA's baseline (per batch of 256).
5. Step ``eps = dist / sqrt(t)`` along the estimate, no halving, then the move x1.5 away from
   x0 (``p + 0.5 (p - x0)``, clipped), then the info-max search on the segment from x0 to it.

Departures, each for cost or for the budget: the mutual information is evaluated at most at
``candidates`` positions of the t grid within the posterior's support (the code: all
``grid_size`` + 1); every loop ends with the budget (the code's kmax 5,000 steps per search,
10,000 starts); the search's 5 retries when its MAP is x0 itself are kept; the result is the
closest point answered adversarial (the code returns its last boundary point, unverified).
L2 only.
"""

from __future__ import annotations

import math
from typing import Generator

import numpy as np

from probe.attacks.base import Answers, Attack, Points, Tracker, distance
from probe.attacks.official import expected_cos, probes_for_cos
from probe.attacks.search import blend
from probe.attacks.start import first_adversarial
from probe.validate import check_int, check_real

WINDOW = 10  # the code's window_size: MAP estimates compared over window + 1 queries
BATCH = 256  # the code's batch_size: HSJA's baseline is subtracted per batch


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return -(p * np.log(p) + (1.0 - p) * np.log1p(-p))


class PopSkipJump(Attack):
    """PopSkipJump, from "PopSkipJump: Decision-Based Attack for Probabilistic Classifiers"
    (Carl-Johann Simon-Gabriel, Noman Ahmed Sheikh, Andreas Krause; ICML 2021).

    As published (the authors' code); untargeted (or targeted through ``x_init``). See the
    module notes; probe's own variant is :class:`~probe.attacks.psj.PSJ`.

    Distance measure: L2

    Arguments:
        norm (str): "l2" only. (Default: 'l2')
        gamma (float): > 0; theta = gamma / d^1.5, HSJA's, sets the target cosine.
            (Default: 1.0)
        init_num_evals (int): >= 1, HSJA's probes at the first iteration (B_0); the target
            cosine at iteration t is HSJA's with init_num_evals sqrt(t) probes. (Default: 100)
        max_num_evals (int): >= 1, cap on the probes per iteration. (Default: 50000)
        grid_size (int): >= 2, the info-max grid of boundary positions on a segment; also sets
            the probe radius dist_post_update sqrt(d) / grid_size (the code: 100 on MNIST,
            300 on CIFAR-10). (Default: 300)
        candidates (int): >= 2, query positions whose mutual information is evaluated per
            step (grid positions within the posterior's support). (Default: 64)
        max_init_tries (int): >= 1, random images tried to find a first adversarial.
            (Default: 10000)

    Shape:
        - x0: (C, H, W), float32 in [0, 1] (any shape works).
        - candidates: (k, C, H, W), float32 in [0, 1] (each answered by one boolean).
        - returns: :class:`~probe.attacks.base.AttackOutcome` (best verified adversarial).

    Examples::

        >>> import numpy as np
        >>> from probe.attacks import PopSkipJump, run_attack
        >>> w = np.random.default_rng(0).standard_normal((1, 8, 8))
        >>> x0 = np.full((1, 8, 8), 0.5, dtype=np.float32)
        >>> b = -float(w.ravel() @ x0.ravel()) - 0.1 * np.linalg.norm(w)
        >>> oracle = lambda pts: (pts.reshape(len(pts), -1) @ w.ravel() + b) > 0
        >>> outcome = run_attack(PopSkipJump(), x0, oracle, budget=1000, rng=np.random.default_rng(0))
        >>> outcome.found, outcome.queries, outcome.norm
        (True, 1000, 'l2')
        >>> optimum = abs(w.ravel() @ x0.ravel() + b) / np.linalg.norm(w)  # 0.1
        >>> bool(optimum <= outcome.distance <= 1.5 * optimum)
        True
        >>> PopSkipJump(grid_size=100)  # doctest: +ELLIPSIS
        PopSkipJump(norm='l2', gamma=1.0, init_num_evals=100, max_num_evals=50000, grid_size=100, ...)
    """

    name = "popskipjump"
    norms = ("l2",)

    def __init__(
        self,
        *,
        norm: str = "l2",
        gamma: float = 1.0,
        init_num_evals: int = 100,
        max_num_evals: int = 50000,
        grid_size: int = 300,
        candidates: int = 64,
        max_init_tries: int = 10000,
    ) -> None:
        self.norm = self._check_norm(norm)
        self.gamma = check_real("gamma", gamma, 0.0, None, low_closed=False)
        self.init_num_evals = check_int("init_num_evals", init_num_evals, 1)
        self.max_num_evals = check_int("max_num_evals", max_num_evals, 1)
        self.grid_size = check_int("grid_size", grid_size, 2)
        self.candidates = check_int("candidates", candidates, 2)
        self.max_init_tries = check_int("max_init_tries", max_init_tries, 1)

    # -- the info-max search --------------------------------------------------------------

    def _grids(self, prev: tuple[float, float, float] | None):
        """(t, s, e) grids: the first search's, or around the previous fit (prior_frac 1)."""
        g = self.grid_size
        if prev is None:
            return np.linspace(0.0, 1.0, g + 1), np.logspace(-1.0, 2.0, 31), np.linspace(0.0, 0.3, 7), (-1.0, 2.0)
        _, s_prev, e_prev = prev
        lo, hi = max(math.log10(s_prev) - 3.0, -1.0), min(math.log10(s_prev) + 3.0, 2.0)
        return np.linspace(0.0, 1.0, 2 * g + 1), np.logspace(lo, hi, 31), np.array([e_prev]), (lo, hi)

    def _infomax(self, tracker: Tracker, point_at, prev, target_cos: float, d: int):
        """One search on t in [0, 1] (``point_at(t)``, t = 1 is x0): returns (t, s, e) at the MAP
        and the probe count that reaches ``target_cos`` against that sigmoid."""
        tt, ss, ee, (s_lo, s_hi) = self._grids(prev)
        nt, ns, ne = len(tt), len(ss), len(ee)
        spacing = (1.0 / nt, (s_hi - s_lo) / ns, (ee[-1] - ee[0]) / ne)
        logp = np.zeros((nt, ns, ne))
        history: list[tuple[float, float, float]] = []
        grid_x = np.linspace(0.0, 1.0, self.grid_size + 1)

        def likelihood(x: np.ndarray) -> np.ndarray:  # P(original class | x; t, s, e): (len(x), nt, ns, ne)
            z = ss[None, None, :, None] * (x[:, None, None, None] - tt[None, :, None, None])
            return ee + (1.0 - 2.0 * ee) * (0.5 * np.tanh(2.0 * z) + 0.5)

        while True:
            post = np.exp(logp - logp.max())
            post /= post.sum()
            i, j, k = np.unravel_index(int(np.argmax(post)), post.shape)
            history.append((float(tt[i]), math.log10(float(ss[j])), float(ee[k])))
            if len(history) > WINDOW + 1:
                recent = np.array(history[-(WINDOW + 1) :])
                moved = np.abs(np.diff(recent, axis=0)).max(axis=0)
                if np.all(moved <= np.array(spacing) + 1e-12):
                    break
            marginal = post.sum(axis=(1, 2))
            cdf = np.cumsum(marginal)
            lo_t = tt[min(int(np.searchsorted(cdf, 1e-3)), nt - 1)]
            hi_t = tt[min(int(np.searchsorted(cdf, 1.0 - 1e-3)), nt - 1)]
            xs = grid_x[(grid_x >= lo_t - 1.0 / self.grid_size) & (grid_x <= hi_t + 1.0 / self.grid_size)]
            if len(xs) > self.candidates:
                xs = xs[np.unique(np.linspace(0, len(xs) - 1, self.candidates).round().astype(int))]
            if len(xs) == 0:
                xs = grid_x[[int(round(tt[i] * self.grid_size))]]
            p1 = likelihood(xs)
            gain = _entropy(np.einsum("xtse,tse->x", p1, post)) - np.einsum("xtse,tse->x", _entropy(p1), post)
            x = float(xs[int(np.argmax(gain))])
            adversarial = yield from tracker.is_adversarial(point_at(x))
            p = likelihood(np.array([x]))[0]
            logp += np.log(np.clip(1.0 - p if adversarial else p, 1e-300, None))
        t_map, s_map, e_map = history[-1][0], 10.0 ** history[-1][1], history[-1][2]
        delta_unit = math.sqrt(d) / self.grid_size
        n = probes_for_cos(target_cos, d, s=s_map, theta=1.0 / self.grid_size, delta=delta_unit, eps=e_map)
        return (t_map, s_map, e_map), n

    def _to_boundary(self, tracker: Tracker, x0: np.ndarray, p: np.ndarray, prev, target_cos: float):
        """The info-max search on [x0, p], retried (at most 5 times) while its MAP is x0 itself;
        returns (boundary point, fit, probe count)."""
        along = blend(x0, p)

        def point_at(t: float) -> np.ndarray:
            return along(1.0 - t)

        for _ in range(6):
            fit, n = yield from self._infomax(tracker, point_at, prev, target_cos, int(x0.size))
            if fit[0] < 1.0:
                break
        else:
            fit = (1.0 - 0.5 / self.grid_size, fit[1], fit[2])
        return point_at(fit[0]), fit, n

    # -- main loop ----------------------------------------------------------------------------

    def _search(
        self, x0: np.ndarray, tracker: Tracker, rng: np.random.Generator, x_init: np.ndarray | None
    ) -> Generator[Points, Answers, None]:
        shape, d = x0.shape, int(x0.size)
        theta = self.gamma / d**1.5

        def target(n_det: float) -> float:  # HSJA's expected cosine with n_det probes
            return expected_cos(n_det, d, theta=theta, delta=theta * math.sqrt(d))

        x_adv = yield from first_adversarial(tracker, x0, rng, x_init, kind="uniform", max_tries=self.max_init_tries)
        if x_adv is None:
            return
        before = distance(x_adv, x0, "l2")  # dist_post_update
        x_t, fit, n = yield from self._to_boundary(tracker, x0, x_adv, None, target(self.init_num_evals))
        step = 1
        while tracker.remaining > 0:
            dist = distance(x_t, x0, "l2")
            if dist == 0.0:
                return
            # 4. the gradient direction from n probes of radius dist_post_update sqrt(d) / grid_size
            delta = max(before * math.sqrt(d) / self.grid_size, 1e-7)
            count = max(1, min(int(min(n, self.max_num_evals)) if math.isfinite(n) else self.max_num_evals, tracker.remaining))
            rv = rng.standard_normal((count, *shape), dtype=np.float32)
            rv /= np.linalg.norm(rv.reshape(count, -1), axis=1).reshape(-1, *([1] * len(shape)))
            pts = np.clip(x_t[None] + np.float32(delta) * rv, 0.0, 1.0)
            answers = yield from tracker.query(pts)
            u = ((pts - x_t[None]) / np.float32(delta)).reshape(count, d)
            fval = np.where(answers, 1.0, -1.0)
            grad = np.zeros(d)
            for a in range(0, count, BATCH):
                f = fval[a : a + BATCH]
                vals = f if abs(f.mean()) == 1.0 else f - f.mean()
                grad += vals.astype(np.float32) @ u[a : a + BATCH]
            norm = float(np.linalg.norm(grad))
            if not np.isfinite(norm) or norm == 0.0:
                step += 1
                continue
            update = (grad / norm).astype(np.float32).reshape(shape)
            # 5. eps = dist / sqrt(t), no halving; then x1.5 away from x0; then the search
            p = np.clip(x_t + np.float32(dist / math.sqrt(step)) * update, 0.0, 1.0)
            p = np.clip(p + np.float32(0.5) * (p - x0), 0.0, 1.0)
            before = distance(p, x0, "l2")
            n_det = min(self.init_num_evals * math.sqrt(step + 1), self.max_num_evals)
            x_t, fit, n = yield from self._to_boundary(tracker, x0, p, fit, target(n_det))
            step += 1
