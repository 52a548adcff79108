"""What an attacker gets: the query-only oracle, its criterion, and the verdict's p_adv.

* :class:`Criterion` turns vote counts into "adversarial?" booleans.
* :class:`Oracle` answers booleans only, within a hard query budget; it counts
  queries (attacker's calls, one per image) and inferences (model runs: n per query
  with full votes, fewer when a vote stops once its answer is known) separately and
  has its own seeded noise stream.
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

    def __call__(self, votes: np.ndarray, n: int | None = None) -> np.ndarray:
        """The answers (k,) bool of vote-count rows (k, K) of ``n`` votes each (default: the
        first row's total). Rows of fewer votes are answered as their full vote of ``n``
        will be, which is exact once :meth:`needed` says 0 for them."""
        votes = np.atleast_2d(votes)
        if self.rule == "label":
            top = majority(votes)
            return top == self.label if self.targeted else top != self.label
        n = int(votes[0].sum()) if n is None else int(n)
        need = level_vote_count(n, self.pa)
        hits = votes[:, self.label] if self.targeted else votes.sum(axis=1) - votes[:, self.label]
        return hits >= need

    def needed(self, votes: np.ndarray, n: int) -> np.ndarray:
        """Votes still to draw before the answer of a full vote of ``n`` can be known.

        votes : (k, K) counts drawn so far (fewer than ``n`` a row). Returns (k,) int64:
        the fewest further votes after which some outcome decides the answer (0: decided,
        whatever the remaining votes are). Drawing that many votes before looking again
        stops at the first vote that decides, never later; the answer is then a function
        of the votes drawn, so it has exactly the distribution of the full vote's.

        ``label``: decided when ``label`` is sure to be the plurality (it leads every
        class j by the votes left, plus one when j < label wins a tie) or sure not to be
        (some class can no longer be caught). ``paper``: when the hits reach
        ceil(n P_a), or can no longer reach it.
        """
        votes = np.atleast_2d(np.asarray(votes, dtype=np.int64))
        left = n - votes.sum(axis=1)
        if self.rule == "paper":
            need = level_vote_count(n, self.pa)
            drawn = n - left
            hits = votes[:, self.label] if self.targeted else drawn - votes[:, self.label]
            settle = np.minimum(need - hits, hits + left - need + 1)
        else:
            classes = np.arange(votes.shape[1])
            gap = votes[:, self.label : self.label + 1] - votes  # label's lead over each class
            others = classes != self.label
            r = left[:, None]
            # all new votes to the label: 2v >= r + [j < label] - gap for every other j
            win = -((gap - r - (classes < self.label)) // 2)
            # all new votes to one class j: 2v >= r + [j > label] + gap for some j
            lose = -((-gap - r - (classes > self.label)) // 2)
            settle = np.minimum(np.max(win[:, others], axis=1), np.min(lose[:, others], axis=1))
        return np.clip(settle, 0, left)


class Oracle:
    """What an attacker gets: one boolean per point, within a hard budget.

    Parameters
    ----------
    classifier : the (smoothed) classifier.
    criterion : the adversarial criterion.
    budget : maximum number of queries (points asked); the next one is refused.
    rng : the oracle's own noise stream (seeded Generator).
    domain : ``"float"`` or ``"uint8"``: every point is rounded to the 8-bit grid before
        it reaches the model (what an endpoint taking 8-bit images receives).
    """

    def __init__(
        self,
        classifier: SmoothedClassifier,
        criterion: Criterion,
        *,
        budget: int,
        rng: np.random.Generator,
        domain: str = "float",
    ) -> None:
        if budget < 0:
            raise ProbeError(f"budget must be >= 0, got {budget}")
        self.domain = check_choice("domain", domain, ("float", "uint8"))
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
        """Count k queries, or refuse them all if that would pass the budget (inferences are
        counted once drawn: :meth:`spend`)."""
        if k > self.remaining:
            raise BudgetExceeded(f"query budget of {self.budget} exceeded ({self.queries} used, {k} asked)")
        self.queries += k

    def spend(self, inferences: int) -> None:
        """Count model runs made for this oracle's queries."""
        self.inferences += int(inferences)

    def streams(self, k: int) -> list[np.random.Generator] | None:
        """The noise streams of k points about to be asked, one a point, drawn from this
        oracle's stream in order (None with full votes: the points share the oracle's stream)."""
        return self.classifier.point_streams(self.rng, k) if self.classifier.early_stop else None

    def judge(self, votes: np.ndarray) -> np.ndarray:
        """Answers of vote counts, full or stopped once decided (see :meth:`Criterion.needed`)."""
        return self.criterion(votes, n=self.classifier.n)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float32)
        if self.domain == "uint8":
            points = np.round(points * np.float32(255.0)) / np.float32(255.0)
        self.charge(len(points))
        streams = self.streams(len(points))
        if streams is None:
            votes = self.classifier.votes([(points, self.rng)])[0]
            self.spend(len(points) * self.classifier.n)
        else:
            votes, drawn = self.classifier.decide([(points, streams, self.criterion)])[0]
            self.spend(drawn.sum())
        return self.judge(votes)


