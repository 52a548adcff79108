"""Fast float32 Gaussian noise for the smoothed oracle: Box-Muller on raw 64-bit words.

NumPy's ``Generator.standard_normal(dtype=float32)`` costs about 10 ns a sample on
the 2-core reference CPU, which at ImageNet size (150,528 values an image) is a
quarter of EfficientNet-Lite0's inference time. This sampler draws raw 64-bit
words from the request's own bit generator (``rng.bit_generator.random_raw``)
and turns each word into two normals with the Box-Muller transform, in float32,
block by block so that its temporaries stay in cache: about 2.5-3 ns a sample.

The stream (what a seed means)
------------------------------
Noise is drawn row by row (one row = one noisy copy of an image, d values).
A row of d values consumes exactly ``h = ceil(d / 2)`` words, in order. Word j of
a row, with ``lo`` its low and ``hi`` its high 32 bits, gives

    u     = (lo + 1/2) / 2**32            in (0, 1), 2**32 equally likely values
    theta = 2 pi hi / 2**32               in [0, 2 pi)
    R     = sqrt(-2 ln u)
    z[j] = R cos(theta),   z[h + j] = R sin(theta)   (the last sine is dropped when d is odd)

so a row depends only on the words it consumed: the noise of a request is the same
however its rows are split into model batches or blocks (the oracle relies on it).

Exactness
---------
Box-Muller is exact for exact uniforms. Here:

* ``u`` lives on a grid of 2**-32 (midpoints), so R is at most
  ``sqrt(66 ln 2) = 6.774``: the tail beyond 6.774 sigma is cut. A true normal pair
  has ``R > 6.774`` with probability ``2**-33 = 1.2e-10``; one coordinate has
  ``|z| > 6.774`` with probability 1.3e-11. Below the cut the distribution of R is
  exact up to the 2**-32 grid (and float32 rounding of u: CDF error < 3e-8).
* ``theta`` is computed in float32 (24-bit resolution): CDF error < 6e-8.
* ``log``, ``sqrt``, ``cos``, ``sin`` are NumPy's float32 SIMD routines (a few ulp).

So the samples are N(0, 1) up to a 6.77 sigma tail cut and float32 rounding,
which no test of a vote count at any n used in practice can detect.
"""

from __future__ import annotations

import math

import numpy as np

#: largest |z| the sampler can return (in units of sigma)
TAIL = math.sqrt(66.0 * math.log(2.0))
#: probability that a true N(0, 1) pair has radius beyond TAIL (what the cut removes)
TAIL_PAIR_PROBABILITY = 2.0**-33

_U_SCALE = np.float32(2.0**-32)
_U_OFFSET = np.float32(2.0**-33)
_ANGLE_SCALE = np.float32(2.0 * math.pi * 2.0**-32)

#: words per block: temporaries of a block (about 20 bytes a word) stay in L2
BLOCK_WORDS = 1 << 14


def words_per_row(d: int) -> int:
    """Raw 64-bit words one row of d values consumes."""
    return (d + 1) // 2


