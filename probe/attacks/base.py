"""What every attack shares: the query protocol, the budget, the best verified adversarial.

An attack is a state machine written as a Python generator. It yields a batch of
candidate points in canonical space (float32, shape ``(k, C, H, W)``, in [0, 1])
and is sent back one boolean per point ("adversarial under the criterion?").
It never sees the model, scores, votes or noise: only these booleans.

Every query goes through :class:`Tracker`, which

* refuses to go past the budget: a request larger than what is left is cut to
  the remaining queries, answered, and then :class:`~probe.errors.BudgetExceeded`
  ends the attack (caught by :meth:`Attack.run`). So no loop that queries can
  outlive the budget;
* keeps the best adversarial *verified* by an oracle answer (the closest point
  answered True). Under a randomized oracle a point answered True once may be
  answered False later; nothing asserts it.

Against a randomized oracle (randomized smoothing) the closest point ever
answered True is usually a lucky answer. :class:`Confirmed` wraps an attack with a
confirmation phase: a share of the budget is kept back from the search and
spent on re-asking the best point ``votes`` times, moving it away from the
original until enough answers are True. Only booleans are used.

Every attack's knobs are keyword-only constructor parameters; ``repr(attack)`` and
:meth:`Attack.params` list them all with their current values.

Drive an attack with :func:`run_attack` (one oracle function) or with the
engine (many attacks, merged batches).
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generator

import numpy as np

from probe.errors import BudgetExceeded, ProbeError
from probe.validate import check_choice, check_int, check_real

Points = np.ndarray
Answers = np.ndarray
QueryGen = Generator[Points, Answers, Answers]
AttackGen = Generator[Points, Answers, "AttackOutcome"]

NORMS = ("l2", "linf")


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
    raise ProbeError(f"unknown norm {norm!r}; expected one of {NORMS}")


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
    """Budget accounting and best-verified-adversarial bookkeeping for one attack.

    The budget's end is signalled by :class:`probe.errors.BudgetExceeded`, the one
    budget exception of the package (the Oracle raises it too): :meth:`query` raises it
    once the budget is spent, after answering what still fitted. It unwinds the
    attack's search loops, and :meth:`Attack.run` catches it and returns the outcome;
    it never reaches the caller of an attack.
    """

    def __init__(self, x0: np.ndarray, budget: int, norm: str) -> None:
        check_choice("norm", norm, NORMS)
        check_int("budget", budget, 0)
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
        the best adversarial) and then BudgetExceeded is raised.
        """
        points = np.clip(np.asarray(points, dtype=np.float32), 0.0, 1.0)
        if points.ndim != self.x0.ndim + 1 or points.shape[1:] != self.x0.shape:
            raise ValueError(f"candidates must have shape (k, {self.x0.shape}), got {points.shape}")
        if self.remaining <= 0:
            raise BudgetExceeded(f"the attack's budget of {self.budget} queries is spent")
        take = min(len(points), self.remaining)
        asked = points[:take]
        answers = np.asarray((yield asked), dtype=bool).reshape(-1)
        if answers.shape != (take,):
            raise RuntimeError(f"oracle answered {answers.shape[0]} booleans for {take} points")
        self.spent += take
        self._record(asked, answers)
        if take < len(points):
            raise BudgetExceeded(f"the attack's budget of {self.budget} queries is spent")
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
            if 0.0 < d < self.best_distance:  # x0 itself (a random oracle may say yes to it) is no adversarial
                self.best_distance = d
                self.best = points[i].copy()

    def outcome(self) -> AttackOutcome:
        """The confirmed point when a confirmation phase accepted one, else the best verified."""
        if self.confirmed is not None:
            d = distance(self.confirmed, self.x0, self.norm)
            return AttackOutcome(self.confirmed, d, self.norm, self.spent, self.budget)
        return AttackOutcome(self.best, self.best_distance, self.norm, self.spent, self.budget)


