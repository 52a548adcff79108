"""KServe v2 over gRPC (``--endpoint host:port --protocol grpc``): Triton, KServe, MLServer.

:class:`GrpcRuntime` is :class:`~probe.remote.client.RemoteRuntime` with another wire:
``ServerReady``, ``ModelMetadata`` and ``ModelInfer`` of ``inference.GRPCInferenceService``
through ``grpcio``, the tensors as ``raw_input_contents`` (little-endian bytes, as Triton's
and MLServer's clients send them), the outputs read from ``raw_output_contents`` or typed
``contents``. Everything above the wire is shared: the input convention from the
metadata, UINT8 inputs rounded to the 8-bit grid, ``--num-classes``/``--classes``, labels,
class names or scores, requests in parallel, retries on UNAVAILABLE, RESOURCE_EXHAUSTED
and DEADLINE_EXCEEDED, ``--max-rate``. The message classes come from
:mod:`probe.remote.kserve_grpc`. Needs ``pip install "onnx-probe[grpc]"`` (grpcio, protobuf).
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

import numpy as np

from probe.errors import ProbeError
from probe.remote import protocol as v2
from probe.remote.classes import Classes
from probe.remote.client import Endpoint, RemoteRuntime, parse_headers, split_url
from probe.remote.kserve_grpc import SERVICE, messages, parameter_value

EXTRA = 'pip install "onnx-probe[grpc]"'
RETRIED = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED")
CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "INT32": "int_contents",
            "INT16": "int_contents", "INT8": "int_contents", "UINT64": "uint64_contents", "UINT32": "uint_contents",
            "UINT16": "uint_contents", "UINT8": "uint_contents", "BOOL": "bool_contents", "BYTES": "bytes_contents"}  # fmt: skip


def need_grpc():
    try:
        import grpc
    except ImportError:
        raise ProbeError(f"grpcio is not installed: --protocol grpc needs {EXTRA}") from None
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        raise ProbeError(f"protobuf is not installed: --protocol grpc needs {EXTRA}") from None
    return grpc


def grpc_target(url: str) -> tuple[str, bool]:
    """(host:port, TLS?) from ``--endpoint``: ``host:port``, ``grpc://``, ``grpcs://``, ``http://`` or ``https://``."""
    for scheme, secure in (("grpcs://", True), ("https://", True), ("grpc://", False), ("http://", False)):
        if url.startswith(scheme):
            return url[len(scheme) :].split("/")[0], secure
    return url.split("/")[0], False


class GrpcRuntime(RemoteRuntime):
    """A served classifier returning top-1 labels for canonical images, over KServe v2 gRPC."""

    def __init__(self, endpoint: Endpoint) -> None:
        grpc = need_grpc()
        self.endpoint, self._grpc, self._pb = endpoint, grpc, messages()
        self.binary = True  # raw tensor contents
        target, secure = grpc_target(endpoint.url)
        _, name = split_url(endpoint.url, endpoint.model)
        self._start(concurrency=endpoint.concurrency, retries=endpoint.retries, backoff=endpoint.backoff,
                    max_rate=endpoint.max_rate)  # fmt: skip
        self.base_url = f"grpc{'s' if secure else ''}://{target}"
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        credentials = grpc.ssl_channel_credentials() if secure else None
        self._channel = (grpc.secure_channel(target, credentials, options) if secure
                         else grpc.insecure_channel(target, options))  # fmt: skip
        headers = [(k.lower(), v) for k, v in endpoint.headers]
        if endpoint.api_key:
            headers.append(("authorization", f"Bearer {endpoint.api_key}"))
        self._headers = tuple(headers)
        self._rpc: dict[str, Any] = {}
        ready = self._once("ServerReady", self._pb.ServerReadyRequest())
        if not ready.ready:
            raise ProbeError(f"the endpoint {self.base_url} is not ready (gRPC ServerReady)")
        if not name:
            raise ProbeError("give the served model's name with --model NAME")
        self.model = name
        meta = self._once("ModelMetadata", self._pb.ModelMetadataRequest(name=name))
        self._adopt(v2.parse_metadata(metadata_dict(meta)), f"{self.base_url}/v2/models/{name}")

    def _stub(self, method: str):
        if method not in self._rpc:
            response = getattr(self._pb, method + "Response")
            self._rpc[method] = self._channel.unary_unary(
                SERVICE + method, request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response.FromString,
            )  # fmt: skip
        return self._rpc[method]

    def _once(self, method: str, request):
        """A set-up call (no retries): its answer, or one line saying why not."""
        try:
            return self._stub(method)(request, timeout=self.endpoint.timeout, metadata=self._headers)
        except self._grpc.RpcError as exc:
            code, details = _status(exc)
            if code == "UNAVAILABLE":
                raise ProbeError(f"cannot reach {self.base_url} over gRPC: {details}") from None
            what = "has no such model" if code == "NOT_FOUND" or method == "ModelMetadata" else "refused"
            raise ProbeError(f"the endpoint {what} (gRPC {method}: {code}): {details}") from None

    def _ask(self, chunk: np.ndarray, binary: bool | None = None) -> dict:
        """One ModelInfer call for the points of ``chunk``, its outputs as v2 JSON would give them."""
        wire = self.wire(chunk)
        request = self._pb.ModelInferRequest(model_name=self.model, id=uuid.uuid4().hex)
        shape = list(wire.shape) if self.input.batched else list(wire.shape[1:])
        request.inputs.add(name=self.input.name, datatype=self.input.datatype, shape=shape)
        request.raw_input_contents.append(np.ascontiguousarray(wire, dtype=v2.DTYPES[self.input.datatype]).tobytes())
        return response_dict(self._invoke(request, len(chunk)))

    def _invoke(self, request, points: int):
        """ModelInfer, retrying what may pass."""
        wait, last = self._backoff, ""
        for attempt in range(self._retries + 1):
            wait = self._attempt(attempt, wait)
            try:
                return self._stub("ModelInfer")(request, timeout=self.endpoint.timeout, metadata=self._headers)
            except self._grpc.RpcError as exc:
                code, details = _status(exc)
                if code == "RESOURCE_EXHAUSTED" and "larger than" in details:  # a size limit: asking again won't pass
                    raise ProbeError(f"the endpoint refused {points} point(s) as too large (gRPC {code}: {details}): "
                                     "lower --batch-size") from None  # fmt: skip
                if code not in RETRIED:
                    raise ProbeError(f"the endpoint refused {points} point(s) (gRPC {code}): {details}") from None
                last = f"gRPC {code}: {details}"
        raise ProbeError(f"the endpoint failed {self._retries + 1} times: {last}")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._channel.close()