class NormalSampler:
    """Box-Muller sampler with reusable block workspaces (not thread-safe: one per thread).

    ``fill(bitgen, out, sigma, base, index)`` writes ``base[index[i]] + sigma z_i`` into
    row i of ``out`` (or just ``sigma z_i`` without base), drawing the rows' words from
    ``bitgen`` in order.
    """

    def __init__(self, block_words: int = BLOCK_WORDS) -> None:
        self.block_words = int(block_words)
        self._ws: dict[str, np.ndarray] = {}

    def _work(self, name: str, size: int) -> np.ndarray:
        buf = self._ws.get(name)
        if buf is None or buf.size < size:
            buf = np.empty(max(size, self.block_words), dtype=np.float32)
            self._ws[name] = buf
        return buf[:size]

    def _radius_angle(self, bitgen, count: int, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sigma R, cos theta, sin theta) of the next ``count`` words (flat workspace views)."""
        words = bitgen.random_raw(count)
        halves = words.view(np.uint32)  # little-endian: [lo0, hi0, lo1, hi1, ...]
        lo = halves[0::2]
        hi = halves[1::2]
        r = self._work("r", count)
        theta = self._work("theta", count)
        trig = self._work("trig", count)
        np.multiply(lo, _U_SCALE, out=r, dtype=np.float32, casting="unsafe")
        r += _U_OFFSET
        np.log(r, out=r)
        r *= np.float32(-2.0 * sigma * sigma)
        np.sqrt(r, out=r)
        np.multiply(hi, _ANGLE_SCALE, out=theta, dtype=np.float32, casting="unsafe")
        np.cos(theta, out=trig)
        np.sin(theta, out=theta)
        return r, trig, theta  # radius, cos, sin

    def fill(
        self,
        bitgen: np.random.BitGenerator,
        out: np.ndarray,
        sigma: float = 1.0,
        base: np.ndarray | None = None,
        index: np.ndarray | None = None,
    ) -> np.ndarray:
        """Fill ``out`` (rows, d) float32 with ``base[index] + sigma N(0, I)``, row after row.

        base : (k, d) points added to the noise; ``index`` (rows,) says which point
            each row belongs to (default: row i gets base[i], or base[0] if k == 1).
        """
        if isinstance(bitgen, np.random.Generator):
            bitgen = bitgen.bit_generator
        if out.dtype != np.float32 or out.ndim != 2 or not out.flags.c_contiguous:
            raise ValueError("out must be a C-contiguous (rows, d) float32 array")
        rows, d = out.shape
        if rows == 0 or d == 0:
            return out
        if base is not None:
            base = base.reshape(len(base), -1)
            if base.shape[1] != d:
                raise ValueError(f"base rows have {base.shape[1]} values, out rows {d}")
            if index is None:
                index = np.zeros(rows, np.intp) if len(base) == 1 else np.arange(rows)
            index = np.asarray(index)
        h = words_per_row(d)
        tail = d - h  # values taken from the sines (h or h - 1)
        if h >= self.block_words // 2:
            # large rows (ImageNet size): blocks of words inside each row
            for i in range(rows):
                row = out[i]
                src = None if base is None else base[index[i]]
                for a in range(0, h, self.block_words):
                    b = min(a + self.block_words, h)
                    r, c, s = self._radius_angle(bitgen, b - a, sigma)
                    np.multiply(r, c, out=row[a:b])
                    bt = min(b, tail)
                    if bt > a:
                        np.multiply(r[: bt - a], s[: bt - a], out=row[h + a : h + bt])
                    if src is not None:
                        row[a:b] += src[a:b]
                        if bt > a:
                            row[h + a : h + bt] += src[h + a : h + bt]
            return out
        per_block = max(1, self.block_words // h)
        for i0 in range(0, rows, per_block):
            i1 = min(i0 + per_block, rows)
            k = i1 - i0
            r, c, s = self._radius_angle(bitgen, k * h, sigma)
            r, c, s = r.reshape(k, h), c.reshape(k, h), s.reshape(k, h)
            block = out[i0:i1]
            np.multiply(r, c, out=block[:, :h])
            np.multiply(r[:, :tail], s[:, :tail], out=block[:, h:])
            if base is not None:
                idx = index[i0:i1]
                if (idx == idx[0]).all():  # the block's rows are copies of one point
                    block += base[idx[0]]
                else:
                    block += base[idx]
        return out


_default = NormalSampler()


def normal(bitgen, shape, sigma: float = 1.0) -> np.ndarray:
    """A new float32 array of ``sigma N(0, 1)`` values of the given shape.

    ``shape`` is (rows, *row_shape) (a 1-d shape is one row); each row consumes
    ``words_per_row(prod(row_shape))`` words, as in the oracle.
    """
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    rows = shape[0] if len(shape) > 1 else 1
    d = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    out = np.empty((rows, d), dtype=np.float32)
    NormalSampler().fill(bitgen, out, sigma)
    return out.reshape(shape)
