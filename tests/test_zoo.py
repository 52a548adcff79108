"""The model registry (no torch needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from probe.errors import ProbeError
from probe import zoo
from probe.spec import METADATA_KEY, InputSpec

REPO = Path(__file__).resolve().parents[1]


def tiny_model(path: Path, spec: InputSpec | None = None, provenance: dict | None = None, pad_mb: int = 0) -> Path:
    """An ONNX model that flattens its input; ``pad_mb`` adds a large initializer."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 48])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [0, -1])
    inits = [shape]
    if pad_mb:
        pad = np.zeros(pad_mb * 262144, dtype=np.float32)
        inits.append(onnx.numpy_helper.from_array(pad, "pad"))
    graph = helper.make_graph([helper.make_node("Reshape", ["input", "shape"], ["logits"])], "tiny", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {}
    if spec is not None:
        meta[METADATA_KEY] = spec.to_json()
    if provenance is not None:
        meta[zoo.PROVENANCE_KEY] = json.dumps(provenance)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("PROBE_MODEL_DIR", str(folder))
    return folder


def test_model_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("PROBE_MODEL_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo.model_dir() == tmp_path / "home" / ".cache" / "probe" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.model_dir() == tmp_path / "xdg" / "probe" / "models"
    monkeypatch.setenv("PROBE_MODEL_DIR", str(tmp_path / "explicit"))
    assert zoo.model_dir() == tmp_path / "explicit"


def test_resolve_existing_path_wins(tmp_path, model_dir):
    path = tiny_model(tmp_path / "elsewhere" / "mine.onnx")
    tiny_model(model_dir / "mine.onnx")
    assert zoo.resolve_model(str(path)) == path
    assert zoo.resolve_model(path) == path


def test_resolve_name_in_model_dir(model_dir):
    path = tiny_model(model_dir / "resnet50-randtrain-0.25.onnx")
    assert zoo.resolve_model("resnet50-randtrain-0.25") == path
    assert zoo.resolve_model("resnet50-randtrain-0.25.onnx") == path


def test_unknown_name_lists_available(model_dir):
    tiny_model(model_dir / "resnet50-vanilla.onnx")
    with pytest.raises(ProbeError) as info:
        zoo.resolve_model("resnet50-advtrain")
    message = str(info.value)
    assert message.startswith("unknown model 'resnet50-advtrain'; available: ")
    assert "resnet50-vanilla" in message
    assert "probe models export" in message
    assert "\n" not in message
    for name in zoo.BUILTIN_MODELS:
        assert (name in message) == zoo.builtin_path(name).is_file()


def test_missing_file_path(tmp_path, model_dir):
    with pytest.raises(ProbeError, match="model file not found"):
        zoo.resolve_model(str(tmp_path / "nope" / "model.onnx"))
    with pytest.raises(ProbeError, match="is a directory"):
        zoo.resolve_model(str(tmp_path))


def test_builtin_models(model_dir):
    assert zoo.DEFAULT_MODEL == "efficientnet-lite0"
    assert set(zoo.BUILTIN_MODELS) == {"efficientnet-lite0", "cifar10-cnn"}
    for name in zoo.BUILTIN_MODELS:
        path = zoo.builtin_path(name)
        assert path.parent.parts[-3:] == ("probe", "assets", "models")
        if path.is_file():
            assert zoo.resolve_model(name) == path
        else:
            with pytest.raises(ProbeError, match="missing from this installation"):
                zoo.resolve_model(name)


def test_list_models_sees_dropped_model(model_dir):
    before = {info.name for info in zoo.list_models()}
    assert "dropped" not in before
    spec = InputSpec(size=(4, 4), dataset="cifar10")
    path = tiny_model(model_dir / "dropped.onnx", spec=spec, provenance={"source_format": "test"})
    (model_dir / "notes.txt").write_text("not a model")
    infos = {info.name: info for info in zoo.list_models()}
    assert set(infos) == before | {"dropped"}
    info = infos["dropped"]
    assert info.path == path and not info.builtin
    assert info.size_bytes == path.stat().st_size
    assert info.spec == spec
    assert info.provenance == {"source_format": "test"}
    for name in zoo.BUILTIN_MODELS:
        if zoo.builtin_path(name).is_file():
            assert infos[name].builtin


def test_list_models_tolerates_broken_files(model_dir):
    (model_dir / "broken.onnx").write_bytes(b"\xff\xff\xff not onnx")
    tiny_model(model_dir / "plain.onnx")
    infos = {info.name: info for info in zoo.list_models()}
    assert infos["broken"].spec is None and infos["broken"].provenance is None
    assert infos["plain"].spec is None and infos["plain"].provenance is None


def test_read_metadata_matches_onnx_and_skips_the_graph(tmp_path):
    spec = InputSpec(size=(4, 4), dataset="imagenet", mean=(0.5, 0.5, 0.5))
    path = tiny_model(tmp_path / "big.onnx", spec=spec, provenance={"a": 1}, pad_mb=8)
    expected = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert zoo.read_metadata(path) == expected
    assert zoo.read_spec(path) == spec
    # the scanner seeks over the graph: cheap even for large models
    assert zoo._scan_metadata(path) == expected


def test_read_metadata_rejects_garbage(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(ProbeError, match="not a readable ONNX model"):
        zoo.read_metadata(path)


def test_default_images(tmp_path, model_dir):
    cifar = tiny_model(model_dir / "cnn.onnx", spec=InputSpec(size=(4, 4), dataset="cifar10"))
    assert zoo.default_images("cnn") == zoo.dataset_images("cifar10")
    assert zoo.default_images(str(cifar)) == zoo.dataset_images("cifar10")
    imagenet = tiny_model(tmp_path / "r50.onnx", spec=InputSpec(size=(4, 4), dataset="imagenet"))
    assert zoo.default_images(str(imagenet)) == zoo.dataset_images("imagenet")
    assert zoo.default_images(str(tiny_model(tmp_path / "bare.onnx"))) is None
    other = tiny_model(tmp_path / "mnist.onnx", spec=InputSpec(size=(4, 4), dataset="mnist"))
    assert zoo.default_images(str(other)) is None
    assert zoo.default_images("efficientnet-lite0") == zoo.dataset_images("imagenet")
    assert zoo.default_images("cifar10-cnn") == zoo.dataset_images("cifar10")
    assert zoo.dataset_images("mnist") is None
    for dataset in zoo.SAMPLE_DATASETS:
        folder = zoo.dataset_images(dataset)
        if folder is not None:
            assert folder.parts[-3:] == ("assets", "images", dataset)
            assert (folder / "labels.csv").is_file()


def test_registry_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import probe.zoo, probe.recipes.export\n"
        "from probe.errors import ProbeError\n"
        "try:\n"
        "    probe.recipes.export.export_resnet50('x.pth', 'torchvision', 'x.onnx')\n"
        "except ProbeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install torch==2.13.0" in done.stdout
    assert "probe[export]" in done.stdout
