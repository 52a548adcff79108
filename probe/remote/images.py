"""Images as an HTTP API receives them: PNG, JPEG or raw 8-bit RGB bytes.

A canonical point (float32 RGB in [0, 1], (3, H, W)) leaves as an 8-bit image. What the
server decodes is not the point the attack asked about, so probe measures (distances,
the verdict, the saved adversarial) on what the server decoded (:meth:`ImageCodec.as_sent`):

* ``png`` and ``rgb8`` (raw ``H*W*3`` bytes): lossless, the point rounded to the 8-bit grid.
* ``jpeg`` (quality q): lossy; probe encodes the point, then decodes its own JPEG (Pillow)
  to know what the server saw. Re-encoding a decoded JPEG does not give the same bytes,
  so the bytes of every point handed out by ``as_sent`` are kept (a bounded table):
  asking about that point again sends exactly the JPEG the server decoded before.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict

import numpy as np

from probe.errors import ProbeError

FORMATS = ("png", "jpeg", "rgb8")
MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "rgb8": "application/octet-stream"}
KEEP = 65536  # JPEG bytes kept for points handed out by as_sent


class ImageCodec:
    """Encode canonical points the way one API takes them; know what it decodes."""

    def __init__(self, fmt: str = "png", quality: int = 90) -> None:
        fmt = str(fmt).lower().replace("jpg", "jpeg")
        if fmt not in FORMATS:
            raise ProbeError(f"image format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if fmt == "jpeg" and not (isinstance(quality, int) and 1 <= quality <= 100):
            raise ProbeError(f"JPEG quality must be an integer in [1, 100], got {quality!r}")
        self.format, self.quality = fmt, int(quality)
        self.media_type = MEDIA[fmt]
        self._sent: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """How records name the encoding: ``png``, ``rgb8`` or ``jpeg:q90``."""
        return f"jpeg:q{self.quality}" if self.format == "jpeg" else self.format

    def encode(self, x: np.ndarray) -> bytes:
        """The bytes of one canonical point (3, H, W)."""
        if self.format == "jpeg":
            with self._lock:
                known = self._sent.get(_digest(x))
            if known is not None:
                return known
        pixels = to_uint8(x)
        if self.format == "rgb8":
            return pixels.tobytes()
        from PIL import Image

        out = io.BytesIO()
        if self.format == "png":
            Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
        else:
            Image.fromarray(pixels).save(out, format="JPEG", quality=self.quality)
        return out.getvalue()

    def as_sent(self, x: np.ndarray) -> np.ndarray:
        """Canonical points (N, 3, H, W), or one point (3, H, W), as the server decodes them."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            return self.as_sent(x[None])[0]
        if self.format != "jpeg":
            return (to_uint8_batch(x).transpose(0, 3, 1, 2) / np.float32(255.0)).astype(np.float32)
        return np.stack([self._decoded(p) for p in x]) if len(x) else x.copy()

    def _decoded(self, point: np.ndarray) -> np.ndarray:
        data = self.encode(point)
        seen = decode(data)
        with self._lock:
            self._sent[_digest(seen)] = data
            self._sent.move_to_end(_digest(seen))
            while len(self._sent) > KEEP:
                self._sent.popitem(last=False)
        return seen


def to_uint8(x: np.ndarray) -> np.ndarray:
    """One canonical point (3, H, W) as an 8-bit H x W x 3 image (rounded to the nearest level)."""
    return np.ascontiguousarray(np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0))


def to_uint8_batch(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def decode(data: bytes) -> np.ndarray:
    """An encoded image (PNG or JPEG bytes) as a canonical point (3, H, W) float32."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return (pixels.astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1).copy()


def _digest(x: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(x, dtype=np.float32).tobytes(), digest_size=16).digest()
