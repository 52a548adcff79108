"""The query-only oracle: a (smoothed) classifier that answers booleans and counts every call.

* :class:`SmoothedClassifier` is the defended classifier g_{sigma,n}: for each
  query it classifies n noisy copies ``x + sigma N(0, I)`` (noise in canonical
  [0, 1] space, before any normalization, not clipped, as in Cohen et al.) and
  returns the vote counts. sigma = 0 is the plain model (one copy, no noise).
  Noise is float32 (:mod:`probe.noise`: Box-Muller on raw 64-bit words, about
  3x faster than ``standard_normal``), drawn chunk by chunk straight into the
  batch buffer, so memory stays bounded for any n (n = 100,000 included). On
  CUDA, noise, model and vote run in one ONNX Runtime session instead
  (:mod:`probe.gpu_graph`).
* :class:`Criterion` turns vote counts into "adversarial?" booleans.
* :class:`Oracle` is what an attacker gets: booleans only, a hard query budget,
  queries (attacker's calls, one per image) and inferences (model runs, n per
  query) counted separately, and its own seeded noise stream.

Tie rule of the majority vote: the lowest class index wins (``numpy.argmax``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from probe.errors import ProbeError
from probe.interrupt import checkpoint
from probe.noise import NormalSampler
from probe.runtime import Runtime
from probe.smoothing import level_vote_count


class BudgetExceeded(ProbeError):
    """The oracle refused a query beyond its budget."""


def majority(votes: np.ndarray) -> np.ndarray:
    """Majority-vote labels of vote-count rows; ties go to the lowest class index."""
    return np.argmax(votes, axis=-1)


@dataclass(frozen=True)
class Criterion:
    """When is a point adversarial?

    label : the smoothed label of the original (untargeted) or the target class (targeted).
    targeted : aim at ``label`` instead of away from it.
    pa : level P_a of the seed paper's eq. (4), simulated as "at least ceil(n P_a)
        micro-decisions wrong" (untargeted) or "on the target" (targeted). None uses
        the majority-vote label instead.
    """

    label: int
    targeted: bool = False
    pa: float | None = None

    def __post_init__(self) -> None:
        if self.pa is not None and not 0.0 < self.pa <= 1.0:
            raise ProbeError(f"P_a must be in (0, 1], got {self.pa}")

    def __call__(self, votes: np.ndarray) -> np.ndarray:
        votes = np.atleast_2d(votes)
        n = int(votes[0].sum())
        if self.pa is None:
            top = majority(votes)
            return top == self.label if self.targeted else top != self.label
        need = level_vote_count(n, self.pa)
        hits = votes[:, self.label] if self.targeted else n - votes[:, self.label]
        return hits >= need


class SmoothedClassifier:
    """g_{sigma,n}: vote counts of n noisy copies per point (sigma = 0: the plain model).

    Parameters
    ----------
    runtime : the model.
    sigma : noise standard deviation in canonical [0, 1] space (0 = no smoothing).
    n : noisy copies per query (forced to 1 when sigma = 0).
    in_graph : draw the noise, run the model and count the votes in one ONNX Runtime
        session (:mod:`probe.gpu_graph`), so that only points go in and vote counts come
        out. Default: when the runtime's session really runs on CUDA. Its noise stream
        differs from the NumPy one (same distribution, see :mod:`probe.gpu_graph`).

    Noise (NumPy path): :class:`probe.noise.NormalSampler`, drawn from each request's own
    generator row by row straight into the batch buffer, so a request's votes depend only
    on its generator, never on the batch size or on the other requests of a call.
    Instrumentation: ``noise_seconds`` (time spent drawing noise and adding the points).
    """

    def __init__(self, runtime: Runtime, sigma: float, n: int, in_graph: bool | None = None) -> None:
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ProbeError(f"sigma must be >= 0, got {sigma}")
        if n < 1:
            raise ProbeError(f"n must be >= 1, got {n}")
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
        labels = np.empty(total, dtype=np.int64)
        batch = self.runtime.batch_size
        if self.sigma > 0:
            buf = self._batch_buffer(min(batch, total))
        pos = 0  # global row index
        while pos < total:
            if pos:
                checkpoint()  # a deferred Ctrl-C stops a long call (CERTIFY's n rows) between batches
            end = min(pos + batch, total)
            if self.sigma == 0:
                labels[pos:end] = self._plain_rows(requests, sizes, pos, end, n)
            else:
                self._fill_noisy(buf, requests, sizes, pos, end, n)
                labels[pos:end] = self.runtime.labels(buf[: end - pos])
            pos = end
        out, start = [], 0
        k_classes = self.num_classes
        for (points, _), size in zip(requests, sizes):
            k = len(points)
            # row r of this request belongs to point r // n: offset its label into that point's bins
            lab = labels[start : start + size] + np.repeat(np.arange(k, dtype=np.int64) * k_classes, n)
            out.append(np.bincount(lab, minlength=k * k_classes).reshape(k, k_classes))
            start += size
        return out

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
            from probe.gpu_graph import GraphSmoother

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


class Oracle:
    """What an attacker gets: one boolean per point, within a hard budget.

    Parameters
    ----------
    classifier : the (smoothed) classifier.
    criterion : the adversarial criterion.
    budget : maximum number of queries (points asked); the next one is refused.
    rng : the oracle's own noise stream (seeded Generator).
    """

    def __init__(
        self,
        classifier: SmoothedClassifier,
        criterion: Criterion,
        budget: int,
        rng: np.random.Generator,
    ) -> None:
        if budget < 0:
            raise ProbeError(f"budget must be >= 0, got {budget}")
        self.classifier = classifier
        self.criterion = criterion
        self.budget = int(budget)
        self.rng = rng
        self.queries = 0
        self.inferences = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.queries

    def charge(self, k: int) -> None:
        """Count k queries, or refuse them all if that would pass the budget."""
        if k > self.remaining:
            raise BudgetExceeded(f"query budget of {self.budget} exceeded ({self.queries} used, {k} asked)")
        self.queries += k
        self.inferences += k * self.classifier.n

    def judge(self, votes: np.ndarray) -> np.ndarray:
        return self.criterion(votes)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float32)
        self.charge(len(points))
        return self.judge(self.classifier.votes([(points, self.rng)])[0])


def estimate_p_adv(
    classifier: SmoothedClassifier,
    criterion: Criterion,
    x: np.ndarray,
    rng: np.random.Generator,
    samples: int = 100,
) -> float:
    """Probability that the defended classifier calls ``x`` adversarial.

    ``samples`` fresh evaluations of g_{sigma,n}(x), not charged to any attacker.
    Without smoothing the answer is deterministic: 0 or 1 from one evaluation.
    """
    if classifier.sigma == 0:
        samples = 1
    points = np.broadcast_to(np.asarray(x, dtype=np.float32), (samples, *np.shape(x)))
    return float(np.mean(criterion(classifier.votes([(points, rng)])[0])))
