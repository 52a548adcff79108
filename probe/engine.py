"""Run many attack state machines at once, merging their queries into full model batches.

Each :class:`Job` is one (image, attack) pair: an attack generator and the
Oracle that judges its points (its criterion, budget, counters and noise
stream). Every round the engine asks the classifier once for the pending
points of the waiting jobs and hands each job its own booleans. Query
accounting stays per job. The single-image API is the same engine with one job.

Full batches: a round takes rows (points x n noisy copies) in whole units of
``lcm(n, batch)`` rows, so that every model batch is full and no point is split.
Small requests (under one unit: the one-point steps of binary searches) go first and
whole; large ones (gradient batches) only pad the round up to the next whole unit and
keep their rest for later rounds, where it pads again. Spending a large request in one
go would leave the following rounds with only the small ones, a partial batch each.
Only when fewer rows than one unit are waiting does the model see a partial batch. A
job whose request is cut (at a point boundary) gets its answers once all its points
are answered; its noise stream is consumed in the same order as in one call, so the
votes do not depend on the cut.

Votes that stop when decided (``classifier.early_stop``, the default under smoothing):
each point of a request gets its own noise stream when the request is made
(:meth:`probe.oracle.Oracle.streams`), and a round's points are voted on in sub-rounds
(:meth:`probe.smoothing.SmoothedClassifier.decide`) in which the undecided points of all
jobs go to the model together. The schedule above still counts n rows a point, an upper
bound; a job's oracle is charged the rows it really took.

Jobs running at once: at most ``max_jobs`` (:func:`auto_max_jobs` by default in
:func:`probe.runs.campaign.attack_images`); the others wait, in order, and each starts when
one ends. Memory is then bounded however many jobs are given, and jobs end one after
another, so an interrupted run keeps the finished ones. Outcomes do not depend on it.

A remote model whose key's budget is spent (:class:`~probe.errors.EndpointBudgetSpent`
from the round's votes) ends the jobs of that round as their own budget would: the
refusal is thrown into their generators (each returns its best verified adversarial),
their unanswered queries are not counted, ``job.stopped`` says why, and the other
jobs go on (against a spent key, each ends the same way at its next request).
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from probe.attacks.base import AttackGen, AttackOutcome
from probe.errors import BudgetExceeded, EndpointBudgetSpent
from probe.interrupt import checkpoint
from probe.oracle import Oracle
from probe.smoothing import SmoothedClassifier
from probe.validate import check_int

PATIENCE = 8  # rounds a large request may wait while small ones fill every batch
# a job's peak memory per input value: its gradient batch (up to ~1,000 float32 points) and the
# copies made around it. Measured about 3 KB (12 PSJ jobs at max_noise_factor 4, n 10, on
# EfficientNet-Lite0's 3x224x224 inputs: 5-6 GB RSS); HSJA and CGBA take about a third of it
JOB_BYTES_PER_VALUE = 4096
MIN_JOBS = 8


def physical_memory() -> int:
    """This machine's physical memory in bytes (16 GiB when the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


def host_share(assigned: dict[str, float], host: dict[str, float]) -> float:
    """The share of its host a worker may take: its largest share of the host's CPUs or GPUs
    (``assigned``: the worker's resources, ``host``: the host's, as Ray counts them); 1 when
    neither is known. A worker holding 2 of 16 CPUs gets 0.125, one of 4 GPUs 0.25."""
    shares = [assigned[r] / host[r] for r in ("CPU", "GPU") if assigned.get(r) and host.get(r)]
    return min(1.0, max(shares, default=1.0))


