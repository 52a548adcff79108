"""An HTTP endpoint behind the labels-only interface of :class:`probe.runtime.Runtime`.

:class:`RemoteRuntime` has what the smoothing, the oracle and the engine use of a
runtime (``labels(x)``, ``input_shape``, ``num_classes``, ``batch_size``, ``spec``,
``info``, ``inferences``, ``describe()``), so the same attacks run against a server
exactly as a remote adversary would see it:

* ``protocol="v2"``: any Open Inference Protocol server (Triton, KServe, MLServer),
  JSON tensors; ``protocol="probe"``: ``probe serve`` (the binary tensor extension, the
  key's budget read from every answer so that no request goes past it); ``"grpc"``:
  :class:`probe.remote.grpc_client.GrpcRuntime`.
* The class count comes from the metadata (a score output, or ``num_classes``), from the
  user (``Endpoint.classes``: ``--num-classes``, ``--classes``), or from one answer's
  scores; INT labels, BYTES class names and score vectors are read.
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

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from probe.errors import EndpointBudgetSpent, ParameterError, ProbeError, braces  # noqa: F401 - EndpointBudgetSpent: re-exported
from probe.remote import protocol as v2
from probe.remote.classes import Classes
from probe.remote.transport import HttpModel, as_int
from probe.spec import InputSpec
from probe.validate import check_choice, check_int, check_real

PROTOCOLS = ("v2", "probe", "grpc")


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
    classes : the class count and/or names the user gave (``--num-classes``, ``--classes``):
        needed when the server declares no class count and answers labels or names only.
    max_rate : at most this many requests per second (None: no limit).
    binary : send tensors with the binary tensor extension (None: with ``protocol="probe"``,
        and with ``"v2"`` when the server lists ``binary_tensor_data`` at ``GET /v2``, as
        Triton and ``probe serve`` do; JSON otherwise, as MLServer and KServe take).
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
    classes: Classes = field(default_factory=Classes)
    max_rate: float | None = None
    binary: bool | None = None

    def __post_init__(self) -> None:
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_int("points_per_request", self.points_per_request, 1)
        check_int("concurrency", self.concurrency, 1, 256)
        check_real("timeout", self.timeout, 0.0, None, low_closed=False)
        check_int("retries", self.retries, 0, 100)
        parts = urlsplit(self.url)
        schemes = ("http", "https", "grpc", "grpcs") if self.protocol == "grpc" else ("http", "https")
        if parts.scheme not in schemes or not parts.netloc:
            raise ParameterError(f"{{name}} must be an {' or '.join(s + '://' for s in schemes)} URL, "
                                 f"got {braces(repr(self.url))}", name="url")  # fmt: skip


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


class RemoteRuntime(HttpModel):
    """A served classifier returning top-1 labels for canonical images, over HTTP
    (``protocol="grpc"``: :class:`probe.remote.grpc_client.GrpcRuntime`, the same above the wire)."""

    def __init__(self, endpoint: Endpoint) -> None:
        if endpoint.protocol == "grpc":
            raise ProbeError("protocol grpc: open the endpoint with probe.remote.grpc_client.GrpcRuntime")
        self.endpoint = endpoint
        base, name = split_url(endpoint.url, endpoint.model)
        headers = dict(endpoint.headers)
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        self._open(base_url=base, headers=headers, timeout=endpoint.timeout, concurrency=endpoint.concurrency,
                   retries=endpoint.retries, backoff=endpoint.backoff, max_rate=endpoint.max_rate)  # fmt: skip
        self._expect(self._get("/v2/health/ready"), "is not ready (GET /v2/health/ready)")
        self.binary = endpoint.protocol == "probe" if endpoint.binary is None else endpoint.binary
        if endpoint.binary is None and endpoint.protocol == "v2":
            server = self._get("/v2")
            extensions = server.json().get("extensions") if server.status_code == 200 and _is_json(server) else None
            self.binary = isinstance(extensions, list) and "binary_tensor_data" in extensions
        self.model = name or self._only_model()
        meta = v2.parse_metadata(self._expect(self._get(f"/v2/models/{quote(self.model)}"), "has no such model").json())
        self._path = f"/v2/models/{quote(self.model)}/infer"
        self._adopt(meta, f"{base}/v2/models/{self.model}")

    def _adopt(self, meta: v2.ModelMeta, path: str) -> None:
        """Learn the input, the class count and the convention from the model's metadata."""
        endpoint = self.endpoint
        self.meta = meta
        layout = endpoint.overrides.get("layout")
        self.input = v2.image_input(meta, layout)
        spec = v2.wire_spec(self.input, endpoint.overrides)
        if endpoint.classes.names:
            spec = dataclasses.replace(spec, class_names=endpoint.classes.names)
        self.points_per_request = endpoint.points_per_request if self.input.batched else 1
        self.batch_size = self.points_per_request * endpoint.concurrency
        params = meta.parameters
        declared = v2.num_scores(meta) or as_int(params.get("num_classes"))
        classes = endpoint.classes.reconcile(declared)
        output = meta.outputs[0].name if len(meta.outputs) == 1 else None
        self.info = RemoteInfo(
            path=path, input_name=self.input.name, output_name=output,
            num_classes=0, fixed_batch=None, spec=spec, providers=(f"remote:{endpoint.protocol}",),
            metadata={str(k): str(v) for k, v in params.items()}, datatype=self.input.datatype,
            layout=self.input.layout,
        )  # fmt: skip
        classes = classes or self._count_classes()
        if classes < 2:
            raise ProbeError(f"the endpoint's model has {classes} class(es): not a classifier")
        self.info = dataclasses.replace(self.info, num_classes=int(classes))

    # ------------------------------------------------------------------ the Runtime interface
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
            "binary_tensors": getattr(self, "binary", False),
            "concurrency": self.endpoint.concurrency,
            "batch_size": self.batch_size,
            "defended": self.defended,
            "parameters": self.meta.parameters,
            "providers": list(self.info.providers),
        }

    # ------------------------------------------------------------------ wire
    def wire(self, x: np.ndarray) -> np.ndarray:
        """Canonical points (k, 3, H, W) in the server's convention and datatype."""
        return v2.to_wire(x, self.info.spec, self.input)

    def _infer(self, chunk: np.ndarray) -> np.ndarray:
        return v2.top1(self._ask(chunk), len(chunk), None, self.endpoint.classes)

    def _ask(self, chunk: np.ndarray, binary: bool | None = None) -> dict:
        """The JSON answer of one inference request for the points of ``chunk``."""
        binary = self.binary if binary is None else binary
        body, headers = v2.encode(self.wire(chunk), self.input, request_id=uuid.uuid4().hex, binary=binary)
        return self._send("POST", self._path, len(chunk), content=body, headers=headers).json()

    def _refused(self, status: int, message: str, points: int) -> str:
        params = self.meta.parameters if hasattr(self, "meta") else {}
        if status == 400 and params.get("probe_defended") and not self.endpoint.defended:
            return (
                f"the endpoint smooths its answers itself (it advertises probe_defended: true, sigma "
                f"{params.get('probe_sigma')}, n {params.get('probe_n')}) and refused client-side noisy points "
                f"({message}): run with --defended (no client-side --sigma/--n)"
            )
        return super()._refused(status, message, points)

    def _note_budget(self, answer) -> None:
        left = as_int(answer.headers.get(v2.BUDGET_HEADER))
        if left is not None and self.endpoint.protocol == "probe":
            with self._lock:
                self.remaining = left if self.remaining is None else min(self.remaining, left)

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
        data = self._ask(np.zeros((1, *self.input_shape), np.float32), binary=False)
        for item in data.get("outputs") or []:
            shape = item.get("shape") or []
            if len(shape) >= 1 and int(shape[-1]) >= 2 and str(item.get("datatype")).upper() != "BYTES":
                return int(shape[-1])
        raise ProbeError(
            "the endpoint declares no class count and answers labels only: give it with --num-classes N "
            "or --classes FILE (one class name per line)"
        )


def _is_json(answer) -> bool:
    try:
        return isinstance(answer.json(), dict)
    except ValueError:
        return False


def parse_headers(items) -> tuple[tuple[str, str], ...]:
    """``--header 'Name: value'`` (repeatable) as (name, value) pairs."""
    headers = []
    for item in items or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ProbeError(f"--header expects 'Name: value', got {item!r}")
        headers.append((name.strip(), value.strip()))
    return tuple(headers)


def open_endpoint(options, overrides: dict[str, Any], classes: Classes | None = None) -> RemoteRuntime:
    """The RemoteRuntime of the CLI's model options (``--endpoint`` given)."""
    endpoint = Endpoint(
        url=options.endpoint, protocol=options.protocol, model=options.model,
        points_per_request=options.batch_size, concurrency=options.concurrency, api_key=options.api_key,
        headers=parse_headers(options.header), timeout=options.timeout, defended=options.defended,
        overrides=overrides, classes=classes or Classes(), max_rate=getattr(options, "max_rate", None),
    )  # fmt: skip
    return RemoteRuntime(endpoint)
