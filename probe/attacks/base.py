"""What every attack shares: the query protocol, the budget, the best verified adversarial.

An attack is a state machine written as a Python generator. It yields a batch of
candidate points in canonical space (float32, shape ``(k, C, H, W)``, in [0, 1])
and is sent back one boolean per point ("adversarial under the criterion?").
It never sees the model, scores, votes or noise: only these booleans.

Every query goes through :class:`Tracker`, which

* refuses to go past the budget: a request larger than what is left is cut to
  the remaining queries, answered, and then :class:`BudgetExhausted` ends the
  attack. So no loop that queries can outlive the budget;
* keeps the best adversarial *verified* by an oracle answer (the closest point
  answered True). Under a randomized oracle a point answered True once may be
  answered False later; nothing asserts it.

Against a randomized oracle (randomized smoothing) the closest point ever
answered True is usually a lucky answer. :meth:`Attack.confirm_with` turns on a
confirmation phase: a share of the budget is kept back from the search and
spent on re-asking the best point ``votes`` times, moving it away from the
original until enough answers are True. Only booleans are used.

Drive an attack with :func:`run_attack` (one oracle function) or with the
engine (many attacks, merged batches).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np

Points = np.ndarray
Answers = np.ndarray
QueryGen = Generator[Points, Answers, Answers]
AttackGen = Generator[Points, Answers, "AttackOutcome"]

NORMS = ("l2", "linf")


class BudgetExhausted(Exception):
    """Raised inside an attack when its query budget is spent."""


def distance(a: np.ndarray, b: np.ndarray, norm: str) -> float:
    """L2 or Linf distance between two points.

    Float32 points (every point an attack asks) are subtracted and summed in float32
    BLAS, 40x faster than a float64 copy at 224x224 and within 1e-6 relative; anything
    else is computed in float64.
    """
    a, b = np.asarray(a), np.asarray(b)
    dtype = np.float32 if a.dtype == np.float32 and b.dtype == np.float32 else np.float64
    diff = (a.astype(dtype, copy=False) - b.astype(dtype, copy=False)).ravel()
    if norm == "l2":
        return math.sqrt(float(np.dot(diff, diff)))
    if norm == "linf":
        return float(np.max(np.abs(diff))) if diff.size else 0.0
    raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")


@dataclass
class AttackOutcome:
    """What an attack returns: its best verified adversarial (None if none was found)."""

    x_adv: np.ndarray | None
    distance: float
    norm: str
    queries: int
    budget: int

    @property
    def found(self) -> bool:
        return self.x_adv is not None


class Tracker:
    """Budget accounting and best-verified-adversarial bookkeeping for one attack."""

    def __init__(self, x0: np.ndarray, budget: int, norm: str) -> None:
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        self.x0 = x0
        self.budget = int(budget)
        self.norm = norm
        self.spent = 0
        self.best: np.ndarray | None = None
        self.best_distance = float("inf")
        self.confirmed: np.ndarray | None = None
        self.first: np.ndarray | None = None  # the first point answered True

    @property
    def remaining(self) -> int:
        return self.budget - self.spent

    def query(self, points: np.ndarray) -> QueryGen:
        """Ask the oracle about ``points`` (k, C, H, W); ``answers = yield from tracker.query(p)``.

        Points are clipped to [0, 1] and cast to float32. If fewer queries are left
        than points, the first ``remaining`` points are asked (they may still improve
        the best adversarial) and then BudgetExhausted is raised.
        """
        points = np.clip(np.asarray(points, dtype=np.float32), 0.0, 1.0)
        if points.ndim != self.x0.ndim + 1 or points.shape[1:] != self.x0.shape:
            raise ValueError(f"candidates must have shape (k, {self.x0.shape}), got {points.shape}")
        if self.remaining <= 0:
            raise BudgetExhausted
        take = min(len(points), self.remaining)
        asked = points[:take]
        answers = np.asarray((yield asked), dtype=bool).reshape(-1)
        if answers.shape != (take,):
            raise RuntimeError(f"oracle answered {answers.shape[0]} booleans for {take} points")
        self.spent += take
        self._record(asked, answers)
        if take < len(points):
            raise BudgetExhausted
        return answers

    def is_adversarial(self, point: np.ndarray) -> Generator[Points, Answers, bool]:
        """One query for one point: ``ok = yield from tracker.is_adversarial(x)``."""
        answers = yield from self.query(point[None])
        return bool(answers[0])

    def _record(self, points: np.ndarray, answers: np.ndarray) -> None:
        hits = np.flatnonzero(answers)
        if self.first is None and len(hits):
            self.first = points[hits[0]].copy()
        for i in hits:
            d = distance(points[i], self.x0, self.norm)
            if d < self.best_distance:
                self.best_distance = d
                self.best = points[i].copy()

    def outcome(self) -> AttackOutcome:
        """The confirmed point when a confirmation phase accepted one, else the best verified."""
        if self.confirmed is not None:
            d = distance(self.confirmed, self.x0, self.norm)
            return AttackOutcome(self.confirmed, d, self.norm, self.spent, self.budget)
        return AttackOutcome(self.best, self.best_distance, self.norm, self.spent, self.budget)


class Attack(ABC):
    """Base class: subclasses implement :meth:`_search` as a generator over a Tracker."""

    name: str = "attack"
    norm: str = "l2"
    confirm_votes: int = 0
    confirm_level: float = 0.5
    confirm_share: float = 0.1

    def confirm_with(self, votes: int = 20, level: float = 0.5, share: float = 0.1) -> "Attack":
        """Keep ``share`` of the budget to confirm the final point against a randomized oracle.

        votes: answers asked per check of a candidate (one batch of identical points).
        level: the wanted probability of being adversarial (the audit's P_a); a candidate is
            accepted when at least ceil(votes * level) + 2 answers are True.
        share: fraction of the budget kept back from the search for this phase.
        See :meth:`_confirm` for the push-out and bisection schedule.
        """
        if not 1 <= int(votes):
            raise ValueError(f"votes must be >= 1, got {votes}")
        if not 0.0 < level <= 1.0:
            raise ValueError(f"level must be in (0, 1], got {level}")
        if not 0.0 <= share < 1.0:
            raise ValueError(f"share must be in [0, 1), got {share}")
        self.confirm_votes, self.confirm_level, self.confirm_share = int(votes), float(level), float(share)
        return self

    def run(
        self,
        x0: np.ndarray,
        budget: int,
        rng: np.random.Generator,
        x_init: np.ndarray | None = None,
    ) -> AttackGen:
        """The attack as a generator: yields candidate batches, returns an AttackOutcome.

        x0: the original image (C, H, W) in [0, 1]; never mutated.
        budget: hard limit on the number of points sent to the oracle.
        rng: the only source of randomness.
        x_init: an optional known adversarial start (needed for targeted attacks).
        """
        x0 = np.array(x0, dtype=np.float32, copy=True)  # private copy: the caller's array is never touched
        tracker = Tracker(x0, budget, self.norm)
        reserve = int(self.confirm_share * budget) if self.confirm_votes else 0
        tracker.budget = budget - reserve
        try:
            yield from self._search(x0, tracker, rng, x_init)
        except BudgetExhausted:
            pass
        tracker.budget = budget
        if self.confirm_votes and tracker.best is not None:
            try:
                yield from self._confirm(x0, tracker)
            except BudgetExhausted:
                pass
        return tracker.outcome()

    def _confirm(self, x0: np.ndarray, tracker: Tracker) -> Generator[Points, Answers, None]:
        """Re-ask the best point, pushing it outwards until a check passes.

        A check asks ``confirm_votes`` copies of a point and passes with at least
        ceil(votes * level) + 2 True answers (capped at votes): a margin so that a point
        right at the level rarely passes. Candidates: the best point's perturbation scaled
        by 1, 1.1, 1.25, 1.5, 2, 3, 5, 8, then points on the way to the first
        adversarial the search found (usually a far, robust one), which is then re-asked
        until the budget ends. The first candidate that passes is returned.
        """
        assert tracker.best is not None and tracker.first is not None
        votes = self.confirm_votes
        need = min(votes, math.ceil(votes * self.confirm_level - 1e-9) + 2)
        best, first = tracker.best, tracker.first
        candidates = [x0 + np.float32(f) * (best - x0) for f in (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0)]
        candidates += [best + np.float32(t) * (first - best) for t in (0.5, 1.0)]
        k = 0
        while True:  # ends by a pass or by BudgetExhausted (every check spends `votes` queries)
            point = np.clip(candidates[min(k, len(candidates) - 1)], 0.0, 1.0)
            answers = yield from tracker.query(np.broadcast_to(point, (votes, *x0.shape)))
            if answers.sum() >= need:
                tracker.confirmed = point
                return
            k += 1

    @abstractmethod
    def _search(
        self,
        x0: np.ndarray,
        tracker: Tracker,
        rng: np.random.Generator,
        x_init: np.ndarray | None,
    ) -> Generator[Points, Answers, None]:
        """Search for a close adversarial; every query through ``tracker.query``."""


def run_attack(
    attack: Attack,
    x0: np.ndarray,
    oracle: Callable[[np.ndarray], np.ndarray],
    budget: int,
    rng: np.random.Generator,
    x_init: np.ndarray | None = None,
) -> AttackOutcome:
    """Drive one attack against one boolean oracle function ``oracle(points) -> bools``."""
    gen = attack.run(x0, budget, rng, x_init)
    try:
        points = next(gen)
        while True:
            points = gen.send(oracle(points))
    except StopIteration as stop:
        return stop.value
