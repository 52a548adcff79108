"""``probe serve``: a defended model as an Open Inference Protocol (v2) service.

FastAPI app (:func:`create_app`) around one :class:`~probe.smoothing.SmoothedClassifier`:

* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}`` (the input
  ``[-1, 3, H, W]`` FP32 canonical, the output ``label`` INT64, and ``parameters``:
  ``probe_defended``, ``probe_sigma``, ``probe_n``, ``num_classes``),
  ``POST /v2/models/{name}/infer`` (JSON or binary tensor data), ``GET /metrics``.
* Labels only: the noise and the vote counts never leave the server.
* API keys (``Authorization: Bearer pk_...`` or ``X-API-Key``) with budgets in SQLite
  (:mod:`probe.remote.keys`): a request is refused with 429 ``budget_exhausted`` when
  the key has fewer queries left than points asked; spending is committed with the
  answer; a repeated request id is answered again for free. Per-key rate limits
  (429 ``rate_limited``, ``Retry-After``), a request-size limit (413).
* Every refusal is a 4xx with ``{"error": ..., "code": ...}``; a 500 is a bug.
* A JSON-lines request log (time, key, id, points, answers, status) and Prometheus
  metrics (queries, inferences, latency).
* Concurrent requests are merged into full model batches (:mod:`probe.remote.batcher`).
"""

# no "from __future__ import annotations": FastAPI reads the handlers' annotations at run time
import asyncio
import json
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.remote import need
from probe.remote import protocol as v2
from probe.remote.batcher import Batcher
from probe.remote.checks import RateLimiter, RequestError, parse_infer
from probe.remote.keys import BudgetSpent, KeyStore

