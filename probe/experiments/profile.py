"""Fig. 1: the probability of being adversarial along the direction from x_o to x_a.

At each point ``x(t) = clip(x_o + t u)``, ``u = (x_a - x_o) / ||x_a - x_o||``, the
experiment draws ``samples`` micro-decisions ``f(x(t) + sigma N)`` and counts the
ones that differ from the smoothed label of x_o: the fraction ``p(t)``, with its
Clopper-Pearson band, estimates ``1 - pi_{g_sigma(x_o)}(x(t))``. For a linear f,
``p(t) = Phi(t' / sigma)`` with t' the signed distance past the hyperplane.

For each n the probability that the practical defense g_{sigma,n} calls x(t)
adversarial is the binomial tail ``P[Bin(n, p(t)) >= ceil(n/2)]`` (the seed
paper's level simulation at P_a = 1/2; the micro-decisions being i.i.d. given
x(t), this plug-in is exact up to the error on p). Where each curve reaches the
levels P_a (0.5, 0.8) is where an adversarial of that level starts (eq. 4).
"""

from __future__ import annotations

import numpy as np

from probe.errors import ProbeError
from probe.experiments.common import (
    along,
    clopper_pearson,
    direction,
    first_crossing,
    plain_boundary,
    rng,
    vote_adversarial_probability,
    wrong_fraction,
)
from probe.runtime import Runtime
from probe.smoothing import pa_vote_threshold_exact


def probability_profile(
    runtime: Runtime,
    x0: np.ndarray,
    x_adv: np.ndarray,
    *,
    sigma: float,
    ns: tuple[int, ...] = (10, 50, 100),
    samples: int = 400,
    points: int = 41,
    stop: float | None = None,
    start: float = 0.0,
    levels: tuple[float, ...] = (0.5, 0.8),
    confidence: float = 0.95,
    seed: int = 0,
    label: int | None = None,
) -> dict:
    """The numbers of Fig. 1 (see the module docstring).

    runtime : the model. x0, x_adv : original and adversarial images (3, H, W).
    sigma : smoothing noise (> 0). ns : sample sizes of the defense to compare.
    samples : micro-decisions per point (the resolution of p). points : points on the ray.
    stop : last distance from x0 [default: max(2 ||x_a - x_o||, ||x_a - x_o|| + 6 sigma)].
    start : first distance from x0 (zoom on the boundary region; the label is still taken at x0).
    levels : the P_a levels to mark. confidence : of the binomial band.
    label : the label to move away from [default: the majority of the micro-decisions at x0].
    """
    if sigma <= 0:
        raise ProbeError(f"the profile needs sigma > 0, got {sigma}")
    if samples < 1 or points < 2:
        raise ProbeError("the profile needs samples >= 1 and points >= 2")
    if not ns or min(ns) < 1:
        raise ProbeError("every n must be >= 1")
    d_adv = float(np.linalg.norm((x_adv.astype(np.float64) - x0).ravel()))
    u = direction(x_adv - x0)
    stop = float(stop) if stop is not None else max(2.0 * d_adv, d_adv + 6.0 * sigma)
    if not 0 <= start < stop:
        raise ProbeError(f"the profile needs 0 <= start < stop, got start={start}, stop={stop}")
    ts = np.linspace(float(start), stop, points)
    pts = along(x0, u, ts)
    stream = rng(seed, 21)
    if label is None:
        label = int(np.argmax(_label_counts(runtime, x0, sigma, samples, stream)))
    wrong = wrong_fraction(runtime, pts, label, sigma=sigma, samples=samples, stream=stream)
    p = wrong / samples
    lo, hi = clopper_pearson(wrong, samples, confidence)
    plain = runtime.labels(pts) != label
    curves, bands, crossings = {}, {}, {"micro": {f"{pa:g}": first_crossing(ts, p, pa) for pa in levels}}
    for n in ns:
        curve = vote_adversarial_probability(p, n)
        curves[str(n)] = curve.tolist()
        bands[str(n)] = [vote_adversarial_probability(lo, n).tolist(), vote_adversarial_probability(hi, n).tolist()]
        crossings[f"n={n}"] = {f"{pa:g}": first_crossing(ts, curve, pa) for pa in levels}
    l2 = np.linalg.norm((pts.astype(np.float64) - x0).reshape(len(ts), -1), axis=1)
    return {
        "figure": "profile",
        "sigma": float(sigma),
        "samples": int(samples),
        "ns": [int(n) for n in ns],
        "levels": [float(v) for v in levels],
        "confidence": float(confidence),
        "label": int(label),
        "label_name": runtime.class_name(int(label)),
        "adversarial_distance": d_adv,
        "distance": ts.tolist(),
        "l2": l2.tolist(),
        "p_wrong": p.tolist(),
        "p_low": lo.tolist(),
        "p_high": hi.tolist(),
        "plain_adversarial": plain.astype(bool).tolist(),
        "adversarial_probability": curves,
        "adversarial_probability_band": bands,
        "crossings": crossings,
        "boundary_f": plain_boundary(runtime, x0, u, label=label, stop=stop),
        "boundary_g_sigma": first_crossing(ts, p, 0.5),
        # eq. (5): level P_a holds for n votes when the wrong fraction is at least this
        "micro_threshold": {str(n): {f"{pa:g}": 1.0 - pa_vote_threshold_exact(n, pa) for pa in levels} for n in ns},
        "method": "micro-decision counts per point; g_{sigma,n} curves are binomial tails of p (at least ceil(n/2) wrong)",
    }


def _label_counts(runtime: Runtime, x0: np.ndarray, sigma: float, samples: int, stream) -> np.ndarray:
    from probe.smoothing import SmoothedClassifier

    return SmoothedClassifier(runtime, sigma, samples).votes([(x0[None], stream)])[0][0]
