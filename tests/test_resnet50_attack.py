"""A ResNet50 exported from a (random-weight) torchvision checkpoint, attacked end to end."""

from __future__ import annotations

import json
import shutil
from importlib import resources

import pytest
from typer.testing import CliRunner

from probe.cli import app


def test_exported_resnet50_attacked_with_smoothing(tmp_path):
    torch = pytest.importorskip("torch")
    from probe.recipes.resnet50 import build_resnet50

    torch.manual_seed(0)
    checkpoint = tmp_path / "resnet50.pth"
    torch.save(build_resnet50().state_dict(), checkpoint)
    runner = CliRunner()
    exported = runner.invoke(
        app, ["models", "export", "--format", "torchvision", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "r50.onnx")]
    )
    assert exported.exit_code == 0, exported.output
    # one bundled sample without its label (random weights would call it misclassified and skip it)
    sample = sorted((resources.files("probe") / "assets" / "images" / "imagenet").iterdir())[0]
    (tmp_path / "img").mkdir()
    shutil.copy(str(sample), tmp_path / "img" / "sample.jpg")
    result = runner.invoke(
        app,
        ["attack", "--model", str(tmp_path / "r50.onnx"), "--images", str(tmp_path / "img"), "--attack", "rays", "--sigma", "0.05",
         "--n", "2", "--budget", "12", "--p-adv-samples", "4", "--certify-n", "0", "--batch-size", "4",
         "--out", str(tmp_path / "run"), "--json"],  # no CERTIFY (1,100 ResNet50 inferences), no batch-size timing
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 2 and summary["results"] == 1
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text())
    assert record["skipped"] is None and record["label"] is None
    # votes stop once decided: between 1 and n = 2 inferences a query (n exactly with --full-votes)
    assert 0 < record["queries"] <= 12 and record["queries"] <= record["inferences"] <= 2 * record["queries"]
    assert record["early_stop"] is True
