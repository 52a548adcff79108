"""``probe serve``: a defended model as an Open Inference Protocol (v2) service.

FastAPI app (:func:`create_app`) around one :class:`~probe.smoothing.SmoothedClassifier`:

* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}`` (the input
  ``[-1, 3, H, W]`` FP32 canonical, the output ``label`` INT64, and ``parameters``:
  ``probe_defended``, ``probe_sigma``, ``probe_n``, ``num_classes``),
  ``POST /v2/models/{name}/infer`` (JSON or binary tensor data). The API docs
  (``/docs``, ``/redoc``, ``/openapi.json``) only when asked for (``docs=True``).
* Labels only: the noise and the vote counts never leave the server. The noise stream
  is fresh at every start; a seed repeats it only with ``insecure_seed`` (tests).
* API keys (``Authorization: Bearer pk_...`` or ``X-API-Key``) with budgets in SQLite
  (:mod:`probe.remote.keys`): a request is refused with 429 ``budget_exhausted`` when
  the key has fewer queries left than points asked; spending is committed with the
  answer; a repeated request id is answered again for free (409 ``id_conflict`` when its
  payload differs), and copies of a request still in flight get its answer, or its error.
  Per-key rate limits, and per client address for requests without a valid key (429
  ``rate_limited``, ``Retry-After``).
* The body is read no further than the model could need (:mod:`probe.remote.intake`:
  413 past it, 408 past the read deadline) and parsed off the event loop.
* Every refusal is a 4xx with ``{"error": ..., "code": ...}``; a 500 is a bug, and is
  answered, logged and counted like the rest.
* A JSON-lines request log (time, client address, key, id, points, payload digest, a
  digest and a near-duplicate hash per point, answers, status; 499 when the client left
  before its answer) and Prometheus metrics (:mod:`probe.remote.observe`), served apart
  from the API (:mod:`probe.remote.listen`).
* Concurrent requests are merged into full model batches (:mod:`probe.remote.batcher`).
"""

# no "from __future__ import annotations": FastAPI reads the handlers' annotations at run time
import asyncio
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.remote import need
from probe.remote import protocol as v2
from probe.remote.batcher import Batcher
from probe.remote.checks import RateLimiter, RequestError, parse_infer
from probe.remote.intake import BytePool, Limits, Parser, read_body
from probe.remote.keys import Answered, BudgetSpent, KeyStore
from probe.remote.observe import Metrics, RequestLog, near_digests, payload_digest, point_digests

INPUT_NAME = "input"
OUTPUT_NAME = "label"
PLAIN_RANGE = (-10.0, 11.0)  # canonical values a plain (sigma = 0) model accepts: [0, 1] plus noise
CLIENT_GONE = 499  # logged (never sent) when the client disconnected before its answer

_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
    "datatype": {"type": "string"}, "data": {"type": "array", "items": {"type": "number"}},
    "parameters": {"type": "object"}}}  # fmt: skip
