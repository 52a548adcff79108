"""Run many attack state machines at once, merging their queries into full model batches.

Each :class:`Job` is one (image, attack) pair: an attack generator and the
Oracle that judges its points (its criterion, budget, counters and noise
stream). Every round the engine asks the classifier once for the pending
points of the waiting jobs and hands each job its own booleans. Query
accounting stays per job. The single-image API is the same engine with one job.

Full batches: a round takes as many rows (points x n noisy copies) as make a
whole number of model batches, ``lcm(n, batch)`` rows at a time; the rest
waits for the next round, where it goes first. A job whose request is cut
(at a point boundary) gets its answers once all its points are answered; its
noise stream is consumed in the same order as in one call, so the votes do
not depend on the cut. Only when fewer rows than one such unit are waiting
(few jobs left, one point each) does the model see a partial batch.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from probe.attacks.base import AttackGen, AttackOutcome
from probe.oracle import Oracle, SmoothedClassifier


@dataclass(eq=False)  # jobs compare (and hash) by identity
class Job:
    """One attack on one image."""

    gen: AttackGen
    oracle: Oracle
    meta: dict[str, Any] = field(default_factory=dict)
    pending: np.ndarray | None = None
    outcome: AttackOutcome | None = None
    answered: int = 0  # points of ``pending`` already answered (a request cut across rounds)
    parts: list = field(default_factory=list)  # their vote counts


@dataclass
class EngineStats:
    rounds: int = 0
    points: int = 0
    rows: int = 0


class Engine:
    """Feeds the model full batches from many concurrent jobs.

    Parameters
    ----------
    classifier : the shared (smoothed) classifier; all jobs' oracles must use it.
    max_batches_per_round : cap on the model batches of one round (None: no cap; a
        round then takes every waiting row that fits in whole batches). The cap is
        raised to one ``lcm(n, batch)`` unit when smaller.
    """

    def __init__(self, classifier: SmoothedClassifier, max_batches_per_round: int | None = None) -> None:
        self.classifier = classifier
        self.max_batches = None if max_batches_per_round is None else max(1, max_batches_per_round)
        self.stats = EngineStats()

    def run(
        self,
        jobs: Iterable[Job],
        on_result: Callable[[Job], None] | None = None,
        on_round: Callable[[list[Job]], None] | None = None,
    ) -> list[Job]:
        """Run every job to its end; ``on_result(job)`` is called as soon as each finishes."""
        jobs = list(jobs)
        waiting: deque[Job] = deque()
        for job in jobs:
            if job.oracle.classifier is not self.classifier:
                raise ValueError("every job's oracle must use the engine's classifier")
            self._advance(job, None, waiting, on_result)
        batch = self.classifier.runtime.batch_size
        n = self.classifier.n
        unit = batch * n // math.gcd(batch, n)  # rows that fill whole batches with whole points
        cap = None if self.max_batches is None else max(unit, self.max_batches * batch // unit * unit)
        while waiting:
            total = sum((len(job.pending) - job.answered) for job in waiting) * n
            if total >= unit:
                target = total // unit * unit
                if cap is not None:
                    target = min(target, cap)
            else:
                target = total
            selected: list[tuple[Job, int, int]] = []
            rows = 0
            while waiting and rows < target:
                job = waiting.popleft()
                first = job.answered
                take = min(len(job.pending) - first, (target - rows) // n)
                if take <= 0:  # cannot happen with whole-point units; keep the job for later
                    waiting.appendleft(job)
                    break
                selected.append((job, first, first + take))
                rows += take * n
                if first + take < len(job.pending):
                    waiting.appendleft(job)  # the rest of its request goes first next round
            votes = self.classifier.votes([(job.pending[a:b], job.oracle.rng) for job, a, b in selected])
            self.stats.rounds += 1
            self.stats.rows += rows
            for (job, a, b), counts in zip(selected, votes):
                self.stats.points += b - a
                job.oracle.charge(b - a)
                job.answered = b
                if b < len(job.pending):
                    job.parts.append(counts)
                    continue
                if job.parts:
                    job.parts.append(counts)
                    counts = np.concatenate(job.parts)
                    job.parts = []
                job.answered = 0
                self._advance(job, job.oracle.judge(counts), waiting, on_result)
            if on_round is not None:
                on_round(list(dict.fromkeys(job for job, _, _ in selected)))
        return jobs

    @staticmethod
    def _advance(job: Job, answers: np.ndarray | None, waiting: deque, on_result) -> None:
        try:
            job.pending = next(job.gen) if answers is None else job.gen.send(answers)
        except StopIteration as stop:
            job.pending = None
            job.outcome = stop.value
            if on_result is not None:
                on_result(job)
            return
        waiting.append(job)
