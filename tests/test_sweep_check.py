"""Sweeps (resume after an interruption), the report, and the CI gate `probe check`.

A tiny grid on the bundled CIFAR-10 CNN (32x32): 2 images attacked (accuracy on 3), HSJA and RayS, 100 queries,
sigma in {0, 0.05}, n = 5.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from probe.cli import app
from probe.errors import ProbeError
from probe.runs.results import CONFIGS, RESULTS, read_jsonl, strip_timing
from probe.runs.summary import summarize_sweep
from probe.runs.sweep import SweepHooks, run_sweep
from probe.runs.sweep_file import load_sweep, parse_sweep

TINY = """
name = "tiny"
models = ["cifar10-cnn"]
limit = 3
attack_limit = 2
attacks = ["hsja", "rays"]
budget = 100
sigma = [0, 0.05]
n = [5]
pa = [0.5]
certify = { n0 = 20, n = 100 }
"""


def _records(folder: Path) -> set[str]:
    return {json.dumps(strip_timing(r), sort_keys=True) for r in read_jsonl(folder / RESULTS)}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The tiny sweep run through in one go, through the CLI."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "tiny.toml").write_text(TINY)
    result = CliRunner().invoke(app, ["sweep", str(root / "tiny.toml"), "--out", str(root / "a"), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    return root


def test_sweep_records_configs_and_accuracy(straight):
    records = read_jsonl(straight / "a" / RESULTS)
    assert len(records) == 2 * 2 * 2  # 2 configurations x 2 images x 2 attacks
    assert len({r["config"] for r in records}) == 2
    assert {(r["sigma"], r["n"]) for r in records} == {(0.0, 1), (0.05, 5)}
    assert all(r["model"] == "cifar10-cnn" and r["budget"] == 100 for r in records)
    assert all(r["queries"] <= 100 for r in records)
    configs = read_jsonl(straight / "a" / CONFIGS)
    assert {c["config"] for c in configs} == {r["config"] for r in records}
    for c in configs:  # accuracy on the 3 images loaded, attacks on the first 2
        assert 0.0 <= c["clean_accuracy"] <= 1.0 and c["images"] == 3 and c["attacked"] == 2
        assert len(c["clean_labels"]) == 3 and set(c["clean_labels"]) > {r["image"] for r in records}
    plain = next(c for c in configs if c["sigma"] == 0)
    assert plain["clean_accuracy"] == plain["plain_accuracy"]
    certs = read_jsonl(straight / "a" / "certify.jsonl")
    assert len(certs) == 2 and all(c["sigma"] == 0.05 for c in certs)
    status = json.loads((straight / "a" / "sweep.json").read_text())
    assert status["status"] == "finished" and {"probe", "numpy", "onnxruntime", "python"} <= set(status["versions"])


def test_interrupted_then_resumed_sweep_gives_the_same_records(straight, tmp_path):
    plan = load_sweep(straight / "tiny.toml")
    out = tmp_path / "b"
    seen = []

    def stop_after_three(rec: dict) -> None:
        seen.append(rec)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, out, SweepHooks(record=stop_after_three))
    assert len(read_jsonl(out / RESULTS)) == 3
    assert json.loads((out / "sweep.json").read_text())["status"] == "interrupted"
    with open(out / RESULTS, "a") as handle:  # a torn last line, as a kill in mid-write leaves
        handle.write('{"config": "c123", "image": "cifar10_00')
    outcome = run_sweep(plan, out)
    assert outcome.skipped_jobs == 3 and outcome.written == 5
    assert _records(out) == _records(straight / "a")
    assert len(read_jsonl(out / RESULTS)) == 8
    again = run_sweep(plan, out)  # everything done: nothing runs, nothing is written
    assert again.written == 0 and again.skipped_jobs == 8 and len(read_jsonl(out / RESULTS)) == 8


def test_grid_expansion_dedupes_sigma_zero_and_merges_extra_tables():
    plan = parse_sweep(
        {"models": ["cifar10-cnn"], "attacks": ["rays"], "sigma": [0, 0.05], "n": [5, 10], "pa": [0.5, 0.8],
         "extra": [{"sigma": [0.05], "n": [5], "pa": [0.5], "attacks": ["hsja"]}]}
    )
    assert len(plan.configs) == 1 + 4
    zero = [c for c in plan.configs if c.sigma == 0]
    assert len(zero) == 1 and zero[0].n == 1
    merged = next(c for c in plan.configs if (c.sigma, c.n, c.pa) == (0.05, 5, 0.5))
    assert merged.attacks == ("rays", "hsja")
    assert len({c.id for c in plan.configs}) == 5


def test_sweep_defaults_batch_size_auto_and_full_votes_make_their_own_configurations():
    base = {"models": ["cifar10-cnn"], "attacks": ["rays"], "sigma": [0.05], "n": [5]}
    plan, full = parse_sweep(base), parse_sweep({**base, "full_votes": True, "batch_size": 32})
    assert plan.batch_size == "auto" and full.batch_size == 32 and plan.endpoint.url is None
    assert [c.full_votes for c in plan.configs + full.configs] == [False, True]
    assert plan.configs[0].id != full.configs[0].id and "full_votes" not in plan.configs[0].identity()
    served = parse_sweep({**base, "endpoint": {"url": "http://127.0.0.1:8000", "protocol": "probe"}})
    assert served.endpoint.protocol == "probe" and served.configs[0].id == plan.configs[0].id


@pytest.mark.parametrize(
    "data, message",
    [
        ({"sigmas": [0.1]}, "unknown key"),
        ({"sigma": [-0.1]}, r"'sigma' must be in \[0.0, inf\), got -0.1"),
        ({"pa": [1.5]}, r"'pa' must be in \(0.0, 1.0\], got 1.5"),
        ({"n": [0]}, r"'n' must be an integer in \[1, 1000000000\], got 0"),
        ({"attacks": ["fgsm"]}, "unknown attack"),
        ({"budget": "many"}, "'budget' must be"),
        ({"extra": [{"seed": 3}]}, "unknown key"),
        ({"certify": {"n": 0}}, "certify.n"),
        ({"batch_size": "fast"}, "'batch_size' must be auto or an integer >= 1"),
        ({"endpoint": {"url": "http://h", "key": "x"}}, "unknown endpoint key"),
        ({"endpoint": {"url": "http://h", "defended": True}, "sigma": [0, 0.05]}, "defended endpoint smooths itself"),
    ],
)
def test_bad_sweep_files_are_probe_errors(data, message):
    with pytest.raises(ProbeError, match=message):
        parse_sweep(data)


def test_bad_sweep_file_exits_2(tmp_path, run_main):
    bad = tmp_path / "bad.toml"
    bad.write_text("sigma = [0.1\n")
    result = run_main("sweep", bad, "--out", tmp_path / "o")
    assert result.returncode == 2 and "not valid TOML" in result.stderr and "Traceback" not in result.stderr


def _md_table(md: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header line starts with ``| header_start``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start}"))
    headers = [h.strip() for h in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(headers, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def test_report_numbers_are_those_of_the_records(straight):
    pytest.importorskip("matplotlib")  # the report draws Fig. 4 and 5
    folder = straight / "a"
    result = CliRunner().invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    md = (folder / "report.md").read_text()
    page = (folder / "report.html").read_text()
    records = read_jsonl(folder / RESULTS)
    configs = {c["config"]: c for c in read_jsonl(folder / CONFIGS)}

    # the table per configuration and attack, against the records counted here
    table = {(row["configuration"], row["attack"]): row for row in _md_table(md, "configuration | attack | successes")}
    expected_points = {}
    for cid, config in configs.items():
        for attack in ("hsja", "rays"):
            recs = [r for r in records if r["config"] == cid and r["attack"] == attack and not r["skipped"]]
            wins = [r for r in recs if r["success"]]
            l2 = [r["l2"] for r in wins]
            row = table[(config["label"], attack)]
            assert row["successes"] == f"{len(wins)}/{len(recs)}"
            assert row["median L2"] == (f"{np.median(l2):.3f}" if l2 else "-")
            assert row["mean L2"] == (f"{np.mean(l2):.3f}" if l2 else "-")
            assert row["mean queries"] == f"{np.mean([r['queries'] for r in recs]):.0f}"
            assert row["defended acc."] == f"{config['clean_accuracy']:.3f}"
            assert row["plain acc."] == f"{config['plain_accuracy']:.3f}"
            expected_points[(cid, attack)] = {"accuracy": config["clean_accuracy"],
                                              "mean_l2": float(np.mean(l2)) if l2 else None}
    assert len(table) == len(expected_points) == 4

    # Fig. 5 and the numbers behind it
    png = folder / "figures" / "distortion_accuracy.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and min(image.size) > 200
    points = json.loads(png.with_suffix(".json").read_text())["points"]
    assert len(points) == 4
    for p in points:
        assert {k: p[k] for k in ("accuracy", "mean_l2")} == pytest.approx(expected_points[(p["config"], p["attack"])])
    assert "![Fig. 5" in md and "(figures/distortion_accuracy.png)" in md
    assert "data:image/png;base64," in page and "src='figures/" not in page

    # the certified radii: sigma = 0.05 on the 3 images, median radius of those certified correct
    certs = read_jsonl(folder / "certify.jsonl")
    kept = [c["radius"] for c in certs if c["correct"] and not c["abstain"]]
    (cert_row,) = _md_table(md, "model | sigma | certification")
    assert cert_row["sigma"] == "0.05" and cert_row["certification"] == "n0=20 n=100 alpha=0.001"
    assert cert_row["certified"] == f"{len(kept) / len(certs):.0%}"
    assert cert_row["median radius (certified)"] == (f"{np.median(kept):.4f}" if kept else "-")
    versions = json.loads((folder / "sweep.json").read_text())["versions"]
    for name in ("numpy", "onnxruntime"):
        assert f"| {name} | {versions[name]} |" in md
        assert re.search(f"<td[^>]*>{name}</td><td[^>]*>{re.escape(versions[name])}</td>", page)
    # the answer: a headline per configuration, and robust accuracy against eps
    assert md.count("> **Against the best of HSJA and RayS with 100 queries each, ") == 2
    assert "(figures/robust_accuracy_eps.png)" in md


def test_check_passes_fails_and_rejects_bad_input(straight, tmp_path, run_main):
    folder = straight / "a"
    rows = summarize_sweep(read_jsonl(folder / RESULTS), {c["config"]: c for c in read_jsonl(folder / CONFIGS)})
    smallest = min(r["median_l2"] for r in rows if r["median_l2"] is not None)
    ok = run_main("check", folder, "--min-success-l2", smallest * 0.5, "--min-accuracy", 0.0)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run_main("check", folder, "--min-success-l2", smallest * 2)
    assert bad.returncode == 1 and "REGRESSED" in bad.stdout
    assert run_main("check", tmp_path / "nowhere", "--min-success-l2", 1).returncode == 2
    assert run_main("check", folder).returncode == 2  # nothing to check
    assert run_main("check", folder, "--baseline", folder / "baseline.json", "--max-drop", "200%").returncode == 2


def test_baseline_round_trip_and_regression(straight, tmp_path, run_main):
    folder = straight / "a"
    baseline = tmp_path / "baseline.json"
    wrote = CliRunner().invoke(app, ["check", str(folder), "--write-baseline", str(baseline)])
    assert wrote.exit_code == 0, wrote.output
    doc = json.loads(baseline.read_text())
    rows = summarize_sweep(read_jsonl(folder / RESULTS), {c["config"]: c for c in read_jsonl(folder / CONFIGS)})
    assert {(e["config"], e["attack"], e["median_l2"]) for e in doc["entries"]} == {
        (r["config"], r["attack"], r["median_l2"]) for r in rows
    }
    same = run_main("check", folder, "--baseline", baseline, "--max-drop", "10%", "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["passed"] is True
    # a regressed copy: every distortion 30% smaller
    worse = tmp_path / "worse"
    shutil.copytree(folder, worse)
    records = read_jsonl(worse / RESULTS)
    for r in records:
        if r["l2"] is not None:
            r["l2"] *= 0.7
    (worse / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
    regressed = run_main("check", worse, "--baseline", baseline, "--max-drop", "0.1", "--json")
    assert regressed.returncode == 1
    failed = [c for c in json.loads(regressed.stdout)["checks"] if not c["ok"]]
    assert any(c["metric"] == "median L2" for c in failed)  # closer adversarials: robust accuracy may drop too
    assert all(c["metric"] == "median L2" or c["metric"].startswith("robust accuracy") for c in failed)
    assert run_main("check", worse, "--baseline", baseline, "--max-drop", "0.99").returncode == 0


ALL = """
name = "all"
models = ["cifar10-cnn"]
limit = 1
attacks = "all"
budget = 60
sigma = [0, 0.05]
n = [3]
pa = [0.5]

