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
answered True is usually a lucky answer. :class:`probe.attacks.confirm.Confirmed`
wraps an attack with a confirmation phase: a share of the budget is kept back from
the search and spent on a sequential test of points moved away from the original,
with a stated error. Only booleans are used.

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
    """What an attack returns: its best verified adversarial (None if none was found).

    confirmed : whether a confirmation phase (:class:`~probe.attacks.confirm.Confirmed`) accepted ``x_adv``; None
        when none ran.
    trajectory : the attacker's progress, ``{"queries": [...], "l2": [...], "linf": [...]}``:
        the distances of the point the attack would have returned had it stopped after
        that many queries (None before it had one), at :func:`checkpoints` and at its end.
        Under a confirmation phase only a confirmed point counts, so the entries are None
        until the confirmation passes. Non-increasing in the attack's norm unless the attack
        reports a point of its own (HSJA's ``report="last"``); the other norm is that same
        point's, which may rise. The last entry is ``x_adv``'s.
    """

    x_adv: np.ndarray | None
    distance: float
    norm: str
    queries: int
    budget: int
    confirmed: bool | None = None
    trajectory: dict | None = None

    @property
    def found(self) -> bool:
        return self.x_adv is not None


DOMAINS = ("float", "uint8")


def checkpoints(budget: int) -> list[int]:
    """Log-spaced query counts of a trajectory: 10, 20, 50, 100, 200, 500, ... up to ``budget``."""
    marks, scale = [], 10
    while scale <= budget:
        marks += [m for m in (scale, 2 * scale, 5 * scale) if m <= budget]
        scale *= 10
    return marks


def to_grid(points: np.ndarray) -> np.ndarray:
    """Points rounded to the 8-bit grid (k / 255), as an 8-bit image would carry them."""
    return (np.round(np.asarray(points, dtype=np.float32) * np.float32(255.0)) / np.float32(255.0)).astype(np.float32)


