"""Tiny ONNX classifiers built with onnx.helper, with exactly known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from probe.spec import METADATA_KEY, InputSpec


def linear_weights(shape=(3, 8, 8), seed: int = 0) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    b = float(-w.sum() * 0.5)  # the hyperplane passes through the grey image 0.5
    return w, b


def margin(x: np.ndarray, w: np.ndarray, b: float) -> float:
    """Signed L2 distance of x to the hyperplane w.x + b = 0."""
    return float((np.dot(w.ravel().astype(np.float64), x.ravel()) + b) / np.linalg.norm(w))


def save_linear(
    path: Path,
    w: np.ndarray,
    b: float,
    layout: str = "NCHW",
    channels: str = "RGB",
    scale: float = 1.0,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    batch: int | str = "N",
    softmax: bool = False,
    extra_output: bool = False,
    write_spec: bool = True,
) -> Path:
    """A two-class linear classifier f(x) = [-(w.x + b), w.x + b] on canonical x, exported
    for a model that takes its input in the given convention (so that, fed correctly, it
    computes the same logits)."""
    c, h, wd = w.shape
    # the model sees m = (x * scale - mean) / std in `channels` order and `layout`; x = (m * std + mean) / scale
    # mean/std are given in the model's channel order
    order = slice(None, None, -1) if channels == "BGR" else slice(None)
    std_a = np.asarray(std, np.float32)[order]
    mean_a = np.asarray(mean, np.float32)[order]
    w_eff = w * (std_a[:, None, None] / scale)  # w.x = sum w_eff * m + const
    const = float(np.sum(w * (mean_a[:, None, None] / scale)))
    if channels == "BGR":
        w_eff = w_eff[::-1]
    if layout == "NHWC":
        w_eff = w_eff.transpose(1, 2, 0)
        in_shape = [batch, h, wd, c]
    else:
        in_shape = [batch, c, h, wd]
    flat = w_eff.reshape(-1)
    weights = np.stack([-flat, flat], axis=1).astype(np.float32)
    bias = np.array([-(b + const), b + const], dtype=np.float32)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 2])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 2])]
    if extra_output:
        nodes.append(helper.make_node("Identity", ["flat"], ["features"]))
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, c * h * wd]))
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        outputs,
        [
            helper.make_tensor("W", TensorProto.FLOAT, weights.shape, weights.ravel()),
            helper.make_tensor("B", TensorProto.FLOAT, [2], bias),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if write_spec:
        spec = InputSpec(layout=layout, channels=channels, scale=scale, mean=tuple(mean), std=tuple(std), size=(h, wd))
        helper.set_model_props(model, {METADATA_KEY: spec.to_json()})
    onnx.save(model, str(path))
    return path
