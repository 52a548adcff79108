"""Engine scheduling: which rows go into which model batch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probe.engine import Engine, Job
from probe.oracle import Criterion, Oracle
from probe.smoothing import SmoothedClassifier
from probe.runtime import Runtime


def _requests(x0: np.ndarray, sizes: list[int], log: list):
    for k in sizes:
        log.append((yield np.repeat(x0[None], k, axis=0)))
    return None


def _run(path, batch: int, n: int, sizes_per_job: list[list[int]], sigma: float = 0.0, early_stop: bool = False):
    runtime = Runtime(path, batch_size=batch)
    clf = SmoothedClassifier(runtime, sigma, n, early_stop=early_stop)
    logs: list[list] = [[] for _ in sizes_per_job]
    jobs = [
        Job(
            _requests(np.full((3, 8, 8), 0.2 + 0.01 * (i % 50), np.float32), sizes, logs[i]),
            Oracle(clf, Criterion(0), budget=10**6, rng=np.random.default_rng([3, i])),
        )
        for i, sizes in enumerate(sizes_per_job)
    ]
    engine = Engine(clf)
    finished: list[Job] = []
    engine.run(jobs, on_result=finished.append)
    return runtime, engine, jobs, logs, finished


@pytest.fixture(scope="module")
def linear_path(make_linear):
    return make_linear((3, 8, 8), seed=2).model


@pytest.mark.parametrize("n", [1, 3])
def test_large_requests_pad_the_one_point_rounds(linear_path, n):
    """40 jobs asking one point at a time (a binary search each) and 5 asking large
    gradient batches: the large ones are spread over the one-point rounds as padding,
    so every model batch is full but the very last one. Spending the large requests in
    the first round instead (the greedy schedule) leaves every later round at 40 x n rows
    of 64 and needs many more batches."""
    singles = [[1] * 50 for _ in range(40)]
    gradients = [[200, 200] for _ in range(5)]
    runtime, engine, jobs, logs, _ = _run(linear_path, 64, n, singles + gradients, sigma=0.1 if n > 1 else 0.0)
    rows = (40 * 50 + 5 * 400) * n
    assert runtime.rows == rows
    assert runtime.calls == math.ceil(rows / 64)
    assert [job.oracle.queries for job in jobs] == [50] * 40 + [400] * 5
    # every job got one answer per point it asked, in its own order
    assert all([len(a) for a in log] == sizes for log, sizes in zip(logs, singles + gradients))


def test_votes_that_stop_when_decided_charge_the_rows_they_take(linear_path):
    """The same jobs with votes that stop once decided (the default): each job's oracle
    counts exactly the rows the model ran for it, fewer than n a point (at least the 2 of
    3 that can decide a two-class vote), and every job still gets one answer a point."""
    singles = [[1] * 50 for _ in range(40)]
    gradients = [[200, 200] for _ in range(5)]
    runtime, engine, jobs, logs, _ = _run(linear_path, 64, 3, singles + gradients, sigma=0.1, early_stop=True)
    points = 40 * 50 + 5 * 400
    spent = sum(job.oracle.inferences for job in jobs)
    assert runtime.rows == runtime.inferences == engine.stats.rows == spent
    assert 2 * points <= spent < 3 * points
    assert [job.oracle.queries for job in jobs] == [50] * 40 + [400] * 5
    assert all([len(a) for a in log] == sizes for log, sizes in zip(logs, singles + gradients))


def test_no_request_starves(linear_path):
    """64 one-point jobs fill every batch on their own; small requests go first, but a
    large request kept waiting PATIENCE rounds gets a batch of its own: it ends long before
    the one-point jobs do, and every batch is still full."""
    from probe.engine import PATIENCE

    singles = [[1] * 100 for _ in range(64)]
    runtime, engine, jobs, logs, finished = _run(linear_path, 64, 1, singles + [[500]])
    assert [job.oracle.queries for job in jobs] == [100] * 64 + [500]
    assert runtime.calls == math.ceil((64 * 100 + 500) / 64)
    # 500 rows = 8 batches, one every PATIENCE + 1 rounds at worst
    assert finished.index(jobs[-1]) < 64 and engine.stats.rounds <= 101
    assert 8 * (PATIENCE + 1) < 100


def _attack_jobs(path, n: int, early_stop: bool, count: int, budget: int = 300):
    """HSJA on ``count`` points of a linear model, under smoothing; each job its own streams."""
    from probe.attacks import HSJA

    runtime = Runtime(path, batch_size=16)
    clf = SmoothedClassifier(runtime, 0.05, n, early_stop=early_stop)
    jobs = []
    for i in range(count):
        x0 = np.full((3, 8, 8), 0.25 + 0.02 * i, np.float32)
        gen = HSJA().run(x0, budget, np.random.default_rng([7, i]))
        jobs.append(Job(gen, Oracle(clf, Criterion(0), budget=budget, rng=np.random.default_rng([8, i])), {"i": i}))
    return clf, jobs


@pytest.mark.parametrize("n, early_stop", [(4, True), (5, False)])
def test_outcomes_do_not_depend_on_how_many_jobs_run_at_once(linear_path, n, early_stop):
    """The same 6 attacks run all at once, 2 at a time and one by one: every job ends with the
    same adversarial, queries and inferences (its votes come from its own streams), and at
    most ``max_jobs`` are ever running."""
    results = {}
    for max_jobs in (None, 2, 1):
        clf, jobs = _attack_jobs(linear_path, n, early_stop, 6)
        live, peak, ended = set(), [0], []

        def watched(i, gen, live=live, peak=peak):
            live.add(i)  # runs when the engine starts the job
            peak[0] = max(peak[0], len(live))
            return (yield from gen)

        for job in jobs:
            job.gen = watched(job.meta["i"], job.gen)

        def on_result(job, live=live, ended=ended):
            live.discard(job.meta["i"])
            ended.append(job.meta["i"])

        Engine(clf, max_jobs=max_jobs).run(jobs, on_result=on_result)
        assert all(job.outcome is not None and job.outcome.found for job in jobs)
        assert peak[0] == (6 if max_jobs is None else max_jobs)
        if max_jobs == 1:
            assert ended == list(range(6))  # in order, one after another
        results[max_jobs] = [(job.outcome.x_adv, job.oracle.queries, job.oracle.inferences) for job in jobs]
    for other in (2, 1):
        for (x, q, r), (x2, q2, r2) in zip(results[None], results[other]):
            assert q == q2 and r == r2 and np.array_equal(x, x2)


def test_max_jobs_is_validated(linear_path):
    clf, _ = _attack_jobs(linear_path, 1, False, 0)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_jobs"):
            Engine(clf, max_jobs=bad)


def test_auto_max_jobs_fills_a_quarter_of_the_memory():
    from probe.engine import JOB_BYTES_PER_VALUE, MIN_JOBS, auto_max_jobs

    d = 3 * 224 * 224
    gib = 2**30
    assert auto_max_jobs(d, 24 * gib) == 24 * gib // 4 // (JOB_BYTES_PER_VALUE * d) == 10
    assert auto_max_jobs(3 * 32 * 32, 24 * gib) == 512
    assert auto_max_jobs(d, gib) == MIN_JOBS  # never fewer than MIN_JOBS


def test_auto_max_jobs_reads_the_machines_memory(monkeypatch):
    import os

    from probe.engine import auto_max_jobs

    d, gib = 3 * 224 * 224, 2**30
    pages = {"SC_PHYS_PAGES": 96 * gib // 4096, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert auto_max_jobs(d) == auto_max_jobs(d, 96 * gib) == 41

    def unknown(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", unknown)  # no sysconf value: 16 GiB assumed
    assert auto_max_jobs(3 * 32 * 32) == auto_max_jobs(3 * 32 * 32, 16 * gib) == 341


def test_host_share_is_the_larger_of_the_cpu_and_gpu_shares():
    from probe.engine import auto_max_jobs, host_share

    assert host_share({"CPU": 2.0}, {"CPU": 16.0, "GPU": 4.0}) == 0.125
    assert host_share({"CPU": 1.0, "GPU": 1.0}, {"CPU": 16.0, "GPU": 4.0}) == 0.25
    assert host_share({"CPU": 4.0}, {"CPU": 4.0}) == host_share({}, {"CPU": 4.0}) == host_share({"CPU": 1.0}, {}) == 1.0
    gib = 2**30  # 8 workers of 2 CPUs on a 16-CPU, 96 GiB node: 5 jobs' worth each, so MIN_JOBS
    assert auto_max_jobs(3 * 224 * 224, 96 * gib, share=0.125) == 8
    assert auto_max_jobs(3 * 32 * 32, 96 * gib, share=0.125) == 96 * gib // 8 // 4 // (4096 * 3072) == 256
