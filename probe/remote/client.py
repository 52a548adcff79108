"""An HTTP endpoint behind the labels-only interface of :class:`probe.runtime.Runtime`.

:class:`RemoteRuntime` has what the smoothing, the oracle and the engine use of a
runtime (``labels(x)``, ``input_shape``, ``num_classes``, ``batch_size``, ``spec``,
``info``, ``inferences``, ``describe()``), so the same attacks run against a server
exactly as a remote adversary would see it:

* ``protocol="v2"``: any Open Inference Protocol server (Triton, KServe, MLServer),
  JSON tensors; ``protocol="probe"``: ``probe serve`` (the binary tensor extension, the
  key's budget read from every answer so that no request goes past it).
* The input's name, shape and datatype come from the server. A UINT8 input means the
  attacker sends 8-bit images: points are rounded to the 8-bit grid before they leave
  (:meth:`RemoteRuntime.as_sent` is what was sent; distances are measured on it).
* One ``labels`` call of ``batch_size`` rows becomes up to ``concurrency`` requests of
  ``points_per_request`` points, sent at once over a bounded connection pool.
* Timeouts; retries with exponential backoff on 429 (rate limits), 5xx and connection
  errors. A request keeps its ``id`` across retries (``probe serve`` answers a repeated
  id from its log without charging again); a point counts as answered (``answered``)
  only when its answer arrives.
* Anything else (unreachable host, TLS failure, a 4xx answer, an output that is not a
  classifier's) is a one-line :class:`~probe.errors.ProbeError`.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from probe.errors import EndpointBudgetSpent, ProbeError
from probe.remote import need
from probe.remote import protocol as v2
from probe.runtime import LabelModel
from probe.spec import InputSpec
from probe.validate import check_choice, check_int, check_real

PROTOCOLS = ("v2", "probe")


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where and how to reach a model server.

    url : the server (``http://host:port``), or a model's URL (``.../v2/models/NAME``).
    model : the model's name on the server (default: from the URL, else the only one).
    points_per_request : the most points in one request (1 without a batch dimension).
    concurrency : requests in flight at once.
    timeout : seconds per request; retries : further tries of a failed request;
    backoff : the first retry's wait in seconds (doubled each time, at most 8 s).
    defended : the endpoint smooths itself (records say so; no client-side noise).
    overrides : the server's input convention where it is not canonical
        (layout, channels, scale, mean, std, size, as :meth:`InputSpec.with_overrides`).
    """

    url: str
    protocol: str = "v2"
    model: str | None = None
    points_per_request: int = 64
    concurrency: int = 4
    api_key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.25
    defended: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("--protocol", self.protocol, PROTOCOLS)
        check_int("--batch-size", self.points_per_request, 1)
        check_int("--concurrency", self.concurrency, 1, 256)
        check_real("--timeout", self.timeout, 0.0, None, low_closed=False)
        check_int("retries", self.retries, 0, 100)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ProbeError(f"--endpoint must be an http:// or https:// URL, got {self.url!r}")


@dataclass(frozen=True, kw_only=True)
class RemoteInfo:
    """What the client learned about the served model (the fields of ``ModelInfo`` it uses)."""

    path: str
    input_name: str
    output_name: str | None
    num_classes: int
    fixed_batch: int | None
    spec: InputSpec
    providers: tuple[str, ...]
    metadata: dict[str, str]
    datatype: str
    layout: str


def split_url(url: str, model: str | None) -> tuple[str, str | None]:
    """(server base URL, model name) from ``--endpoint`` and ``--model``."""
    base = url.rstrip("/")
    if "/v2/models/" in base:
        base, _, rest = base.partition("/v2/models/")
        model = model or rest.split("/")[0] or None
    elif base.endswith("/v2"):
        base = base[: -len("/v2")]
    return base, model


