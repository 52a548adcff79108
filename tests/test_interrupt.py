"""Ctrl-C at safe points (probe.interrupt) and the engine's checkpoint between rounds."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from probe.engine import Engine, Job
from probe.interrupt import checkpoint, stop_at_checkpoints
from probe.oracle import Criterion, Oracle
from probe.smoothing import SmoothedClassifier
from probe.runtime import Runtime


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler, even where the test run inherited SIGINT ignored
    (a shell's background job): the situation of a user pressing Ctrl-C."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_first_ctrl_c_waits_for_a_checkpoint_second_stops_at_once():
    with stop_at_checkpoints():
        _ctrl_c()  # deferred: nothing raised here
        with pytest.raises(KeyboardInterrupt):
            checkpoint()
        checkpoint()  # the request was consumed
        _ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            _ctrl_c()  # the second press before a checkpoint raises in place
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        _ctrl_c()  # outside, the usual behaviour
    checkpoint()  # and nothing is left pending


def test_engine_stops_between_rounds(make_linear):
    """Ctrl-C while the model runs a round: the round is answered in full, its job charged
    and advanced, and the KeyboardInterrupt comes after it, before the next round."""
    runtime = Runtime(make_linear((3, 8, 8), seed=1).model, batch_size=8)
    clf = SmoothedClassifier(runtime, 0.0, 1)
    answered = []

    def asker(x0):
        for _ in range(50):
            answered.append(len((yield np.repeat(x0[None], 4, axis=0))))
        return None

    votes = clf.votes

    def votes_with_ctrl_c(requests, n=None):
        if runtime.rows == 8:  # the third round: pressed while the model works
            _ctrl_c()
        return votes(requests, n)

    clf.votes = votes_with_ctrl_c
    jobs = [Job(asker(np.full((3, 8, 8), 0.5, np.float32)), Oracle(clf, Criterion(0), budget=1000, rng=np.random.default_rng(0)))]
    with stop_at_checkpoints(), pytest.raises(KeyboardInterrupt):
        Engine(clf).run(jobs)
    assert answered == [4, 4, 4]  # the third round was answered, no fourth was run
    assert jobs[0].oracle.queries == 12 and runtime.rows == 12
    assert len(jobs[0].pending) == 4  # the job already asked its next points


def test_a_long_smoothed_call_stops_between_batches(make_linear):
    """CERTIFY-size calls (n rows of one point) stop at the next model batch, not at the end."""
    runtime = Runtime(make_linear((3, 8, 8), seed=1).model, batch_size=8)
    clf = SmoothedClassifier(runtime, 0.1, 1)
    run = runtime._run

    def run_with_ctrl_c(chunk):
        if runtime.calls == 1:  # pressed while the second batch runs
            _ctrl_c()
        return run(chunk)

    runtime._run = run_with_ctrl_c
    x = np.full((1, 3, 8, 8), 0.5, np.float32)
    with stop_at_checkpoints(), pytest.raises(KeyboardInterrupt):
        clf.votes([(x, np.random.default_rng(0))], n=800)
    assert runtime.calls == 2  # of 100
