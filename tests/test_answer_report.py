"""The report and the gate built on robust accuracy, on a hand-built results folder.

Six CIFAR-sized images, HSJA and RayS, records with the three-valued verdict and trajectories;
the float32 originals and adversarials saved as a `probe attack --out` run saves them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from probe.cli import app
from probe.runs.report_parts import original_path
from probe.runs.results import RESULTS, record_config

# image: (hsja verdict, hsja L2, rays verdict, rays L2) ; None L2 = nothing found
PLAN = {
    "img0.png": ("adversarial", 0.3, "adversarial", 0.8),
    "img1.png": ("adversarial", 1.2, "not adversarial", 0.4),
    "img2.png": ("undecided", 0.45, None, None),
    "img3.png": (None, None, "adversarial", 0.6),
    "img4.png": (None, None, None, None),
    "img5.png": "misclassified",
}


def _record(folder: Path, image: str, attack: str, verdict, l2, x0, rng) -> dict:
    rec = {"image": image, "attack": attack, "label": 3, "clean_label": 3, "clean_accuracy": 0.9, "model": "cifar10-cnn",
           "sigma": 0.05, "n": 10, "pa": 0.5, "budget": 1000, "seed": 0, "norm": "l2" if attack == "hsja" else "linf",
           "criterion": "label", "domain": "float", "params": {"name": attack}, "queries": 1000, "inferences": 10000,
           "found": l2 is not None, "verdict": verdict, "success": None if verdict == "undecided" else verdict == "adversarial",
           "verdict_note": None, "p_adv": None, "p_adv_interval": None, "p_adv_8bit": None, "verdict_8bit": None,
           "confirmed": None, "l2": None, "linf": None, "certified_radius": None, "seconds": 1.0, "skipped": None}
    if l2 is None:
        return rec
    direction = rng.standard_normal(x0.shape).astype(np.float32)
    x_adv = (x0 + l2 * direction / np.linalg.norm(direction)).astype(np.float32)
    rel = Path("adversarial") / f"{Path(image).stem}_{attack}.npy"
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    np.save(folder / rel, x_adv)
    p = {"adversarial": 0.8, "not adversarial": 0.2, "undecided": 0.5}[verdict]
    rec.update(l2=float(np.linalg.norm((x_adv - x0).ravel())), linf=float(np.abs(x_adv - x0).max()), adv_file=str(rel),
               p_adv=p, p_adv_interval=[p - 0.1, p + 0.1], p_adv_8bit=p, verdict_8bit=verdict, confirmed=True,
               trajectory={"queries": [10, 100, 1000], "l2": [None, 2 * l2, l2], "linf": [None, 0.2, 0.1]})
    return rec


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("answer")
    rng = np.random.default_rng(0)
    records = []
    for image, plan in PLAN.items():
        x0 = rng.uniform(0.2, 0.8, (3, 32, 32)).astype(np.float32)
        original_path(folder, image).parent.mkdir(parents=True, exist_ok=True)
        np.save(original_path(folder, image), x0)
        if plan == "misclassified":
            records += [dict(_record(folder, image, a, None, None, x0, rng), clean_label=5, skipped="misclassified",
                             queries=0) for a in ("hsja", "rays")]
            continue
        records.append(_record(folder, image, "hsja", plan[0], plan[1], x0, rng))
        records.append(_record(folder, image, "rays", plan[2], plan[3], x0, rng))
    (folder / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "run.json").write_text(json.dumps({"model": "cifar10-cnn", "images": list(PLAN), "config": {"pa": 0.5}}))
    (folder / "summary.json").write_text(json.dumps({"dimension": 3072, "eps": {"l2": [0.5, 0.25, 1.0]}}))
    return folder


def test_report_has_the_headline_both_figures_and_three_pictures_per_image(folder):
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    md = (folder / "report.md").read_text()
    page = (folder / "report.html").read_text()
    # at L2 0.5: img0 broken (0.3), img2 undecided at 0.45, img5 misclassified -> 3 robust of 6, 4 if undecided is not
    assert "keeps 50% [" in md and "of 6 images at L2 <= 0.5 (up to 67% if the 1 undecided are not adversarial)" in md
    assert "(clean accuracy 83%)" in md and "Against the best of HSJA and RayS with 1,000 queries each" in page
    for name in ("robust_accuracy_eps", "robust_accuracy_queries"):
        assert f"(figures/{name}.png)" in md and (folder / "figures" / f"{name}.png").stat().st_size > 10_000
        assert json.loads((folder / "figures" / f"{name}.json").read_text())["configs"]
    # one row per image; the images with a saved adversarial carry original, adversarial and perturbation
    rows = re.findall(r"<tr><td>(img\d\.png)</td><td class='pics'>(.*?)</td>", page)
    assert [r[0] for r in rows] == list(PLAN)
    pictures = {image: cell.count("<img ") for image, cell in rows}
    assert pictures == {"img0.png": 3, "img1.png": 3, "img2.png": 3, "img3.png": 3, "img4.png": 0, "img5.png": 0}
    assert page.count("src='data:image/png;base64,") == 12 + 2  # the thumbnails and the two figures
    assert "src='figures/" not in page
    # counts: per attack, adversarial / not / undecided
    counts = re.search(r"\| HSJA \| 6 \| 1 \| 2 \| 0 \| 1 \| 0 \| 2 \| 0 \| 3/3 \|", md)
    assert counts, md
    assert "| model SHA-256 |" in md and "Skipped: img5.png (misclassified)." in md


def test_min_robust_accuracy_passes_and_fails_at_the_right_values(folder, tmp_path, run_main, monkeypatch):
    # best of the attacks at L2 <= 0.5: 3/6 = 0.5 (undecided counted as adversarial)
    ok = run_main("check", folder, "--min-robust-accuracy", "l2:0.5=0.5", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (check,) = json.loads(ok.stdout)["checks"]
    assert check["value"] == pytest.approx(0.5) and check["metric"] == "robust accuracy L2<=0.5"
    junit = tmp_path / "junit.xml"
    summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    bad = run_main("check", folder, "--min-robust-accuracy", "l2:0.5=51%", "--min-robust-accuracy", "l2:1=0.3",
                   "--min-robust-accuracy", "linf:8/255=0", "--junit", junit)
    assert bad.returncode == 1 and "REGRESSED" in bad.stdout
    # at L2 <= 1: img0, img2 (open), img3 broken -> 2/6 = 0.33 >= 0.3 passes; Linf 8/255 >= 0 passes
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 3 and root.get("failures") == "1"
    assert [c.get("name") for c in cases if c.find("failure") is not None] == ["robust accuracy L2<=0.5 (best)"]
    text = summary.read_text()
    assert "1 of 3 checks failed" in text and "keeps 50% [" in text


@pytest.mark.parametrize("bad", ["l2:0.5", "l3:0.5=0.3", "l2:0.5=1.5", "l2:0.5,1=0.3", "l2:x=0.3"])
def test_bad_min_robust_accuracy_is_one_error_line(folder, run_main, bad):
    result = run_main("check", folder, "--min-robust-accuracy", bad)
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_baseline_keeps_robust_accuracy_and_a_drop_fails(folder, tmp_path, run_main):
    baseline = tmp_path / "baseline.json"
    assert run_main("check", folder, "--write-baseline", baseline).returncode == 0
    entries = json.loads(baseline.read_text())["robust_accuracy"]
    assert {(e["norm"], e["eps"], round(e["accuracy"], 4)) for e in entries} >= {("l2", 0.5, 0.5), ("l2", 1.0, 0.3333)}
    same = run_main("check", folder, "--baseline", baseline, "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    worse = tmp_path / "worse"
    worse.mkdir()
    records = [json.loads(line) for line in (folder / RESULTS).read_text().splitlines()]
    for r in records:  # rays now finds img4 at 0.2: robust accuracy at every eps drops by 1/6
        if r["image"] == "img4.png" and r["attack"] == "rays":
            r.update(found=True, verdict="adversarial", success=True, l2=0.2, linf=0.01)
    (worse / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
    (worse / "summary.json").write_text((folder / "summary.json").read_text())
    result = run_main("check", worse, "--baseline", baseline, "--max-drop", "10%", "--json")
    assert result.returncode == 1
    failed = {(c["metric"], c["attack"]) for c in json.loads(result.stdout)["checks"] if not c["ok"]}
    assert failed == {("robust accuracy L2<=0.25", "best"), ("robust accuracy L2<=0.5", "best"),
                      ("robust accuracy L2<=1", "best"), ("median L2", "rays")}  # rays' median: 0.7 -> 0.6
    assert len({record_config(r) for r in records}) == 1  # HSJA (L2) and RayS (Linf) are one configuration


def test_a_small_attack_run_writes_the_answer_and_its_report(tmp_path):
    """`probe attack --out DIR --report --eps`: summary.json holds robust accuracy by norm and eps, equal to
    what the records say; the inferences stay under the bound said first; the report shows the headline,
    the figure and three pictures for each image with a saved adversarial."""
    pytest.importorskip("matplotlib")
    from probe.runs.cost import inference_bound

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["attack", "--model", "cifar10-cnn", "--limit", "3", "--attack", "hsja,rays",
                                      "--sigma", "0", "--budget", "40", "--p-adv-samples", "10", "--out", str(out),
                                      "--report", "--eps", "l2:1,2", "--eps", "linf:8/255"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]
    assert set(summary["robust_accuracy"]) == {"l2", "linf"} and set(summary["robust_accuracy"]["l2"]) == {"1", "2"}
    for key, eps in (("1", 1.0), ("2", 2.0)):
        broken = {r["image"] for r in records if r["skipped"] or (r["success"] and r["l2"] <= eps)}
        best = summary["robust_accuracy"]["l2"][key]["best"]
        assert best["images"] == 3 and best["robust"] == 3 - len(broken)
    bound = inference_bound(images=3, jobs=6, n=1, budget=40, p_adv_samples=10, sigma=0.0)
    assert 0 < summary["inferences"] <= bound
    assert f"at most {bound:,} model inferences" in result.output
    md = (out / "report.md").read_text()
    assert md.count("> **Against the best of HSJA and RayS with 40 queries each, the model (no smoothing) keeps ") == 1
    assert "(figures/robust_accuracy_eps.png)" in md
    page = (out / "report.html").read_text()
    rows = re.findall(r"<tr><td>(cifar10_\S+?\.png)</td><td class='pics'>(.*?)</td>", page)
    saved = {r["image"] for r in records if r.get("adv_file")}
    assert len(rows) == 3 and saved
    assert all(cell.count("<img ") == (3 if image in saved else 0) for image, cell in rows)


@pytest.mark.parametrize("command", [["report", "{folder}"], ["attack", "--model", "cifar10-cnn", "--limit", "1"]])
@pytest.mark.parametrize("bad", ["l2", "l1:0.5", "l2:-0.5", "linf:8/0", "l2:half"])
def test_a_bad_eps_is_one_error_line(folder, run_main, command, bad):
    result = run_main(*[c.format(folder=folder) for c in command], "--eps", bad)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1 and "--eps" in result.stderr


def test_the_compare_picture_is_labelled_and_large(tmp_path):
    from PIL import Image

    from probe.runs.results import save_adversarial

    rng = np.random.default_rng(1)
    x0 = rng.uniform(0, 1, (3, 32, 32)).astype(np.float32)
    save_adversarial(tmp_path, "x", x0, np.clip(x0 + 0.01, 0, 1))
    with Image.open(tmp_path / "x_compare.png") as panel:
        assert panel.size[0] >= 3 * 192 and panel.size[1] >= 192 + 10  # three pictures and a caption line
        top = np.asarray(panel.convert("L"))[:12]
        assert (top < 128).any()  # the captions are written in black above the pictures


def test_a_long_run_without_out_says_that_nothing_will_be_kept(monkeypatch):
    """The first line gives the bound and the time at the measured rate; past 10 minutes without --out, a note."""
    import probe.runs.cost as cost

    monkeypatch.setattr(cost, "inference_rate", lambda runtime, x, batch=64: 1.0)  # 1 inference/s: hours
    result = CliRunner().invoke(app, ["attack", "--model", "cifar10-cnn", "--limit", "1", "--attack", "rays",
                                      "--sigma", "0", "--budget", "5", "--p-adv-samples", "2"])
    assert result.exit_code == 0, result.output
    bound = cost.inference_bound(images=1, jobs=1, n=1, budget=5, p_adv_samples=2, sigma=0.0)
    assert bound == 2 + 5 + 4
    assert f"at most {bound:,} model inferences" in result.output and f"up to {bound} s at 1 inferences/s" in result.output
    assert "nothing will be kept" not in result.output  # 11 s: no note
    monkeypatch.setattr(cost, "inference_rate", lambda runtime, x, batch=64: 0.01)  # 1,100 s
    result = CliRunner().invoke(app, ["attack", "--model", "cifar10-cnn", "--limit", "1", "--attack", "rays",
                                      "--sigma", "0", "--budget", "5", "--p-adv-samples", "2"])
    assert "up to 18 min" in result.output and "nothing will be kept: add --out DIR" in result.output
