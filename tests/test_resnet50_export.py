"""ResNet50 export from the torchvision, Cohen et al. and Madry (robustness) checkpoint formats."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from probe.errors import ProbeError  # noqa: E402
from probe.recipes import export  # noqa: E402
from probe.recipes.resnet50 import build_resnet50  # noqa: E402
from probe.spec import METADATA_KEY, InputSpec  # noqa: E402
from probe.zoo import PROVENANCE_KEY, VARIANT_KEY  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
FORMATS = ("torchvision", "cohen", "madry")


def random_resnet50(seed: int):
    """A ResNet50 with random, non-trivial BN statistics and logits of order 1-10."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_resnet50()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
        model.fc.weight.mul_(100.0)
    return model.eval()


def save_checkpoint(model, fmt: str, folder: Path) -> Path:
    """Write ``model`` the way each source project stores it."""
    state = model.state_dict()
    if fmt == "torchvision":
        path = folder / "resnet50-random.pth"
        torch.save(state, path)
    elif fmt == "cohen":
        # Sequential(NormalizeLayer, DataParallel(resnet50)), saved by train.py;
        # their files predate torch 1.6, hence the legacy (non-zip) serialization.
        path = folder / "noise_0.25" / "checkpoint.pth.tar"
        path.parent.mkdir(parents=True)
        sd = {f"1.module.{k}": v for k, v in state.items()}
        sd["0.means"] = torch.tensor([0.485, 0.456, 0.406])
        sd["0.sds"] = torch.tensor([0.229, 0.224, 0.225])
        blob = {
            "epoch": 90,
            "arch": "resnet50",
            "state_dict": sd,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "momentum": 0.9, "params": [0, 1]}]},
        }
        torch.save(blob, path, _use_new_zipfile_serialization=False)
    else:
        # robustness library: AttackerModel(model, normalizer) inside DataParallel.
        path = folder / "imagenet_l2_3_0.pt"
        sd = {f"module.model.{k}": v for k, v in state.items()}
        # attacker copies that differ: taking them would change the outputs
        sd.update({f"module.attacker.model.{k}": torch.ones_like(v) for k, v in state.items()})
        for prefix in ("module.normalizer.", "module.attacker.normalizer."):
            sd[prefix + "new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
            sd[prefix + "new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        torch.save({"model": sd, "epoch": 105, "optimizer": {"state": {}, "param_groups": []}, "schedule": None}, path)
    return path


def reference_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy((x - MEAN) / STD)).numpy()


@pytest.fixture(scope="module", params=FORMATS)
def exported(request, tmp_path_factory):
    fmt = request.param
    folder = tmp_path_factory.mktemp(f"export-{fmt}")
    model = random_resnet50(seed=FORMATS.index(fmt))
    checkpoint = save_checkpoint(model, fmt, folder)
    out_dir = folder / "models"
    out_dir.mkdir()
    # out is a directory: the file is named after the variant
    path = export.export_resnet50(checkpoint, fmt, out_dir)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {"fmt": fmt, "model": model, "checkpoint": checkpoint, "path": path, "session": session}


def test_onnx_matches_torch(exported):
    x = np.random.default_rng(1).random((2, 3, 224, 224), dtype=np.float32)
    expected = reference_logits(exported["model"], x)
    got = exported["session"].run(None, {"input": x})[0]
    assert got.shape == (2, 1000)
    assert np.abs(expected).max() > 1.0  # the comparison is not between near-zero numbers
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()
    # the normalization is folded in: raw input gives other logits
    with torch.no_grad():
        raw = exported["model"](torch.from_numpy(x)).numpy()
    assert np.abs(got - raw).max() > 1e-2


def test_dynamic_batch(exported):
    x = np.random.default_rng(2).random((3, 3, 224, 224), dtype=np.float32)
    got = exported["session"].run(None, {"input": x})[0]
    assert got.shape == (3, 1000)
    single = exported["session"].run(None, {"input": x[1:2]})[0]
    assert np.abs(got[1:2] - single).max() < 1e-4
    graph_input = exported["session"].get_inputs()[0]
    assert graph_input.shape[1:] == [3, 224, 224]
    assert not isinstance(graph_input.shape[0], int)


def test_metadata(exported):
    fmt, path = exported["fmt"], exported["path"]
    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    spec = InputSpec.from_json(meta[METADATA_KEY])
    assert spec.is_canonical
    assert spec.size == (224, 224)
    assert spec.dataset == "imagenet"
    variant = {"torchvision": "resnet50-vanilla", "cohen": "resnet50-randtrain-0.25", "madry": "resnet50-advtrain"}[fmt]
    assert meta[VARIANT_KEY] == variant
    assert path.name == f"{variant}.onnx"
    provenance = json.loads(meta[PROVENANCE_KEY])
    assert provenance["source_format"] == fmt
    assert provenance["variant"] == variant
    assert provenance["sha256"] == hashlib.sha256(exported["checkpoint"].read_bytes()).hexdigest()
    assert provenance["torch"] == torch.__version__
    assert provenance["exported"][:4].isdigit()
    assert provenance["normalization"]["folded"] is True
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]


