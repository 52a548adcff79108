"""Boundary search against a noisy oracle: a Bayesian info-max (probabilistic) bisection.

A plain bisection believes every answer; against a randomized oracle (randomized
smoothing) one wrong answer near the start sends it to the wrong half for good. The
search here (after PopSkipJump, Simon-Gabriel, Sheikh, Krause, ICML 2021, and the
probabilistic bisection of Horstein / Waeber, Frazier, Henderson) keeps a posterior over
the boundary position ``b`` on a line ``t -> point_at(t)`` and over the width ``s`` of
the noisy band, under the answer model

    P(True | t; b, s) = eps + (1 - 2 eps) / (1 + exp(-(t - b) / s))

(a logistic band of width s around b, plus a flip probability eps that keeps a
deterministic oracle's answers from being believed absolutely). The prior is uniform on
a grid of b over ``[lo, hi]`` and log-uniform on a grid of s; the width is fitted from
the search's own answers (its posterior marginal).

Each query goes where its answer is expected to tell the most about (b, s): the
candidate t that maximises the mutual information ``H(E p) - E H(p)`` (BALD) between its
answer and the parameters. Against a deterministic oracle this is the posterior median,
i.e. a bisection; against a noisy one the chosen points stay near the estimated
boundary and come back to the same places: repeats happen exactly where an answer
still pays, and each one is a query charged to the budget. The grid zooms onto the
posterior's support when it concentrates (the likelihood is recomputed from every
answer on the new grid), so the precision is not bound to the first grid.

Stops when the central 90% of the posterior of b is narrower than
``max(tol, rtol * median)``, when the candidate no longer changes in float32, or after
``max_steps`` queries. Returns the posterior ``level`` quantile of b (0.9 by default:
just outside the band, on the adversarial side) and its point, never re-queried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generator

import numpy as np

from probe.attacks.base import Answers, Points, Tracker
from probe.attacks.search import BisectGen, PointAt, bisect, gallop_down
from probe.validate import check_choice

BISECTIONS = ("plain", "bayes")
GRID = 257  # boundary positions on the grid
WIDTHS = 8  # band widths on the grid, log-spaced
CANDIDATES = 48  # query positions considered per step
FLIP = 0.01  # eps: the floor of the answer model


@dataclass
class BayesResult:
    """What :func:`bayes_search` found: the returned position ``t`` (posterior quantile
    ``level``) and its point, the posterior median, the fitted band width ``scale`` (in
    units of t, the posterior mean of s), the queries spent, and whether the answers
    ``contradicted`` each other (a "not adversarial" beyond an "adversarial" on the line:
    a deterministic oracle with one boundary crossing on the line never gives one)."""

    t: float
    x: np.ndarray
    median: float
    scale: float
    steps: int
    contradicted: bool = False


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return -(p * np.log(p) + (1.0 - p) * np.log1p(-p))


def _quantile(grid: np.ndarray, mass: np.ndarray, q: float) -> float:
    cdf = np.cumsum(mass)
    i = int(np.searchsorted(cdf, q * cdf[-1]))
    return float(grid[min(i, len(grid) - 1)])


def bayes_search(
    tracker: Tracker,
    point_at: PointAt,
    lo: float,
    hi: float,
    *,
    tol: float,
    rtol: float = 0.0,
    max_steps: int = 64,
    level: float = 0.9,
    min_scale: float = 1e-3,
) -> Generator[Points, Answers, BayesResult]:
    """Locate the boundary on ``[lo, hi]`` (``point_at(hi)`` believed adversarial, ``point_at(lo)``
    not) with at most ``max_steps`` queries, one at a time; see the module notes.

    ``min_scale``: the smallest band width on the grid, relative to ``hi - lo`` (the largest
    is 0.3 of it).
    """
    span = float(hi - lo)
    widths = span * np.geomspace(min_scale, 0.3, WIDTHS) if span > 0 else np.ones(WIDTHS)
    log_prior_s = np.zeros(WIDTHS)
    ts: list[float] = []
    ys: list[bool] = []
    a, c = float(lo), float(hi)
    grid = np.linspace(a, c, GRID)

    def log_post(grid: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(log_prior_s, (len(grid), WIDTHS)).copy()
        for t, y in zip(ts, ys):
            p = FLIP + (1.0 - 2.0 * FLIP) * _sigmoid((t - grid[:, None]) / widths[None, :])
            out += np.log(p if y else 1.0 - p)
        return out

    lp = log_post(grid)
    steps = 0
    last_x = None
    while True:
        post = np.exp(lp - lp.max())
        post /= post.sum()
        mb = post.sum(axis=1)
        q05, q50, q95 = (_quantile(grid, mb, q) for q in (0.05, 0.5, 0.95))
        if q95 - q05 <= max(tol, rtol * abs(q50)) or steps >= max_steps or span <= 0:
            break
        lo_s, hi_s = _quantile(grid, mb, 0.001), _quantile(grid, mb, 0.999)
        if hi_s - lo_s < (c - a) / 8.0:  # zoom onto the support; recompute from every answer
            pad = 0.1 * (hi_s - lo_s) + 2.0 * (c - a) / GRID
            a, c = max(float(lo), lo_s - pad), min(float(hi), hi_s + pad)
            grid = np.linspace(a, c, GRID)
            lp = log_post(grid)
            continue
        cand = np.linspace(lo_s, hi_s, CANDIDATES)
        p = FLIP + (1.0 - 2.0 * FLIP) * _sigmoid((cand[:, None, None] - grid[None, :, None]) / widths[None, None, :])
        pbar = np.einsum("cgs,gs->c", p, post)
        gain = _entropy(pbar) - np.einsum("cgs,gs->c", _entropy(p), post)
        t = float(cand[int(np.argmax(gain))])
        x = point_at(t)
        if last_x is not None and np.array_equal(x, last_x) and np.max(gain) < 1e-6:
            break  # nothing left to learn at float32 resolution
        last_x = x
        steps += 1
        y = yield from tracker.is_adversarial(x)
        ts.append(t)
        ys.append(bool(y))
        pt = FLIP + (1.0 - 2.0 * FLIP) * _sigmoid((t - grid[:, None]) / widths[None, :])
        lp = lp + np.log(pt if y else 1.0 - pt)
    post = np.exp(lp - lp.max())
    post /= post.sum()
    mb = post.sum(axis=1)
    t_ret = _quantile(grid, mb, level)
    scale = float(post.sum(axis=0) @ widths)
    clean = [t for t, y in zip(ts, ys) if not y]
    adversarial = [t for t, y in zip(ts, ys) if y]
    contradicted = bool(clean and adversarial and max(clean) > min(adversarial))
    return BayesResult(t_ret, point_at(t_ret), _quantile(grid, mb, 0.5), scale, steps, contradicted)


def bayes_bisect(
    tracker: Tracker,
    point_at: PointAt,
    lo: float,
    hi: float,
    *,
    tol: float,
    guess: float | None = None,
    x_hi: np.ndarray | None = None,
    max_steps: int = 64,
    rtol: float = 0.0,
) -> BisectGen:
    """:func:`~probe.attacks.search.bisect`'s signature and return ``(t, point_at(t))`` with
    the Bayesian search (``guess`` and ``x_hi`` are accepted and unused: the search places
    its own queries). A noisy search needs more queries than a bisection: ``max_steps`` is
    raised to at least 24."""
    out = yield from bayes_search(tracker, point_at, lo, hi, tol=tol, rtol=rtol, max_steps=max(max_steps, 24))
    return out.t, out.x


def bayes_gallop_down(
    tracker: Tracker,
    point_at: PointAt,
    hi: float,
    *,
    step: float,
    tol: float,
    x_hi: np.ndarray | None = None,
    max_steps: int = 64,
    rtol: float = 0.0,
) -> BisectGen:
    """:func:`~probe.attacks.search.gallop_down`'s signature with the Bayesian search on
    ``[max(hi - 8 step, 0), hi]`` (the boundary is expected just below ``hi``)."""
    lo = max(hi - 8.0 * max(float(step), tol, rtol * hi), 0.0)
    return (yield from bayes_bisect(tracker, point_at, lo, hi, tol=tol, x_hi=x_hi, max_steps=max_steps, rtol=rtol))


def bisections(kind: str):
    """``(bisect, gallop_down)`` for ``kind`` "plain" (the deterministic ones of
    :mod:`probe.attacks.search`) or "bayes" (this module's)."""
    check_choice("bisection", kind, BISECTIONS)
    return (bisect, gallop_down) if kind == "plain" else (bayes_bisect, bayes_gallop_down)


def noise_probe_size(scale: float, base: float, factor: float) -> float:
    """The probe size for a gradient estimate: ``max(base, factor * scale)`` where ``scale``
    is the measured band width (distance units): probes inside the band see coin flips."""
    return max(float(base), float(factor) * float(scale)) if math.isfinite(scale) else float(base)


def crossing_probe_size(scale: float, base: float, factor: float, dim: int, cap: float) -> float:
    """The probe size once the answers have contradicted each other (the oracle is random):
    ``noise_probe_size(scale, base, factor)``, and at least long enough to cross the band from
    a ``dim``-dimensional probe subspace (``factor * sqrt(dim)`` band widths, a random unit
    probe holds about ``1 / sqrt(dim)`` of the normal), that part capped at ``cap``."""
    near = noise_probe_size(scale, base, factor)
    across = noise_probe_size(scale, base, factor * math.sqrt(dim))
    return max(near, min(across, float(cap)))
