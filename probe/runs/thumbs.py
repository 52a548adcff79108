"""Pictures of one adversarial: original, adversarial and the perturbation, amplified.

Images are canonical (3, H, W) float arrays in [0, 1]. The perturbation is shown as
0.5 + amplify * (x_adv - x_o), with ``amplify`` chosen so that the largest change spans
half the range (grey = no change); the factor is always stated beside the picture.
Small images are enlarged with nearest-neighbour pixels (a CIFAR image is 32 px).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Canonical (3, H, W) [0, 1] -> (H, W, 3) uint8."""
    return (np.clip(x, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def amplification(x0: np.ndarray, x_adv: np.ndarray) -> float:
    """The factor that makes the largest change of the perturbation span half the range."""
    peak = float(np.max(np.abs(np.asarray(x_adv, dtype=np.float64) - x0)))
    return 0.5 / peak if peak > 0 else 1.0


def perturbation(x0: np.ndarray, x_adv: np.ndarray, amplify: float | None = None) -> tuple[np.ndarray, float]:
    """(0.5 + amplify * (x_adv - x_o), amplify) as a canonical image."""
    amplify = amplify or amplification(x0, x_adv)
    return 0.5 + amplify * (np.asarray(x_adv, dtype=np.float32) - x0), amplify


def resized(x: np.ndarray, size: int) -> Image.Image:
    """A canonical image as a PIL image whose longer side is ``size`` (nearest when enlarging)."""
    img = Image.fromarray(to_uint8(x))
    w, h = img.size
    scale = size / max(w, h)
    method = Image.NEAREST if scale >= 1 else Image.LANCZOS
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), method)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(img: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


def compare_panel(x0: np.ndarray, x_adv: np.ndarray, *, amplify: float | None = None, size: int = 192) -> Image.Image:
    """original | adversarial | perturbation side by side, each at least ``size`` px, labelled."""
    diff, amplify = perturbation(x0, x_adv, amplify)
    side = max(size, *x0.shape[1:])
    tiles = [resized(x, side) for x in (x0, x_adv, diff)]
    w, h = tiles[0].size
    gap, caption = 6, 18
    panel = Image.new("RGB", (3 * w + 2 * gap, h + caption), "white")
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    l2 = float(np.linalg.norm((np.asarray(x_adv, dtype=np.float64) - x0).ravel()))
    names = ("original", f"adversarial (L2 {l2:.3g})", f"perturbation x{amplify:.3g}")
    for i, (tile, name) in enumerate(zip(tiles, names)):
        panel.paste(tile, (i * (w + gap), caption))
        draw.text((i * (w + gap) + 2, 3), name, fill="black", font=font)
    return panel
