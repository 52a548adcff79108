"""The command line on a tiny linear model: outputs, JSON, and clean errors (exit code 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from probe.data import load_images
from probe.errors import ProbeError
from tests.entry import run_entry


@pytest.fixture(scope="module")
def setup(make_linear):
    lin = make_linear((3, 16, 16), seed=1, images=6, image_seed=0)
    (lin.folder / "broken.png").write_bytes(b"not an image")
    return lin.model, lin.folder


def test_load_images_skips_unreadable_and_reads_labels(setup):
    _, folder = setup
    data = load_images([str(folder)], (16, 16))
    assert len(data) == 6 and data.x.shape == (6, 3, 16, 16) and data.x.dtype == np.float32
    assert data.has_labels
    assert [p for p, _ in data.skipped] == [str((folder / "broken.png").resolve())]
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0


def test_resize_and_centre_crop(tmp_path):
    arr = np.zeros((300, 400, 3), np.uint8)
    arr[:, 150:250] = 255  # a white vertical band in the middle
    Image.fromarray(arr).save(tmp_path / "wide.png")
    data = load_images([str(tmp_path / "wide.png")], (224, 224))
    assert data.x.shape == (1, 3, 224, 224)
    assert data.x[0, :, :, 112].min() > 0.9 and data.x[0, :, :, 0].max() < 0.1
    assert data.labels[0] == -1


def test_globs_and_missing_sources(setup, tmp_path):
    _, folder = setup
    assert len(load_images([str(folder / "img[0-2].png")], (16, 16))) == 3
    with pytest.raises(ProbeError, match="no such image"):
        load_images([str(tmp_path / "nothing_here.png")], (16, 16))


def test_imagenet_val_names_map_to_labels():
    from probe.data import imagenet_val_label

    assert imagenet_val_label("ILSVRC2012_val_00015416.JPEG") == 13
    assert imagenet_val_label("cat.jpg") is None


def test_predict_json(setup, run_cli):
    model, folder = setup
    result = run_cli("predict", "--model", model, "--images", folder, "--sigma", 0.01, "--n", 50, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["images"]) == 6
    for rec in data["images"]:
        assert rec["plain"] == rec["label"]
        assert rec["vote"] in (0, 1) and 25 <= rec["top_votes"] <= 50


def test_accuracy_json(setup, run_cli):
    model, folder = setup
    result = run_cli("accuracy", "--model", model, "--images", folder, "--sigma", 0.0, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["plain"] == 1.0 and data["smoothed_vote"] == 1.0 and data["n"] == 1


def test_certify_json(setup, run_cli):
    model, folder = setup
    result = run_cli("certify", "--model", model, "--images", folder, "--sigma", 0.1, "--n", 500, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["runs"][0]
    curve = data["certified_accuracy"]
    assert curve["0"] >= curve["0.25"] >= curve["0.5"]
    for rec in data["images"]:
        assert rec["abstain"] or rec["radius"] > 0


def test_info_json(setup, run_cli):
    model, _ = setup
    result = run_cli("info", "--model", model, "--json", "--seconds", 0.2)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["num_classes"] == 2 and "CPUExecutionProvider" in data["providers"]
    assert data["images_per_second"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "--model", "no_such_model_anywhere"], "unknown model"),
        (["predict", "--sigma", "-1"], "--sigma"),
        (["certify", "--sigma", "0"], "--sigma must be in (0.0, inf)"),
        (["predict", "--images", "/nonexistent/dir/x.png"], "no such image"),
        (["predict", "--mean", "a,b,c"], "--mean"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(setup, args, message):
    model, folder = setup
    if "--model" not in args:
        args = [args[0], "--model", str(model), *(["--images", str(folder)] if "--images" not in args else []), *args[1:]]
    result = run_entry(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_corrupt_model_file_exit_2(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"garbage" * 100)
    result = run_entry("info", "--model", junk)
    assert result.returncode == 2 and "not a valid ONNX model" in result.stderr
    assert "Traceback" not in result.stderr
