"""Test helper: linear binary models with exactly known optimal adversarials.

f(x) = 1[w.x + b > 0] on canonical-shaped inputs (C, H, W); the original x0 is on
the negative side. The smallest adversarial perturbations are known in closed
form: L2 = |w.x0 + b| / ||w||_2 along w, Linf = |w.x0 + b| / ||w||_1 along sign(w).
x0 and w are chosen so that both optimal points lie inside [0, 1]^d: the box then
does not change the optimum and the formulas are exact.

The oracle answers one boolean per point ("is it adversarial", i.e. f(x) = 1).
Randomized version (sigma > 0): n noisy copies, each copy voting f(x + sigma N). The
number k of copies voting "adversarial" (class 1; the original is class 0) is drawn
exactly as Binomial(n, Phi(margin / sigma)), margin = (w.x + b) / ||w||_2, so it is
fast; the answer is then the PRODUCT's criterion applied to the vote counts
``[n - k, k]``: by default ``probe.oracle.Criterion(0)``, the product's default
criterion, so that the tests exercise the default configuration, ties included (read
that class for its rule; the plurality vote gives a tie to the lowest class index, the
original). Another ``criterion`` (e.g. the paper's P_a rule) can be given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

from probe.oracle import Criterion


@dataclass
class LinearProblem:
    """A linear model, an original point and a (possibly randomized) counting oracle."""

    w: np.ndarray  # (C, H, W), float64
    b: float
    x0: np.ndarray  # (C, H, W), float32, in [0, 1]
    sigma: float = 0.0
    n: int = 1
    criterion: Criterion = field(default_factory=lambda: Criterion(0))  # the product's default
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    calls: int = 0  # oracle invocations
    points: int = 0  # points answered (the attacker's queries)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x0.shape)

    @property
    def d(self) -> int:
        return int(self.x0.size)

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Signed L2 distance to the hyperplane (positive = adversarial side), float64."""
        flat = np.asarray(x, dtype=np.float64).reshape(-1, self.d)
        return (flat @ self.w.ravel() + self.b) / np.linalg.norm(self.w)

    @property
    def opt_l2(self) -> float:
        return float(abs(self.w.ravel() @ self.x0.ravel().astype(np.float64) + self.b) / np.linalg.norm(self.w))

    @property
    def opt_linf(self) -> float:
        return float(abs(self.w.ravel() @ self.x0.ravel().astype(np.float64) + self.b) / np.abs(self.w).sum())

    def optimal_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The L2- and Linf-optimal adversarial points (on the hyperplane), float64."""
        x0 = self.x0.astype(np.float64)
        w = self.w
        p2 = x0 + self.opt_l2 * w / np.linalg.norm(w)
        pinf = x0 + self.opt_linf * np.sign(w)
        return p2, pinf

    def is_adv(self, points: np.ndarray) -> np.ndarray:
        """The boolean oracle: one answer per point of ``points`` (k, C, H, W)."""
        points = np.asarray(points)
        assert points.ndim == len(self.shape) + 1 and points.shape[1:] == self.shape, points.shape
        assert points.dtype == np.float32
        assert points.min(initial=0.0) >= 0.0 and points.max(initial=1.0) <= 1.0
        self.calls += 1
        self.points += len(points)
        m = self.margin(points)
        if self.sigma == 0.0:
            return m > 0
        p = 0.5 * special.erfc(-m / (self.sigma * math.sqrt(2.0)))  # Phi(m / sigma)
        votes = self.rng.binomial(self.n, p)
        return np.asarray(self.criterion(np.stack([self.n - votes, votes], axis=1)), dtype=bool)

    def p_true(self, x: np.ndarray) -> float:
        """The exact probability that the oracle answers True at the point x (its p_adv):
        the binomial mass of the vote counts k that the criterion accepts."""
        m = float(self.margin(np.asarray(x)[None])[0])
        if self.sigma == 0.0:
            return float(m > 0)
        k = np.arange(self.n + 1)
        accepted = np.asarray(self.criterion(np.stack([self.n - k, k], axis=1)), dtype=bool)
        return float(stats.binom.pmf(k, self.n, stats.norm.cdf(m / self.sigma))[accepted].sum())

    def ratio(self, x: np.ndarray | None, norm: str = "l2") -> float:
        """Distance of x to x0 over the optimum, in the given norm (inf when x is None)."""
        if x is None:
            return float("inf")
        diff = (np.asarray(x, dtype=np.float64) - self.x0.astype(np.float64)).ravel()
        if norm == "l2":
            return float(np.linalg.norm(diff) / self.opt_l2)
        return float(np.abs(diff).max() / self.opt_linf)


def make_problem(
    shape: tuple[int, ...] = (3, 8, 8),
    seed: int = 0,
    sigma: float = 0.0,
    n: int = 1,
    opt: float = 0.1,
    criterion: Criterion | None = None,
) -> LinearProblem:
    """A random linear problem: w ~ N(0, I), x0 ~ U[0.3, 0.7]^d, optimum L2 distance ``opt``.

    x0 is centred along w (w.(x0 - 0.5) = 0), so that a uniform random image is
    adversarial with a fixed probability (about 36% for opt = 0.1), as a natural image
    is misclassified once drowned in noise. Both optimal points stay inside the box.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape)
    x0 = rng.uniform(0.3, 0.7, size=shape)
    wn2 = float(np.sum(w * w))
    x0 = (x0 - (np.sum(w * (x0 - 0.5)) / wn2) * w).astype(np.float32)
    b = -float(w.ravel() @ x0.ravel().astype(np.float64)) - opt * math.sqrt(wn2)
    extra = {} if criterion is None else {"criterion": criterion}
    return LinearProblem(w=w, b=b, x0=x0, sigma=sigma, n=n, rng=np.random.default_rng([seed, 1]), **extra)


def information_limit(d: int, budget: int) -> float:
    """Lower bound on the L2 ratio reachable with ``budget`` one-bit answers in dimension d.

    Locating the normal of a random hyperplane within an angle theta needs about
    (d - 1) log2(1 / sin theta) bits: sin theta >= 2^(-budget / (d - 1)), and the
    best adversarial then lies at distance optimum / cos theta.
    """
    s = 2.0 ** (-budget / (d - 1))
    return 1.0 / math.sqrt(max(1.0 - s * s, 1e-300))