def auto_max_jobs(d: int, memory: int | None = None, *, share: float = 1.0) -> int:
    """Jobs to run at once on inputs of ``d`` values: as many as fit in a quarter of ``memory``
    (bytes; :func:`physical_memory` when None) times ``share`` (the part of it this process may
    take: :func:`host_share`), at least ``MIN_JOBS``. 24 GiB and 3x224x224 give 10; 3x32x32
    gives 512."""
    memory = physical_memory() if memory is None else memory
    return max(MIN_JOBS, int(memory * share // 4 // (JOB_BYTES_PER_VALUE * max(1, int(d)))))


@dataclass(eq=False)  # jobs compare (and hash) by identity
class Job:
    """One attack on one image."""

    gen: AttackGen
    oracle: Oracle
    meta: dict[str, Any] = field(default_factory=dict)
    pending: np.ndarray | None = None
    outcome: AttackOutcome | None = None
    answered: int = 0  # points of ``pending`` already answered (a request cut across rounds)
    parts: list = field(default_factory=list)  # their answers
    streams: list | None = None  # one noise stream a pending point (votes that stop when decided)
    idle: int = 0  # rounds its request has waited without any row taken
    stopped: str | None = None  # why the job was cut short from outside (a remote key's budget spent)


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
    max_jobs : jobs running at once (None: all). The others wait, in order, and each starts
        when one ends: memory stays bounded (a gradient batch of ImageNet-size points is
        hundreds of MB a job), and jobs end one after another instead of all near the end,
        so an interrupted run keeps the finished ones. Outcomes do not depend on it: a
        job's votes come from its own oracle's stream.
    """

    def __init__(
        self, classifier: SmoothedClassifier, max_batches_per_round: int | None = None, *, max_jobs: int | None = None
    ) -> None:
        self.classifier = classifier
        self.max_batches = None if max_batches_per_round is None else max(1, max_batches_per_round)
        self.max_jobs = None if max_jobs is None else check_int("max_jobs", max_jobs, 1)
        self.stats = EngineStats()

    def run(
        self,
        jobs: Iterable[Job],
        on_result: Callable[[Job], None] | None = None,
        on_round: Callable[[list[Job]], None] | None = None,
    ) -> list[Job]:
        """Run every job to its end; ``on_result(job)`` is called as soon as each finishes."""
        jobs = list(jobs)
        for job in jobs:
            if job.oracle.classifier is not self.classifier:
                raise ValueError("every job's oracle must use the engine's classifier")
        waiting: deque[Job] = deque()
        queued, live = deque(jobs), 0
        limit = len(jobs) if self.max_jobs is None else self.max_jobs

        def ended(job: Job) -> None:
            nonlocal live
            live -= 1
            if on_result is not None:
                on_result(job)

        def start() -> None:  # up to ``limit`` jobs running, in order (one that ends at once makes room)
            nonlocal live
            while queued and live < limit:
                live += 1
                self._advance(queued.popleft(), None, waiting, ended)

        batch = self.classifier.runtime.batch_size
        n = self.classifier.n
        unit = batch * n // math.gcd(batch, n)  # rows that fill whole batches with whole points
        cap = None if self.max_batches is None else max(unit, self.max_batches * batch // unit * unit)
        while True:
            start()
            if not waiting:
                break
            selected, rows = self._select(waiting, n, unit, cap)
            selected, rows = self._charge(selected, n, waiting, ended)
            self.stats.rounds += 1
            try:
                votes = self._votes(selected)
            except EndpointBudgetSpent as spent:  # the endpoint refused: these jobs are out of budget
                for job, a, b in selected:
                    job.oracle.queries -= b - a  # asked, never answered
                    job.answered, job.parts, job.stopped = 0, [], "endpoint budget spent"
                    self._advance(job, None, waiting, ended, error=spent)
                checkpoint()
                continue
            for (job, a, b), (counts, drawn) in zip(selected, votes):
                self.stats.points += b - a
                self.stats.rows += drawn
                job.oracle.spend(drawn)
                answers = job.oracle.judge(counts)
                job.answered = b
                if b < len(job.pending):
                    job.parts.append(answers)
                    continue
                if job.parts:
                    job.parts.append(answers)
                    answers = np.concatenate(job.parts)
                    job.parts = []
                job.answered = 0
                self._advance(job, answers, waiting, ended)
            if on_round is not None:
                on_round(list(dict.fromkeys(job for job, _, _ in selected)))
            checkpoint()  # a deferred Ctrl-C stops here, between rounds
        return jobs

    def _votes(self, selected: list[tuple[Job, int, int]]) -> list[tuple[np.ndarray, int]]:
        """Vote counts of the selected points and the model runs they took: one call for all
        jobs, full votes, or (``classifier.early_stop``) votes drawn in rounds in which the
        undecided points of all jobs go to the model together."""
        clf = self.classifier
        if not clf.early_stop:
            votes = clf.votes([(job.pending[a:b], job.oracle.rng) for job, a, b in selected])
            return [(v, (b - a) * clf.n) for v, (_, a, b) in zip(votes, selected)]
        got = clf.decide([(job.pending[a:b], job.streams[a:b], job.oracle.criterion) for job, a, b in selected])
        return [(counts, int(drawn.sum())) for counts, drawn in got]

    @staticmethod
    def _select(waiting: deque, n: int, unit: int, cap: int | None) -> tuple[list[tuple[Job, int, int]], int]:
        """Pick this round's rows and take those jobs out of ``waiting``.

        Small requests (under one ``unit`` of rows) first; when they make a unit or more,
        the round is their whole units (the rest, and the large requests, wait); when
        they make less, large requests pad the round to one unit. A large request kept
        waiting for ``PATIENCE`` rounds gets one more unit (it is not starved while many
        small requests fill every batch). With no small request a round takes every whole
        unit waiting; with less than one unit waiting, all of it. A job cut short goes
        back to the front of ``waiting``.
        """
        remaining = [(len(job.pending) - job.answered) * n for job in waiting]
        total = sum(remaining)
        small = sum(r for r in remaining if r < unit)
        large = sorted((job for job, r in zip(waiting, remaining) if r >= unit), key=lambda job: -job.idle)
        if total < unit:
            target = total
        elif small == 0:
            target = total // unit * unit
        elif small >= unit:  # whole batches of small requests; large ones wait, up to PATIENCE rounds
            target = small // unit * unit
            if large and large[0].idle >= PATIENCE:
                target += unit
        else:  # small requests padded with large ones to one unit
            target = unit
        if cap is not None:
            target = min(target, cap)
        order = [job for job, r in zip(waiting, remaining) if r < unit] + large
        waiting.clear()
        selected: list[tuple[Job, int, int]] = []
        rows = 0
        back: list[Job] = []
        for job in order:
            first = job.answered
            take = min(len(job.pending) - first, max(0, target - rows) // n)
            job.idle = 0 if take > 0 else job.idle + 1
            if take > 0:
                selected.append((job, first, first + take))
                rows += take * n
            if first + take < len(job.pending):
                back.append(job)
        waiting.extend(back)  # their rest goes first next round, in the same order
        return selected, rows

    def _charge(self, selected, n: int, waiting: deque, on_result) -> tuple[list[tuple[Job, int, int]], int]:
        """Charge each selected job's points to its budget before any inference runs.

        A job whose request its oracle refuses gets BudgetExceeded thrown into its
        generator (an attack ends there and returns its best verified adversarial); its
        rows leave the round, and every other job goes on.
        """
        kept, rows = [], 0
        for job, a, b in selected:
            try:
                job.oracle.charge(b - a)
            except BudgetExceeded as refused:
                job.answered, job.parts = 0, []
                self._advance(job, None, waiting, on_result, error=refused)
                continue
            kept.append((job, a, b))
            rows += (b - a) * n
        return kept, rows

    @staticmethod
    def _advance(
        job: Job, answers: np.ndarray | None, waiting: deque, on_result, *, error: BaseException | None = None
    ) -> None:
        try:
            if error is not None:
                job.pending = job.gen.throw(error)
            else:
                job.pending = next(job.gen) if answers is None else job.gen.send(answers)
        except StopIteration as stop:
            job.pending, job.outcome = None, stop.value
        except BudgetExceeded:  # a generator that does not handle the refusal ends with no outcome
            job.pending, job.outcome = None, None
        else:
            job.streams = job.oracle.streams(len(job.pending))  # drawn for the whole request: a cut cannot change them
            waiting.append(job)
            return
        if on_result is not None:
            on_result(job)
