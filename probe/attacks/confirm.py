"""The confirmation phase: a sequential test of the final point against a randomized oracle.

Against a randomized oracle the closest point ever answered True is usually a lucky
answer. :class:`Confirmed` keeps part of the budget back from the search and spends it
testing points pushed outwards from the best one, with a stated error.
"""

from __future__ import annotations

from typing import Generator

import numpy as np
from scipy import special

from probe.attacks.base import Answers, Attack, Points, Tracker, distance
from probe.errors import BudgetExceeded, ProbeError
from probe.validate import check_int, check_real


class Confirmed(Attack):
    """Confirmation of the final point against a randomized oracle (a wrapper, Foolbox style).

    Not an attack of its own: it runs the wrapped ``attack`` with ``share`` of the budget
    kept back, then spends what is left on a sequential test of candidate points, pushed
    outwards from the best point found until one passes (see :meth:`_confirm`). Only
    booleans are used. The wrapped attack is not modified; the wrapper has its name and
    its norm.

    The test has a stated error: a point whose answers are True with probability below
    ``level`` passes with probability at most ``error``, whatever the attack and the
    oracle did before (a one-sided Clopper-Pearson bound at ``error / looks`` at each of
    the at most ``looks = remaining budget // votes`` looks: a Bonferroni split). When no
    look passes, the outcome is the best verified adversarial, marked unconfirmed
    (``AttackOutcome.confirmed`` False).

    Distance measure: the wrapped attack's (L2 or Linf).

    Arguments:
        attack (Attack): the attack to wrap (positional).
        votes (int): answers asked per look (one batch of identical points); 0: a sixth of
            what is left for the confirmation, between 8 and 16. (Default: 0)
        level (float): the wanted probability of a True answer, in (0, 1]: the audit's
            P_a under the ``label`` criterion (the answer is then exactly eq. (4)'s event),
            1/2 under the ``paper`` criterion (whose answers already need ceil(n P_a) wrong
            votes). (Default: 0.5)
        share (float): fraction of the budget kept back from the search for the
            confirmation, in [0, 1). (Default: 0.1)
        error (float): the test's error, in (0, 1). (Default: 0.05)

    Shape:
        - x0: (C, H, W), float32 in [0, 1].
        - candidates: (k, C, H, W), float32 in [0, 1] (each answered by one boolean).
        - returns: :class:`AttackOutcome` (the confirmed point when a look passed, else the
          best verified adversarial with ``confirmed`` False).

    Examples::

        >>> import numpy as np
        >>> from probe.attacks import HSJA, Confirmed, run_attack
        >>> w = np.random.default_rng(0).standard_normal((1, 8, 8))
        >>> x0 = np.full((1, 8, 8), 0.5, dtype=np.float32)
        >>> b = -float(w.ravel() @ x0.ravel()) - 0.1 * np.linalg.norm(w)  # L2 optimum: 0.1
        >>> noise = np.random.default_rng(1)  # a randomized oracle: noisy margin
        >>> oracle = lambda pts: (pts.reshape(len(pts), -1) @ w.ravel() + b) / np.linalg.norm(w) + 0.02 * noise.standard_normal(len(pts)) > 0
        >>> attack = Confirmed(HSJA(), level=0.5, share=0.2)
        >>> attack
        Confirmed(attack=HSJA(norm='l2', ...), votes=0, level=0.5, share=0.2, error=0.05)
        >>> outcome = run_attack(attack, x0, oracle, budget=500, rng=np.random.default_rng(0))
        >>> outcome.found, outcome.confirmed, outcome.queries <= 500, attack.name, attack.norm
        (True, True, True, 'hsja', 'l2')
        >>> margin = float((outcome.x_adv.ravel() @ w.ravel() + b) / np.linalg.norm(w))
        >>> bool(margin > 0)  # confirmed: on the adversarial side, not a lucky answer
        True
    """

    #: a point is asked again while its share of True answers is at least this far from
    #: the level towards 1 (a point that looks sure), at most ``STAY`` looks in all
    STAY = 4

    def __init__(
        self, attack: Attack, *, votes: int = 0, level: float = 0.5, share: float = 0.1, error: float = 0.05
    ) -> None:
        if not isinstance(attack, Attack):
            raise ProbeError(f"attack must be an Attack, got {attack!r}")
        self.attack = attack
        self.votes = check_int("votes", votes, 0)
        self.level = check_real("level", level, 0.0, 1.0, low_closed=False)
        self.share = check_real("share", share, 0.0, 1.0, high_closed=False)
        self.error = check_real("error", error, 0.0, 1.0, low_closed=False, high_closed=False)

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
        tracker.confirming = True
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

    def _candidates(self, x0: np.ndarray, tracker: Tracker, looks: int) -> list[np.ndarray]:
        """Points to test, nearest first: the best point's perturbation scaled by 1, 1.1, 1.25,
        1.5, 2, 3, 5, 8, then 13, 21, 34, 55 while under half the first adversarial's distance
        (in the attack's norm; a lucky best far inside the class: benchmarks/README.md, image
        14) when looks are left for a sure point after them, then the points halfway to and at
        the first adversarial (usually a far, robust one)."""
        assert tracker.best is not None and tracker.first is not None
        best, first = tracker.best, tracker.first
        ladder = [x0 + np.float32(f) * (best - x0) for f in (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0)]
        reach = 0.5 * distance(first, x0, tracker.norm) / max(distance(best, x0, tracker.norm), 1e-12)
        if looks > len(ladder) + 2:
            ladder += [x0 + np.float32(f) * (best - x0) for f in (13.0, 21.0, 34.0, 55.0) if f < reach]
        ladder += [best + np.float32(0.5) * (first - best), first]
        return [np.clip(p, 0.0, 1.0).astype(np.float32) for p in ladder]

    def _confirm(self, x0: np.ndarray, tracker: Tracker) -> Generator[Points, Answers, None]:
        """A sequential test of the candidates of :meth:`_candidates`, nearest first.

        Each look asks ``votes`` copies of the current candidate and adds the answers to its
        counts; it passes when the one-sided Clopper-Pearson lower bound of the candidate's
        True rate at ``error / looks`` reaches ``level``. A candidate is asked again (at most
        ``STAY`` looks) while its True share is at least halfway from ``level`` to 1, else
        the next is taken; the last is asked until the looks run out.
        """
        votes = self.votes or int(np.clip(tracker.remaining // 6, 8, 16))
        looks = max(1, tracker.remaining // votes)
        alpha = self.error / looks
        candidates = self._candidates(x0, tracker, looks)
        k = hits = asked = stays = 0
        for _ in range(looks):
            point = candidates[k]
            answers = yield from tracker.query(np.broadcast_to(point, (votes, *x0.shape)))
            hits, asked, stays = hits + int(answers.sum()), asked + len(answers), stays + 1
            if hits and special.betaincinv(hits, asked - hits + 1, alpha) >= self.level:
                tracker.confirmed = point
                return
            sure = hits >= asked * (1.0 + self.level) / 2.0
            if k + 1 < len(candidates) and (not sure or stays >= self.STAY):
                k, hits, asked, stays = k + 1, 0, 0, 0
