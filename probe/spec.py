"""What an ONNX classifier expects as input, and how canonical images map onto it.

Canonical space: float32 RGB in [0, 1], NCHW, at the model's input size. A model
input is ``(x_canonical * scale - mean) / std`` laid out as ``layout`` with the
channels in ``channels`` order. Our recipes write the spec as JSON into the ONNX
metadata under ``METADATA_KEY``; third-party models take it from CLI flags.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from probe.errors import ProbeError

METADATA_KEY = "probe.input_spec"


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """Input convention of a model.

    Parameters
    ----------
    layout : "NCHW" or "NHWC".
    channels : "RGB" or "BGR".
    scale : 1.0 for [0, 1] input, 255.0 for [0, 255].
    mean, std : per-channel, in the model's channel order and on the ``scale`` scale.
    size : (height, width) of the input; None to take it from the graph.
    class_names : optional names of the classes, index = label.
    dataset : optional tag ("imagenet", "cifar10") used to pick labels and samples.
    """

    layout: str = "NCHW"
    channels: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size: tuple[int, int] | None = None
    class_names: tuple[str, ...] | None = field(default=None, repr=False)
    dataset: str | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ProbeError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.channels not in ("RGB", "BGR"):
            raise ProbeError(f"channels must be RGB or BGR, got {self.channels!r}")
        if not self.scale > 0:
            raise ProbeError(f"scale must be positive, got {self.scale}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ProbeError("mean and std need three values (one per channel)")
        if any(s <= 0 for s in self.std):
            raise ProbeError(f"std values must be positive, got {self.std}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ProbeError(f"size must be (height, width), got {self.size}")

    @property
    def is_canonical(self) -> bool:
        """True when the model takes canonical input as it is."""
        return (
            self.layout == "NCHW"
            and self.channels == "RGB"
            and self.scale == 1.0
            and tuple(self.mean) == (0.0, 0.0, 0.0)
            and tuple(self.std) == (1.0, 1.0, 1.0)
        )

    def with_overrides(self, **overrides: Any) -> "InputSpec":
        """A copy with the non-None overrides applied (CLI flags win over metadata)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        for key in ("mean", "std", "size"):
            if key in given:
                given[key] = tuple(given[key])
        return replace(self, **given)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> "InputSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProbeError(f"unreadable {METADATA_KEY} metadata: {exc}") from None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("mean", "std", "size", "class_names"):
            if known.get(key) is not None:
                known[key] = tuple(known[key])
        return cls(**known)
