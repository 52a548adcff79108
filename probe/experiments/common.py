"""What the experiments share: points along a segment, micro-decision statistics, boundaries,
and where the original and adversarial images come from.

Everything lives in canonical space (float32 RGB [0, 1], (3, H, W)). Randomness comes
from ``numpy.random.default_rng([seed, ...])`` streams, so a figure depends only on
its seed and arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from probe.attacks.base import distance
from probe.attacks.search import unit
from probe.errors import ProbeError
from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier


def rng(seed: int, *keys: int) -> np.random.Generator:
    """A seeded stream keyed by integers."""
    return np.random.default_rng([seed, *keys])


def direction(v: np.ndarray) -> np.ndarray:
    """v / ||v||_2 as float32; ProbeError when v is zero (the two images are the same point).

    Unlike :func:`probe.attacks.search.unit`, which returns a zero vector unchanged
    inside an attack, a figure has no meaning without a direction.
    """
    u = unit(v)
    if not np.any(u):
        raise ProbeError("the two images are identical: there is no direction between them")
    return u


def along(x0: np.ndarray, u: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Points ``clip(x0 + t u)`` for each t in ``distances`` (u a unit direction): (T, C, H, W) float32."""
    t = np.asarray(distances, dtype=np.float32).reshape(-1, *([1] * x0.ndim))
    return np.clip(x0[None] + t * u[None], 0.0, 1.0).astype(np.float32)


