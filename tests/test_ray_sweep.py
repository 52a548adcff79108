"""Sweeps on Ray (`probe sweep --ray`): the same records as a local sweep, resumed from a
partial folder, with a worker killed mid-sweep (nothing lost, nothing written twice).

A local Ray with 2 CPUs (2 workers) is started here and shut down at the end; the sweep is
the bundled CIFAR-10 CNN at tiny budgets: 4 images (3 attacked), HSJA and RayS, 100 queries,
sigma in {0, 0.05}, n = 5, CERTIFY of the attacked images.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probe.runs.ray_sweep import RaySweep
from probe.runs.results import CERTIFY, CONFIGS, RESULTS, job_key, read_jsonl, strip_timing
from probe.runs.sweep import SweepHooks, run_sweep
from probe.runs.sweep_file import parse_sweep

TINY = {
    "name": "tiny-ray",
    "models": ["cifar10-cnn"],
    "limit": 4,
    "attack_limit": 3,
    "attacks": ["hsja", "rays"],
    "budget": 100,
    "sigma": [0, 0.05],
    "n": [5],
    "pa": [0.5],
    "p_adv_samples": 20,
    "certify": {"n0": 20, "n": 100},
}
JOBS = 2 * 3 * 2  # configurations x attacked images x attacks


@pytest.fixture(scope="module")
def ray():
    """A local Ray of 2 CPUs for this module (the ``ray`` module; skipped without the extra)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """The tiny sweep run locally, in one process."""
    out = tmp_path_factory.mktemp("local")
    outcome = run_sweep(parse_sweep(TINY), out)
    assert outcome.written == JOBS
    return out


def _rows(folder: Path, name: str) -> list[str]:
    """The rows of one of the folder's files without timing fields, sorted (their order differs)."""
    return sorted(json.dumps(strip_timing(r), sort_keys=True) for r in read_jsonl(folder / name))


def _same_files(folder: Path, local: Path) -> None:
    records = read_jsonl(folder / RESULTS)
    keys = [job_key(r) for r in records]
    assert len(keys) == len(set(keys)) == JOBS  # nothing lost, nothing twice
    for name in (RESULTS, CONFIGS, CERTIFY):
        assert _rows(folder, name) == _rows(local, name), name
    found = [r for r in records if r.get("adv_file")]
    assert found  # the saved float32 adversarials are the local run's, bit for bit
    for r in found:
        assert np.array_equal(np.load(folder / r["adv_file"]), np.load(local / r["adv_file"]))


def test_ray_sweep_gives_the_records_of_a_local_sweep(ray, local, tmp_path):
    plan = parse_sweep(TINY)
    seen: list[dict] = []
    runner = RaySweep(plan, tmp_path, SweepHooks(record=seen.append))
    outcome = runner.run()
    assert outcome.written == len(seen) == JOBS and outcome.replaced == 0 and outcome.duplicates == 0
    assert outcome.configs == 2
    _same_files(tmp_path, local)
    status = json.loads((tmp_path / "sweep.json").read_text())
    assert status["status"] == "finished" and status["ray"]["workers"] == 2
    assert status["providers"] == {"cifar10-cnn": ["CPUExecutionProvider"]}
    assert ray.is_initialized()  # the cluster the caller started is left running
    again = RaySweep(plan, tmp_path).run()  # all done: nothing runs, nothing is written
    assert again.written == 0 and again.skipped_jobs == JOBS and len(read_jsonl(tmp_path / RESULTS)) == JOBS


def test_killed_worker_reruns_elsewhere_and_a_partial_folder_resumes(ray, local, tmp_path):
    # a folder holding 4 of the local run's records (as an interrupted sweep leaves it), no configs.jsonl
    lines = (local / RESULTS).read_text().splitlines()
    (tmp_path / RESULTS).write_text("\n".join(lines[:4]) + "\n" + lines[4][:30])  # and a torn last line
    for r in read_jsonl(local / RESULTS)[:4]:
        if r.get("adv_file"):
            (tmp_path / r["adv_file"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / r["adv_file"]).write_bytes((local / r["adv_file"]).read_bytes())
    plan = parse_sweep(TINY)
    smoothed = next(c.id for c in plan.configs if c.sigma > 0)
    got: set = {job_key(r) for r in read_jsonl(tmp_path / RESULTS)}
    killed: list = []

    def kill_a_busy_worker(rec: dict) -> None:
        """At the first record of the smoothed configuration whose unit still has jobs to run, kill its worker."""
        got.add(job_key(rec))
        if killed or rec["config"] != smoothed:
            return
        for worker, unit in runner.running():
            ids = [runner._images[unit.model][1].ids[i] for i in unit.indices[: unit.attacked]]
            left = [(image, a) for image in ids for a in unit.cfg.attacks if (smoothed, image, a) not in got]
            if unit.cfg is not None and unit.cfg.id == smoothed and rec["image"] in ids and left:
                ray.kill(worker)
                killed.append(left)
                return

    messages: list[str] = []
    runner = RaySweep(plan, tmp_path, SweepHooks(record=kill_a_busy_worker, message=messages.append))
    outcome = runner.run()
    assert killed, "no worker was killed: the smoothed units finished too fast"
    assert outcome.replaced == 1 and any("worker died" in m for m in messages)
    assert outcome.skipped_jobs == 4 and outcome.written + outcome.duplicates >= JOBS - 4
    assert outcome.written == JOBS - 4
    _same_files(tmp_path, local)
    assert json.loads((tmp_path / "sweep.json").read_text())["ray"]["replaced"] == 1


def test_a_worker_takes_its_share_of_the_node(ray):
    from probe.engine import auto_max_jobs, physical_memory
    from probe.runs.ray_worker import SweepWorker

    worker = ray.remote(SweepWorker).options(num_cpus=1).remote(sweep=parse_sweep(TINY), threads=1)
    try:  # 1 of the local Ray's 2 CPUs: half the memory, half the jobs on CIFAR-10's 3x32x32
        assert ray.get(worker.max_jobs.remote(3 * 32 * 32)) == auto_max_jobs(3 * 32 * 32, physical_memory() // 2)
        assert auto_max_jobs(3 * 32 * 32, physical_memory() // 2) < auto_max_jobs(3 * 32 * 32)
    finally:
        ray.kill(worker, no_restart=True)


def test_without_ray_the_command_says_what_to_install(tmp_path):
    (tmp_path / "tiny.toml").write_text('models = ["cifar10-cnn"]\nlimit = 1\n')
    code = (
        "import sys; sys.modules['ray'] = None; from probe.cli import main; "
        f"sys.argv = ['probe', 'sweep', {str(tmp_path / 'tiny.toml')!r}, '--out', {str(tmp_path / 'o')!r}, "
        "'--ray', 'auto']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert 'pip install "onnx-probe[ray]"' in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:")
    assert not (tmp_path / "o").exists()  # nothing started, nothing written


def test_an_unreachable_cluster_is_one_error_line(tmp_path, run_main):
    pytest.importorskip("ray")
    with socket.socket() as probe_port:  # a free loopback port: nothing listens there
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    (tmp_path / "tiny.toml").write_text('models = ["cifar10-cnn"]\nlimit = 1\n')
    toml, out = tmp_path / "tiny.toml", tmp_path / "o"
    result = run_main("sweep", toml, "--out", out, "--ray", f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: cannot reach the Ray cluster at 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "o").exists()
