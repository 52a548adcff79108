"""Reading an inference request's body no further than the model could need (server side).

The largest request the model can accept is known before a byte of data is read:
``max_points`` points of the declared input shape. :class:`Limits` turns it into bytes
(binary tensor data: 4 bytes a value; JSON: at most :data:`JSON_VALUE_BYTES` a value),
plus :data:`HEADER_ROOM` for the rest. :func:`read_body` refuses a larger declared
``Content-Length`` at once (413, nothing read), stops reading a chunked body as soon as
it passes the bound, and for binary tensor data reads the JSON header first: once its
``shape`` is known, the body may hold exactly that many values and no more. The
reading has a deadline (408). Parsing happens after, off the event loop, on a body of
bounded size (:class:`Parser`: a JSON body of :data:`PROCESS_BYTES` or more in a worker
process, since ``json.loads`` holds the GIL and would stall the loop from a thread; 1 MiB, or
8 MiB with orjson).

All the bodies being read and parsed at once share a :class:`BytePool`: past it, a
request is answered 503 ``busy`` (``Retry-After``) instead of growing the server's
memory by its body; a client that leaves mid-body is a 499 (logged, never sent).
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from probe.remote.checks import RequestError
from probe.remote.protocol import FAST_JSON

HEADER_ROOM = 64 * 1024  # bytes around the data: id, names, shape, parameters
JSON_VALUE_BYTES = 32  # the most bytes one number and its separator take in JSON data
# JSON bodies from this size on are parsed in a worker process: orjson reads 8 MiB in about the
# time the standard library takes for 1 MiB (tens of ms: the event loop's longest stall either way)
PROCESS_BYTES = 2**23 if FAST_JSON else 2**20


@dataclass(frozen=True)
class Limits:
    """What the model takes: ``shape`` (3, H, W) per point, ``max_points`` per request;
    ``cap``: a further bound on the body in bytes (``--max-mb``), or None."""

    shape: tuple[int, ...]
    max_points: int
    cap: int | None = None

    @property
    def values(self) -> int:
        """The most numbers one request may carry."""
        return self.max_points * math.prod(self.shape)

    def most_bytes(self, binary: bool) -> int:
        """The largest body a request may have, binary tensor data or JSON."""
        most = HEADER_ROOM + (4 if binary else JSON_VALUE_BYTES) * self.values
        return most if self.cap is None else min(most, self.cap)


class BytePool:
    """Bytes of request bodies held at once, at most ``most`` (used on the event loop only)."""

    def __init__(self, most: int) -> None:
        self.most = int(most)
        self.used = 0

    def lease(self) -> "Lease":
        return Lease(self)


class Lease:
    """One request's share of a :class:`BytePool`; :meth:`close` gives it back."""

    def __init__(self, pool: BytePool) -> None:
        self.pool = pool
        self.held = 0

    def take(self, size: int) -> None:
        if self.pool.used + size > self.pool.most:
            raise RequestError(503, "the server is reading as many request bodies as it holds at once", "busy")
        self.pool.used += size
        self.held += size

    def close(self) -> None:
        self.pool.used -= self.held
        self.held = 0


class Parser:
    """Runs ``parse(body, *args)`` off the event loop: a JSON body of PROCESS_BYTES or more in a
    worker process (started when first needed, spawned: never a fork of the model's threads),
    anything smaller or binary in a thread."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, parse, body: bytes, binary: bool, *args):
        if binary or len(body) < PROCESS_BYTES:
            return await asyncio.to_thread(parse, body, *args)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, parse, body, *args)
        except BrokenProcessPool:
            self._pool = None  # the next request starts a new worker
            raise RequestError(503, "the request parser stopped; retry", "busy") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def too_large(limit: int) -> RequestError:
    return RequestError(413, f"the request is larger than the model takes ({limit} bytes at most)", "too_large")


def _binary_size(header: bytes, shape: tuple[int, ...]) -> int | None:
    """The data bytes a binary request's JSON header declares (None: let the parser say what is wrong)."""
    try:
        request = json.loads(header)
        dims = request["inputs"][0]["shape"]
        if len(dims) == 4 and all(type(d) is int for d in dims) and tuple(dims[1:]) == tuple(shape) and dims[0] >= 1:
            return 4 * dims[0] * math.prod(shape)
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        pass
    return None


async def read_body(request, limits: Limits, header_length: int | None, deadline: float, lease: Lease) -> bytes:
    """The body of ``request`` (a Starlette Request), read within ``limits`` in at most ``deadline``
    seconds, each chunk taken from ``lease`` (which the caller closes once the body is parsed)."""
    from starlette.requests import ClientDisconnect

    binary = header_length is not None
    limit = limits.most_bytes(binary)
    if binary and not 0 <= header_length <= min(HEADER_ROOM, limit):
        raise RequestError(413, f"the binary request's JSON header is larger than {HEADER_ROOM} bytes", "too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size, checked = 0, False
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit and checked:
                    asked = limit - header_length
                    raise RequestError(400, f"binary input: the shape asks for {asked} bytes after the header")
                if size > limit:
                    raise too_large(limit)
                lease.take(len(chunk))
                chunks.append(chunk)
                if binary and not checked and size >= header_length:
                    checked = True
                    body = b"".join(chunks)
                    chunks = [body]
                    data = _binary_size(body[:header_length], limits.shape)
                    if data is None:
                        return body  # the parser names the fault in the header
                    limit = header_length + data
                    if size > limit or (declared is not None and declared.isdigit() and int(declared) != limit):
                        raise RequestError(400, f"binary input: the shape asks for {data} bytes after the header")
    except TimeoutError:
        raise RequestError(408, f"the request's body did not arrive within {deadline:g} s", "timeout") from None
    except ClientDisconnect:
        raise RequestError(499, "the client left before its request's body arrived", "client_gone") from None
    return b"".join(chunks)