_REQUEST = {"type": "object", "required": ["inputs"], "properties": {
    "id": {"type": "string"}, "inputs": {"type": "array", "items": _TENSOR}, "parameters": {"type": "object"},
    "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}  # fmt: skip
_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "error": {"type": "string"}, "code": {"type": "string"}}}}}}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Everything ``probe serve`` needs.

    name : the model's name on the server. keys : the SQLite keys database, or None to
    serve without keys (no budgets; loopback experiments only). rate, burst : requests
    per second per key (0: no limit) and the burst. anonymous_rate, anonymous_burst :
    the same per client address, for requests without a valid key. max_points : points
    per request. max_bytes : a further bound on the body (None: the largest request the
    model takes, :class:`probe.remote.intake.Limits`). max_inflight_bytes : the bodies
    read and parsed at once (None: 256 MiB, or one largest request if more; past it:
    503). read_timeout : seconds a request's body may take to arrive. wait : seconds the batcher waits for more requests. log :
    the JSON-lines request log (None: none). seed : the noise stream's seed, mixed with a
    fresh nonce at every start unless insecure_seed (then the stream repeats: tests
    only). docs : serve /docs, /redoc and /openapi.json.
    """

    name: str
    sigma: float
    n: int
    keys: Path | None = None
    rate: float = 0.0
    burst: int = 10
    anonymous_rate: float = 2.0
    anonymous_burst: int = 20
    max_points: int = 256
    max_bytes: int | None = None
    read_timeout: float = 10.0
    max_inflight_bytes: int | None = None
    wait: float = 0.002
    log: Path | None = None
    seed: int | None = None
    insecure_seed: bool = False
    docs: bool = False


@dataclass
class Outcome:
    """One answer: status, JSON body, headers; ``labels`` when answered, ``code`` when refused."""

    status: int
    body: dict
    headers: dict | None = None
    labels: list | None = None
    code: str | None = None
    log: dict = field(default_factory=dict)

    def response(self):
        from fastapi.responses import JSONResponse

        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def refusal(status: int, message: str, code: str, headers: dict | None = None) -> Outcome:
    return Outcome(status, {"error": message, "code": code}, headers, code=code)


def noise_stream(seed: int | None, insecure_seed: bool = False) -> np.random.Generator:
    """The server's noise: fresh; from ``seed`` and a per-start nonce; or, insecure, from ``seed`` alone."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(seed if insecure_seed else [seed, secrets.randbits(128)])


