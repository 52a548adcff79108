"""What ``probe serve`` records: Prometheus metrics, the JSON-lines request log, payload digests.

* :class:`Metrics`: counters and histograms in a registry of their own, served only on
  the metrics listener (``--metrics-host/--metrics-port``, loopback by default), never on
  the API port: key names appear there and nowhere else.
* :class:`RequestLog`: one JSON line per request, the file created 0600.
* :func:`payload_digest` (a request's points: a repeated id must carry the same payload),
  :func:`point_digests` (each point, exactly) and :func:`near_digests` (each point's
  average hash: near-identical points share it, which is how an attack shows in the log).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from probe.remote import need

PRIVATE = 0o600  # the keys database, its WAL files and the request log


def open_private(path: Path, mode: str = "a"):
    """Open a text file for appending, creating it 0600 (an existing file keeps its mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
    return os.fdopen(fd, mode, encoding="utf-8", buffering=1)


class Metrics:
    """The server's Prometheus metrics (queries per key name, requests per status, latency, batches)."""

    def __init__(self) -> None:
        prom = need("prometheus_client")
        self.prom = prom
        self.registry = prom.CollectorRegistry()
        self.queries = prom.Counter("probe_queries", "Points answered", ["key"], registry=self.registry)
        self.inferences = prom.Counter("probe_inferences", "Model runs (points x n)", registry=self.registry)
        self.requests = prom.Counter("probe_requests", "Inference requests by status", ["status"], registry=self.registry)
        self.latency = prom.Histogram("probe_request_seconds", "Inference request latency", registry=self.registry,
                                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))  # fmt: skip
        self.batch = prom.Histogram("probe_batch_points", "Points per merged model call", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))  # fmt: skip

    def text(self) -> bytes:
        return self.prom.generate_latest(self.registry)

    def listen(self, host: str, port: int, *, certfile: str | None = None, keyfile: str | None = None):
        """Serve ``/metrics`` on host:port in a daemon thread (prometheus_client's own server)."""
        return self.prom.start_http_server(port, addr=host, registry=self.registry, certfile=certfile, keyfile=keyfile)


class RequestLog:
    """The JSON-lines request log at ``path`` (None: none), created 0600."""

    def __init__(self, path: Path | None) -> None:
        self._file = None if path is None else open_private(Path(path))
        self._lock = threading.Lock()

    def write(self, **entry: Any) -> None:
        if self._file is not None:
            line = json.dumps({"time": round(time.time(), 4), **entry}) + "\n"
            with self._lock:
                self._file.write(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def payload_digest(points: np.ndarray) -> str:
    """SHA-256 (hex, 32 digits) of a request's points: shape and float32 bytes."""
    x = np.ascontiguousarray(points, dtype="<f4")
    return hashlib.sha256(repr(x.shape).encode() + x.tobytes()).hexdigest()[:32]


def point_digests(points: np.ndarray) -> list[str]:
    """Each point's SHA-256 (12 hex digits): exact repeats share it."""
    x = np.ascontiguousarray(points, dtype="<f4")
    return [hashlib.sha256(p.tobytes()).hexdigest()[:12] for p in x]


def near_digests(points: np.ndarray, side: int = 8) -> list[str]:
    """Each point's average hash (16 hex digits): grey, block means on a side x side grid,
    one bit per block (above the point's mean). Points a small distance apart share it."""
    x = np.asarray(points, dtype=np.float32)
    grey = x.mean(axis=1)  # (k, H, W)
    rows = np.linspace(0, grey.shape[1], side + 1).astype(int)[:-1]
    cols = np.linspace(0, grey.shape[2], side + 1).astype(int)[:-1]
    sums = np.add.reduceat(np.add.reduceat(grey, rows, axis=1), cols, axis=2)
    counts = np.outer(np.diff(np.append(rows, grey.shape[1])), np.diff(np.append(cols, grey.shape[2])))
    means = sums / counts
    bits = means.reshape(len(x), -1) > means.reshape(len(x), -1).mean(axis=1, keepdims=True)
    return [np.packbits(b).tobytes().hex() for b in bits]
