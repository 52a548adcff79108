"""What an attacker gets: the query-only oracle, its criterion, and the verdict's p_adv.

* :class:`Criterion` turns vote counts into "adversarial?" booleans.
* :class:`Oracle` answers booleans only, within a hard query budget; it counts
  queries (attacker's calls, one per image) and inferences (model runs, n per query)
  separately and has its own seeded noise stream.
* :func:`estimate_p_adv` measures a result by eq. (4), and :func:`clean_label` estimates
  g_sigma(x_o), with fresh evaluations no attacker pays for and a sequential stop.

The defended classifier itself is :class:`probe.smoothing.SmoothedClassifier`.
Tie rule of the majority vote: the lowest class index wins (``numpy.argmax``).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

import numpy as np
from scipy import stats

from probe.errors import BudgetExceeded, ProbeError
from probe.validate import check_choice, check_pa
from probe.smoothing.classifier import SmoothedClassifier
from probe.smoothing.theory import level_vote_count


def majority(votes: np.ndarray) -> np.ndarray:
    """Majority-vote labels of vote-count rows; ties go to the lowest class index."""
    return np.argmax(votes, axis=-1)


RULES = ("label", "paper")


@dataclass(frozen=True)
class Criterion:
    """The attacker's answer per query: is this point adversarial?

    label : g_sigma's label of the original (untargeted) or the target class (targeted).
    targeted : aim at ``label`` instead of away from it.
    rule : ``"label"`` (default): the defended classifier's plurality label differs from
        ``label`` (targeted: equals it); ties go to the lowest class index. That is all a
        remote adversary of a deployed defense sees. ``"paper"``: the seed paper's
        simulation (Sect. 4.1), at least ceil(n P_a) of the n micro-decisions wrong
        (targeted: on the target); it reads the vote counts, so it is a stronger oracle
        than a deployed defense gives.
    pa : the level P_a of the ``paper`` rule (ignored by ``label``).
    """

    label: int
    _: KW_ONLY
    targeted: bool = False
    rule: str = "label"
    pa: float = 0.5

    def __post_init__(self) -> None:
        check_choice("criterion", self.rule, RULES)
        check_pa(self.pa)

    def __call__(self, votes: np.ndarray) -> np.ndarray:
        votes = np.atleast_2d(votes)
        if self.rule == "label":
            top = majority(votes)
            return top == self.label if self.targeted else top != self.label
        n = int(votes[0].sum())
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
        *,
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


@dataclass(frozen=True)
class PAdv:
    """Eq. (4) measured: ``p`` = adversarial evaluations / ``evaluations``, its Clopper-Pearson
    interval ``[low, high]`` at ``confidence``, and whether it is ``>= pa`` (``decided`` when
    the sequential test stopped before the maximum)."""

    p: float
    low: float
    high: float
    evaluations: int
    decided: bool


def looks(maximum: int, first: int = 8) -> list[int]:
    """The sample sizes at which a sequential test looks: first, 2 first, 4 first, ..., maximum."""
    sizes, m = [], max(1, min(first, maximum))
    while m < maximum:
        sizes.append(m)
        m *= 2
    return [*sizes, maximum]


def clopper_pearson(k: int, m: int, confidence: float) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of a binomial proportion, k successes out of m."""
    a = 1.0 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, m - k + 1))
    high = 1.0 if k == m else float(stats.beta.ppf(1 - a / 2, k + 1, m - k))
    return low, high


def estimate_p_adv(
    classifier: SmoothedClassifier,
    x: np.ndarray,
    *,
    label: int,
    targeted: bool = False,
    pa: float = 0.5,
    rng: np.random.Generator,
    max_evaluations: int = 100,
    confidence: float = 0.99,
) -> PAdv:
    """Eq. (4): p_adv = P[g_{sigma,n}(x) != g_sigma(x_o)] (targeted: ``== label``).

    Fresh evaluations of the defended classifier (each the plurality vote of n noisy
    copies, ties to the lowest class index), charged to no attacker. They are drawn in
    rounds of 8, 16, 32, ... up to ``max_evaluations``; after each round the test stops
    when the Clopper-Pearson interval at level ``1 - (1 - confidence) / rounds`` lies
    on one side of P_a (a Bonferroni split over the looks, so the sequential decision
    errs with probability at most ``1 - confidence``). A clear case costs 8
    evaluations, a borderline one the maximum. The recorded interval is the plain one
    at ``confidence`` for the evaluations spent. Without smoothing g is deterministic:
    one evaluation.
    """
    check_pa(pa)
    point = np.asarray(x, dtype=np.float32)
    schedule = [1] if classifier.sigma == 0 else looks(max_evaluations)
    per_look = 1.0 - (1.0 - confidence) / len(schedule)
    hits = drawn = 0
    decided = classifier.sigma == 0
    for size in schedule:
        votes = classifier.votes([(np.broadcast_to(point, (size - drawn, *point.shape)), rng)])[0]
        top = majority(votes)
        hits += int(np.sum(top == label) if targeted else np.sum(top != label))
        drawn = size
        low, high = clopper_pearson(hits, drawn, per_look)
        if low >= pa or high < pa:
            decided = True
            break
    low, high = clopper_pearson(hits, drawn, confidence)
    return PAdv(hits / drawn, low, high, drawn, decided)


@dataclass(frozen=True)
class CleanLabel:
    """g_sigma(x_o) estimated: the label, its vote margin ``(c1 - c2) / votes`` over all
    micro-decisions drawn, the evaluations of g_{sigma,n} spent, and the fraction of them
    whose plurality is the true label (None when it is unknown)."""

    label: int
    margin: float
    evaluations: int
    accuracy: float | None


def clean_label(
    classifier: SmoothedClassifier,
    x: np.ndarray,
    *,
    rng: np.random.Generator,
    true_label: int | None = None,
    max_evaluations: int = 100,
    confidence: float = 0.99,
) -> CleanLabel:
    """The label to move away from, g_sigma(x_o): the most voted class of all micro-decisions.

    Evaluations of g_{sigma,n} are drawn in the rounds of :func:`estimate_p_adv`; the test
    stops when the two-sided binomial test of the top count against the runner-up's
    (as Cohen et al.'s PREDICT) rejects a tie at ``(1 - confidence) / rounds``.
    """
    point = np.asarray(x, dtype=np.float32)
    schedule = [1] if classifier.sigma == 0 else looks(max_evaluations)
    alpha = (1.0 - confidence) / len(schedule)
    counts = np.zeros(classifier.num_classes, dtype=np.int64)
    right = drawn = 0
    for size in schedule:
        votes = classifier.votes([(np.broadcast_to(point, (size - drawn, *point.shape)), rng)])[0]
        counts += votes.sum(axis=0)
        if true_label is not None:
            right += int(np.sum(majority(votes) == true_label))
        drawn = size
        c1, c2 = np.sort(counts)[::-1][:2]
        if classifier.sigma == 0 or stats.binomtest(int(c1), int(c1 + c2), 0.5).pvalue <= alpha:
            break
    c1, c2 = np.sort(counts)[::-1][:2]
    accuracy = None if true_label is None else right / drawn
    return CleanLabel(int(np.argmax(counts)), float(c1 - c2) / float(counts.sum()), drawn, accuracy)
