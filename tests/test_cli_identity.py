"""Images are identified by their path, not their base name (issue #39, item 8), and a labels
file that leaves images out says so (item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.data import image_ids, load_images
from tests.entry import run_entry


def _png(path: Path, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.random.default_rng(seed).random((8, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return arr.astype(np.float32).transpose(2, 0, 1) / 255.0


def test_image_ids_are_names_unless_names_clash():
    paths = [Path("/t/dA/x.png"), Path("/t/dB/x.png"), Path("/t/dB/y.png"), Path("/a/z.png"), Path("/b/a/z.png")]
    assert image_ids(paths) == ["dA/x.png", "dB/x.png", "y.png", "/a/z.png", "b/a/z.png"]
    assert image_ids([Path("/t/x.png")]) == ["x.png"]


def test_two_images_with_one_name_are_two_records_two_arrays_two_jobs(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=1)
    xa, xb = _png(tmp_path / "dA" / "x.png", 1), _png(tmp_path / "dB" / "x.png", 2)
    out = tmp_path / "run"
    args = ["attack", "--model", lin.model, "--images", tmp_path / "dA" / "x.png", "--images",
            tmp_path / "dB" / "x.png", "--sigma", "0", "--attack", "hsja", "--budget", "60", "--out", out]  # fmt: skip
    first = run_entry(*args, "--save-images")
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["image"] for r in records) == ["dA/x.png", "dB/x.png"]
    assert len({r["adv_file"] for r in records}) == 2 and len({r["adv_path"] for r in records}) == 2
    for rec in records:  # each saved adversarial is at the recorded distance from its own original
        x0 = xa if rec["image"].startswith("dA") else xb
        x_adv = np.load(out / rec["adv_file"])
        assert float(np.linalg.norm(x_adv - x0)) == pytest.approx(rec["l2"], rel=1e-5)
    (out / "results.jsonl").write_text(json.dumps(records[0]) + "\n")  # cut after one record
    resumed = run_entry(*args, "--save-images", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    again = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["image"] for r in again) == ["dA/x.png", "dB/x.png"]  # the second job ran, not skipped


def test_a_labels_file_that_leaves_images_out_warns_with_the_count(tmp_path):
    for i in range(4):
        _png(tmp_path / "imgs" / f"i{i}.png", i)
    (tmp_path / "imgs" / "labels.csv").write_text("file,label\ni0.png,1\ni1.png,\n")  # i1 unknown on purpose
    with pytest.warns(UserWarning, match=r"2 of 4 images have no row in the labels file .*csv \(first: i2.png\)"):
        data = load_images([str(tmp_path / "imgs")], (8, 8))
    assert data.labels.tolist() == [1, -1, -1, -1]
    with pytest.warns(UserWarning, match="1 of 2 images"):
        load_images([str(tmp_path / "imgs" / "i0.png"), str(tmp_path / "imgs" / "i3.png")], (8, 8),
                    labels_csv=str(tmp_path / "imgs" / "labels.csv"))  # fmt: skip


def test_folders_keep_their_own_labels(tmp_path):
    _png(tmp_path / "dA" / "x.png", 1)
    _png(tmp_path / "dB" / "x.png", 2)
    (tmp_path / "dA" / "labels.csv").write_text("x.png,3\n")
    (tmp_path / "dB" / "labels.csv").write_text("x.png,5\n")
    data = load_images([str(tmp_path / "dA"), str(tmp_path / "dB")], (8, 8))
    assert data.ids == ["dA/x.png", "dB/x.png"] and data.labels.tolist() == [3, 5]


def test_the_cli_shows_the_missing_labels_warning_on_one_line(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=1, images=3)
    labels = tmp_path / "labels.csv"
    labels.write_text("img0.png,0\n")
    result = run_entry("predict", "--model", lin.model, "--images", lin.folder, "--labels", labels, "--sigma", "0",
                       "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning: 2 of 3 images have no row in the labels file" in " ".join(result.stderr.split())


def test_resume_refuses_images_whose_pixels_changed(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=1)
    _png(tmp_path / "imgs" / "x.png", 1)
    out = tmp_path / "run"
    args = ["attack", "--model", lin.model, "--images", tmp_path / "imgs", "--sigma", "0", "--attack", "hsja",
            "--budget", "20", "--out", out]  # fmt: skip
    assert run_entry(*args).returncode == 0
    _png(tmp_path / "imgs" / "x.png", 2)  # the same name, other pixels
    result = run_entry(*args, "--resume")
    assert result.returncode == 2 and "other settings: images_sha1" in result.stderr, result.stderr
