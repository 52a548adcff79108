"""Third-party models through the CLI with flags, and the model-file errors (exit code 2)."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

FLAGS = ["--layout", "NHWC", "--channels", "BGR", "--scale", "255", "--mean", "103.9,116.8,123.7"]


@pytest.fixture(scope="module")
def third_party(make_linear):
    """A caffe-style model: NHWC, BGR, 0-255, mean subtraction, fixed batch of 1, two outputs,
    softmax, no probe metadata; plus images labelled by the exact linear rule."""
    lin = make_linear(
        (3, 16, 16), seed=7, images=5, image_seed=3, name="caffe_style.onnx", layout="NHWC", channels="BGR",
        scale=255.0, mean=(103.9, 116.8, 123.7), batch=1, softmax=True, extra_output=True, write_spec=False,
    )
    return lin.model, lin.folder


def test_third_party_predict_with_flags(third_party, run_main):
    path, folder = third_party
    result = run_main("predict", "--model", path, "--images", folder, *FLAGS, "--output", "probs", "--sigma", 0, "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)["images"]
    assert len(records) == 5 and all(r["plain"] == r["label"] for r in records)


def test_third_party_without_output_flag_is_a_clear_error(third_party, run_main):
    path, folder = third_party
    result = run_main("predict", "--model", path, "--images", folder, *FLAGS)
    assert result.returncode == 2 and "--output" in result.stderr and "Traceback" not in result.stderr


def test_third_party_info(third_party, run_main):
    path, _ = third_party
    result = run_main("info", "--model", path, *FLAGS, "--output", "probs", "--json", "--seconds", 0)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["fixed_batch"] == 1 and data["batch_size"] == 1
    assert data["spec"]["layout"] == "NHWC" and data["spec"]["channels"] == "BGR"


def _not_a_classifier(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "seg", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_model_file_errors_exit_2(tmp_path, make_linear, run_main):
    cases = {"not a classifier": _not_a_classifier(tmp_path / "seg.onnx")}
    good = make_linear((3, 8, 8)).model
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:300])
    cases["not a valid ONNX model"] = truncated
    for message, path in cases.items():
        result = run_main("info", "--model", path, "--seconds", 0)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_checkpoint_errors_exit_2(tmp_path, run_main):
    torch = pytest.importorskip("torch")

    class Payload:  # pickled as a custom class: needs arbitrary unpickling
        def __reduce__(self):
            return (print, ("this must never run",))

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": Payload()}, unsafe)
    wrong = tmp_path / "small_net.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 2)).state_dict(), wrong)
    for path, fmt, message in [(unsafe, "torchvision", "unpickling"), (wrong, "torchvision", "ResNet50")]:
        result = run_main("models", "export", "--format", fmt, "--checkpoint", path, "--out", tmp_path / "o.onnx")
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert "this must never run" not in result.stdout + result.stderr
