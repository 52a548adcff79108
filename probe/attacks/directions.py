"""The random directions of the attacks, from orthonormal DCT bases (NumPy and SciPy only).

Both attacks that need many random directions draw them from a basis ``s * DCT_k``
(s a random sign vector, DCT_k an orthonormal DCT-II basis vector), in a random order,
never repeated until the basis is used up (:class:`SignedOrder`); such directions are
dense, random-looking and exactly orthogonal to each other.

* HSJA's probes (:func:`unit_probes`): :class:`OrthoProbes`, the separable DCT of the
  (C, H, W) image (outer products of three small 1-D DCT matrices, :func:`dct_matrix`),
  or i.i.d. Gaussian unit directions (the reference).
* SurFree's directions (:func:`band_bases`): :class:`BandBasis`, directions whose
  image-DCT coefficients live on one band of frequencies (:func:`zigzag_mask`), either
  ternary {-1, 0, +1} coefficients (the paper) or the signed DCT basis of the band's
  coefficient list (one row at a time, :func:`dct_row`: the band can hold 10^5
  coefficients, too many for a matrix), mapped back by an inverse DCT;
  :class:`PastDirections` makes a draw unit and orthogonal to the current direction
  and, for ternary draws, to the last ones (Gram-Schmidt).

:func:`dct_matrix` and :func:`dct_row` compute the same basis two ways (float64 then
float32, and float32 with the phase reduced exactly); they differ only at the basis'
exact zeros (about 1e-16 against 1e-14), and each is kept so that a seed gives the same
queries as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import fft

MAX_DCT_SIDE = 4096  # larger sides: i.i.d. Gaussian probes (a 1-D DCT matrix per side is built)
MIN_SUBSPACE_SIDE = 16  # the low-frequency subspace keeps at least this many frequencies a side


def chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) shape the DCT works on: the shape itself, or (1, 1, d) for other ranks."""
    shape = tuple(int(n) for n in shape)
    return shape if len(shape) == 3 else (1, 1, int(np.prod(shape)))  # type: ignore[return-value]