def test_load_checkpoint_returns_torchvision_names(exported):
    state = export.load_checkpoint(exported["checkpoint"], exported["fmt"])
    reference = exported["model"].state_dict()
    assert set(state) == set(reference)
    assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_explicit_variant_and_file(tmp_path):
    model = random_resnet50(seed=7)
    checkpoint = save_checkpoint(model, "madry", tmp_path)
    out = export.export_resnet50(checkpoint, "madry", tmp_path / "sub" / "x.onnx", variant="resnet50-advtrain-l2-3.0")
    assert out == tmp_path / "sub" / "x.onnx" and out.is_file()
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert meta[VARIANT_KEY] == "resnet50-advtrain-l2-3.0"
    assert export.default_variant("cohen", Path("models/imagenet/resnet50/noise_0.50/checkpoint.pth.tar")) == (
        "resnet50-randtrain-0.5"
    )
    assert export.default_variant("cohen", Path("noise_1.00/checkpoint.pth.tar")) == "resnet50-randtrain-1.0"
    assert export.default_variant("cohen", Path("ckpt.pth.tar")) == "resnet50-randtrain"
    with pytest.raises(ProbeError, match="invalid variant"):
        export.export_resnet50(checkpoint, "madry", tmp_path, variant="../evil")


# ----------------------------------------------------------------------------- refusals

def _touch(path: str) -> None:  # what the malicious pickle would call
    Path(path).write_text("executed")


class Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


