"""Shared fixtures: the tiny linear ONNX model (with a folder of labelled images) and the
two ways of running the command line (in process, and through the real entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.onnx_models import linear_weights, margin, save_linear

# pytest-xdist's workers set COLUMNS=80: the commands' output would wrap where a pipe's does not
# (probe.cli.output: 160 columns when writing to a file or a pipe). Tests see what a pipe gets.
os.environ.pop("COLUMNS", None)


@dataclass(frozen=True)
class Linear:
    """A linear two-class model f(x) = 1[w.x + b > 0] saved as ONNX, and its images.

    ``x`` holds the images as probe loads them (the 8-bit PNGs in canonical space),
    ``labels`` their exact classes under f; ``folder`` (None without images) holds the
    PNGs and a ``labels.csv``.
    """

    model: Path
    w: np.ndarray
    b: float
    folder: Path | None
    names: tuple[str, ...]
    x: np.ndarray
    labels: tuple[int, ...]

    def margin(self, x: np.ndarray) -> float:
        """Signed L2 distance of x to the hyperplane (positive: class 1)."""
        return margin(x, self.w, self.b)


MakeLinear = Callable[..., Linear]


def _image(rng: np.random.Generator, shape: tuple[int, int, int], spread: float | None) -> np.ndarray:
    """An HxWx3 uint8 image: uniform pixels, or grey 0.5 plus Gaussian noise of std ``spread``."""
    c, h, w = shape
    if spread is None:
        return (rng.random((h, w, c)) * 255).astype(np.uint8)
    x = np.clip(0.5 + spread * rng.standard_normal(shape), 0, 1)
    return (x.transpose(1, 2, 0) * 255).round().astype(np.uint8)


@pytest.fixture(scope="session", autouse=True)
def probe_cache(tmp_path_factory):
    """The batch-size cache (``$PROBE_CACHE_DIR``) in a temporary folder: tests, and the
    subprocesses they start, never write to the real ``~/.cache/probe``."""
    import os

    folder = tmp_path_factory.mktemp("probe_cache")
    before = os.environ.get("PROBE_CACHE_DIR")
    os.environ["PROBE_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("PROBE_CACHE_DIR", None)
    else:
        os.environ["PROBE_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def make_linear(tmp_path_factory) -> MakeLinear:
    """Factory: ``make_linear(shape, seed, images=k, image_seed=s, spread=None, name=..., **convention)``.

    The weights are :func:`tests.onnx_models.linear_weights` ``(shape, seed)``; the
    keyword arguments left over (layout, channels, scale, mean, std, batch, softmax,
    extra_output, write_spec) go to :func:`tests.onnx_models.save_linear`. ``images``
    PNGs ``img0.png ...`` are drawn with ``default_rng(image_seed)`` (uniform pixels,
    or 0.5 + ``spread`` * N(0, 1)) and labelled by the exact linear rule.
    """

    def make(
        shape: tuple[int, int, int] = (3, 8, 8),
        seed: int = 0,
        *,
        images: int = 0,
        image_seed: int = 0,
        spread: float | None = None,
        name: str = "lin.onnx",
        **convention,
    ) -> Linear:
        root = tmp_path_factory.mktemp("linear")
        w, b = linear_weights(shape, seed=seed)
        model = save_linear(root / name, w, b, **convention)
        folder = None
        names, xs, labels = [], [], []
        if images:
            folder = root / "imgs"
            folder.mkdir()
            rng = np.random.default_rng(image_seed)
            for i in range(images):
                arr = _image(rng, shape, spread)
                names.append(f"img{i}.png")
                Image.fromarray(arr).save(folder / names[-1])
                xs.append(arr.astype(np.float32).transpose(2, 0, 1) / 255.0)
                labels.append(int(np.dot(w.ravel(), xs[-1].ravel()) + b > 0))
            rows = ["file,label", *(f"{n},{k}" for n, k in zip(names, labels))]
            (folder / "labels.csv").write_text("\n".join(rows) + "\n")
        x = np.stack(xs) if xs else np.zeros((0, *shape), np.float32)
        return Linear(model, w, b, folder, tuple(names), x, tuple(labels))

    return make


def _run_main(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "probe", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def _run_cli(*args):
    from probe.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def run_main() -> Callable[..., subprocess.CompletedProcess]:
    """``run_main(*args, timeout=180)``: ``python -m probe ARGS`` in a subprocess, through the
    real entry point (ProbeError -> one ``error:`` line, exit code 2)."""
    return _run_main


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(*args)``: the Typer app in process (CliRunner); a ProbeError stays an exception."""
    return _run_cli