class Attack(ABC):
    """Base class: subclasses implement :meth:`_search` as a generator over a Tracker.

    A subclass declares ``name`` (its registry key) and ``norms`` (the norms it supports,
    the first being its native one: the ONLY place where this is written), takes its
    knobs as keyword-only constructor parameters and stores each under its own name:
    :meth:`params` and ``repr`` are then built from the constructor's signature.

    Examples::

        >>> import numpy as np
        >>> from probe.attacks.base import Attack, run_attack
        >>> class Corner(Attack):  # asks one point: the corner of the box along +1
        ...     name, norms = "corner", ("linf",)
        ...     def __init__(self, *, norm="linf", scale=1.0):
        ...         self.norm, self.scale = self._check_norm(norm), scale
        ...     def _search(self, x0, tracker, rng, x_init):
        ...         yield from tracker.query(np.clip(x0 + self.scale, 0, 1)[None])
        >>> Corner(scale=0.5)
        Corner(norm='linf', scale=0.5)
        >>> x0 = np.zeros((1, 2, 2), np.float32)
        >>> out = run_attack(Corner(), x0, lambda pts: pts.sum(axis=(1, 2, 3)) > 1, 5, np.random.default_rng(0))
        >>> out.found, out.distance, out.queries
        (True, 1.0, 1)
    """

    name: ClassVar[str] = "attack"
    #: the norms the attack supports; the first is its native one
    norms: ClassVar[tuple[str, ...]] = NORMS
    norm: str = "l2"  # set by each constructor (``self.norm = self._check_norm(norm)``)

    def _check_norm(self, norm: object) -> str:
        """``norm`` if this attack supports it (ProbeError otherwise)."""
        return check_choice("norm", norm, self.norms)

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in list(sig.parameters.values())[1:]
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]

    def params(self) -> dict[str, Any]:
        """Every constructor parameter with its current value, in signature order.

        An attack given as a parameter (the one :class:`Confirmed` wraps) appears as
        ``{"name": ..., **its params()}``, so that the dict is plain data for a record.
        """
        out = {}
        for key in self._param_names():
            value = getattr(self, key)
            out[key] = {"name": value.name, **value.params()} if isinstance(value, Attack) else value
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={getattr(self, key)!r}" for key in self._param_names())
        return f"{type(self).__name__}({args})"

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
        yield from self._phases(x0, tracker, rng, x_init)
        return tracker.outcome()

    def _phases(
        self, x0: np.ndarray, tracker: Tracker, rng: np.random.Generator, x_init: np.ndarray | None
    ) -> Generator[Points, Answers, None]:
        """Everything the attack asks within ``tracker.budget``: here, the search alone."""
        try:
            yield from self._search(x0, tracker, rng, x_init)
        except BudgetExceeded:
            pass

    @abstractmethod
    def _search(
        self,
        x0: np.ndarray,
        tracker: Tracker,
        rng: np.random.Generator,
        x_init: np.ndarray | None,
    ) -> Generator[Points, Answers, None]:
        """Search for a close adversarial; every query through ``tracker.query``."""


