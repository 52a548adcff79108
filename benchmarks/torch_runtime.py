"""Run ``probe`` with the model evaluated by PyTorch (benchmarks only: a lent GPU machine
whose ONNX Runtime has no CUDA provider and cannot be given one).

    python benchmarks/torch_runtime.py attack --model efficientnet-lite0 --sigma 0.05 ...

takes ``probe``'s own arguments. Everything is ``probe``'s (oracle, noise, engine, attacks,
verdict, records) except the one call that turns a batch of canonical images into labels:
the runtime's wrapped graph (input mapping, model, ArgMax; :func:`probe.runtime.wrap_model`)
is converted by onnx2torch and run by PyTorch on ``PROBE_TORCH_DEVICE`` (default ``cuda``),
in float32 with TF32 off, in batches of ``PROBE_TORCH_BATCH`` (default 1024). The records'
``providers`` say ``torch-cuda (onnx2torch)``. Labels agree with ONNX Runtime's except where
float rounding moves a logit across a tie; noise is drawn on the host as on the CPU path,
so a seed means the same noise.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np


class TorchSession:
    """What :class:`probe.runtime.Runtime` asks of an ONNX Runtime session: ``run`` and
    ``get_providers``, for its wrapped graph (``canonical`` (N, 3, H, W) -> ``label`` (N,))."""

    def __init__(self, model, device: str) -> None:
        import torch
        from onnx2torch import convert

        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.set_num_threads(1)
        self.torch = torch
        self.device = torch.device(device)
        self.net = convert(model).eval().to(self.device)

    def run(self, names, feeds: dict) -> list[np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(feeds["canonical"])).to(self.device, non_blocking=True)
            out = self.net(x)
        return [out.cpu().numpy().astype(np.int64)]

    def get_providers(self) -> list[str]:
        return [f"torch-{self.device.type} (onnx2torch)"]


def install(device: str, batch: int) -> None:
    """Make every :class:`probe.runtime.Runtime` built from now on run its wrapped graph in PyTorch."""
    from probe import runtime

    original = runtime.Runtime.__init__

    def __init__(self, *args, **kwargs) -> None:
        kwargs["batch_size"] = batch  # no timing of ONNX Runtime's batch sizes: its session is replaced
        kwargs["device"] = "cpu"
        original(self, *args, **kwargs)
        self.session = TorchSession(self.wrapped_model(), device)
        self.info = dataclasses.replace(self.info, providers=tuple(self.session.get_providers()))

    runtime.Runtime.__init__ = __init__


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    install(os.environ.get("PROBE_TORCH_DEVICE", "cuda"), int(os.environ.get("PROBE_TORCH_BATCH", "1024")))
    from probe.cli import main as probe_main

    sys.argv[0] = "probe"
    probe_main()


if __name__ == "__main__":
    main()