def clopper_pearson(k: np.ndarray, m: int, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper-Pearson interval of a binomial proportion k / m (vectorized)."""
    k = np.asarray(k, dtype=np.float64)
    a = (1.0 - confidence) / 2.0
    lo = np.where(k > 0, stats.beta.ppf(a, np.maximum(k, 1e-12), m - k + 1), 0.0)
    hi = np.where(k < m, stats.beta.ppf(1.0 - a, k + 1, np.maximum(m - k, 1e-12)), 1.0)
    return lo, hi


def wrong_fraction(
    runtime: Runtime, points: np.ndarray, label: int, *, sigma: float, samples: int, stream: np.random.Generator
) -> np.ndarray:
    """Number of the ``samples`` micro-decisions ``f(x + sigma N)`` that differ from ``label``, per point."""
    counts = SmoothedClassifier(runtime, sigma, samples).votes([(points, stream)])[0]
    m = int(counts[0].sum())
    return m - counts[:, label]


def vote_adversarial_probability(p_wrong: np.ndarray, n: int, pa: float = 0.5) -> np.ndarray:
    """P[at least ceil(n P_a) of n i.i.d. micro-decisions are wrong] when each is wrong with p_wrong.

    The probability that g_{sigma,n} calls a point adversarial under the seed paper's
    level-P_a simulation (P_a = 1/2: the majority vote is wrong), as a binomial tail.
    """
    from probe.smoothing import level_vote_count

    need = level_vote_count(n, pa)
    return stats.binom.sf(need - 1, n, np.clip(np.asarray(p_wrong, dtype=np.float64), 0.0, 1.0))


def first_crossing(xs: np.ndarray, ys: np.ndarray, level: float) -> float | None:
    """The first x where ys reaches ``level`` (linear interpolation), None if it never does."""
    ys = np.asarray(ys, dtype=np.float64)
    above = np.flatnonzero(ys >= level)
    if not len(above):
        return None
    i = int(above[0])
    if i == 0:
        return float(xs[0])
    y0, y1 = ys[i - 1], ys[i]
    frac = (level - y0) / (y1 - y0) if y1 != y0 else 0.0
    return float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))


def plain_boundary(
    runtime: Runtime, x0: np.ndarray, u: np.ndarray, *, label: int, stop: float, grid: int = 33, steps: int = 30
) -> float | None:
    """Distance from x0 along u where the plain model first leaves ``label`` (None if not before ``stop``).

    A grid of ``grid`` points locates the first flip, then a bisection refines it.
    """
    ts = np.linspace(0.0, stop, grid)
    off = np.flatnonzero(runtime.labels(along(x0, u, ts)) != label)
    if not len(off) or off[0] == 0:
        return None if not len(off) else 0.0
    lo, hi = float(ts[off[0] - 1]), float(ts[off[0]])
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if runtime.labels(along(x0, u, np.array([mid])))[0] != label:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def smoothed_crossing(
    runtime: Runtime,
    x0: np.ndarray,
    u: np.ndarray,
    *,
    label: int,
    sigma: float,
    stop: float,
    target: float = 0.5,
    samples: int = 1000,
    steps: int = 16,
    stream: np.random.Generator | None = None,
) -> float | None:
    """Distance along u where the fraction of wrong micro-decisions reaches ``target`` ("genie" estimate).

    With ``target = 0.5`` this is the frontier of the ideal g_sigma along the ray. A
    bisection whose every step uses ``samples`` fresh micro-decisions: its error is
    of the order of the distance over which the fraction moves by 1/sqrt(samples).
    None when the fraction at ``stop`` is still below the target.
    """
    stream = stream or rng(0, 99)

    def frac(t: float) -> float:
        return (
            float(
                wrong_fraction(
                    runtime, along(x0, u, np.array([t])), label, sigma=sigma, samples=samples, stream=stream
                )[0]
            )
            / samples
        )

    if sigma == 0:
        return plain_boundary(runtime, x0, u, label=label, stop=stop)
    if frac(stop) < target:
        return None
    lo, hi = 0.0, float(stop)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if frac(mid) >= target:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- where images come from


@dataclass
class Pair:
    """An original image and (optionally) an adversarial one, with where they came from."""

    x0: np.ndarray
    x_adv: np.ndarray | None
    image: str
    source: str  # "result", "file", "attack" or "none"

    @property
    def distance(self) -> float | None:
        return None if self.x_adv is None else distance(self.x_adv, self.x0, "l2")


def pick_original(images, image: str | None) -> tuple[np.ndarray, str]:
    """The image with id ``image`` (a file name) or, if None, the first one."""
    if image is None:
        return images.x[0], images.ids[0]
    if image.isdigit() and image not in images.ids:
        i = int(image)
        if not 0 <= i < len(images):
            raise ProbeError(f"--image {i} is out of range: {len(images)} images loaded")
        return images.x[i], images.ids[i]
    if image not in images.ids:
        raise ProbeError(f"no image named {image!r} among the loaded images ({', '.join(images.ids[:5])}, ...)")
    i = images.ids.index(image)
    return images.x[i], images.ids[i]


def pair_from_result(results: Path, index: int, images) -> Pair:
    """The original and adversarial images of record ``index`` of a results.jsonl (it needs ``adv_path``)."""
    from probe.data import load_image
    from probe.runs.results import read_results

    if not results.is_file():
        raise ProbeError(f"no such results file: {results}")
    records = read_results(results)
    if not 0 <= index < len(records):
        raise ProbeError(f"--index {index} is out of range: {results} holds {len(records)} records")
    rec = records[index]
    path = rec.get("adv_path")
    if not path:
        raise ProbeError(
            f"record {index} of {results} has no adversarial image (adv_path); "
            "run the attack or sweep with images saved, or pick a successful record"
        )
    adv_file = Path(path)
    if not adv_file.is_absolute() and not adv_file.is_file():
        adv_file = results.parent / adv_file
    if not adv_file.is_file():
        raise ProbeError(f"adversarial image not found: {adv_file}")
    x0, name = pick_original(images, rec["image"])
    return Pair(x0, load_image(adv_file, x0.shape[1:]), name, "result")


def pair_from_file(adversarial: Path, images, image: str | None) -> Pair:
    """An original from the loaded images and an adversarial PNG given by the user."""
    from probe.data import load_image

    if not adversarial.is_file():
        raise ProbeError(f"no such adversarial image: {adversarial}")
    x0, name = pick_original(images, image)
    return Pair(x0, load_image(adversarial, x0.shape[1:]), name, "file")


def pair_from_attack(
    runtime: Runtime, images, *, image: str | None, attack: str = "hsja", budget: int = 1000, seed: int = 0
) -> Pair:
    """Attack the *plain* model (no smoothing) to get an adversarial on the boundary of f (as in Fig. 1)."""
    from probe.attacks import make_attack
    from probe.attacks.base import run_attack
    from probe.oracle import Criterion, Oracle

    x0, name = pick_original(images, image)
    plain = SmoothedClassifier(runtime, 0.0, 1)
    label = int(runtime.labels(x0[None])[0])
    oracle = Oracle(plain, Criterion(label), budget=budget, rng=rng(seed, 1))
    outcome = run_attack(make_attack(attack), x0, oracle, budget, rng(seed, 2))
    if not outcome.found:
        raise ProbeError(
            f"{attack} found no adversarial for {name} within {budget} queries; give one with --adversarial"
        )
    return Pair(x0, outcome.x_adv, name, "attack")
