"""What every HTTP model shares: a bounded connection pool, requests in parallel, retries.

:class:`HttpModel` is the labels-only interface of :class:`probe.runtime.LabelModel` over
HTTP, for :class:`~probe.remote.client.RemoteRuntime` (v2 / ``probe serve``) and
:class:`~probe.remote.api.ApiRuntime` (any JSON or multipart image API):

* One ``labels`` call of ``batch_size`` rows becomes up to ``concurrency`` requests of
  ``points_per_request`` points (``_infer``, written by the subclass), sent at once.
* Timeouts; retries with exponential backoff on 429, 5xx and connection errors; a
  ``Retry-After`` header (seconds or an HTTP date) is honoured, up to :data:`MAX_WAIT`.
* ``max_rate``: at most that many requests per second leave this client (all threads).
* A point counts as ``answered`` only when its answer arrives; ``inferences`` counts
  points whose whole ``labels`` call succeeded.
* Anything else (unreachable host, TLS failure, a 4xx answer) is a one-line ProbeError.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np

from probe.errors import EndpointBudgetSpent, ParameterError, ProbeError
from probe.remote import need
from probe.runtime import LabelModel
from probe.validate import check_int

MAX_WAIT = 120.0  # seconds: the longest Retry-After honoured (a longer one is waited this long, then retried)


class RateLimiter:
    """At most ``rate`` events per second across threads (None: no limit); slots are evenly spaced."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and not rate > 0:
            raise ParameterError(f"{{name}} must be a number of requests per second > 0, got {rate}", name="max_rate")
        self.interval = 0.0 if rate is None else 1.0 / float(rate)
        self._next = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
            self.waited += slot - now
        if slot > now:
            time.sleep(slot - now)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpModel(LabelModel):
    """The shared HTTP machinery of a served classifier; subclasses write ``_infer(chunk)``."""

    on_cuda = False
    points_per_request = 1

    def _open(self, *, base_url: str, headers: dict[str, str], timeout: float, concurrency: int, retries: int,
              backoff: float, max_rate: float | None) -> None:  # fmt: skip
        """Start the HTTP client, the request threads and the counters."""
        self._start(concurrency=concurrency, retries=retries, backoff=backoff, max_rate=max_rate)
        httpx = need("httpx")
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.base_url = base_url

    def _start(self, *, concurrency: int, retries: int, backoff: float, max_rate: float | None) -> None:
        """The request threads, the rate limit and the counters (any transport)."""
        check_int("concurrency", concurrency, 1, 256)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="probe-endpoint")
        self._lock = threading.Lock()
        self._limiter = RateLimiter(max_rate)
        self._retries, self._backoff, self.concurrency = retries, backoff, concurrency
        self.remaining: int | None = None  # the key's budget left, as the server last said (probe protocol)
        self._reserved = 0
        self.answered = 0  # points whose answer arrived (what a server charges)
        self.inferences = 0
        self.calls = 0
        self.rows = 0
        self.retried = 0
        self.requests = 0  # requests sent, retries included
        self.session_seconds = 0.0

    # ------------------------------------------------------------------ the Runtime interface
    def wrapped_model(self):
        raise ProbeError("a remote model has no ONNX graph here (in-graph smoothing needs a local file)")

    def labels(self, x: np.ndarray) -> np.ndarray:
        """Top-1 labels (int64, (N,)) of canonical images x (N, 3, H, W), as the server answers them."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ProbeError(f"expected images of shape (N, {self.input_shape}), got {x.shape}")
        step = self.points_per_request
        chunks = [x[i : i + step] for i in range(0, len(x), step)]
        self._reserve(len(x))
        start = time.perf_counter()
        futures = [self._pool.submit(self._answer, chunk) for chunk in chunks]
        results, error = [], None
        for future in futures:  # wait for every request, so the counts are exact even on failure
            try:
                results.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below, first one wins
                error = error or exc
        with self._lock:
            self._reserved -= len(x)
        self.session_seconds += time.perf_counter() - start
        if error is not None:
            raise error
        self.inferences += len(x)
        return np.concatenate(results) if results else np.empty(0, np.int64)

    def _answer(self, chunk: np.ndarray) -> np.ndarray:
        labels = np.asarray(self._infer(chunk), dtype=np.int64)
        if labels.shape != (len(chunk),):
            raise ProbeError(f"the endpoint answered {labels.size} label(s) for {len(chunk)} point(s)")
        if np.any(labels < 0) or np.any(labels >= self.num_classes):
            raise ProbeError(f"the endpoint answered labels outside [0, {self.num_classes}): {labels.tolist()[:5]}")
        with self._lock:
            self.answered += len(chunk)
            self.calls += 1
            self.rows += len(chunk)
        return labels

    def _infer(self, chunk: np.ndarray) -> np.ndarray:  # pragma: no cover - the subclasses'
        raise NotImplementedError

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    # ------------------------------------------------------------------ wire
    def _attempt(self, attempt: int, wait: float) -> float:
        """Before each try of a request (any transport): after a failed one, count the retry,
        sleep ``wait`` and double it (at most 8 s); then the rate limit, and count the request.
        Returns the wait before the next retry."""
        if attempt:
            with self._lock:
                self.retried += 1
            time.sleep(wait)
            wait = min(wait * 2, 8.0)
        self._limiter.wait()
        with self._lock:
            self.requests += 1
        return wait

    def _send(self, method: str, path: str, points: int, **request: Any):
        """One request, retrying what may pass (429, 5xx, connection errors); the answer (HTTP 2xx)."""
        httpx, wait, last = self._httpx, self._backoff, ""
        for attempt in range(self._retries + 1):
            wait = self._attempt(attempt, wait)
            try:
                answer = self._client.request(method, path, **request)
            except httpx.ConnectError as exc:
                if "SSL" in str(exc) or "certificate" in str(exc).lower():
                    raise ProbeError(f"TLS failure talking to {self.base_url}: {first_line(exc)}") from None
                last = f"cannot connect to {self.base_url} ({first_line(exc)})"
                continue
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                last = f"{type(exc).__name__} from {self.base_url} ({first_line(exc)})"
                continue
            self._note_budget(answer)
            if 200 <= answer.status_code < 300:
                return answer
            message, code = self._error(answer)
            if answer.status_code == 429 and code == "budget_exhausted":
                raise EndpointBudgetSpent(f"the endpoint's query budget for this key is spent: {message}")
            if answer.status_code == 429 or answer.status_code >= 500:
                last = f"HTTP {answer.status_code}: {message}"
                after = retry_after(answer.headers.get("Retry-After"))
                if after is not None:  # the server says when to come back: not sooner (at most MAX_WAIT)
                    wait = max(wait, min(after, MAX_WAIT))
                continue
            raise ProbeError(self._refused(answer.status_code, message, points))
        raise ProbeError(f"the endpoint failed {self._retries + 1} times: {last}")

    def _error(self, answer) -> tuple[str, str | None]:
        from probe.remote.protocol import error_message

        return error_message(answer.content)

    def _refused(self, status: int, message: str, points: int) -> str:
        return f"the endpoint refused {points} point(s) (HTTP {status}): {message}"

    def _note_budget(self, answer) -> None:
        """Read what the server says of the key's budget (``probe serve`` only)."""

    def _reserve(self, points: int) -> None:
        """Never send more points than the key's budget has left (when the server says it)."""
        with self._lock:
            if self.remaining is not None and points > self.remaining - self._reserved:
                raise EndpointBudgetSpent(
                    f"the endpoint's query budget for this key is spent ({self.remaining} point(s) left, {points} asked)"
                )
            self._reserved += points

    def _get(self, path: str):
        try:
            answer = self._client.get(path)
        except self._httpx.ConnectError as exc:
            kind = "TLS failure talking to" if "SSL" in str(exc) else "cannot reach"
            raise ProbeError(f"{kind} {self.base_url}: {first_line(exc)}") from None
        except self._httpx.HTTPError as exc:
            raise ProbeError(f"cannot talk to {self.base_url}: {type(exc).__name__} {first_line(exc)}") from None
        self._note_budget(answer)
        return answer


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
