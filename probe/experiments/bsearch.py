"""Fig. 3: where a binary search ends when the oracle is randomized.

The attacks' own boundary bisection (:func:`probe.attacks.search.bisect`) runs
between x_o and an adversarial x_a, through the same query-only :class:`Oracle`
the attacks get (criterion: untargeted, level P_a, against the smoothed label of
x_o), ``repeats`` times with fresh noise, for each n. All repeats of one n run
together in the :class:`Engine`, so the model sees full batches. The end point
(the bracket's adversarial end) is reported as its L2 distance to x_o.

With the plain model the search always ends at the same point; under g_{sigma,n}
the end points spread, less for larger n, around the frontier of the ideal
g_sigma (estimated along the segment by a "genie" with many micro-decisions).
"""

from __future__ import annotations

import numpy as np

from probe.attacks.base import Tracker, distance
from probe.attacks.search import bisect, blend
from probe.engine import Engine, Job
from probe.errors import ProbeError
from probe.experiments.common import direction, plain_boundary, rng, smoothed_crossing
from probe.oracle import Criterion, Oracle, majority
from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier


def _search(tracker: Tracker, point_at, tol: float, steps: int):
    """The attacks' bisection on the blend parameter, as an engine job's generator."""
    hi, x_hi = yield from bisect(tracker, point_at, 0.0, 1.0, tol=tol, max_steps=steps)
    return hi, x_hi


def search_end_points(
    runtime: Runtime,
    x0: np.ndarray,
    x_adv: np.ndarray,
    *,
    label: int,
    sigma: float,
    n: int,
    repeats: int,
    pa: float | None = 0.5,
    steps: int = 12,
    seed: int = 0,
) -> np.ndarray:
    """L2 distances to x0 of the end points of ``repeats`` bisections under g_{sigma,n}."""
    classifier = SmoothedClassifier(runtime, sigma, n)
    criterion = Criterion(label) if pa is None else Criterion(label, rule="paper", pa=pa)
    point_at = blend(x0, x_adv)
    tol = 2.0**-steps
    jobs = []
    for r in range(repeats):
        tracker = Tracker(x0, steps + 1, "l2")
        oracle = Oracle(classifier, criterion, budget=steps + 1, rng=rng(seed, 41, n, r))
        jobs.append(Job(_search(tracker, point_at, tol, steps), oracle, {"repeat": r}))
    Engine(classifier).run(jobs)
    return np.array([distance(job.outcome[1], x0, "l2") for job in jobs], dtype=np.float64)


def bsearch_distribution(
    runtime: Runtime,
    x0: np.ndarray,
    x_adv: np.ndarray,
    *,
    sigma: float,
    ns: tuple[int, ...] = (10, 50, 100),
    repeats: int = 100,
    pa: float = 0.5,
    steps: int = 12,
    genie_samples: int = 2000,
    seed: int = 0,
    label: int | None = None,
) -> dict:
    """The numbers of Fig. 3 (see the module docstring).

    steps : bisection steps (resolution 2^-steps of ||x_a - x_o||). genie_samples :
    micro-decisions per step of the estimate of the ideal frontier (0 to skip it).
    label : the label to move away from [default: the smoothed label of x0 by a
    majority over ``genie_samples`` (at least 100) micro-decisions].
    """
    if sigma < 0 or repeats < 1 or steps < 1:
        raise ProbeError("the binary-search experiment needs sigma >= 0, repeats >= 1 and steps >= 1")
    if not ns or min(ns) < 1:
        raise ProbeError("every n must be >= 1")
    d_adv = float(np.linalg.norm((x_adv.astype(np.float64) - x0).ravel()))
    u = direction(x_adv - x0)
    if label is None:
        m = max(genie_samples, 100)
        label = int(majority(SmoothedClassifier(runtime, sigma, m).votes([(x0[None], rng(seed, 42))])[0])[0])
    per_n = {}
    for n in ns:
        ends = search_end_points(
            runtime, x0, x_adv, label=label, sigma=sigma, n=n, repeats=repeats, pa=pa, steps=steps, seed=seed
        )
        q = np.quantile(ends, [0.05, 0.25, 0.5, 0.75, 0.95])
        per_n[str(n)] = {
            "end_distances": ends.tolist(),
            "mean": float(ends.mean()),
            "std": float(ends.std(ddof=1)) if len(ends) > 1 else 0.0,
            "median": float(q[2]),
            "iqr": float(q[3] - q[1]),
            "q05": float(q[0]),
            "q95": float(q[4]),
        }
    genie = None
    level = None
    if sigma > 0 and genie_samples > 0:
        genie = smoothed_crossing(
            runtime,
            x0,
            u,
            label=label,
            sigma=sigma,
            stop=d_adv,
            target=0.5,
            samples=genie_samples,
            stream=rng(seed, 43),
        )
        if pa is not None and pa != 0.5:
            level = smoothed_crossing(
                runtime,
                x0,
                u,
                label=label,
                sigma=sigma,
                stop=d_adv,
                target=pa,
                samples=genie_samples,
                stream=rng(seed, 44),
            )
    return {
        "figure": "bsearch",
        "sigma": float(sigma),
        "ns": [int(n) for n in ns],
        "repeats": int(repeats),
        "pa": pa,
        "steps": int(steps),
        "label": int(label),
        "label_name": runtime.class_name(int(label)),
        "adversarial_distance": d_adv,
        "boundary_f": plain_boundary(runtime, x0, u, label=label, stop=d_adv) if sigma > 0 else None,
        "boundary_g_sigma": genie if sigma > 0 else plain_boundary(runtime, x0, u, label=label, stop=d_adv),
        "boundary_level": level,
        "genie_samples": int(genie_samples),
        "per_n": per_n,
    }
