"""`probe attack` end to end on a linear ONNX model: records, files, budget, seeds, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from probe.cli import app
from tests.onnx_models import linear_weights, margin, save_linear

SHAPE = (3, 16, 16)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack")
    w, b = linear_weights(SHAPE, seed=4)
    model = save_linear(root / "lin.onnx", w, b)
    folder = root / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    rows = ["file,label"]
    for i in range(4):
        # images at distance ~0.3-0.6 from the hyperplane, well inside the box
        x = np.clip(0.5 + 0.15 * rng.standard_normal(SHAPE), 0, 1)
        arr = (x.transpose(1, 2, 0) * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"p{i}.png")
        xq = arr.astype(np.float32).transpose(2, 0, 1) / 255.0
        rows.append(f"p{i}.png,{int(np.dot(w.ravel(), xq.ravel()) + b > 0)}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return model, folder, w, b


def attack(*args):
    return CliRunner().invoke(app, ["attack", *map(str, args)])


def test_attack_writes_records_summary_and_images(setup, tmp_path):
    model, folder, w, b = setup
    out = tmp_path / "run"
    result = attack("--model", model, "--images", folder, "--sigma", 0, "--budget", 1000, "--out", out, "--save-images", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 * 3 and summary["results"] == 12
    assert json.loads((out / "summary.json").read_text())["attacks"].keys() == {"hsja", "surfree", "rays"}
    for rec in records:
        assert rec["skipped"] is None and rec["success"] and rec["p_adv"] == 1.0
        assert 0 < rec["queries"] <= 1000 and rec["inferences"] == rec["queries"]
        assert os.path.getsize(rec["adv_path"]) > 0
        x = np.asarray(Image.open(rec["adv_path"]), np.float32).transpose(2, 0, 1) / 255.0
        x0 = np.asarray(Image.open(folder / rec["image"]), np.float32).transpose(2, 0, 1) / 255.0
        exact = abs(margin(x0, w, b))  # the exact minimal L2 distance
        assert rec["l2"] >= exact * (1 - 1e-4)  # no attack beats the optimum
        if rec["attack"] != "rays":
            assert rec["l2"] <= 2.0 * exact  # and the L2 attacks get close to it
        assert abs(np.linalg.norm(x - x0) - rec["l2"]) < 0.02 * np.sqrt(x.size)  # the PNG is that point (8-bit)
    assert summary["attacks"]["hsja"]["success_rate"] == 1.0


def test_smoothed_attack_accounting_and_reproducibility(setup, tmp_path):
    model, folder, _, _ = setup
    args = ["--model", model, "--images", folder, "--sigma", 0.05, "--n", 5, "--budget", 120,
            "--attack", "hsja,rays", "--p-adv-samples", 30, "--seed", 3]
    runs = []
    for k in range(2):
        result = attack(*args, "--out", tmp_path / f"r{k}")
        assert result.exit_code == 0, result.output
        runs.append([json.loads(line) for line in (tmp_path / f"r{k}" / "results.jsonl").read_text().splitlines()])
    strip = lambda recs: sorted((r["image"], r["attack"], r["queries"], r["l2"], r["p_adv"]) for r in recs)
    assert strip(runs[0]) == strip(runs[1])
    for rec in runs[0]:
        assert rec["queries"] <= 120 and rec["inferences"] == 5 * rec["queries"]
        assert rec["success"] == (rec["found"] and rec["p_adv"] >= 0.5)
    other = attack(*args[:-1], 4, "--out", tmp_path / "r3")
    recs = [json.loads(line) for line in (tmp_path / "r3" / "results.jsonl").read_text().splitlines()]
    assert strip(recs) != strip(runs[0])


def test_attack_bad_options_exit_2(setup):
    model, folder, _, _ = setup
    for args in (["--attack", "nope"], ["--budget", 0], ["--pa", 1.5], ["--norm", "l3"], ["--save-images"]):
        result = subprocess.run(
            [sys.executable, "-m", "probe", "attack", "--model", str(model), "--images", str(folder), *map(str, args)],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_ctrl_c_keeps_finished_results(setup, tmp_path):
    model, folder, _, _ = setup
    out = tmp_path / "interrupted"
    rows = (folder / "labels.csv").read_text().splitlines()
    first = rows[1].split(",")
    rows[1] = f"{first[0]},{1 - int(first[1])}"  # a wrong label: that image is skipped at once
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "attack", "--model", str(model), "--images", str(folder),
         "--labels", str(labels), "--sigma", "0.05", "--n", "50", "--budget", "100000", "--attack", "hsja",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # SIGINT back to its default, so that Python installs its handler even when this test
        # run inherited SIGINT ignored (a shell's background job)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    results = out / "results.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (results.exists() and results.read_text().strip()):
        time.sleep(0.2)
    time.sleep(3)  # the run is still going (100,000 queries per image): interrupt it
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    kept = [json.loads(line) for line in results.read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["results"] == len(kept) >= 1
    assert "interrupted" in stderr and "Traceback" not in stderr