INPUT_NAME = "input"
OUTPUT_NAME = "label"
PLAIN_RANGE = (-10.0, 11.0)  # canonical values a plain (sigma = 0) model accepts: [0, 1] plus noise

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
    per second per key (0: no limit) and the burst. max_points : points per request.
    max_bytes : the largest request body. wait : seconds the batcher waits for more
    requests. log : the JSON-lines request log (None: none). seed : the noise stream.
    """

    name: str
    sigma: float
    n: int
    keys: Path | None = None
    rate: float = 0.0
    burst: int = 10
    max_points: int = 256
    max_bytes: int = 64 * 2**20
    wait: float = 0.002
    log: Path | None = None
    seed: int | None = None


class _Metrics:
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


class _Log:
    def __init__(self, path: Path | None) -> None:
        self._file = None if path is None else open(path, "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def write(self, **entry: Any) -> None:
        if self._file is not None:
            with self._lock:
                self._file.write(json.dumps({"time": round(time.time(), 4), **entry}) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def create_app(classifier, config: ServeConfig):
    """The FastAPI app serving ``classifier`` (a SmoothedClassifier) as ``config`` says."""
    fastapi = need("fastapi")
    from fastapi.responses import JSONResponse, Response

    runtime = classifier.runtime
    shape = tuple(runtime.input_shape)
    store = KeyStore(config.keys) if config.keys is not None else None
    limiter = RateLimiter(config.rate, config.burst)
    metrics, log = _Metrics(), _Log(config.log)
    rng = np.random.default_rng(config.seed)
    batcher = Batcher(classifier, max_points=max(config.max_points, runtime.batch_size), wait=config.wait, rng=rng)
    batcher.on_call = lambda points, requests, seconds: metrics.batch.observe(points)
    # a defended model takes images in [0, 1]; a plain one also the noisy copies of client-side smoothing
    span = (0.0, 1.0) if classifier.sigma > 0 else PLAIN_RANGE
    reserved: dict[str, int] = {}  # points in flight per key, not yet charged
    inflight: dict[tuple[str, str], asyncio.Future] = {}

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()
        log.close()
        if store is not None:
            store.close()

    app = fastapi.FastAPI(title="probe serve", version="1", lifespan=lifespan)
    err = {str(s): _ERROR for s in (400, 401, 404, 413, 429)}

    def error(status: int, message: str, code: str, headers: dict | None = None):
        return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)

    @app.exception_handler(fastapi.exceptions.RequestValidationError)
    async def invalid(request, exc):
        return error(400, f"invalid request: {str(exc)[:200]}", "bad_request")

    def metadata() -> dict:
        params = {"probe_defended": classifier.sigma > 0, "probe_sigma": classifier.sigma, "probe_n": classifier.n,
                  "num_classes": runtime.num_classes}  # fmt: skip
        return {"name": config.name, "versions": ["1"], "platform": "probe_onnxruntime",
                "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *shape]}],
                "outputs": [{"name": OUTPUT_NAME, "datatype": "INT64", "shape": [-1]}], "parameters": params}  # fmt: skip

    def model_or_404(name: str):
        return None if name == config.name else error(404, f"no model named {name[:60]!r}", "not_found")

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
            return missing
        key = _key(store, request)
        headers = {v2.BUDGET_HEADER: str(key.remaining)} if key is not None else None
        return JSONResponse(metadata(), headers=headers)

    @app.get("/v2/models/{name}/ready", responses={"404": _ERROR})
    async def model_ready(name: str):
        return model_or_404(name) or {"name": name, "ready": True}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post("/v2/models/{name}/infer", responses=err,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST}}}})  # fmt: skip
    async def infer(name: str, request: fastapi.Request):
        start = time.perf_counter()
        answer = await _infer(name, request)
        metrics.requests.labels(str(answer.status_code)).inc()
        metrics.latency.observe(time.perf_counter() - start)
        return answer

    async def _infer(name: str, request):
        missing = model_or_404(name)
        if missing is not None:
            return missing
        key = None
        if store is not None:
            key = _key(store, request)
            if key is None:
                log.write(key=None, status=401)
                return error(401, "a valid API key is needed (Authorization: Bearer pk_...)", "unauthorized")
        who = key.id if key is not None else "-"
        wait = limiter.wait_time(who)
        if wait > 0:
            log.write(key=who, status=429, code="rate_limited")
            return error(429, "rate limit reached", "rate_limited", {"Retry-After": str(max(1, round(wait)))})
        try:
            body = await _read(request, config.max_bytes)
            points, request_id = parse_infer(body, request.headers.get(v2.HEADER_LENGTH), input_name=INPUT_NAME,
                                             shape=shape, max_points=config.max_points, value_range=span)  # fmt: skip
        except RequestError as refused:
            log.write(key=who, status=refused.status, code=refused.code)
            return error(refused.status, refused.message, refused.code)
        k = len(points)
        if key is not None and request_id:
            stored = store.answer(key.id, request_id)
            if stored is None and (key.id, request_id) in inflight:
                stored = list(await asyncio.shield(inflight[(key.id, request_id)]))
            if stored is not None:
                log.write(key=who, id=request_id, points=k, answers=stored, status=200, repeated=True)
                return _answer(config.name, request_id, stored, store.get(key.id).remaining)
        if key is not None:
            left = store.get(key.id).remaining - reserved.get(key.id, 0)
            if k > left:
                log.write(key=who, id=request_id, points=k, status=429, code=v2.BUDGET_CODE)
                return error(429, f"query budget spent: {max(left, 0)} left, {k} asked", v2.BUDGET_CODE,
                             {v2.BUDGET_HEADER: str(max(left, 0))})  # fmt: skip
            reserved[key.id] = reserved.get(key.id, 0) + k
        done = asyncio.get_running_loop().create_future()
        if key is not None and request_id:
            inflight[(key.id, request_id)] = done
        try:
            labels = (await batcher.labels(points)).tolist()
            remaining = None
            if key is not None:  # charged now that the answer is there, with the answer
                remaining = await asyncio.to_thread(store.charge, key.id, k, request_id, labels)
            done.set_result(labels)
        except BudgetSpent as spent:
            done.cancel()
            return error(429, str(spent), v2.BUDGET_CODE)
        finally:
            if key is not None:
                reserved[key.id] -= k
                inflight.pop((key.id, request_id or ""), None)
            if not done.done():
                done.cancel()
        metrics.queries.labels(key.name if key is not None else "-").inc(k)
        metrics.inferences.inc(k * classifier.n)
        log.write(key=who, id=request_id, points=k, answers=labels, status=200)
        return _answer(config.name, request_id, labels, remaining)

    return app


def _key(store: KeyStore | None, request):
    if store is None:
        return None
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
    return store.authenticate(token)


async def _read(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request is larger than {limit} bytes", "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request is larger than {limit} bytes", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(name: str, request_id: str | None, labels: list[int], remaining: int | None):
    from fastapi.responses import JSONResponse

    body = {"model_name": name, "model_version": "1",
            "outputs": [{"name": OUTPUT_NAME, "datatype": "INT64", "shape": [len(labels)], "data": labels}]}  # fmt: skip
    if request_id:
        body["id"] = request_id
    headers = None if remaining is None else {v2.BUDGET_HEADER: str(remaining)}
    return JSONResponse(body, headers=headers)


def serve(classifier, config: ServeConfig, *, host: str, port: int) -> None:
    """Run the app with uvicorn until SIGINT or SIGTERM."""
    uvicorn = need("uvicorn")
    uvicorn.run(create_app(classifier, config), host=host, port=port, log_level="warning", access_log=False)