class Confirmed(Attack):
    """Confirmation of the final point against a randomized oracle (a wrapper, Foolbox style).

    Not an attack of its own: it runs the wrapped ``attack`` with ``share`` of the budget
    kept back, then spends what is left on re-asking the best point found, pushed
    outwards until enough answers are True (see :meth:`_confirm`). Only booleans are used.
    The wrapped attack is not modified; the wrapper has its name and its norm.

    Distance measure: the wrapped attack's (L2 or Linf).

    Arguments:
        attack (Attack): the attack to wrap (positional).
        votes (int): answers asked per check of a candidate (one batch of identical
            points). (Default: 20)
        level (float): the wanted probability of being adversarial (the audit's P_a),
            in (0, 1]; a candidate is accepted when at least ceil(votes * level) + 2
            answers are True (capped at votes). (Default: 0.5)
        share (float): fraction of the budget kept back from the search for the
            confirmation, in [0, 1). (Default: 0.1)

    Shape:
        - x0: (C, H, W), float32 in [0, 1].
        - candidates: (k, C, H, W), float32 in [0, 1] (each answered by one boolean).
        - returns: :class:`AttackOutcome` (the confirmed point when a check passed,
          else the best verified adversarial).

    Examples::

        >>> import numpy as np
        >>> from probe.attacks import HSJA, Confirmed, run_attack
        >>> w = np.random.default_rng(0).standard_normal((1, 8, 8))
        >>> x0 = np.full((1, 8, 8), 0.5, dtype=np.float32)
        >>> b = -float(w.ravel() @ x0.ravel()) - 0.1 * np.linalg.norm(w)  # L2 optimum: 0.1
        >>> noise = np.random.default_rng(1)  # a randomized oracle: noisy margin
        >>> oracle = lambda pts: (pts.reshape(len(pts), -1) @ w.ravel() + b) / np.linalg.norm(w) + 0.02 * noise.standard_normal(len(pts)) > 0
        >>> attack = Confirmed(HSJA(), votes=10, level=0.5, share=0.2)
        >>> attack
        Confirmed(attack=HSJA(norm='l2', ...), votes=10, level=0.5, share=0.2)
        >>> outcome = run_attack(attack, x0, oracle, budget=500, rng=np.random.default_rng(0))
        >>> outcome.found, outcome.queries <= 500, attack.name, attack.norm
        (True, True, 'hsja', 'l2')
        >>> margin = float((outcome.x_adv.ravel() @ w.ravel() + b) / np.linalg.norm(w))
        >>> bool(margin > 0)  # confirmed: on the adversarial side, not a lucky answer
        True
    """

    def __init__(self, attack: Attack, *, votes: int = 20, level: float = 0.5, share: float = 0.1) -> None:
        if not isinstance(attack, Attack):
            raise ProbeError(f"attack must be an Attack, got {attack!r}")
        self.attack = attack
        self.votes = check_int("votes", votes, 1)
        self.level = check_real("level", level, 0.0, 1.0, low_closed=False)
        self.share = check_real("share", share, 0.0, 1.0, high_closed=False)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.attack.name

    @property
    def norms(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.attack.norms

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.attack.norm

    def _phases(
        self, x0: np.ndarray, tracker: Tracker, rng: np.random.Generator, x_init: np.ndarray | None
    ) -> Generator[Points, Answers, None]:
        """The wrapped attack within ``budget - int(share * budget)``, then the confirmation."""
        budget = tracker.budget
        tracker.budget = budget - int(self.share * budget)
        yield from self.attack._phases(x0, tracker, rng, x_init)
        tracker.budget = budget
        if tracker.best is not None:
            try:
                yield from self._confirm(x0, tracker)
            except BudgetExceeded:
                pass

    def _search(
        self, x0: np.ndarray, tracker: Tracker, rng: np.random.Generator, x_init: np.ndarray | None
    ) -> Generator[Points, Answers, None]:
        """The wrapped attack's search (no reserve, no confirmation: see :meth:`_phases`)."""
        return self.attack._search(x0, tracker, rng, x_init)

    def _confirm(self, x0: np.ndarray, tracker: Tracker) -> Generator[Points, Answers, None]:
        """Re-ask the best point, pushing it outwards until a check passes.

        A check asks ``votes`` copies of a point and passes with at least
        ceil(votes * level) + 2 True answers (capped at votes): a margin so that a point
        right at the level rarely passes. Candidates: the best point's perturbation scaled by
        1, 1.1, 1.25, 1.5, 2, 3, 5, 8, then 13, 21, 34, 55 while under half the first adversarial's
        distance (in the attack's norm) with a check left after it (a lucky best far inside the
        class: benchmarks/README.md, image 14), then points on the way to the first adversarial
        (usually a far, robust one), re-asked until the budget ends. The first that passes is returned.
        """
        assert tracker.best is not None and tracker.first is not None
        votes, best, first = self.votes, tracker.best, tracker.first
        need = min(votes, math.ceil(votes * self.level - 1e-9) + 2)
        ladder = [x0 + np.float32(f) * (best - x0) for f in (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0)]
        reach = 0.5 * distance(first, x0, tracker.norm) / max(distance(best, x0, tracker.norm), 1e-12)
        further = [x0 + np.float32(f) * (best - x0) for f in (13.0, 21.0, 34.0, 55.0) if f < reach]
        toward, k = [best + np.float32(t) * (first - best) for t in (0.5, 1.0)], 0
        while True:  # ends by a pass or by BudgetExceeded (every check spends `votes` queries)
            if k < len(ladder):
                point = ladder[k]
            elif further and tracker.remaining >= 2 * votes:  # a check left for a sure point after it
                point = further.pop(0)
            else:
                point = toward[0] if len(toward) == 1 else toward.pop(0)
            point = np.clip(point, 0.0, 1.0)
            answers = yield from tracker.query(np.broadcast_to(point, (votes, *x0.shape)))
            if answers.sum() >= need:
                tracker.confirmed = point
                return
            k += 1


def run_attack(
    attack: Attack,
    x0: np.ndarray,
    oracle: Callable[[np.ndarray], np.ndarray],
    budget: int,
    rng: np.random.Generator,
    x_init: np.ndarray | None = None,
) -> AttackOutcome:
    """Drive one attack against one boolean oracle function ``oracle(points) -> bools``.

    Examples::

        >>> import numpy as np
        >>> from probe.attacks import RayS, run_attack
        >>> x0 = np.full((1, 4, 4), 0.25, dtype=np.float32)
        >>> oracle = lambda pts: pts.reshape(len(pts), -1).mean(axis=1) > 0.5  # optimum: Linf 0.25
        >>> outcome = run_attack(RayS(), x0, oracle, budget=100, rng=np.random.default_rng(0))
        >>> outcome.found, outcome.queries, round(outcome.distance, 2)
        (True, 100, 0.25)
    """
    gen = attack.run(x0, budget, rng, x_init)
    try:
        points = next(gen)
        while True:
            points = gen.send(oracle(points))
    except StopIteration as stop:
        return stop.value
