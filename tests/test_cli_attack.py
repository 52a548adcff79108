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
from scipy import stats

from tests.entry import run_entry

SHAPE = (3, 16, 16)


@pytest.fixture(scope="module")
def lin(make_linear):
    """The linear model and 4 images around grey (margins -0.04 to 0.14)."""
    return make_linear(SHAPE, seed=4, images=4, image_seed=1, spread=0.15)


def records_of(folder):
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def load_png(path) -> np.ndarray:
    return np.asarray(Image.open(path), np.float32).transpose(2, 0, 1) / 255.0


def png_slack(lin) -> float:
    """How far 8-bit rounding (at most 1/510 per pixel) can move a point's signed distance."""
    return float(np.abs(lin.w).sum() / np.linalg.norm(lin.w) / 510)


def test_attack_writes_records_summary_and_images(lin, tmp_path, run_cli):
    out = tmp_path / "run"
    result = run_cli("attack", "--model", lin.model, "--images", lin.folder, "--sigma", 0, "--budget", 1000,
                     "--out", out, "--save-images", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    records = records_of(out)
    assert len(records) == 4 * 3 and summary["results"] == 12
    assert json.loads((out / "summary.json").read_text())["attacks"].keys() == {"hsja", "surfree", "rays"}
    for rec in records:
        assert rec["skipped"] is None and rec["success"] and rec["p_adv"] == 1.0
        assert 0 < rec["queries"] <= 1000 and rec["inferences"] == rec["queries"]
        assert os.path.getsize(rec["adv_path"]) > 0
        x, x0 = load_png(rec["adv_path"]), load_png(lin.folder / rec["image"])
        exact = abs(lin.margin(x0))  # the exact minimal L2 distance
        assert rec["l2"] >= exact * (1 - 1e-4)  # no attack beats the optimum
        if rec["attack"] != "rays":
            assert rec["l2"] <= 2.0 * exact  # and the L2 attacks get close to it
        assert abs(np.linalg.norm(x - x0) - rec["l2"]) < 0.02 * np.sqrt(x.size)  # the PNG is that point (8-bit)
    assert summary["attacks"]["hsja"]["success_rate"] == 1.0


def test_without_noise_success_is_exactly_found(lin, tmp_path, run_cli):
    """sigma = 0: the oracle is f itself, so a point found adversarial is on the other side of
    the hyperplane, its p_adv is exactly 1 and success is found; with 2 queries some attacks
    find nothing (p_adv None, no success), with 1000 all do."""
    found = {}
    for budget in (2, 1000):
        out = tmp_path / f"b{budget}"
        result = run_cli("attack", "--model", lin.model, "--images", lin.folder, "--sigma", 0, "--budget", budget,
                         "--attack", "hsja,rays", "--out", out, "--save-images")
        assert result.exit_code == 0, result.output
        for rec in records_of(out):
            assert rec["queries"] <= budget and rec["skipped"] is None
            if rec["found"]:
                assert rec["p_adv"] == 1.0 and rec["success"] is True and rec["l2"] > 0
                t = lin.margin(load_png(rec["adv_path"]))
                assert abs(t) <= png_slack(lin) or (t > 0) != (rec["clean_label"] == 1)  # the exact class changed
            else:
                assert rec["p_adv"] is None and rec["success"] is False and rec["l2"] is None
            found.setdefault(budget, set()).add(rec["found"])
    assert found == {2: {False, True}, 1000: {True}}


def test_a_png_that_fails_at_8_bits_is_named_and_judged_so(lin, tmp_path, run_cli):
    """sigma = 0, float domain: the attacks end a hair past the hyperplane, so rounding to 8
    bits can carry the point back. Each record judges its 8-bit point too (``verdict_8bit``),
    and its PNG is named ``_adv.png`` only when that point is adversarial: re-read, an
    ``_adv.png`` is on the adversarial side, a ``_not-adversarial-at-8bit.png`` is not."""
    out = tmp_path / "run"
    result = run_cli("attack", "--model", lin.model, "--images", lin.folder, "--sigma", 0, "--budget", 1000,
                     "--attack", "hsja,surfree", "--out", out, "--save-images")
    assert result.exit_code == 0, result.output
    names = set()
    for rec in records_of(out):
        assert rec["verdict"] == "adversarial" and rec["verdict_8bit"] in ("adversarial", "not adversarial")
        t = lin.margin(load_png(rec["adv_path"]))
        flipped = (t > 0) != (rec["clean_label"] == 1)
        assert flipped == (rec["verdict_8bit"] == "adversarial")
        suffix = "_adv.png" if flipped else "_not-adversarial-at-8bit.png"
        assert rec["adv_path"].endswith(suffix) and rec["p_adv_8bit"] == float(flipped)
        names.add(suffix)
    assert names == {"_adv.png", "_not-adversarial-at-8bit.png"}  # both happen on these images


def looks(maximum: int, first: int = 8) -> list[int]:
    """The sample sizes at which p_adv's sequential estimate may stop: 8, 16, 32, ..., maximum."""
    sizes = [first]
    while sizes[-1] * 2 < maximum:
        sizes.append(sizes[-1] * 2)
    return sizes + [maximum]


def test_smoothed_p_adv_is_the_exact_probability(lin, tmp_path, run_cli):
    """sigma > 0: a noisy copy of a point t past the hyperplane (away from the clean label) leaves
    that label with probability q = Phi(t / sigma) exactly, so with n = 5 votes and two classes
    p_adv = P[Bin(5, q) >= 3]. That is exact for the saved 8-bit PNG (``p_adv_8bit``); the float
    x_adv lies within png_slack of it. The estimates must agree with these values, and success
    must follow them wherever they are clearly above or below P_a = 1/2."""
    sigma, n, samples = 0.25, 5, 400  # sigma large beside the PNG rounding (png_slack ~ 0.04)
    out = tmp_path / "smoothed"
    result = run_cli("attack", "--model", lin.model, "--images", lin.folder, "--sigma", sigma, "--n", n,
                     "--budget", 300, "--attack", "hsja,surfree", "--p-adv-samples", samples, "--seed", 1,
                     "--out", out, "--save-images")
    assert result.exit_code == 0, result.output

    def exact(past: float) -> float:
        return float(stats.binom.sf(2, n, stats.norm.cdf(past / sigma)))

    decided = []
    for rec in records_of(out):
        if rec["skipped"]:
            continue
        if not rec["found"]:
            assert rec["p_adv"] is None and rec["p_adv_8bit"] is None and not rec["success"]
            continue
        t = lin.margin(load_png(rec["adv_path"]))
        past = t if rec["clean_label"] == 0 else -t  # signed distance past the hyperplane, away from the label
        # the PNG itself: p exactly; its estimate drew k of m evaluations, m one of the looks (the
        # smallest m that k / m allows gives the widest, hence a safe, interval)
        m = min(size for size in looks(samples) if abs(rec["p_adv_8bit"] * size - round(rec["p_adv_8bit"] * size)) < 1e-6)
        ci = stats.binomtest(round(rec["p_adv_8bit"] * m), m).proportion_ci(0.999)
        assert ci.low <= exact(past) <= ci.high, (rec, exact(past))
        # the float x_adv: p between these two; its recorded 99% interval must reach that range
        p_low, p_high = exact(past - png_slack(lin)), exact(past + png_slack(lin))
        low, high = rec["p_adv_interval"]
        assert low <= rec["p_adv"] <= high and low <= p_high and p_low <= high, (rec, p_low, p_high)
        k = rec["p_adv"] * rec["p_adv_evaluations"]
        assert rec["p_adv_evaluations"] in looks(samples) and abs(k - round(k)) < 1e-6
        if p_low > 0.6 or p_high < 0.4:
            assert rec["success"] == (p_low > 0.6), (rec, p_low, p_high)
            decided.append(rec["success"])
    assert set(decided) == {True, False}  # found points both clearly adversarial and clearly not


def test_smoothed_attack_accounting_and_reproducibility(lin, tmp_path, run_cli):
    args = ["attack", "--model", lin.model, "--images", lin.folder, "--sigma", 0.05, "--n", 5, "--budget", 120,
            "--attack", "hsja,rays", "--p-adv-samples", 30, "--seed", 3]
    runs = []
    for k in range(2):  # the second run one job at a time: the records do not depend on it
        result = run_cli(*args, "--out", tmp_path / f"r{k}", *(["--max-jobs", 1] if k else []))
        assert result.exit_code == 0, result.output
        runs.append(records_of(tmp_path / f"r{k}"))
    strip = lambda recs: sorted(
        (r["image"], r["attack"], r["queries"], r["inferences"], r["l2"], r["p_adv"]) for r in recs
    )
    assert strip(runs[0]) == strip(runs[1])
    # votes stop once decided: a two-class vote of 5 takes 3 to 5 inferences a query, fewer than 5 overall
    assert sum(r["inferences"] for r in runs[0]) < 5 * sum(r["queries"] for r in runs[0])
    for rec in runs[0]:
        assert rec["queries"] <= 120 and 3 * rec["queries"] <= rec["inferences"] <= 5 * rec["queries"]
        if rec["found"]:  # a fraction of at most 30 fresh evaluations
            k = rec["p_adv"] * rec["p_adv_evaluations"]
            assert rec["p_adv_evaluations"] in looks(30) and abs(k - round(k)) < 1e-6
    result = run_cli(*args[:-1], 4, "--out", tmp_path / "r3")
    assert result.exit_code == 0, result.output
    assert strip(records_of(tmp_path / "r3")) != strip(runs[0])


def test_full_votes_draw_exactly_n_inferences_a_query(lin, tmp_path, run_cli):
    args = ["attack", "--model", lin.model, "--images", lin.folder, "--sigma", 0.05, "--n", 5, "--budget", 60,
            "--attack", "rays", "--p-adv-samples", 8, "--certify-n", 0, "--limit", 2]
    full = run_cli(*args, "--full-votes", "--out", tmp_path / "full")
    stopped = run_cli(*args, "--out", tmp_path / "stopped")
    assert full.exit_code == 0 and stopped.exit_code == 0, (full.output, stopped.output)
    full, stopped = records_of(tmp_path / "full"), records_of(tmp_path / "stopped")
    attacked = [r for r in full if not r["skipped"]]
    assert attacked and all(r["inferences"] == 5 * r["queries"] > 0 and r["early_stop"] is False for r in attacked)
    assert all(r["early_stop"] is True for r in stopped)
    assert sum(r["inferences"] for r in stopped) < 5 * sum(r["queries"] for r in stopped)
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["early_stop"] is False


def test_attack_bad_options_exit_2(lin):
    for args in (["--attack", "nope"], ["--budget", 0], ["--pa", 1.5], ["--norm", "l3"], ["--save-images"],
                 ["--max-jobs", 0]):
        result = run_entry("attack", "--model", lin.model, "--images", lin.folder, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a subprocess interrupted after it has written a record
def test_ctrl_c_keeps_finished_results(lin, tmp_path):
    model, folder = lin.model, lin.folder
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
    # the misclassified image's record came first: the rows' accuracy is still the run's, over every image
    assert all(row["defended_accuracy"] == summary["defended_accuracy"] > 0 for row in summary["attacks"].values())
    assert "interrupted" in stderr and "Traceback" not in stderr
