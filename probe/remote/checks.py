"""What ``probe serve`` checks before a request reaches the model (pure Python and NumPy).

:func:`parse_infer` turns an inference request's body into canonical points or a
:class:`RequestError` (its HTTP status and message: 400 malformed, 413 too large);
:class:`RateLimiter` is a token bucket per key (or per client address).
:func:`parse_infer` is meant to run off the event loop, on a body whose size
:mod:`probe.remote.intake` has already bounded; it counts the body's commas first (at C
speed) so that ``json.loads`` never builds more numbers than ``max_points`` points hold.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from probe.remote import protocol as v2

SEPARATOR_ROOM = 4096  # commas a request may hold besides those between its numbers


class RequestError(Exception):
    """A request refused before inference: HTTP ``status``, a message and a ``code``."""

    def __init__(self, status: int, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def __reduce__(self):  # whole across a process boundary (parsing runs in a worker process)
        return (RequestError, (self.status, self.message, self.code))


def parse_infer(
    body: bytes,
    header_length: str | None,
    *,
    input_name: str,
    shape: tuple[int, int, int],
    max_points: int,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, str | None]:
    """(points (k, 3, H, W) float32 within ``value_range``, request id) of an inference request."""
    length = None
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise RequestError(400, f"{v2.HEADER_LENGTH} must be an integer") from None
    size_most = max_points * math.prod(shape)
    if length is None and body.count(b",") > size_most + SEPARATOR_ROOM:  # counted at C speed, before parsing
        raise RequestError(413, f"the request holds more numbers than {max_points} points take", "too_large")
    try:
        request, raw = v2.decode_request(body, length)
    except RecursionError:
        raise RequestError(400, "the request is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(request, dict):
        raise RequestError(400, "the request must be a JSON object with 'inputs'")
    request_id = request.get("id")
    if request_id is not None and (not isinstance(request_id, str) or not 0 < len(request_id) <= 128):
        raise RequestError(400, "'id' must be a string of 1 to 128 characters")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, f"'inputs' must hold exactly one tensor, named {input_name!r}")
    tensor = inputs[0]
    if tensor.get("name") != input_name:
        raise RequestError(400, f"the input is named {input_name!r}, got {str(tensor.get('name'))[:60]!r}")
    if tensor.get("datatype") != "FP32":
        raise RequestError(400, f"the input's datatype is FP32, got {str(tensor.get('datatype'))[:20]!r}")
    dims = tensor.get("shape")
    if (
        not isinstance(dims, list)
        or len(dims) != 4
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
        or tuple(dims[1:]) != shape
        or dims[0] < 1
    ):
        raise RequestError(400, f"the input's shape is [k, {', '.join(map(str, shape))}] with k >= 1, got {str(dims)[:80]}")
    k = dims[0]
    if k > max_points:
        raise RequestError(413, f"at most {max_points} points per request, got {k}", "too_large")
    size = k * math.prod(shape)
    points = _binary(tensor, raw, size) if length is not None else _json_data(tensor, size)
    if not np.all(np.isfinite(points)):
        raise RequestError(400, "the input holds NaN or infinite values")
    low, high = value_range
    if points.min() < low or points.max() > high:
        raise RequestError(400, f"pixel values must lie in [{low:g}, {high:g}] (canonical float32 RGB)")
    return points.reshape(k, *shape), request_id


def _binary(tensor: dict, raw: bytes, size: int) -> np.ndarray:
    params = tensor.get("parameters")
    declared = params.get("binary_data_size") if isinstance(params, dict) else None
    if "data" in tensor or declared != len(raw) or len(raw) != 4 * size:
        raise RequestError(400, f"binary input: 'binary_data_size' and the bytes after the header must be {4 * size}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _json_data(tensor: dict, size: int) -> np.ndarray:
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(400, "the input's 'data' must be a list of numbers")
    if not set(map(type, data)) <= {int, float}:
        raise RequestError(400, "the input's 'data' must be a flat, row-major list of numbers")
    if len(data) != size:
        raise RequestError(400, f"the input's 'data' must hold {size} numbers, got {len(data)}")
    try:
        values = np.asarray(data, dtype=np.float64)
    except (OverflowError, ValueError):
        raise RequestError(400, "the input's 'data' holds a number out of range") from None
    return values.ravel().astype(np.float32)


class RateLimiter:
    """Per-key token buckets: ``rate`` requests per second, bursts of ``burst`` (rate 0: no limit)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    MAX_BUCKETS = 100_000

    def _forget(self, now: float) -> None:
        full = [k for k, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]

    def blocked(self, key: str) -> float:
        """The seconds until ``key`` has a token (0: it has one now); nothing is taken."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def wait_time(self, key: str) -> float:
        """0 when the request may pass now (a token is taken), else the seconds until one is there."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if len(self._buckets) >= self.MAX_BUCKETS:  # many addresses: forget those whose bucket refilled
                self._forget(now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def json_error(status: int, message: str, code: str) -> tuple[int, dict[str, Any]]:
    """The v2 error body, with probe's ``code``."""
    return status, {"error": message, "code": code}
