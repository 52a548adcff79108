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
from typing import Protocol, Sequence

import numpy as np

from probe.errors import ProbeError
from probe.interrupt import checkpoint
from probe.runtime import Runtime
from probe.smoothing.noise import NormalSampler
from probe.validate import check_n, check_sigma


class Stopper(Protocol):
    """What :meth:`SmoothedClassifier.decide` asks: how many more votes (k,) the points of
    vote counts (k, K) need before their answer of a full vote of n is known (0: decided)."""

    def needed(self, votes: np.ndarray, n: int) -> np.ndarray: ...


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
    early_stop : answer the oracle's booleans (:class:`probe.oracle.Oracle`, the engine and
        :func:`probe.oracle.estimate_p_adv`) with :meth:`decide`, votes that stop as soon as
        the answer is known, instead of the full n (same answer distribution, fewer
        inferences). Only with noise and n > 1. Vote counts (:meth:`votes`: CERTIFY, the
        clean label) are always full.

    ``random``: whether g's answers are random (sigma > 0, or a runtime that says it is
    ``defended``: an endpoint that smooths itself, each of whose answers is one evaluation
    of its own g_{sigma,n}); the verdict's sequential tests take one evaluation when not.

    runtime is a :class:`probe.runtime.Runtime` or any object with its ``labels(x)``,
    ``input_shape``, ``num_classes`` and ``batch_size``.

    Noise (NumPy path): :class:`probe.smoothing.noise.NormalSampler`, drawn from each request's own
    generator row by row straight into the batch buffer, so a request's votes depend only
    on its generator, never on the batch size or on the other requests of a call.
    Instrumentation: ``noise_seconds`` (time spent drawing noise and adding the points).
    """

    def __init__(
        self, runtime: Runtime, sigma: float, n: int, *, in_graph: bool | None = None, early_stop: bool = True
    ) -> None:
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
            info = getattr(runtime, "info", None)
            in_graph = bool(getattr(runtime, "on_cuda", False)) and not getattr(info, "fixed_batch", None)
        self.in_graph = bool(in_graph) and self.sigma > 0
        self._graph = None
        self.early_stop = bool(early_stop) and self.sigma > 0 and self.n > 1
        self.random = self.sigma > 0 or bool(getattr(runtime, "defended", False))

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
        if self.in_graph and self._smoother() is not None:
            return self._graph.votes(requests, n, self.sigma)
        return self._count([(points, rng, n) for points, rng in requests])

    def decide(
        self, requests: Sequence[tuple[np.ndarray, Sequence[np.random.Generator], Stopper]], n: int | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Votes drawn in rounds, each point's only until its answer is decided.

        requests : [(points (k, C, H, W), streams, stopper), ...]: ``streams`` holds one
            generator a point (:meth:`point_streams`), ``stopper.needed(counts, n)`` the
            votes each point still needs before its answer is known (0: decided; see
            :meth:`probe.oracle.Criterion.needed`).
        Each round draws, for every undecided point of every request, the fewest votes that
        could decide it, all in one :meth:`votes`-like pass (the model sees the undecided
        points of all requests together), and stops a point at the first vote that
        decides it. A point's votes depend only on its own stream.
        Returns [(counts (k, num_classes) int64, votes drawn (k,) int64), ...].
        """
        n = self.n if n is None else (1 if self.sigma == 0 else int(n))
        counts = [np.zeros((len(points), self.num_classes), dtype=np.int64) for points, _, _ in requests]
        while True:
            segments, owners = [], []
            for r, (points, streams, stopper) in enumerate(requests):
                if not len(points):
                    continue
                need = np.asarray(stopper.needed(counts[r], n), dtype=np.int64)
                for j in np.flatnonzero(need > 0):
                    segments.append((points[j : j + 1], streams[j], int(need[j])))
                    owners.append((r, j))
            if not segments:
                return [(c, c.sum(axis=1)) for c in counts]
            for (r, j), got in zip(owners, self._segment_votes(segments)):
                counts[r][j] += got[0]

    @staticmethod
    def point_streams(rng: np.random.Generator, k: int) -> list[np.random.Generator]:
        """One generator a point for :meth:`decide`, seeded by k raw words of ``rng`` (in order)."""
        words = rng.bit_generator.random_raw(k) if k else []
        return [np.random.Generator(np.random.PCG64(int(w))) for w in np.atleast_1d(words)]

    def _segment_votes(self, segments: list[tuple[np.ndarray, np.random.Generator, int]]) -> list[np.ndarray]:
        """Counts of (points, rng, copies) segments, one model pass (in graph: one per copy count)."""
        if not (self.in_graph and self._smoother() is not None):
            return self._count(segments)
        out: list[np.ndarray] = [np.empty(0)] * len(segments)
        groups: dict[int, list[int]] = {}
        for i, (_, _, m) in enumerate(segments):
            groups.setdefault(m, []).append(i)
        for m, members in groups.items():
            got = self._graph.votes([segments[i][:2] for i in members], m, self.sigma)
            for i, counts in zip(members, got):
                out[i] = counts
        return out

    def _count(self, segments: list[tuple[np.ndarray, np.random.Generator, int]]) -> list[np.ndarray]:
        """Vote counts of segments (points (k, C, H, W), rng, copies a point), NumPy noise.

        All rows of all segments go through the model in full batches; each segment's
        noise rows are drawn from its own generator, point after point, copy after copy.
        """
        sizes = [len(p) * m for p, _, m in segments]
        total = sum(sizes)
        k_classes = self.num_classes
        # counts are accumulated batch by batch: memory stays O(points x classes) for any n
        out = [np.zeros((len(p), k_classes), dtype=np.int64) for p, _, _ in segments]
        batch = self.runtime.batch_size
        if self.sigma > 0:
            buf = self._batch_buffer(min(batch, total))
        ends = np.cumsum(sizes)
        pos = 0  # global row index
        while pos < total:
            if pos:
                checkpoint()  # a deferred Ctrl-C stops a long call (CERTIFY's n rows) between batches
            end = min(pos + batch, total)
            parts = list(_segment_indices(ends, pos, end))
            if self.sigma == 0:
                labels = self._plain_rows(segments, parts, end - pos)
            else:
                self._fill_noisy(buf, segments, parts)
                labels = self.runtime.labels(buf[: end - pos])
            at = 0
            for index, lo, hi in parts:
                # row r of this segment belongs to point r // m: offset its label into that point's bins
                m = segments[index][2]
                first = lo // m
                rows = np.arange(lo, hi) // m - first
                lab = np.asarray(labels[at : at + hi - lo], dtype=np.int64) + rows * k_classes
                span = (hi - 1) // m - first + 1
                out[index][first : first + span] += np.bincount(lab, minlength=span * k_classes).reshape(
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

    def _plain_rows(self, segments, parts, rows: int) -> np.ndarray:
        # sigma = 0 means n = 1: rows are the points themselves
        chunks = [segments[i][0][lo:hi] for i, lo, hi in parts]
        if len(chunks) == 1:
            return self.runtime.labels(chunks[0])
        buf = self._batch_buffer(rows)  # gather into the reused buffer (no fresh 38 MB array a call)
        at = 0
        for chunk in chunks:
            buf[at : at + len(chunk)] = chunk
            at += len(chunk)
        return self.runtime.labels(buf[:at])

    def _fill_noisy(self, buf: np.ndarray, segments, parts) -> None:
        start = time.perf_counter()
        at = 0
        d = int(np.prod(buf.shape[1:]))
        flat = buf.reshape(len(buf), d)
        for index, seg_start, seg_end in parts:
            points, rng, m = segments[index]
            rows = seg_end - seg_start
            first, last = seg_start // m, (seg_end - 1) // m
            base = np.ascontiguousarray(points[first : last + 1], dtype=np.float32).reshape(-1, d)
            rowpoint = np.arange(seg_start, seg_end) // m - first
            self._sampler.fill(rng, flat[at : at + rows], self.sigma, base, rowpoint)
            at += rows
        self.noise_seconds += time.perf_counter() - start

    def _smoother(self):
        """The in-graph session (built once), or None when it was chosen automatically and
        cannot be built (then the NumPy path is used from here on)."""
        if self._graph is None:
            from probe.smoothing.graph import GraphSmoother

            try:
                self._graph = GraphSmoother(self.runtime)
            except ProbeError:
                if not self._auto:
                    raise
                self.in_graph = False  # chosen automatically: fall back to the NumPy path
                return None
        return self._graph


def _segment_indices(ends: np.ndarray, pos: int, end: int):
    """(segment index, first row, last row) of each segment overlapping global rows [pos, end);
    ``ends`` holds the cumulative row counts of the segments."""
    i = int(np.searchsorted(ends, pos, side="right"))
    while i < len(ends):
        start = int(ends[i - 1]) if i else 0
        if start >= end:
            return
        lo, hi = max(pos, start), min(end, int(ends[i]))
        if lo < hi:
            yield i, lo - start, hi - start
        i += 1
