"""Fig. 2: a two-dimensional slice of input space around an image, without and with smoothing.

The plane through x_o spanned by two orthonormal directions (u, v): two random
Gaussian directions, or u toward an adversarial image and v random and orthogonal
to it. Each cell ``clip(x_o + a u + b v)`` gets the plain label f(x) (one inference)
and one majority vote of g_{sigma,n} (n inferences). Rows are processed one at a
time so memory stays at one row of images whatever the model's size.
"""

from __future__ import annotations

import numpy as np

from probe.errors import ProbeError
from probe.experiments.common import direction, rng
from probe.oracle import majority
from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier


def directions(
    x0: np.ndarray, x_adv: np.ndarray | None, stream: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal (u, v): u toward x_adv (or random), v random and orthogonal to u."""
    u = direction(x_adv - x0) if x_adv is not None else direction(stream.standard_normal(x0.shape).astype(np.float32))
    v = stream.standard_normal(x0.shape)
    v -= np.dot(v.ravel(), u.ravel().astype(np.float64)) * u
    return u, direction(v.astype(np.float32))


def label_slice(
    runtime: Runtime,
    x0: np.ndarray,
    *,
    sigma: float,
    n: int,
    grid: int = 41,
    radius: float | None = None,
    x_adv: np.ndarray | None = None,
    seed: int = 0,
) -> dict:
    """The numbers of Fig. 2: plain and smoothed labels on a ``grid`` x ``grid`` slice.

    radius : half-width of the slice in L2 units [default: 2 ||x_a - x_o|| with an
        adversarial, else 20 sigma (1 when sigma = 0)].
    Returns the coordinates, the two label maps (``[row = v index][column = u index]``),
    the labels seen with their names, and the fraction of cells where they agree.
    """
    if grid < 2:
        raise ProbeError(f"the grid needs at least 2 points per side, got {grid}")
    if sigma < 0 or n < 1:
        raise ProbeError("the slice needs sigma >= 0 and n >= 1")
    stream = rng(seed, 31)
    u, v = directions(x0, x_adv, stream)
    d_adv = None if x_adv is None else float(np.linalg.norm((x_adv.astype(np.float64) - x0).ravel()))
    if radius is None:
        radius = 2.0 * d_adv if d_adv else (20.0 * sigma if sigma > 0 else 1.0)
    if not radius > 0:
        raise ProbeError(f"--radius must be > 0, got {radius}")
    coords = np.linspace(-radius, radius, grid).astype(np.float32)
    classifier = SmoothedClassifier(runtime, sigma, n)
    noise = rng(seed, 32)
    plain = np.empty((grid, grid), dtype=np.int64)
    smoothed = np.empty((grid, grid), dtype=np.int64)
    shape = (1,) * x0.ndim
    row_u = coords.reshape(-1, *shape) * u[None]  # (grid, C, H, W): the u offsets of one row
    for i, b in enumerate(coords):  # one row (fixed v coordinate) at a time
        row = np.clip(x0[None] + row_u + b * v[None], 0.0, 1.0).astype(np.float32)
        plain[i] = runtime.labels(row)
        smoothed[i] = majority(classifier.votes([(row, noise)])[0]) if sigma > 0 else plain[i]
    center = int(runtime.labels(x0[None])[0])
    seen = sorted(set(np.unique(plain).tolist()) | set(np.unique(smoothed).tolist()))
    return {
        "figure": "slice",
        "sigma": float(sigma),
        "n": classifier.n,
        "grid": int(grid),
        "radius": float(radius),
        "directions": "adversarial+random" if x_adv is not None else "random+random",
        "adversarial_distance": d_adv,
        "coords": coords.astype(float).tolist(),
        "center_label": center,
        "labels": {str(k): runtime.class_name(int(k)) for k in seen},
        "plain": plain.tolist(),
        "smoothed": smoothed.tolist(),
        "agreement": float(np.mean(plain == smoothed)),
        "plain_center_fraction": float(np.mean(plain == center)),
        "smoothed_center_fraction": float(np.mean(smoothed == center)),
    }
