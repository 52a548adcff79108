"""What an attacker gets: the query-only oracle, its criterion, and the verdict's p_adv.

* :class:`Criterion` turns vote counts into "adversarial?" booleans.
* :class:`Oracle` answers booleans only, within a hard query budget; it counts
  queries (attacker's calls, one per image) and inferences (model runs, n per query)
  separately and has its own seeded noise stream.
* :func:`estimate_p_adv` measures a result with fresh evaluations no attacker pays for.

The defended classifier itself is :class:`probe.smoothing.SmoothedClassifier`.
Tie rule of the majority vote: the lowest class index wins (``numpy.argmax``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.errors import BudgetExceeded, ProbeError
from probe.smoothing.classifier import SmoothedClassifier
from probe.smoothing.theory import level_vote_count


def majority(votes: np.ndarray) -> np.ndarray:
    """Majority-vote labels of vote-count rows; ties go to the lowest class index."""
    return np.argmax(votes, axis=-1)


@dataclass(frozen=True)
class Criterion:
    """When is a point adversarial?

    label : the smoothed label of the original (untargeted) or the target class (targeted).
    targeted : aim at ``label`` instead of away from it.
    pa : level P_a of the seed paper's eq. (4), simulated as "at least ceil(n P_a)
        micro-decisions wrong" (untargeted) or "on the target" (targeted). None uses
        the majority-vote label instead.
    """

    label: int
    targeted: bool = False
    pa: float | None = None

    def __post_init__(self) -> None:
        if self.pa is not None and not 0.0 < self.pa <= 1.0:
            raise ProbeError(f"P_a must be in (0, 1], got {self.pa}")

    def __call__(self, votes: np.ndarray) -> np.ndarray:
        votes = np.atleast_2d(votes)
        n = int(votes[0].sum())
        if self.pa is None:
            top = majority(votes)
            return top == self.label if self.targeted else top != self.label
        need = level_vote_count(n, self.pa)
        hits = votes[:, self.label] if self.targeted else n - votes[:, self.label]
        return hits >= need


class Oracle:
    """What an attacker gets: one boolean per point, within a hard budget.

    Parameters
    ----------
    classifier : the (smoothed) classifier.
    criterion : the adversarial criterion.
    budget : maximum number of queries (points asked); the next one is refused.
    rng : the oracle's own noise stream (seeded Generator).
    """

    def __init__(
        self,
        classifier: SmoothedClassifier,
        criterion: Criterion,
        budget: int,
        rng: np.random.Generator,
    ) -> None:
        if budget < 0:
            raise ProbeError(f"budget must be >= 0, got {budget}")
        self.classifier = classifier
        self.criterion = criterion
        self.budget = int(budget)
        self.rng = rng
        self.queries = 0
        self.inferences = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.queries

    def charge(self, k: int) -> None:
        """Count k queries, or refuse them all if that would pass the budget."""
        if k > self.remaining:
            raise BudgetExceeded(f"query budget of {self.budget} exceeded ({self.queries} used, {k} asked)")
        self.queries += k
        self.inferences += k * self.classifier.n

    def judge(self, votes: np.ndarray) -> np.ndarray:
        return self.criterion(votes)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float32)
        self.charge(len(points))
        return self.judge(self.classifier.votes([(points, self.rng)])[0])


def estimate_p_adv(
    classifier: SmoothedClassifier,
    criterion: Criterion,
    x: np.ndarray,
    rng: np.random.Generator,
    samples: int = 100,
) -> float:
    """Probability that the defended classifier calls ``x`` adversarial.

    ``samples`` fresh evaluations of g_{sigma,n}(x), not charged to any attacker.
    Without smoothing the answer is deterministic: 0 or 1 from one evaluation.
    """
    if classifier.sigma == 0:
        samples = 1
    points = np.broadcast_to(np.asarray(x, dtype=np.float32), (samples, *np.shape(x)))
    return float(np.mean(criterion(classifier.votes([(points, rng)])[0])))