def dct_matrix(n: int) -> np.ndarray:
    """Rows: the orthonormal DCT-II basis vectors of length n (float32)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.astype(np.float32)


def dct_row(m: int, k: int) -> np.ndarray:
    """Row k of the orthonormal DCT-II matrix of size m, float32, in O(m): the phase of
    cos(pi (2j + 1) k / 2m) reduced exactly modulo 4m (integers), then a float32 cos of
    an angle in [0, 2 pi)."""
    phase = ((2 * np.arange(m, dtype=np.int64) + 1) * k) % (4 * m)
    vals = phase.astype(np.float32)
    vals *= np.float32(np.pi / (2 * m))
    np.cos(vals, out=vals)
    vals *= np.float32(math.sqrt((1.0 if k == 0 else 2.0) / m))
    return vals


class SignedOrder:
    """The n vectors of a basis in a random order, with random signs (``signs``, float32
    +-1 of ``sign_shape``): the order, then the signs, are drawn anew when it is used up."""

    def __init__(self, n: int, sign_shape: tuple[int, ...] | None = None, sign_dtype: type = np.int64) -> None:
        self.n = int(n)
        self.sign_shape = (self.n,) if sign_shape is None else tuple(sign_shape)
        self.sign_dtype = sign_dtype
        self.order: np.ndarray | None = None
        self.signs: np.ndarray | None = None
        self.pos = 0

    def take(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """The next indices, at most ``count`` (fewer at the end of a basis)."""
        if self.order is None or self.pos >= self.n:
            self.order = rng.permutation(self.n)
            self.signs = rng.integers(0, 2, size=self.sign_shape, dtype=self.sign_dtype).astype(np.float32) * 2 - 1
            self.pos = 0
        take = min(count, self.n - self.pos)
        idx = self.order[self.pos : self.pos + take]
        self.pos += take
        return idx


# -- HSJA: probes -----------------------------------------------------------------------


class OrthoProbes:
    """Unit probe directions, orthonormal within a random basis, never repeated.

    The basis is ``s * DCT_k`` (k a (c, h, w) frequency triple, s a random sign vector):
    orthonormal, dense and random-looking; a new basis (new signs, new order) is drawn
    when one is used up. Built from three small 1-D DCT matrices by outer products, so
    a batch of n probes costs O(n d).
    """

    def __init__(self, shape: tuple[int, ...], rng: np.random.Generator) -> None:
        self.shape = tuple(shape)
        self.d = int(np.prod(shape))
        self.rng = rng
        dims = chw(self.shape)
        if max(dims) > MAX_DCT_SIDE:
            raise ValueError("no separable DCT basis for this shape")
        self.dims = dims
        self.mats = [dct_matrix(n) for n in dims]
        self.basis = SignedOrder(self.d, sign_shape=dims, sign_dtype=np.int8)

    def draw(self, n: int) -> np.ndarray:
        out = np.empty((n, *self.dims), dtype=np.float32)
        filled = 0
        while filled < n:
            idx = self.basis.take(self.rng, n - filled)
            take = len(idx)
            kc, kh, kw = np.unravel_index(idx, self.dims)
            a, b, c = self.mats[0][kc], self.mats[1][kh], self.mats[2][kw]
            blk = out[filled : filled + take]
            blk[...] = a[:, :, None, None] * b[:, None, :, None]
            blk *= c[:, None, None, :]
            blk *= self.basis.signs
            filled += take
        return out.reshape(n, *self.shape)


def gaussian_probes(shape: tuple[int, ...], rng: np.random.Generator, n: int) -> np.ndarray:
    """n i.i.d. Gaussian directions of ``shape``, each scaled to unit L2 norm (float32)."""
    pts = rng.standard_normal((n, *shape), dtype=np.float32)
    norms = np.linalg.norm(pts.reshape(n, -1), axis=1).reshape(-1, *([1] * len(shape)))
    pts /= np.maximum(norms, np.float32(1e-12))
    return pts


def low_frequency_shape(
    shape: tuple[int, ...], ratio: float, min_side: int = MIN_SUBSPACE_SIDE
) -> tuple[int, int, int]:
    """(C, kh, kw): the DCT coefficients :class:`LowFrequencyProbes` keeps at ``ratio``."""
    c, h, w = chw(shape)
    kh, kw = (min(n, max(int(round(ratio * n)), min_side, 1)) for n in (h, w))
    return c, kh, kw


def probe_dim(shape: tuple[int, ...], subspace: float, min_side: int = MIN_SUBSPACE_SIDE) -> int:
    """The dimension of the space ``unit_probes(shape, ..., subspace, min_side)`` draws from."""
    if subspace < 1.0 and max(chw(shape)) <= MAX_DCT_SIDE:
        return int(np.prod(low_frequency_shape(shape, subspace, min_side)))
    return int(np.prod(shape))


class LowFrequencyProbes:
    """Unit probe directions in the low-frequency subspace of the image: i.i.d. Gaussian
    coefficients on the first ``ratio`` of each spatial side's DCT-II frequencies (at least
    ``min_side``, MIN_SUBSPACE_SIDE unless told, at most the side; all channels), mapped back by the inverse DCT
    (``A_h^T Z A_w``, two small matrices).

    The subspace has about ``C (ratio H) (ratio W)`` dimensions: the gradient of a natural-image
    classifier has most of its mass there, so that a probe there carries more of it than
    a probe drawn in the whole space (QEBA, Li et al. CVPR 2020; Guo et al. 2019).
    """

    def __init__(
        self, shape: tuple[int, ...], rng: np.random.Generator, ratio: float, min_side: int = MIN_SUBSPACE_SIDE
    ) -> None:
        self.shape = tuple(shape)
        self.rng = rng
        _, h, w = self.dims = chw(self.shape)
        self.coef_shape = low_frequency_shape(self.shape, ratio, min_side)
        kh, kw = self.coef_shape[1:]
        self.a_h = dct_matrix(h)[:kh]  # (kh, h), orthonormal rows
        self.a_w = dct_matrix(w)[:kw]  # (kw, w)

    def draw(self, n: int) -> np.ndarray:
        z = self.rng.standard_normal((n, *self.coef_shape), dtype=np.float32)
        z /= np.maximum(np.linalg.norm(z.reshape(n, -1), axis=1), np.float32(1e-12)).reshape(n, 1, 1, 1)
        out = np.matmul(np.matmul(self.a_h.T, z), self.a_w)  # (n, c, h, w), unit norm: orthonormal rows
        return np.ascontiguousarray(out, dtype=np.float32).reshape(n, *self.shape)


def unit_probes(
    shape: tuple[int, ...], rng: np.random.Generator, orthogonal: bool, subspace: float = 1.0,
    min_side: int = MIN_SUBSPACE_SIDE,
) -> Callable[[int], np.ndarray]:
    """``draw(n)``: n unit directions (n, *shape), float32: in the low-frequency subspace
    (:class:`LowFrequencyProbes`) when ``subspace < 1``, else orthonormal (:class:`OrthoProbes`)
    when asked and the shape allows, else i.i.d. Gaussian."""
    if subspace < 1.0 and max(chw(shape)) <= MAX_DCT_SIDE:
        low = LowFrequencyProbes(shape, rng, subspace, min_side)
        if low.coef_shape != chw(shape):  # else: the subspace is the whole space
            return low.draw
    if orthogonal and max(chw(shape)) <= MAX_DCT_SIDE:
        return OrthoProbes(shape, rng).draw
    return lambda n: gaussian_probes(shape, rng, n)


# -- SurFree: directions on a band of DCT frequencies ------------------------------------


def zigzag_mask(h: int, w: int, ratio: float) -> np.ndarray:
    """Boolean (h, w) mask of the first ``ratio`` of the coefficients in zig-zag order."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    s = i + j
    key = s * (h + w) + np.where(s % 2 == 0, j, i)  # alternate direction along anti-diagonals
    order = np.argsort(key.ravel(), kind="stable")
    keep = max(1, int(round(ratio * h * w)))
    mask = np.zeros(h * w, dtype=bool)
    mask[order[:keep]] = True
    return mask.reshape(h, w)


