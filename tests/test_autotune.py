"""Batch size "auto": a few sizes timed at start-up, the fastest per image kept, cached on disk.

Timing is simulated with a fake clock (no timed assertion); the cache lives in the
temporary ``$PROBE_CACHE_DIR`` of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from probe import autotune
from probe.errors import ProbeError
from probe.runtime import Runtime


class FakeClock:
    """``perf_counter`` replaced: a call of b images costs ``overhead + per_image(b) * b``."""

    def __init__(self, per_image, overhead: float = 1e-3) -> None:
        self.now = 0.0
        self.per_image = per_image
        self.overhead = overhead
        self.calls: list[int] = []

    def perf_counter(self) -> float:
        return self.now

    def run(self, x: np.ndarray) -> None:
        self.calls.append(len(x))
        self.now += self.overhead + self.per_image(len(x)) * len(x)


def test_measure_finds_a_batch_that_is_slower_per_image_when_larger(monkeypatch):
    # 1 ms per call, 2 ms an image up to 16 images, 3 ms an image beyond (cache misses)
    clock = FakeClock(lambda b: 2e-3 if b <= 16 else 3e-3)
    monkeypatch.setattr(autotune.time, "perf_counter", clock.perf_counter)
    curve = autotune.measure(clock.run, (3, 8, 8), (1, 4, 16, 64))
    assert curve == pytest.approx({1: 16 / (16e-3 + 32e-3), 4: 16 / (4e-3 + 32e-3), 16: 16 / (1e-3 + 32e-3),
                                   64: 64 / (1e-3 + 192e-3)})  # fmt: skip
    assert autotune.choose(curve) == 16
    # every candidate warmed up once, then two passes of max(b, 16) images
    assert clock.calls[:4] == [1, 4, 16, 64] and len(clock.calls) == 4 + 2 * (16 + 4 + 1 + 1)


def test_choose_prefers_the_largest_batch_within_the_tolerance():
    assert autotune.choose({1: 100.0, 4: 150.0, 16: 200.0, 64: 195.0}) == 64  # 2.5% slower: load noise
    assert autotune.choose({1: 100.0, 4: 150.0, 16: 200.0, 64: 190.0}) == 16
    assert autotune.choose({1: 300.0, 4: 150.0}) == 1


@pytest.fixture()
def linear_file(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=1)
    path = tmp_path / "lin.onnx"
    path.write_bytes(lin.model.read_bytes())
    return path


def test_auto_is_measured_once_then_read_from_the_cache(linear_file, probe_cache, monkeypatch):
    measured = []
    real = autotune.measure

    def counting(run, shape, candidates=autotune.CPU_CANDIDATES, **kw):
        measured.append(tuple(candidates))
        return real(run, shape, candidates, **kw)

    monkeypatch.setattr(autotune, "measure", counting)
    first = Runtime(linear_file)
    assert measured == [autotune.CPU_CANDIDATES]
    assert first.batch_size in autotune.CPU_CANDIDATES and set(first.batch_curve) == set(autotune.CPU_CANDIDATES)
    assert first.batch_size == autotune.choose(first.batch_curve)
    assert (first.calls, first.rows, first.inferences) == (0, 0, 0)  # the timing runs are not counted
    data = json.loads((probe_cache / autotune.CACHE_FILE).read_text())
    key = autotune.cache_key(linear_file, (3, 8, 8), first.info.providers, 0)
    assert data[key]["batch_size"] == first.batch_size
    again = Runtime(linear_file)
    assert measured == [autotune.CPU_CANDIDATES] and again.batch_size == first.batch_size  # from the cache
    assert Runtime(linear_file, threads=1).batch_size in autotune.CPU_CANDIDATES  # another thread count: measured
    assert len(measured) == 2
    stat = linear_file.stat()
    os.utime(linear_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed: measured again
    Runtime(linear_file)
    assert len(measured) == 3


def test_an_explicit_or_fixed_batch_is_never_measured(make_linear, monkeypatch):
    monkeypatch.setattr(autotune, "measure", lambda *a, **k: pytest.fail("measured"))
    lin = make_linear((3, 8, 8), seed=1)
    assert Runtime(lin.model, batch_size=7).batch_size == 7
    fixed = make_linear((3, 8, 8), seed=1, batch=5, name="fixed.onnx")
    runtime = Runtime(fixed.model)
    assert runtime.batch_size == 5 and runtime.batch_curve is None


def test_an_unreadable_cache_is_measured_again(linear_file, probe_cache):
    (probe_cache / autotune.CACHE_FILE).write_text("not json")
    assert Runtime(linear_file).batch_size in autotune.CPU_CANDIDATES
    assert json.loads((probe_cache / autotune.CACHE_FILE).read_text())  # rewritten as JSON


@pytest.mark.parametrize("value", [0, -3, "8", 2.5, True])
def test_batch_size_must_be_auto_or_a_positive_integer(make_linear, value):
    with pytest.raises(ProbeError, match="batch size"):
        Runtime(make_linear((3, 8, 8), seed=1).model, batch_size=value)


def test_cli_batch_size_auto_explicit_and_refused(make_linear, run_cli):
    model = make_linear((3, 8, 8), seed=1).model
    auto = run_cli("info", "--model", model, "--json")
    assert auto.exit_code == 0, auto.output
    data = json.loads(auto.stdout)
    assert data["batch_size"] in autotune.CPU_CANDIDATES and data["batch_curve"]
    given = json.loads(run_cli("info", "--model", model, "--batch-size", "12", "--json").stdout)
    assert given["batch_size"] == 12 and given["batch_curve"] is None
    for bad in ("many", "0"):
        refused = run_cli("info", "--model", model, "--batch-size", bad)
        assert isinstance(refused.exception, ProbeError) and "--batch-size" in str(refused.exception), bad
