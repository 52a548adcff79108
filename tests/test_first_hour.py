"""What a new user hit in the first hour: results never silently deleted, one run per folder,
signals that stop cleanly, one-line errors, and output that says what it means."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probe.runs.results import locked
from tests.entry import run_entry


def _attack_args(lin, *extra):
    return ["attack", "--model", lin.model, "--images", lin.folder, "--sigma", "0", "--attack", "hsja,rays",
            "--budget", "40", *extra]  # fmt: skip


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def _strip(records):
    return sorted(
        ({k: v for k, v in r.items() if k != "seconds"} for r in records), key=lambda r: (r["image"], r["attack"])
    )


def test_out_is_never_silently_emptied_and_resume_gives_the_uninterrupted_records(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=1, images=3, image_seed=2)
    out = tmp_path / "run"
    first = run_entry(*_attack_args(lin, "--out", out))
    assert first.returncode == 0, first.stderr
    full = _records(out)
    assert len(full) == 6
    again = run_entry(*_attack_args(lin, "--out", out))
    assert again.returncode == 2 and "already holds 6 results" in again.stderr and "--resume" in again.stderr
    assert _records(out) == full  # untouched
    # a run cut after two records, then resumed: the same records as the run straight through
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full[:2]))
    resumed = run_entry(*_attack_args(lin, "--out", out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert _strip(_records(out)) == _strip(full)
    other = run_entry(*_attack_args(lin, "--out", out, "--resume", "--budget", "41"))
    assert other.returncode == 2 and "other settings" in other.stderr
    replaced = run_entry(*_attack_args(lin, "--out", out, "--overwrite", "--attack", "rays"))
    assert replaced.returncode == 0 and {r["attack"] for r in _records(out)} == {"rays"}


def test_a_second_run_into_a_locked_folder_names_the_first(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=1, images=1)
    out = tmp_path / "busy"
    with locked(out):
        result = run_entry(*_attack_args(lin, "--out", out))
    assert result.returncode == 2 and f"in use by another probe run (PID {os.getpid()})" in result.stderr
    assert run_entry(*_attack_args(lin, "--out", out)).returncode == 0  # released with the holder


def _start_and_signal(lin, out: Path, sig: int, ignore_sigint: bool) -> subprocess.CompletedProcess:
    def child_setup():
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else signal.default_int_handler)

    args = [sys.executable, "-m", "probe", *map(str, _attack_args(lin, "--out", out, "--budget", "100000",
                                                                  "--sigma", "0.05", "--n", "3"))]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=child_setup)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "run.json").is_file():
        time.sleep(0.2)
    time.sleep(2.0)  # the attacks are running
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


@pytest.mark.slow  # a subprocess stopped by a signal
@pytest.mark.parametrize("sig, ignore_sigint, code", [(signal.SIGTERM, False, 143), (signal.SIGINT, True, 130)])
def test_sigterm_and_an_inherited_ignored_sigint_stop_cleanly(make_linear, tmp_path, sig, ignore_sigint, code):
    lin = make_linear((3, 8, 8), seed=1, images=2, image_seed=4)
    out = tmp_path / "sig"
    result = _start_and_signal(lin, out, sig, ignore_sigint)
    assert result.returncode == code, result.stderr  # 128 + the signal, as a shell reports it
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and "Traceback" not in result.stderr


def test_a_garbage_line_is_reported_with_its_number(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=1, images=2)
    out = tmp_path / "g"
    assert run_entry(*_attack_args(lin, "--out", out)).returncode == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join([lines[0], "{garbage", *lines[1:]]) + "\n" + '{"torn": ')
    result = run_entry("check", out, "--min-accuracy", "0")
    assert "results.jsonl:2: not a JSON record" in result.stderr, result.stderr
    assert ":6:" not in result.stderr  # the torn last line is repaired silently


@pytest.mark.parametrize("model", ["[/x].onnx", "my[model].onnx"])
def test_messages_are_not_read_as_markup(model):
    result = run_entry("info", "--model", model)
    assert result.returncode == 2 and model in result.stderr and "Traceback" not in result.stderr
    assert "probe models export resnet50" in result.stderr  # how to get a model


def test_an_unusable_out_folder_is_one_line(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=1, images=1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_entry(*_attack_args(lin, "--out", blocker / "sub"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_images_as_several_values_and_positional_arguments(make_linear):
    lin = make_linear((3, 8, 8), seed=1, images=3)
    files = sorted(str(p) for p in lin.folder.glob("*.png"))
    # what an unquoted `--images dir/*.png` becomes after the shell's expansion
    result = run_entry("predict", "--model", lin.model, "--sigma", "0", "--json", "--images", *files)
    assert result.returncode == 0, result.stderr
    assert [r["image"] for r in json.loads(result.stdout)["images"]] == [Path(f).name for f in files]


def test_the_summary_says_what_it_means_and_what_was_skipped(make_linear):
    lin = make_linear((3, 8, 8), seed=1, images=4, image_seed=9)
    labels = lin.folder / "labels.csv"
    rows = labels.read_text().splitlines()
    name, label = rows[1].split(",")
    rows[1] = f"{name},{1 - int(label)}"  # one image now has a wrong label: misclassified
    labels.write_text("\n".join(rows) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe, no width asked for
    result = subprocess.run([sys.executable, "-m", "probe", *map(str, _attack_args(lin))], capture_output=True,
                            text=True, timeout=180, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "results are not kept (no --out)" in result.stderr
    assert "skipped: 1 misclassified" in result.stdout
    assert "per-pixel RMS change of 0.0722" in result.stdout  # d = 3 x 8 x 8 = 192: 1 / sqrt(192)
    assert "attacked" in result.stdout and "attack…" not in result.stdout  # not cut at 80 columns


def test_an_impossible_n_is_refused_before_any_allocation(make_linear):
    lin = make_linear((3, 8, 8), seed=1, images=1)
    result = run_entry("predict", "--model", lin.model, "--images", lin.folder, "--n", "99999999999")
    assert result.returncode == 2 and "--n must be an integer in [1, 1000000000]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_votes_memory_does_not_grow_with_n(make_linear):
    """Vote counts are accumulated batch by batch: a large n for a few points allocates no
    array of n x points labels (tracemalloc peak well under the 8 bytes x 400,000 rows)."""
    import tracemalloc

    import numpy as np

    from probe.runtime import Runtime
    from probe.smoothing import SmoothedClassifier

    clf = SmoothedClassifier(Runtime(make_linear((3, 8, 8), seed=1).model, batch_size=256), 0.1, 100_000)
    x = np.full((4, 3, 8, 8), 0.5, np.float32)
    clf.votes([(x[:1], np.random.default_rng(0))], n=256)  # warm-up: buffers and session
    tracemalloc.start()
    counts = clf.votes([(x, np.random.default_rng(0))])[0]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert counts.sum() == 400_000 and counts.shape == (4, 2)
    assert peak < 8 * 400_000 / 4, peak


def test_a_second_sweep_into_a_locked_folder_names_the_first(tmp_path):
    (tmp_path / "s.toml").write_text('models = ["cifar10-cnn"]\nlimit = 1\nattacks = ["rays"]\nbudget = 5\nsigma = [0]\n')
    out = tmp_path / "out"
    with locked(out):
        result = run_entry("sweep", tmp_path / "s.toml", "--out", out)
    assert result.returncode == 2 and f"(PID {os.getpid()})" in result.stderr, result.stderr


def test_size_takes_two_numbers_and_help_shows_no_bool_type():
    result = run_entry("info", "--model", "cifar10-cnn", "--size", "32", "32", "--seconds", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["size"] == [32, 32]
    helped = run_entry("attack", "--help")
    assert helped.returncode == 0 and "<bool>" not in helped.stdout and "--save-images" in helped.stdout
