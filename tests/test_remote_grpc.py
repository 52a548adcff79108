"""KServe v2 over gRPC against an in-process grpcio server on loopback (``--protocol grpc``):
the records of a local run, UINT8 inputs, retries, one-line errors. MLServer's own gRPC
server is in tests/test_remote_interop.py."""

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")

from probe.errors import ProbeError  # noqa: E402
from probe.load import load_samples  # noqa: E402
from probe.remote.classes import Classes  # noqa: E402
from probe.remote.client import Endpoint  # noqa: E402
from probe.remote.grpc_client import GrpcRuntime  # noqa: E402
from probe.remote.kserve_grpc import messages  # noqa: E402
from probe.runs.campaign import AttackConfig, attack_images  # noqa: E402
from probe.smoothing import SmoothedClassifier  # noqa: E402
from tests.test_remote_labels import same_records  # noqa: E402
from tests.test_serve import cifar  # noqa: E402,F401


def serve(cifar, *, datatype="FP32", answer="scores", fail=None):
    """A KServe v2 gRPC server around the CIFAR model; yields (address, state)."""
    pb = messages()
    state = {"attempts": Counter(), "points": 0, "received": []}
    shape = [-1, 32, 32, 3] if datatype == "UINT8" else [-1, 3, 32, 32]

    def ready(request, context):
        return pb.ServerReadyResponse(ready=True)

    def metadata(request, context):
        if request.name != "m":
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.name} not found")
        out = {"scores": ("FP32", [-1, 10]), "labels": ("INT64", [-1])}[answer]
        meta = pb.ModelMetadataResponse(name="m", platform="test")
        meta.inputs.add(name="images", datatype=datatype, shape=shape)
        meta.outputs.add(name="out", datatype=out[0], shape=out[1])
        return meta

    def infer(request, context):
        state["attempts"][request.id] += 1
        if fail and fail(state["attempts"][request.id]):
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected")
        t = request.inputs[0]
        dtype = np.uint8 if t.datatype == "UINT8" else np.float32
        x = np.frombuffer(request.raw_input_contents[0], dtype=dtype).reshape(list(t.shape))
        state["received"].append(x)
        canonical = x.transpose(0, 3, 1, 2) / np.float32(255) if datatype == "UINT8" else x
        labels = cifar.labels(canonical.astype(np.float32))
        state["points"] += len(x)
        response = pb.ModelInferResponse(model_name="m", id=request.id)
        if answer == "scores":  # typed contents
            out = response.outputs.add(name="out", datatype="FP32", shape=[len(x), 10])
            out.contents.fp32_contents.extend(np.eye(10, dtype=np.float32)[labels].ravel().tolist())
        else:  # raw bytes, as Triton answers
            response.outputs.add(name="out", datatype="INT64", shape=[len(x)])
            response.raw_output_contents.append(labels.astype("<i8").tobytes())
        return response

    def handler(fn, request):
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=request.FromString,
                                                   response_serializer=lambda m: m.SerializeToString())  # fmt: skip

    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ServerReady": handler(ready, pb.ServerReadyRequest),
        "ModelMetadata": handler(metadata, pb.ModelMetadataRequest),
        "ModelInfer": handler(infer, pb.ModelInferRequest),
    })])  # fmt: skip
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}", state


def test_grpc_records_equal_local_and_raw_int64_labels_are_read(cifar, tmp_path):
    images = load_samples("cifar10-cnn", limit=2)
    config = AttackConfig(attacks=("hsja", "rays"), budget=50, seed=6, p_adv_samples=8)
    local = attack_images(SmoothedClassifier(cifar, 0.0, 1), images, config)
    server, address, state = serve(cifar)
    try:
        remote = GrpcRuntime(Endpoint(url=f"grpc://{address}", protocol="grpc", model="m", points_per_request=8))
        records = attack_images(SmoothedClassifier(remote, 0.0, 1), images, config)
        remote.close()
    finally:
        server.stop(None)
    same_records(local, records)
    assert {r["protocol"] for r in records} == {"grpc"} and remote.answered == state["points"] > 100
    server, address, state = serve(cifar, answer="labels")
    try:
        x = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
        with pytest.raises(ProbeError, match="declares no class count"):
            GrpcRuntime(Endpoint(url=f"grpc://{address}", protocol="grpc", model="m"))
        labels = GrpcRuntime(Endpoint(url=f"grpc://{address}", protocol="grpc", model="m",
                                        classes=Classes(count=10))).labels(x)  # fmt: skip
    finally:
        server.stop(None)
    assert np.array_equal(labels, cifar.labels(x))


def test_grpc_uint8_retries_and_one_line_errors(cifar, tmp_path, run_cli):
    from probe.zoo import default_images

    server, address, state = serve(cifar, datatype="UINT8", fail=lambda attempt: attempt <= 2)
    try:
        x = np.random.default_rng(1).random((6, 3, 32, 32), dtype=np.float32)
        remote = GrpcRuntime(Endpoint(url=f"grpc://{address}", protocol="grpc", model="m", points_per_request=2,
                                        backoff=0.01))  # fmt: skip
        labels = remote.labels(x)
        assert np.array_equal(labels, cifar.labels(remote.as_sent(x))) and remote.retried == 6
        assert set(state["attempts"].values()) == {3} and state["points"] == 6  # each request answered once
        assert all(r.dtype == np.uint8 for r in state["received"])
        with pytest.raises(ProbeError, match="has no such model .*NOT_FOUND"):
            GrpcRuntime(Endpoint(url=f"grpc://{address}", protocol="grpc", model="other"))
        with pytest.raises(ProbeError, match="failed 2 times: gRPC UNAVAILABLE"):
            GrpcRuntime(Endpoint(url=f"grpc://{address}", protocol="grpc", model="m", retries=1, backoff=0.01)).labels(
                x[:1]
            )
        done = run_cli("attack", "--endpoint", address, "--protocol", "grpc", "--model", "m", "--sigma", "0",
                       "--attack", "rays", "--budget", "20", "--p-adv-samples", "2", "--limit", "1",
                       "--images", default_images("cifar10-cnn"), "--out", tmp_path / "o")  # fmt: skip
    finally:
        server.stop(None)
    assert done.exit_code == 0, done.output
    (rec,) = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert rec["protocol"] == "grpc" and rec["endpoint_datatype"] == "UINT8" and rec["queries"] == 20
    with pytest.raises(ProbeError, match="cannot reach grpc://127.0.0.1:1 over gRPC"):
        GrpcRuntime(Endpoint(url="grpc://127.0.0.1:1", protocol="grpc", model="m", timeout=2))