def create_app(classifier, config: ServeConfig, metrics: Metrics | None = None):
    """The FastAPI app serving ``classifier`` (a SmoothedClassifier) as ``config`` says.

    metrics : where to count (a new :class:`probe.remote.observe.Metrics` by default);
    served by the metrics listener, never by the app. ``app.state`` holds ``metrics``,
    ``batcher`` and ``store``.
    """
    fastapi = need("fastapi")
    from starlette.exceptions import HTTPException

    runtime = classifier.runtime
    shape = tuple(runtime.input_shape)
    limits = Limits(shape, config.max_points, config.max_bytes)
    parser = Parser()
    pool = BytePool(config.max_inflight_bytes or max(256 * 2**20, limits.most_bytes(binary=False)))
    store = KeyStore(config.keys) if config.keys is not None else None
    limiter = RateLimiter(config.rate, config.burst)
    anonymous = RateLimiter(config.anonymous_rate, config.anonymous_burst)
    metrics, log = metrics or Metrics(), RequestLog(config.log)
    rng = noise_stream(config.seed, config.insecure_seed)
    batcher = Batcher(classifier, max_points=max(config.max_points, runtime.batch_size), wait=config.wait, rng=rng)
    batcher.on_call = lambda points, requests, seconds: metrics.batch.observe(points)
    # a defended model takes images in [0, 1]; a plain one also the noisy copies of client-side smoothing
    span = (0.0, 1.0) if classifier.sigma > 0 else PLAIN_RANGE
    reserved: dict[str, int] = {}  # points in flight per key, not yet charged
    inflight: dict[tuple[str, str], tuple[str, asyncio.Future]] = {}  # (key, id) -> (payload digest, its Outcome)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()
        await asyncio.to_thread(parser.close)
        log.close()
        if store is not None:
            store.close()

    docs = {} if config.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = fastapi.FastAPI(title="probe serve", version="1", lifespan=lifespan, **docs)
    app.state.metrics, app.state.batcher, app.state.store = metrics, batcher, store
    err = {str(s): _ERROR for s in (400, 401, 404, 408, 409, 413, 429, 503)}

    def count(status: int, **entry) -> None:
        metrics.requests.labels(str(status)).inc()
        log.write(status=status, **entry)

    def client_of(request) -> str:
        return request.client.host if request.client is not None else "-"

    @app.exception_handler(fastapi.exceptions.RequestValidationError)
    async def invalid(request, exc):
        count(400, client=client_of(request), path=request.url.path[:100], code="bad_request")
        return refusal(400, f"invalid request: {str(exc)[:200]}", "bad_request").response()

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # no such route, a method not allowed
        code = "not_found" if exc.status_code == 404 else "bad_request"
        count(exc.status_code, client=client_of(request), path=request.url.path[:100], code=code)
        return refusal(exc.status_code, str(exc.detail)[:200], code).response()

    @app.exception_handler(Exception)
    async def internal(request, exc):  # a bug anywhere but /infer (which answers its own): logged, counted
        count(500, client=client_of(request), path=request.url.path[:100], code="internal",
              error=f"{type(exc).__name__}: {str(exc)[:200]}")  # fmt: skip
        return refusal(500, "internal server error", "internal").response()

    def metadata() -> dict:
        params = {"probe_defended": classifier.sigma > 0, "probe_sigma": classifier.sigma, "probe_n": classifier.n,
                  "num_classes": runtime.num_classes}  # fmt: skip
        return {"name": config.name, "versions": ["1"], "platform": "probe_onnxruntime",
                "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *shape]}],
                "outputs": [{"name": OUTPUT_NAME, "datatype": "INT64", "shape": [-1]}], "parameters": params}  # fmt: skip

    def model_or_404(name: str):
        return None if name == config.name else refusal(404, f"no model named {name[:60]!r}", "not_found")

    @app.get("/v2")
    async def server_metadata():
        return {"name": "probe", "version": "1", "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    @app.get("/v2/models/{name}", responses={"404": _ERROR})
    async def model_metadata(name: str, request: fastapi.Request):
        missing = model_or_404(name)
        if missing is not None:
            return missing.response()
        key = _key(store, request)
        headers = {v2.BUDGET_HEADER: str(key.remaining)} if key is not None else None
        return fastapi.responses.JSONResponse(metadata(), headers=headers)

    @app.get("/v2/models/{name}/ready", responses={"404": _ERROR})
    async def model_ready(name: str):
        missing = model_or_404(name)
        return missing.response() if missing is not None else {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer", responses=err,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST}}}})  # fmt: skip
    async def infer(name: str, request: fastapi.Request):
        start = time.perf_counter()
        entry = {"client": client_of(request)}
        try:
            outcome = await _infer(name, request, entry)
        except Exception as exc:  # noqa: BLE001 - a bug: answered as JSON, logged and counted
            outcome = refusal(500, "internal server error", "internal")
            entry["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        status = outcome.status
        if status == 200 and await request.is_disconnected():
            status = CLIENT_GONE  # answered (and charged, the answer stored under its id) but never delivered
        entry.update(outcome.log)
        if outcome.code is not None:
            entry["code"] = outcome.code
        if outcome.labels is not None:
            entry["answers"] = outcome.labels
        count(status, **entry)
        metrics.latency.observe(time.perf_counter() - start)
        if outcome.status in (408, 413, 503):  # the body's rest is not read: the connection ends with the answer
            outcome.headers = {**(outcome.headers or {}), "Connection": "close"}
        return outcome.response()

    async def _infer(name: str, request, entry: dict) -> Outcome:
        missing = model_or_404(name)
        if missing is not None:
            return missing
        key = None
        if store is not None:
            address = entry["client"]
            wait = anonymous.blocked(address)
            if wait > 0:  # this address sent too many requests without a valid key: not even looked up
                return refusal(429, "too many requests without a valid key", "rate_limited",
                               {"Retry-After": str(max(1, round(wait)))})  # fmt: skip
            key = _key(store, request)
            if key is None:
                anonymous.wait_time(address)
                entry["key"] = None
                return refusal(401, "a valid API key is needed (Authorization: Bearer pk_...)", "unauthorized")
        who = key.id if key is not None else "-"
        entry["key"] = who
        wait = limiter.wait_time(who)
        if wait > 0:
            return refusal(429, "rate limit reached", "rate_limited", {"Retry-After": str(max(1, round(wait)))})
        try:
            header = request.headers.get(v2.HEADER_LENGTH)
            length = int(header) if header is not None else None
        except ValueError:
            return refusal(400, f"{v2.HEADER_LENGTH} must be an integer", "bad_request")
        lease = pool.lease()
        try:
            body = await read_body(request, limits, length, config.read_timeout, lease)
            points, request_id, digests = await parser.run(_parse, body, length is not None, header, shape,
                                                           config.max_points, span)  # fmt: skip
        except RequestError as refused:
            headers = {"Retry-After": "1"} if refused.status == 503 else None
            return refusal(refused.status, refused.message, refused.code, headers)
        finally:
            lease.close()
        entry.update(id=request_id, points=len(points), **digests)
        if key is None or not request_id:
            return await _answer(key, request_id, points, digests["digest"])
        slot = (key.id, request_id)
        if slot in inflight:  # a copy of a request still being answered: its answer, or its error
            first, pending = inflight[slot]
            if first != digests["digest"]:
                return _conflict(request_id)
            outcome = await asyncio.shield(pending)
            return Outcome(outcome.status, outcome.body, outcome.headers, outcome.labels, outcome.code,
                           {"repeated": True})  # fmt: skip
        pending = asyncio.get_running_loop().create_future()
        inflight[slot] = (digests["digest"], pending)
        try:
            outcome = await _answer(key, request_id, points, digests["digest"])
        except BaseException:
            pending.set_result(refusal(500, "internal server error", "internal"))
            raise
        finally:
            inflight.pop(slot, None)
        pending.set_result(outcome)
        return outcome

    async def _answer(key, request_id: str | None, points: np.ndarray, digest: str) -> Outcome:
        k = len(points)
        if key is not None and request_id:
            stored = await asyncio.to_thread(store.stored, key.id, request_id)
            if stored is not None:
                return _replay(key, request_id, *stored, digest)
        if key is not None:
            left = store.get(key.id).remaining - reserved.get(key.id, 0)
            if k > left:
                return refusal(429, f"query budget spent: {max(left, 0)} left, {k} asked", v2.BUDGET_CODE,
                               {v2.BUDGET_HEADER: str(max(left, 0))})  # fmt: skip
            reserved[key.id] = reserved.get(key.id, 0) + k
        try:
            labels = (await batcher.labels(points)).tolist()
            metrics.inferences.inc(k * classifier.n)
            remaining = None
            if key is not None:  # charged now that the answer is there, with the answer
                try:
                    remaining = await asyncio.to_thread(store.charge, key.id, k, request_id, labels, digest)
                except Answered as done:  # another server sharing the database answered this id first
                    return _replay(key, request_id, done.labels, done.digest, digest)
                except BudgetSpent as spent:  # another server sharing the database spent the key meanwhile
                    return refusal(429, str(spent), v2.BUDGET_CODE, {v2.BUDGET_HEADER: "0"})
        finally:
            if key is not None:
                reserved[key.id] -= k
        metrics.queries.labels(key.name if key is not None else "-").inc(k)
        return _ok(config.name, request_id, labels, remaining)

    def _replay(key, request_id: str, labels: list, stored: str | None, digest: str) -> Outcome:
        if stored is not None and stored != digest:
            return _conflict(request_id)
        outcome = _ok(config.name, request_id, labels, store.get(key.id).remaining)
        outcome.log["repeated"] = True
        return outcome

    return app


def _conflict(request_id: str) -> Outcome:
    return refusal(409, f"request id {request_id[:60]!r} was used with another payload", "id_conflict")


def _parse(body: bytes, header: str | None, shape: tuple, max_points: int, span: tuple) -> tuple:
    """parse_infer and the payload's digests, off the event loop."""
    points, request_id = parse_infer(body, header, input_name=INPUT_NAME, shape=shape, max_points=max_points,
                                     value_range=span)  # fmt: skip
    digests = {"digest": payload_digest(points), "digests": point_digests(points), "near": near_digests(points)}
    return points, request_id, digests


def _key(store: KeyStore | None, request):
    if store is None:
        return None
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
    return store.authenticate(token)


def _ok(name: str, request_id: str | None, labels: list[int], remaining: int | None) -> Outcome:
    body = {"model_name": name, "model_version": "1",
            "outputs": [{"name": OUTPUT_NAME, "datatype": "INT64", "shape": [len(labels)], "data": labels}]}  # fmt: skip
    if request_id:
        body["id"] = request_id
    headers = None if remaining is None else {v2.BUDGET_HEADER: str(remaining)}
    return Outcome(200, body, headers, labels=labels)