class CustomObject:
    def __init__(self):
        self.weights = torch.zeros(3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unsafe_checkpoint_is_refused_and_never_run(tmp_path, fmt):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload(marker), "model": Payload(marker)}, path)
    with pytest.raises(ProbeError, match="refused") as info:
        export.load_checkpoint(path, fmt)
    assert "arbitrary unpickling" in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_custom_class_checkpoint_is_refused(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save(CustomObject(), path)
    with pytest.raises(ProbeError, match="refused to load obj.pth.*CustomObject"):
        export.export_resnet50(path, "torchvision", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_checkpoint(tmp_path, legacy):
    state = {k: v for k, v in list(build_resnet50().state_dict().items())[:20]}
    path = tmp_path / "full.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProbeError, match="cannot read checkpoint cut.pth: truncated, corrupt") as info:
        export.load_checkpoint(cut, "torchvision")
    assert "\n" not in str(info.value)


def test_garbage_and_empty_files(tmp_path):
    for name, content in (("text.pth", b"hello world"), ("empty.pth", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ProbeError, match=f"cannot read checkpoint {name}"):
            export.load_checkpoint(path, "cohen")


def test_missing_file(tmp_path):
    with pytest.raises(ProbeError, match="checkpoint not found"):
        export.export_resnet50(tmp_path / "nope.pth", "torchvision", tmp_path / "out.onnx")
    with pytest.raises(ProbeError, match="not a file"):
        export.load_checkpoint(tmp_path, "torchvision")


def test_small_convnet_is_not_resnet50(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    path = tmp_path / "small.pth"
    torch.save(net.state_dict(), path)
    with pytest.raises(ProbeError, match="not a torchvision-layout ResNet50: .*missing keys .*unexpected keys"):
        export.load_checkpoint(path, "torchvision")


def resnet18_state() -> dict:
    """torchvision resnet18 names and shapes (BasicBlock, [2, 2, 2, 2])."""
    def bn(prefix, n, out):
        out[f"{prefix}.weight"] = torch.ones(n)
        out[f"{prefix}.bias"] = torch.zeros(n)
        out[f"{prefix}.running_mean"] = torch.zeros(n)
        out[f"{prefix}.running_var"] = torch.ones(n)
        out[f"{prefix}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)

    state = {"conv1.weight": torch.zeros(64, 3, 7, 7)}
    bn("bn1", 64, state)
    inplanes = 64
    for i, planes in enumerate((64, 128, 256, 512), 1):
        for b in range(2):
            p = f"layer{i}.{b}"
            state[f"{p}.conv1.weight"] = torch.zeros(planes, inplanes if b == 0 else planes, 3, 3)
            bn(f"{p}.bn1", planes, state)
            state[f"{p}.conv2.weight"] = torch.zeros(planes, planes, 3, 3)
            bn(f"{p}.bn2", planes, state)
            if b == 0 and i > 1:
                state[f"{p}.downsample.0.weight"] = torch.zeros(planes, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes, state)
        inplanes = planes
    state["fc.weight"] = torch.zeros(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    return state


def test_resnet18_is_not_resnet50(tmp_path):
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"arch": "resnet50", "state_dict": {f"1.module.{k}": v for k, v in resnet18_state().items()}}, path)
    with pytest.raises(ProbeError, match="checkpoint.pth.tar is not a torchvision-layout ResNet50: .*missing keys"):
        export.load_checkpoint(path, "cohen")


def test_shape_mismatch_and_foreign_arch(tmp_path):
    state = build_resnet50().state_dict()
    state["fc.weight"] = torch.zeros(10, 2048)
    state["fc.bias"] = torch.zeros(10)
    path = tmp_path / "ten.pth"
    torch.save(state, path)
    with pytest.raises(ProbeError, match=r"fc\.(weight|bias) has shape \(10"):
        export.load_checkpoint(path, "torchvision")
    path = tmp_path / "cifar.pth.tar"
    torch.save({"arch": "cifar_resnet110", "state_dict": {"1.module.conv1.weight": torch.zeros(16, 3, 3, 3)}}, path)
    with pytest.raises(ProbeError, match="'cifar_resnet110' model, not a ResNet50"):
        export.load_checkpoint(path, "cohen")


def test_wrong_format_names_the_likely_one(tmp_path):
    state = build_resnet50().state_dict()
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    with pytest.raises(ProbeError, match="not a cohen checkpoint.*looks like format 'torchvision'"):
        export.load_checkpoint(plain, "cohen")
    with pytest.raises(ProbeError, match="not a madry checkpoint.*looks like format 'torchvision'"):
        export.load_checkpoint(plain, "madry")
    madry = tmp_path / "madry.pt"
    torch.save({"model": {f"module.model.{k}": v for k, v in state.items()}, "epoch": 1}, madry)
    with pytest.raises(ProbeError, match="not a torchvision checkpoint.*looks like format 'madry'"):
        export.load_checkpoint(madry, "torchvision")
    with pytest.raises(ProbeError, match="unknown checkpoint format 'timm'"):
        export.load_checkpoint(plain, "timm")


def test_missing_bn_counters_are_tolerated(tmp_path):
    state = {k: v for k, v in build_resnet50().state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    loaded = export.load_checkpoint(path, "torchvision")
    assert "bn1.num_batches_tracked" in loaded


def test_torchvision_weights_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "TORCHVISION_URL", "http://127.0.0.1:9/resnet50-0676ba61.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    start = time.monotonic()
    with pytest.raises(ProbeError, match="could not download the torchvision ResNet50 weights") as info:
        export.export_resnet50(None, "torchvision", tmp_path / "out.onnx", weights="torchvision")
    assert time.monotonic() - start < 20
    assert "\n" not in str(info.value)
    assert "--checkpoint" in str(info.value)
    with pytest.raises(ProbeError, match="not both"):
        export.export_resnet50(tmp_path / "x.pth", "torchvision", tmp_path / "o.onnx", weights="torchvision")
    with pytest.raises(ProbeError, match="no checkpoint given"):
        export.export_resnet50(None, "torchvision", tmp_path / "o.onnx")
