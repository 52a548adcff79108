"""The defended classifier g_{sigma,n}: vote counts of n noisy copies per point.

Noise is added in canonical [0, 1] space, before any normalization, not clipped (as
in Cohen et al.). It is float32 (:mod:`probe.smoothing.noise`: Box-Muller on raw
64-bit words, about 3x faster than ``standard_normal``), drawn chunk by chunk straight
into the batch buffer, so memory stays bounded for any n (n = 100,000 included). On
CUDA, noise, model and vote run in one ONNX Runtime session instead
(:mod:`probe.smoothing.graph`).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from probe.errors import ProbeError
from probe.interrupt import checkpoint
from probe.runtime import Runtime
from probe.smoothing.noise import NormalSampler
from probe.validate import check_n, check_sigma


class SmoothedClassifier:
    """g_{sigma,n}: vote counts of n noisy copies per point (sigma = 0: the plain model).

    Parameters
    ----------
    runtime : the model.
    sigma : noise standard deviation in canonical [0, 1] space (0 = no smoothing).
    n : noisy copies per query (forced to 1 when sigma = 0).
    in_graph : draw the noise, run the model and count the votes in one ONNX Runtime
        session (:mod:`probe.smoothing.graph`), so that only points go in and vote counts come
        out. Default: when the runtime's session really runs on CUDA. Its noise stream
        differs from the NumPy one (same distribution, see :mod:`probe.smoothing.graph`).

    Noise (NumPy path): :class:`probe.smoothing.noise.NormalSampler`, drawn from each request's own
    generator row by row straight into the batch buffer, so a request's votes depend only
    on its generator, never on the batch size or on the other requests of a call.
    Instrumentation: ``noise_seconds`` (time spent drawing noise and adding the points).
    """

    def __init__(self, runtime: Runtime, sigma: float, n: int, *, in_graph: bool | None = None) -> None:
        sigma = check_sigma(sigma)
        n = check_n(n)
        self.runtime = runtime
        self.sigma = float(sigma)
        self.n = 1 if sigma == 0 else int(n)
        self._buffer: np.ndarray | None = None
        self._sampler = NormalSampler()
        self.noise_seconds = 0.0
        self._auto = in_graph is None
        if in_graph is None:
            in_graph = runtime.on_cuda and not runtime.info.fixed_batch
        self.in_graph = bool(in_graph) and self.sigma > 0
        self._graph = None

    @property
    def num_classes(self) -> int:
        return self.runtime.num_classes

    def votes(
        self, requests: Sequence[tuple[np.ndarray, np.random.Generator]], n: int | None = None
    ) -> list[np.ndarray]:
        """Vote counts for several batches of points, each with its own noise stream.

        requests : [(points (k, C, H, W), rng), ...]; all rows of all requests go
            through the model in full batches.
        n : copies per point (default ``self.n``).
        Returns one (k, num_classes) int64 array per request.
        """
        n = self.n if n is None else (1 if self.sigma == 0 else int(n))
        if self.in_graph:
            return self._graph_votes(requests, n)
        sizes = [len(p) * n for p, _ in requests]
        total = sum(sizes)
        k_classes = self.num_classes
        # counts are accumulated batch by batch: memory stays O(points x classes) for any n
        out = [np.zeros((len(p), k_classes), dtype=np.int64) for p, _ in requests]
        batch = self.runtime.batch_size
        if self.sigma > 0:
            buf = self._batch_buffer(min(batch, total))
        pos = 0  # global row index
        while pos < total:
            if pos:
                checkpoint()  # a deferred Ctrl-C stops a long call (CERTIFY's n rows) between batches
            end = min(pos + batch, total)
            if self.sigma == 0:
                labels = self._plain_rows(requests, sizes, pos, end, n)
            else:
                self._fill_noisy(buf, requests, sizes, pos, end, n)
                labels = self.runtime.labels(buf[: end - pos])
            at = 0
            for req_index, lo, hi in _segment_indices(sizes, pos, end):
                # row r of this request belongs to point r // n: offset its label into that point's bins
                first = lo // n
                rows = np.arange(lo, hi) // n - first
                lab = np.asarray(labels[at : at + hi - lo], dtype=np.int64) + rows * k_classes
                span = (hi - 1) // n - first + 1
                out[req_index][first : first + span] += np.bincount(lab, minlength=span * k_classes).reshape(
                    span, k_classes
                )
                at += hi - lo
            pos = end
        return out

    def classify(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """g_{sigma,n} of each point: the plurality label of its n noisy copies.

        points : (k, C, H, W), or one (C, H, W) point. Returns (k,) int64 labels (ties: the
        lowest class index), or one int for one point.
        """
        points = np.asarray(points, dtype=np.float32)
        single = points.ndim == 3
        labels = np.argmax(self.votes([(points[None] if single else points, rng)])[0], axis=1)
        return int(labels[0]) if single else labels

    def _batch_buffer(self, rows: int) -> np.ndarray:
        shape = (rows, *self.runtime.input_shape)
        if self._buffer is None or self._buffer.shape[0] < rows:
            self._buffer = np.empty(shape, dtype=np.float32)
        return self._buffer

    def _plain_rows(self, requests, sizes, pos: int, end: int, n: int) -> np.ndarray:
        # sigma = 0 means n = 1: rows are the points themselves
        parts = [requests[i][0][lo:hi] for i, lo, hi in _segment_indices(sizes, pos, end)]
        if len(parts) == 1:
            return self.runtime.labels(parts[0])
        buf = self._batch_buffer(end - pos)  # gather into the reused buffer (no fresh 38 MB array a call)
        at = 0
        for part in parts:
            buf[at : at + len(part)] = part
            at += len(part)
        return self.runtime.labels(buf[:at])

    def _fill_noisy(self, buf: np.ndarray, requests, sizes, pos: int, end: int, n: int) -> None:
        start = time.perf_counter()
        at = 0
        d = int(np.prod(buf.shape[1:]))
        flat = buf.reshape(len(buf), d)
        for req_index, seg_start, seg_end in _segment_indices(sizes, pos, end):
            points, rng = requests[req_index]
            rows = seg_end - seg_start
            first, last = seg_start // n, (seg_end - 1) // n
            base = np.ascontiguousarray(points[first : last + 1], dtype=np.float32).reshape(-1, d)
            index = np.arange(seg_start, seg_end) // n - first
            self._sampler.fill(rng, flat[at : at + rows], self.sigma, base, index)
            at += rows
        self.noise_seconds += time.perf_counter() - start

    def _graph_votes(self, requests, n: int) -> list[np.ndarray]:
        if self._graph is None:
            from probe.smoothing.graph import GraphSmoother

            try:
                self._graph = GraphSmoother(self.runtime)
            except ProbeError:
                if not self._auto:
                    raise
                self.in_graph = False  # chosen automatically: fall back to the NumPy path
                return self.votes(requests, n)
        return self._graph.votes(requests, n, self.sigma)


def _segment_indices(sizes: list[int], pos: int, end: int):
    """(request index, first row, last row) of each request overlapping global rows [pos, end)."""
    start = 0
    for i, size in enumerate(sizes):
        lo, hi = max(pos, start), min(end, start + size)
        if lo < hi:
            yield i, lo - start, hi - start
        start += size