[attack.rays]
bisection = "bayes"
"""


def test_sweep_report_and_gate_take_every_attack_with_the_noise_aware_options(tmp_path, run_main):
    """``attacks = "all"`` runs every attack, the noise-aware ones (psj, cgba) among them, with a
    noise-aware option set from the sweep file; the report has a row for each; the gate's baseline
    an entry for each, and a regressed psj alone fails it."""
    from probe.attacks import ATTACKS

    pytest.importorskip("matplotlib")
    assert {"psj", "cgba"} <= set(ATTACKS)
    (tmp_path / "all.toml").write_text(ALL)
    out = tmp_path / "out"
    ran = CliRunner().invoke(app, ["sweep", str(tmp_path / "all.toml"), "--out", str(out), "--json", "--quiet"])
    assert ran.exit_code == 0, ran.output
    records = [r for r in read_jsonl(out / RESULTS) if not r["skipped"]]
    assert sorted(r["attack"] for r in records) == sorted(list(ATTACKS) * 2)  # the one image, once per attack and sigma
    assert all(0 < r["queries"] <= 60 for r in records)

    def params(r):  # under smoothing the attack's parameters sit inside the confirmation phase's
        return r["params"].get("attack", r["params"])

    assert all(params(r)["bisection"] == "bayes" for r in records if r["attack"] == "rays")
    assert all(params(r).get("bisection") != "bayes" for r in records if r["attack"] != "rays")

    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    rows = _md_table((out / "report.md").read_text(), "configuration | attack | successes")
    assert sorted(row["attack"] for row in rows) == sorted(list(ATTACKS) * 2)

    baseline = tmp_path / "baseline.json"
    assert run_main("check", out, "--write-baseline", baseline).returncode == 0
    entries = json.loads(baseline.read_text())["entries"]
    assert {e["attack"] for e in entries} == set(ATTACKS)
    # without smoothing every attack finds one (at sigma 0.05 and 60 queries most fall short of P_a)
    assert all(e["median_l2"] is not None for e in entries if e["config"] == next(
        c["config"] for c in read_jsonl(out / CONFIGS) if c["sigma"] == 0))
    worse = [dict(r, l2=r["l2"] * 0.5) if r["attack"] == "psj" and r["l2"] is not None else r
             for r in read_jsonl(out / RESULTS)]
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in worse))
    regressed = run_main("check", out, "--baseline", baseline, "--max-drop", "0.1", "--json")
    assert regressed.returncode == 1
    failed = {c["attack"] for c in json.loads(regressed.stdout)["checks"] if not c["ok"]}
    assert failed == {"psj"}
