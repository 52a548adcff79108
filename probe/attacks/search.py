"""Search helpers shared by the attacks: boundary bisection and random initialisation.

All helpers are generators over a :class:`~probe.attacks.base.Tracker`: every
point they look at is a query, charged to the budget. They never assume that a
re-queried point keeps its answer (the oracle may be randomized), never loop
without a bound, and always keep the *adversarial* end of a bracket. Their knobs
are keyword-only. Parameter validation lives in :mod:`probe.validate`.
"""

from __future__ import annotations

from typing import Callable, Generator

import numpy as np

from probe.attacks.base import Answers, Points, Tracker
from probe.errors import ProbeError
from probe.validate import check_choice

PointAt = Callable[[float], np.ndarray]
BisectGen = Generator[Points, Answers, "tuple[float, np.ndarray]"]


def blend(x0: np.ndarray, x: np.ndarray) -> PointAt:
    """``a -> x0 + a (x - x0)``, clipped to [0, 1], as float32 (a = 0 is x0, a = 1 is x)."""
    diff = x.astype(np.float32) - x0

    def point_at(a: float) -> np.ndarray:
        return np.clip(x0 + np.float32(a) * diff, 0.0, 1.0)

    return point_at


def linf_ball(x0: np.ndarray, x: np.ndarray) -> PointAt:
    """``r -> clip(x, x0 - r, x0 + r)``: the projection of x onto the Linf ball of radius r around x0."""
    x = x.astype(np.float32)

    def point_at(r: float) -> np.ndarray:
        r = np.float32(r)
        return np.clip(np.clip(x, x0 - r, x0 + r), 0.0, 1.0)

    return point_at