def metadata_dict(meta) -> dict:
    """A ModelMetadataResponse as the v2 REST JSON of the same metadata."""

    def tensors(items):
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {"name": meta.name, "platform": meta.platform, "inputs": tensors(meta.inputs),
            "outputs": tensors(meta.outputs), "parameters": {k: parameter_value(v) for k, v in meta.parameters.items()}}  # fmt: skip


def response_dict(response) -> dict:
    """A ModelInferResponse as the v2 REST JSON of the same answer (``outputs`` with ``data``)."""
    outputs = []
    raw = list(response.raw_output_contents)
    for i, out in enumerate(response.outputs):
        item: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        if i < len(raw):
            item["data"] = _raw_values(raw[i], out.datatype)
        elif out.datatype in CONTENTS:
            values = list(getattr(out.contents, CONTENTS[out.datatype]))
            item["data"] = [v.decode("utf-8", "replace") for v in values] if out.datatype == "BYTES" else values
        outputs.append(item)
    return {"model_name": response.model_name, "id": response.id, "outputs": outputs}


def _raw_values(data: bytes, datatype: str) -> list:
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then the bytes
        values, at = [], 0
        while at + 4 <= len(data):
            (size,) = struct.unpack_from("<I", data, at)
            values.append(data[at + 4 : at + 4 + size].decode("utf-8", "replace"))
            at += 4 + size
        return values
    if datatype not in v2.DTYPES:
        return []
    return np.frombuffer(data, dtype=v2.DTYPES[datatype]).tolist()


def _status(exc) -> tuple[str, str]:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = getattr(code, "name", str(code))
    lines = (details or "").strip().splitlines()
    return name, lines[0][:200] if lines else name


def open_grpc(options, overrides: dict[str, Any], classes: Classes | None = None) -> GrpcRuntime:
    """The GrpcRuntime of the CLI's model options (``--endpoint --protocol grpc``)."""
    endpoint = Endpoint(
        url=_as_url(options.endpoint), protocol="grpc", model=options.model, points_per_request=options.batch_size,
        concurrency=options.concurrency, api_key=options.api_key, headers=parse_headers(options.header),
        timeout=options.timeout, defended=options.defended, overrides=overrides, classes=classes or Classes(),
        max_rate=options.max_rate,
    )  # fmt: skip
    return GrpcRuntime(endpoint)


def _as_url(text: str) -> str:
    return text if "://" in text else f"grpc://{text}"


__all__ = ["GrpcRuntime", "grpc_target", "open_grpc"]