ADVERSARIAL, NOT_ADVERSARIAL, UNDECIDED = "adversarial", "not adversarial", "undecided"
VERDICTS = (ADVERSARIAL, NOT_ADVERSARIAL, UNDECIDED)


@dataclass(frozen=True)
class PAdv:
    """Eq. (4) measured and tested against P_a.

    p : adversarial evaluations / ``evaluations`` (the point estimate: never the verdict).
    low, high : the Clopper-Pearson interval the test read at its last look (at level
        ``1 - (1 - confidence) / looks``, see :func:`estimate_p_adv`).
    evaluations : fresh evaluations of g_{sigma,n} drawn.
    verdict : ``"adversarial"`` (``low >= pa``), ``"not adversarial"`` (``high < pa``) or
        ``"undecided"`` (the evaluations ran out first).
    """

    p: float
    low: float
    high: float
    evaluations: int
    verdict: str

    @property
    def decided(self) -> bool:
        return self.verdict != UNDECIDED

    @property
    def adversarial(self) -> bool:
        return self.verdict == ADVERSARIAL


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
    """Eq. (4) as a test: is p_adv = P[g_{sigma,n}(x) != g_sigma(x_o)] (targeted: ``== label``)
    at least P_a?

    Fresh evaluations of the defended classifier (each the plurality vote of n noisy
    copies, ties to the lowest class index), charged to no attacker, drawn in rounds up
    to 8, 16, 32, ... and ``max_evaluations`` in all (the looks). After each round the
    Clopper-Pearson interval at level ``1 - (1 - confidence) / looks`` is read: its lower
    bound at or above P_a stops the test with ``"adversarial"``, its upper bound below P_a
    with ``"not adversarial"``; when the evaluations run out first the verdict is
    ``"undecided"``. A Bonferroni split over the looks: at a point whose true p_adv is below
    P_a, ``"adversarial"`` comes out with probability at most ``(1 - confidence) / 2``,
    and likewise ``"not adversarial"`` at one at or above P_a. The point estimate ``p``
    is recorded beside the verdict, never in its place: near P_a it is a coin flip.

    Cost, with the default 100 evaluations (5 looks): a sure point (p_adv = 1) takes 16
    evaluations at P_a = 0.5 and 32 at P_a = 0.8; a point within a few hundredths of P_a
    takes all 100 and is usually undecided (raise ``max_evaluations``). Without
    smoothing g is deterministic: one evaluation decides (a defended endpoint's g is
    random, ``classifier.random``: each evaluation is one query to it, answered by its
    own g_{sigma,n}). Each evaluation's vote stops once its plurality answer is known
    (``classifier.early_stop``; the same answer distribution as the full vote).
    """
    check_pa(pa)
    point = np.asarray(x, dtype=np.float32)
    schedule = looks(max_evaluations) if classifier.random else [1]
    per_look = 1.0 - (1.0 - confidence) / len(schedule)
    plurality = Criterion(label, targeted=targeted)  # "adversarial" = the plurality vote's answer
    hits = drawn = 0
    verdict = UNDECIDED
    for size in schedule:
        points = np.broadcast_to(point, (size - drawn, *point.shape))
        if classifier.early_stop:
            streams = classifier.point_streams(rng, size - drawn)
            votes = classifier.decide([(points, streams, plurality)])[0][0]
        else:
            votes = classifier.votes([(points, rng)])[0]
        hits += int(np.sum(plurality(votes)))
        drawn = size
        low, high = clopper_pearson(hits, drawn, per_look) if classifier.random else (hits / drawn,) * 2
        if low >= pa:
            verdict = ADVERSARIAL
        elif high < pa:
            verdict = NOT_ADVERSARIAL
        if verdict != UNDECIDED:
            break
    return PAdv(hits / drawn, low, high, drawn, verdict)


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
    Its votes are always full (no early stop): the label and the test are on the counts of
    all micro-decisions, which a vote stopped by its own outcome would bias.
    """
    point = np.asarray(x, dtype=np.float32)
    schedule = looks(max_evaluations) if classifier.random else [1]
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
        if not classifier.random or stats.binomtest(int(c1), int(c1 + c2), 0.5).pvalue <= alpha:
            break
    c1, c2 = np.sort(counts)[::-1][:2]
    accuracy = None if true_label is None else right / drawn
    return CleanLabel(int(np.argmax(counts)), float(c1 - c2) / float(counts.sum()), drawn, accuracy)