def bisect(
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
    """Shrink ``[lo, hi]`` around the boundary, ``point_at(hi)`` being (believed) adversarial.

    Returns ``(hi, point_at(hi))`` with ``hi`` the smallest parameter answered adversarial
    (or the starting ``hi``, never re-queried). ``lo`` is believed non-adversarial.
    ``guess``: an expected position of the boundary, tried first (a good guess saves
    most of the steps when the boundary is known to be near). Stops when
    ``hi - lo <= max(tol, rtol * hi)``, when the float32 candidate no longer changes, or after
    ``max_steps`` queries.
    """
    if x_hi is None:
        x_hi = point_at(hi)
    steps = 0
    if guess is not None and lo < guess < hi and hi - lo > max(tol, rtol * hi):
        x = point_at(guess)
        if not np.array_equal(x, x_hi):
            steps += 1
            if (yield from tracker.is_adversarial(x)):
                hi, x_hi = guess, x
            else:
                lo = guess
    x_lo = None
    while hi - lo > max(tol, rtol * hi) and steps < max_steps:
        mid = 0.5 * (lo + hi)
        x = point_at(mid)
        if np.array_equal(x, x_hi) or (x_lo is not None and np.array_equal(x, x_lo)):
            break  # below float32 resolution: further steps would ask the same point
        steps += 1
        if (yield from tracker.is_adversarial(x)):
            hi, x_hi = mid, x
        else:
            lo, x_lo = mid, x
    return hi, x_hi


def gallop_down(
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
    """Boundary search from an adversarial ``hi`` when the boundary is expected just below it.

    Tries ``hi - step``, ``hi - 3 step``, ``hi - 7 step``, ... (doubling, down to 0)
    until a non-adversarial answer brackets the boundary, then bisects to ``tol``.
    Cheaper than a bisection from 0 when ``step`` is of the order of the distance
    to the boundary. Returns ``(hi, point_at(hi))`` as :func:`bisect`.
    """
    if x_hi is None:
        x_hi = point_at(hi)
    step = max(float(step), tol, rtol * hi)
    lo = None
    steps = 0
    while lo is None and steps < max_steps:
        a = max(hi - step, 0.0)
        steps += 1
        if a <= 0.0:
            lo = 0.0  # the origin itself is not adversarial: no need to ask
            break
        x = point_at(a)
        if (yield from tracker.is_adversarial(x)):
            hi, x_hi = a, x
            step *= 2.0
        else:
            lo = a
    if lo is None:
        return hi, x_hi
    left = max(max_steps - steps, 0)
    return (yield from bisect(tracker, point_at, lo, hi, tol=tol, x_hi=x_hi, max_steps=left, rtol=rtol))


def noise_init(
    tracker: Tracker,
    x0: np.ndarray,
    rng: np.random.Generator,
    *,
    kind: str = "uniform",
    scale: float = 0.5,
    max_tries: int = 100,
    growth: float = 1.5,
) -> Generator[Points, Answers, "np.ndarray | None"]:
    """Random starting points, one query each, until one is adversarial (at most ``max_tries``).

    kind="uniform": uniform random images in [0, 1]^d (HSJA).
    kind="gaussian": ``clip(x0 + scale N(0, I))`` (SurFree); the scale grows by ``growth``
    every 10 failures so that a robust point still gets a chance (1: a fixed scale, the
    official SurFree code).
    kind="ramp": ``clip(x0 + k scale N(0, I))`` at the k-th try, k = 1, 2, ... (the official
    CGBA code, scale 0.02).
    Returns the first adversarial point, or None.
    """
    check_choice("kind", kind, ("uniform", "gaussian", "ramp"))
    s = float(scale)
    for i in range(max_tries):
        if kind == "uniform":
            x = rng.random(x0.shape, dtype=np.float32)
        elif kind == "ramp":
            noise = rng.standard_normal(x0.shape, dtype=np.float32)
            x = np.clip(x0 + np.float32((i + 1) * s) * noise, 0.0, 1.0)
        else:  # "gaussian"
            if i and i % 10 == 0:
                s *= growth
            x = np.clip(x0 + np.float32(s) * rng.standard_normal(x0.shape, dtype=np.float32), 0.0, 1.0)
        if (yield from tracker.is_adversarial(x)):
            return x
    return None


def corner_start(
    tracker: Tracker, x0: np.ndarray, rng: np.random.Generator, *, max_tries: int
) -> Generator[Points, Answers, "np.ndarray | None"]:
    """Starts for a point that an attack's own initialisation could not leave, one query each.

    In turn: the corners ``clip(x0 + s)`` of the box along sign patterns ``s`` (RayS' sign
    directions at their largest radius; the attack's bisection then searches the radius),
    from coarse to fine (the whole image, one sign per channel, then 2^k x 2^k blocks per
    channel, then single pixels: a blocky pattern is the strongest low-frequency change,
    a pixel pattern the strongest change of a random linear form), and ``x0`` drowned in
    Gaussian noise of growing strength (0.5, 1, 2, 4, 8). Returns the first adversarial
    point, or None after ``max_tries`` queries.
    """
    shape = x0.shape
    if len(shape) == 3:
        c, h, w = shape
        levels = [(1, 1, 1), (c, 1, 1)] + [(c, min(h, 2**k), min(w, 2**k)) for k in range(1, 5)] + [(c, h, w)]
    else:
        levels = [(1,), (int(np.prod(shape)),)]
    tries = 0
    while tries < max_tries:
        for grid in levels:
            if tries >= max_tries:
                return None
            tries += 1
            signs = rng.integers(0, 2, size=grid).astype(np.float32) * 2 - 1
            if len(shape) == 3:
                signs = np.kron(signs, np.ones((1, -(-shape[1] // grid[1]), -(-shape[2] // grid[2])), np.float32))
                signs = np.broadcast_to(signs[: shape[0] if grid[0] > 1 else 1, : shape[1], : shape[2]], shape)
            else:
                signs = np.broadcast_to(signs, shape) if grid == (1,) else signs.reshape(shape)
            x = np.clip(x0 + signs, 0.0, 1.0).astype(np.float32)
            if (yield from tracker.is_adversarial(x)):
                return x
        for scale in (0.5, 1.0, 2.0, 4.0, 8.0):
            if tries >= max_tries:
                return None
            tries += 1
            x = np.clip(x0 + np.float32(scale) * rng.standard_normal(shape, dtype=np.float32), 0.0, 1.0)
            if (yield from tracker.is_adversarial(x)):
                return x
    return None


def check_start(
    tracker: Tracker, x0: np.ndarray, x_init: np.ndarray | None
) -> Generator[Points, Answers, "np.ndarray | None"]:
    """One query for a caller's starting point: returns it (float32, clipped) if adversarial, else None."""
    if x_init is None:
        return None
    x = np.clip(np.asarray(x_init, dtype=np.float32), 0.0, 1.0)
    if x.shape != x0.shape:
        raise ProbeError(f"x_init must have the shape of x0 {x0.shape}, got {x.shape}")
    if (yield from tracker.is_adversarial(x)):
        return x
    return None


def unit(v: np.ndarray) -> np.ndarray:
    """v / ||v||_2 (float32), or v unchanged when its norm is 0 or not finite."""
    n = float(np.linalg.norm(v.ravel().astype(np.float64)))
    if not np.isfinite(n) or n == 0.0:
        return v
    return (v / n).astype(np.float32)


def sum_step(x0: np.ndarray, x_b: np.ndarray, dist: float, v: np.ndarray) -> tuple[np.ndarray, float]:
    """HSJA's "sum" step (and PSJ's): the unit direction from the boundary point ``x_b`` toward
    ``x0 + dist v``, the point at the same distance along the (accumulated) estimate ``v``, and
    that step's length (0: no step)."""
    step = x0 + np.float32(dist) * v - x_b
    eps = float(np.linalg.norm(step))
    if eps > 0.0:
        step /= np.float32(eps)
    return step, eps


def halving_step(
    tracker: Tracker, x_b: np.ndarray, v: np.ndarray, eps: float, max_halvings: int
) -> Generator[Points, Answers, "np.ndarray | None"]:
    """The geometric step of HSJA and PSJ: ``x_b + eps v`` (clipped to [0, 1]), ``eps`` halved
    until the point is adversarial, at most ``max_halvings`` times; the point, or None."""
    for _ in range(max_halvings + 1):
        cand = np.clip(x_b + np.float32(eps) * v, 0.0, 1.0)
        if (yield from tracker.is_adversarial(cand)):
            return cand
        eps /= 2.0
    return None
