"""Run many attack state machines at once, merging their queries into full model batches.

Each :class:`Job` is one (image, attack) pair: an attack generator and the
Oracle that judges its points (its criterion, budget, counters and noise
stream). Every round the engine takes waiting jobs in turn until their noisy
copies fill the model's batch, asks the classifier once for all of them, and
hands each job its own booleans. Query accounting stays per job. The
single-image API is the same engine with one job.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from probe.attacks.base import AttackGen, AttackOutcome
from probe.oracle import Oracle, SmoothedClassifier


@dataclass
class Job:
    """One attack on one image."""

    gen: AttackGen
    oracle: Oracle
    meta: dict[str, Any] = field(default_factory=dict)
    pending: np.ndarray | None = None
    outcome: AttackOutcome | None = None


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
    max_batches_per_round : how many model batches one round may fill, at most
        (rounds stop early once the rows are an exact multiple of the batch size).
    """

    def __init__(self, classifier: SmoothedClassifier, max_batches_per_round: int = 4) -> None:
        self.classifier = classifier
        self.max_batches = max(1, max_batches_per_round)
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
        while waiting:
            selected, rows = [], 0
            while waiting:
                nxt = len(waiting[0].pending) * n
                if rows >= batch and (rows % batch == 0 or rows + nxt > self.max_batches * batch):
                    break
                job = waiting.popleft()
                selected.append(job)
                rows += nxt
            votes = self.classifier.votes([(job.pending, job.oracle.rng) for job in selected])
            self.stats.rounds += 1
            self.stats.rows += rows
            for job, counts in zip(selected, votes):
                self.stats.points += len(job.pending)
                job.oracle.charge(len(job.pending))
                self._advance(job, job.oracle.judge(counts), waiting, on_result)
            if on_round is not None:
                on_round(selected)
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