class Tracker:
    """Budget accounting and best-verified-adversarial bookkeeping for one attack.

    The budget's end is signalled by :class:`probe.errors.BudgetExceeded`, the one
    budget exception of the package (the Oracle raises it too): :meth:`query` raises it
    once the budget is spent, after answering what still fitted. It unwinds the
    attack's search loops, and :meth:`Attack.run` catches it and returns the outcome;
    it never reaches the caller of an attack.
    """

    def __init__(self, x0: np.ndarray, budget: int, norm: str, *, domain: str = "float") -> None:
        check_choice("norm", norm, NORMS)
        check_int("budget", budget, 0)
        self.x0 = x0
        self.budget = int(budget)
        self.norm = norm
        self.domain = check_choice("domain", domain, DOMAINS)
        self.spent = 0
        self.best: np.ndarray | None = None
        self.best_distance = float("inf")
        self.confirming = False  # a confirmation phase decides what is returned (Confirmed)
        self.confirmed: np.ndarray | None = None
        self.chosen: np.ndarray | None = None  # an attack's own pick in place of the best (see report)
        self.first: np.ndarray | None = None  # the first point answered True
        self.marks = checkpoints(self.budget)
        self.trajectory: dict[str, list] = {"queries": [], "l2": [], "linf": []}

    @property
    def remaining(self) -> int:
        return self.budget - self.spent

    def query(self, points: np.ndarray) -> QueryGen:
        """Ask the oracle about ``points`` (k, C, H, W); ``answers = yield from tracker.query(p)``.

        Points are clipped to [0, 1] and cast to float32 (in the ``uint8`` domain, rounded to
        the 8-bit grid: distances are measured on what is asked). If fewer queries are left
        than points, the first ``remaining`` points are asked (they may still improve
        the best adversarial) and then BudgetExceeded is raised.
        """
        points = np.clip(np.asarray(points, dtype=np.float32), 0.0, 1.0)
        if self.domain == "uint8":  # the attacker asks what it can send: 8-bit images
            points = to_grid(points)
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
        start = self.spent - len(points)  # queries spent before this batch
        hits = np.flatnonzero(answers)
        if self.first is None and len(hits):
            self.first = points[hits[0]].copy()
        for i in hits:
            while self.marks and self.marks[0] <= start + i:  # checkpoints passed before point i
                self._mark(self.marks.pop(0))
            d = distance(points[i], self.x0, self.norm)
            if 0.0 < d < self.best_distance:  # x0 itself (a random oracle may say yes to it) is no adversarial
                self.best_distance = d
                self.best = points[i].copy()
        while self.marks and self.marks[0] <= self.spent:
            self._mark(self.marks.pop(0))

    def report(self, point: np.ndarray) -> None:
        """Make ``point`` (one the attack asked and was answered adversarial) the outcome in
        place of the closest verified one: e.g. HSJA's reference returns its last iterate."""
        self.chosen = point

    def _current(self) -> np.ndarray | None:
        """What the attack would return now."""
        if self.confirming:
            return self.confirmed
        return self.chosen if self.chosen is not None else self.best

    def _mark(self, queries: int) -> None:
        point = self._current()
        self.trajectory["queries"].append(int(queries))
        for norm in NORMS:
            self.trajectory[norm].append(None if point is None else round(distance(point, self.x0, norm), 6))

    def outcome(self) -> AttackOutcome:
        """The confirmed point when a confirmation phase accepted one, else the attack's reported
        point (:meth:`report`) or the best verified (``confirmed`` False when a confirmation
        phase ran and nothing passed)."""
        point = self.best if self.confirming and self.confirmed is None else self._current()
        if self.trajectory["queries"] and self.trajectory["queries"][-1] == self.spent:
            for values in self.trajectory.values():
                values.pop()
        self.trajectory["queries"].append(self.spent)  # the end: what is returned
        for norm in NORMS:
            self.trajectory[norm].append(None if point is None else round(distance(point, self.x0, norm), 6))
        confirmed = (self.confirmed is not None) if self.confirming else None
        d = distance(point, self.x0, self.norm) if point is not None else float("inf")
        trajectory = {k: list(v) for k, v in self.trajectory.items()}
        return AttackOutcome(point, d, self.norm, self.spent, self.budget, confirmed, trajectory)


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
    #: parameters added after records were first published, with the value that keeps the earlier
    #: behaviour: :meth:`identity` leaves them out at that value (earlier records keep their streams)
    added: ClassVar[dict[str, Any]] = {}

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

    def identity(self) -> dict[str, Any]:
        """:meth:`params` without the parameters of ``added`` at their earlier value: what keys the
        attack's random streams (:func:`probe.runs.streams.attack_key`), so that a parameter added
        later and left at that value changes no record."""
        out = {}
        for key in self._param_names():
            value = getattr(self, key)
            if isinstance(value, Attack):
                out[key] = {"name": value.name, **value.identity()}
            elif key not in self.added or self.added[key] != value:
                out[key] = value
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
        *,
        domain: str = "float",
    ) -> AttackGen:
        """The attack as a generator: yields candidate batches, returns an AttackOutcome.

        x0: the original image (C, H, W) in [0, 1]; never mutated.
        budget: hard limit on the number of points sent to the oracle.
        rng: the only source of randomness.
        x_init: an optional known adversarial start (needed for targeted attacks).
        domain: ``"float"`` (any float32 point) or ``"uint8"`` (every point asked is rounded
            to the 8-bit grid first: what an 8-bit image carries).
        """
        x0 = np.array(x0, dtype=np.float32, copy=True)  # private copy: the caller's array is never touched
        tracker = Tracker(x0, budget, self.norm, domain=domain)
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
    return drive(attack.run(x0, budget, rng, x_init), oracle)


def drive(gen: Generator[Points, Answers, Any], oracle: Callable[[Points], Answers]) -> Any:
    """Answer every batch a generator of the attack protocol asks with ``oracle``; its return value."""
    try:
        points = next(gen)
        while True:
            points = gen.send(oracle(points))
    except StopIteration as stop:
        return stop.value