class RemoteRuntime(LabelModel):
    """A served classifier returning top-1 labels for canonical images, over HTTP."""

    def __init__(self, endpoint: Endpoint) -> None:
        httpx = need("httpx")
        self.endpoint = endpoint
        self._httpx = httpx
        base, name = split_url(endpoint.url, endpoint.model)
        headers = dict(endpoint.headers)
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        self._client = httpx.Client(
            base_url=base,
            headers=headers,
            timeout=endpoint.timeout,
            limits=httpx.Limits(max_connections=endpoint.concurrency, max_keepalive_connections=endpoint.concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=endpoint.concurrency, thread_name_prefix="probe-endpoint")
        self._lock = threading.Lock()
        self.base_url = base
        self.remaining: int | None = None  # the key's budget left, as the server last said (probe protocol)
        self._reserved = 0
        self.answered = 0  # points whose answer arrived (what a server charges)
        self.inferences = 0
        self.calls = 0
        self.rows = 0
        self.retried = 0
        self.session_seconds = 0.0
        self._expect(self._get("/v2/health/ready"), "is not ready (GET /v2/health/ready)")
        self.model = name or self._only_model()
        meta = v2.parse_metadata(self._expect(self._get(f"/v2/models/{quote(self.model)}"), "has no such model").json())
        self.meta = meta
        layout = endpoint.overrides.get("layout")
        self.input = v2.image_input(meta, layout)
        spec = v2.wire_spec(self.input, endpoint.overrides)
        self.points_per_request = endpoint.points_per_request if self.input.batched else 1
        self.batch_size = self.points_per_request * endpoint.concurrency
        self._path = f"/v2/models/{quote(self.model)}/infer"
        params = meta.parameters
        classes = v2.num_scores(meta) or _int(params.get("num_classes"))
        output = meta.outputs[0].name if len(meta.outputs) == 1 else None
        self.info = RemoteInfo(
            path=f"{base}/v2/models/{self.model}", input_name=self.input.name, output_name=output,
            num_classes=0, fixed_batch=None, spec=spec, providers=(f"remote:{endpoint.protocol}",),
            metadata={str(k): str(v) for k, v in params.items()}, datatype=self.input.datatype,
            layout=self.input.layout,
        )  # fmt: skip
        classes = classes or self._count_classes()
        if classes < 2:
            raise ProbeError(f"the endpoint's model has {classes} class(es): not a classifier")
        self.info = _replace(self.info, num_classes=int(classes))

    # ------------------------------------------------------------------ the Runtime interface
    on_cuda = False

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
        futures = [self._pool.submit(self._infer, chunk) for chunk in chunks]
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

    def as_sent(self, x: np.ndarray) -> np.ndarray:
        """The canonical points the server receives for x: on the 8-bit grid for a UINT8 input."""
        return v2.as_sent(x, self.input.datatype)

    @property
    def defended(self) -> bool:
        """The endpoint smooths itself (``--defended``, or ``probe serve`` says so): its answers are random."""
        return self.endpoint.defended or bool(self.meta.parameters.get("probe_defended", False))

    @property
    def record_fields(self) -> dict[str, Any]:
        """What every result record says about the endpoint (the verdict's evaluations are its queries too)."""
        params = self.meta.parameters
        return {
            "endpoint": self.info.path,
            "protocol": self.endpoint.protocol,
            "defended": self.defended,
            "endpoint_sigma": params.get("probe_sigma"),
            "endpoint_n": params.get("probe_n"),
            "endpoint_datatype": self.input.datatype,
            "verdict_queries_charged": True,  # clean label and p_adv evaluations were queries to the endpoint
        }

    def describe(self) -> dict:
        """A JSON-able summary (for `probe info`)."""
        return {
            "path": self.info.path,
            "protocol": self.endpoint.protocol,
            "input": self.input.name,
            "datatype": self.input.datatype,
            "layout": self.input.layout,
            "output": self.info.output_name,
            "num_classes": self.num_classes,
            "points_per_request": self.points_per_request,
            "concurrency": self.endpoint.concurrency,
            "batch_size": self.batch_size,
            "defended": self.defended,
            "parameters": self.meta.parameters,
            "providers": list(self.info.providers),
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    # ------------------------------------------------------------------ wire
    def wire(self, x: np.ndarray) -> np.ndarray:
        """Canonical points (k, 3, H, W) in the server's convention and datatype."""
        return v2.to_wire(x, self.info.spec, self.input)

    def _infer(self, chunk: np.ndarray) -> np.ndarray:
        body, headers = v2.encode(
            self.wire(chunk), self.input, request_id=uuid.uuid4().hex, binary=self.endpoint.protocol == "probe"
        )
        answer = self._send(body, headers, len(chunk))
        labels = v2.top1(answer.json(), len(chunk), None)
        if np.any(labels < 0) or np.any(labels >= self.info.num_classes):
            raise ProbeError(f"the endpoint answered labels outside [0, {self.info.num_classes})")
        with self._lock:
            self.answered += len(chunk)
            self.calls += 1
            self.rows += len(chunk)
        return labels

    def _send(self, body: bytes, headers: dict[str, str], points: int):
        """POST one inference request, retrying what may pass; the answer (HTTP 200)."""
        httpx, wait, last = self._httpx, self.endpoint.backoff, ""
        for attempt in range(self.endpoint.retries + 1):
            if attempt:
                with self._lock:
                    self.retried += 1
                time.sleep(wait)
                wait = min(wait * 2, 8.0)
            try:
                answer = self._client.post(self._path, content=body, headers=headers)
            except httpx.ConnectError as exc:
                if "SSL" in str(exc) or "certificate" in str(exc).lower():
                    raise ProbeError(f"TLS failure talking to {self.base_url}: {_first(exc)}") from None
                last = f"cannot connect to {self.base_url} ({_first(exc)})"
                continue
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                last = f"{type(exc).__name__} from {self.base_url} ({_first(exc)})"
                continue
            self._note_budget(answer)
            if answer.status_code == 200:
                return answer
            message, code = v2.error_message(answer.content)
            if answer.status_code == 429 and code == v2.BUDGET_CODE:
                raise EndpointBudgetSpent(f"the endpoint's query budget for this key is spent: {message}")
            if answer.status_code == 429 or answer.status_code >= 500:
                last = f"HTTP {answer.status_code}: {message}"
                after = _int(answer.headers.get("Retry-After"))
                wait = max(wait, min(float(after or 0), 8.0))
                continue
            raise ProbeError(f"the endpoint refused {points} point(s) (HTTP {answer.status_code}): {message}")
        raise ProbeError(f"the endpoint failed {self.endpoint.retries + 1} times: {last}")

    def _note_budget(self, answer) -> None:
        left = _int(answer.headers.get(v2.BUDGET_HEADER))
        if left is not None and self.endpoint.protocol == "probe":
            with self._lock:
                self.remaining = left if self.remaining is None else min(self.remaining, left)

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
            raise ProbeError(f"{kind} {self.base_url}: {_first(exc)}") from None
        except self._httpx.HTTPError as exc:
            raise ProbeError(f"cannot talk to {self.base_url}: {type(exc).__name__} {_first(exc)}") from None
        self._note_budget(answer)
        return answer

    def _expect(self, answer, what: str):
        if answer.status_code != 200:
            message, _ = v2.error_message(answer.content)
            raise ProbeError(f"the endpoint {what} (HTTP {answer.status_code}): {message}")
        return answer

    def _only_model(self) -> str:
        answer = self._client.post("/v2/repository/index", json={})
        names = [m.get("name") for m in answer.json() if isinstance(m, dict)] if answer.status_code == 200 else []
        if len(names) != 1:
            raise ProbeError("give the served model's name with --model NAME (or in the URL: .../v2/models/NAME)")
        return str(names[0])

    def _count_classes(self) -> int:
        """A server that declares no class count: learn it from one answer's scores."""
        zero = np.zeros((1, *self.input_shape), np.float32)
        body, headers = v2.encode(self.wire(zero), self.input, request_id=uuid.uuid4().hex, binary=False)
        data = self._send(body, headers, 1).json()
        for item in data.get("outputs") or []:
            shape = item.get("shape") or []
            if len(shape) >= 1 and int(shape[-1]) >= 2:
                return int(shape[-1])
        raise ProbeError("the endpoint declares no class count and answers labels only: not usable as a classifier")


def _replace(info: RemoteInfo, **changes) -> RemoteInfo:
    from dataclasses import replace

    return replace(info, **changes)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def open_endpoint(options, overrides: dict[str, Any]) -> RemoteRuntime:
    """The RemoteRuntime of the CLI's model options (``--endpoint`` given)."""
    headers = []
    for item in options.header or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ProbeError(f"--header expects 'Name: value', got {item!r}")
        headers.append((name.strip(), value.strip()))
    endpoint = Endpoint(
        url=options.endpoint, protocol=options.protocol, model=options.model,
        points_per_request=options.batch_size, concurrency=options.concurrency, api_key=options.api_key,
        headers=tuple(headers), timeout=options.timeout, defended=options.defended, overrides=overrides,
    )  # fmt: skip
    return RemoteRuntime(endpoint)