class BandBasis:
    """Unit directions whose DCT coefficients live on one band (a set of coefficients).

    "orthogonal": coefficient vectors from a random orthonormal basis of the band
    (random signs times the DCT-II basis of length m, in a random order), so that
    successive draws are exactly orthogonal; a new basis is drawn after m draws.
    "ternary": random {-1, 0, +1} coefficients (the paper).
    The coefficients are multiplied by ``weights`` and mapped back by an inverse DCT.
    """

    def __init__(self, index: np.ndarray, weights: np.ndarray, shape3: tuple[int, int, int], kind: str) -> None:
        self.index = index  # flat indices into the (C, H, W) coefficient array
        w = weights[index]
        self.weights = None if np.all(w == 1.0) else w.astype(np.float32)  # None: constant weighting
        self.shape3 = shape3
        self.kind = kind
        self.m = int(index.size)
        self.basis = SignedOrder(self.m)
        self.coef = np.zeros(int(np.prod(shape3)), dtype=np.float32)  # zero off the band, reused

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "ternary":
            vals = rng.integers(-1, 2, size=self.m).astype(np.float32)
        else:
            vals = dct_row(self.m, int(self.basis.take(rng, 1)[0]))
            vals *= self.basis.signs
        if self.weights is not None:
            vals *= self.weights
        self.coef[self.index] = vals
        v = fft.idctn(self.coef.reshape(self.shape3), axes=(-2, -1), norm="ortho", workers=1)
        return np.asarray(v, dtype=np.float32).ravel()


def band_bases(x0: np.ndarray, freq_ratio: float, weighting: str, band: str, kind: str) -> list[BandBasis]:
    """SurFree's direction generators, one per band arm: the low band (the first
    ``freq_ratio`` of each channel's zig-zag order), the full spectrum, or ("adaptive")
    the low band and the rest; ``weighting`` "tanh" weights each coefficient by
    tanh(|DCT(x0)| / its mean over the low band), "constant" by 1."""
    img = x0.reshape(chw(x0.shape))
    shape3 = img.shape
    _, h, w = shape3
    low = np.broadcast_to(zigzag_mask(h, w, freq_ratio), shape3).ravel()
    if weighting == "tanh":
        mag = np.abs(fft.dctn(img.astype(np.float64), axes=(-2, -1), norm="ortho")).ravel()
        scale = float(mag[low].mean()) if low.any() else 1.0
        weights = np.tanh(mag / max(scale, 1e-12))
    else:
        weights = np.ones(low.size)
    all_idx = np.arange(low.size)
    if band == "low":
        sets = [all_idx[low]]
    elif band == "full":
        sets = [all_idx]
    else:
        sets = [s for s in (all_idx[low], all_idx[~low]) if s.size]
    return [BandBasis(s, weights, shape3, kind) for s in sets]


class PastDirections:
    """Makes a drawn direction unit and orthogonal to the current one ``u`` and to the last
    ``n`` accepted draws (Gram-Schmidt, twice: one pass is not stable; n = 0: to u only)."""

    def __init__(self, n: int, d: int) -> None:
        self.n = int(n)
        self.rows = np.zeros((self.n, d), dtype=np.float32) if self.n else None
        self.count = 0

    def unit_orthogonal(self, v: np.ndarray, u: np.ndarray) -> np.ndarray | None:
        """v (modified in place) made orthogonal and unit, and remembered; None when
        nothing is left of it (tiny d)."""
        for _ in range(2 if self.n else 1):
            if self.n and self.count:
                hist = self.rows[: min(self.count, self.n)]
                v -= (hist @ v) @ hist
            v -= np.float32(np.dot(u, v)) * u
        nv = math.sqrt(float(np.dot(v, v)))
        if not np.isfinite(nv) or nv < 1e-6:
            return None
        v /= np.float32(nv)
        if self.n:
            self.rows[self.count % self.n] = v
            self.count += 1
        return v


class AnchoredDirections:
    """The official SurFree code's Gram-Schmidt: a draw is made orthogonal to the FIRST
    direction (the start's ``unit(x_adv - x0)``) and to the last ``n`` draws (every draw, one
    classical pass, not against the current direction), then unit, and remembered."""

    def __init__(self, n: int, first: np.ndarray) -> None:
        self.n = int(n)
        self.first = np.asarray(first, dtype=np.float32).ravel()
        self.rows: list[np.ndarray] = []

    def unit_orthogonal(self, v: np.ndarray, u: np.ndarray) -> np.ndarray | None:
        """v (modified in place) made orthogonal to the first and the last n draws and unit;
        ``u`` (the current direction) is not used. None when nothing is left of v."""
        basis = [self.first, *self.rows[-self.n :]] if self.n else [self.first]
        coef = [float(np.dot(b, v)) for b in basis]  # classical Gram-Schmidt: all against the draw
        for c, b in zip(coef, basis):
            v -= np.float32(c) * b
        nv = math.sqrt(float(np.dot(v, v)))
        if not np.isfinite(nv) or nv < 1e-6:
            return None
        v /= np.float32(nv)
        if self.n:
            self.rows.append(v.copy())
            del self.rows[: -self.n]
        return v
