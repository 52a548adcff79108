"""Wall time per query through each way of reaching a model (#38), against the same model run locally.

    PYTHONPATH=. python benchmarks/client_paths.py --model cifar10-cnn --n 1 --n 10
    PYTHONPATH=. python benchmarks/client_paths.py --model efficientnet-lite0 --rounds 4 --json results/client_paths_effnet.json

The workload is what the engine sends while many attacks run: each round, ``--jobs``
attacks ask about ``--points`` points each, merged into one ``SmoothedClassifier.votes``
call (client-side smoothing, ``n`` noisy copies per point: the same ``n x points`` model
runs on every path). Paths, each server in its own process on loopback:

* ``local``: ONNX Runtime in this process (the reference);
* ``callable``: the same session behind :class:`probe.CallableModel`;
* ``v2-json`` / ``v2-binary``: ``probe serve`` (sigma 0) through ``--protocol v2`` with JSON
  tensors (orjson when installed, else the standard library: stderr says which), and with the binary tensor extension (``--protocol probe``; what ``v2`` picks when
  the server lists ``binary_tensor_data``);
* ``grpc``: a minimal KServe v2 gRPC server (grpcio) around the same model (needs grpcio);
* ``api-png``: a FastAPI image API taking base64 PNGs (8 a request) through a target file.

Ratio = path / local seconds per query. ``--batch-size`` points per request for the
tensor paths, ``--jobs`` requests in flight.
"""


import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier
from probe.zoo import resolve_model

sys.path.insert(0, str(Path(__file__).parent))
from _common import Report  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grpc_server(model: str, port: int) -> None:
    """A KServe v2 gRPC server (ServerReady, ModelMetadata, ModelInfer with raw tensors) around ``model``."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from probe.remote.kserve_grpc import messages

    pb, rt = messages(), Runtime(resolve_model(model), batch_size=64)
    c, h, w = rt.input_shape

    def ready(request, context):
        return pb.ServerReadyResponse(ready=True)

    def metadata(request, context):
        meta = pb.ModelMetadataResponse(name=request.name)
        meta.inputs.add(name="input", datatype="FP32", shape=[-1, c, h, w])
        meta.outputs.add(name="label", datatype="INT64", shape=[-1])
        meta.parameters["num_classes"].int64_param = rt.num_classes
        return meta

    def infer(request, context):
        t = request.inputs[0]
        x = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(list(t.shape))
        response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        response.outputs.add(name="label", datatype="INT64", shape=[len(x)])
        response.raw_output_contents.append(rt.labels(x).astype("<i8").tobytes())
        return response

    def handler(fn, request):
        return grpc.unary_unary_rpc_method_handler(fn, request.FromString, lambda m: m.SerializeToString())

    server = grpc.server(ThreadPoolExecutor(max_workers=8), options=[("grpc.max_receive_message_length", -1)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ServerReady": handler(ready, pb.ServerReadyRequest), "ModelMetadata": handler(metadata, pb.ModelMetadataRequest),
        "ModelInfer": handler(infer, pb.ModelInferRequest)})])  # fmt: skip
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def api_server(model: str, port: int) -> None:
    """A FastAPI image API: {"instances": [base64 PNG, ...]} -> {"predictions": [label, ...]}."""
    import base64

    import uvicorn
    from fastapi import FastAPI, Request

    from probe.remote.images import decode

    rt, app = Runtime(resolve_model(model), batch_size=64), FastAPI()

    @app.post("/batch")
    async def batch(request: Request):
        body = await request.json()
        x = np.stack([decode(base64.b64decode(b)) for b in body["instances"]])
        return {"predictions": rt.labels(x).tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


def start(args: list[str], connect) -> tuple[subprocess.Popen, object]:
    """A server process and the client model ``connect()`` returns once it answers."""
    proc = subprocess.Popen([sys.executable, *args], stderr=subprocess.DEVNULL)
    for _ in range(900):
        try:
            return proc, connect()
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None:
                raise SystemExit(f"the server {args} exited")
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"the server {args} did not start")


def timed(runtime, rounds, sigma: float, n: int, queries: int) -> float:
    rng = np.random.default_rng(0)
    smoothed = SmoothedClassifier(runtime, sigma, n, early_stop=False)
    smoothed.votes([(rounds[0][0], rng)])  # warm-up
    began = time.perf_counter()
    for requests in rounds:
        smoothed.votes([(points, rng) for points in requests])
    return (time.perf_counter() - began) / queries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar10-cnn")
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--n", type=int, action="append", help="noisy copies per query (repeatable; default 1 and 10)")
    parser.add_argument("--jobs", type=int, default=8, help="attacks asking at once (requests in flight)")
    parser.add_argument("--points", type=int, default=4, help="points per attack per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64, help="points per request (tensor paths)")
    parser.add_argument("--paths", default="local,callable,v2-json,v2-binary,grpc,api-png")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--grpc-server", nargs=2, metavar=("MODEL", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--api-server", nargs=2, metavar=("MODEL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.grpc_server:
        return grpc_server(args.grpc_server[0], int(args.grpc_server[1])) or 0
    if args.api_server:
        return api_server(args.api_server[0], int(args.api_server[1])) or 0

    from probe.remote.api import ApiRuntime
    from probe.remote.callable import CallableModel
    from probe.remote.client import Endpoint, RemoteRuntime
    from probe.remote.target import load_target

    local = Runtime(resolve_model(args.model), batch_size=args.batch_size)
    rng = np.random.default_rng(1)
    rounds = [[rng.random((args.points, *local.input_shape), dtype=np.float32) for _ in range(args.jobs)]
              for _ in range(args.rounds)]  # fmt: skip
    queries = args.rounds * args.jobs * args.points
    name, script = Path(args.model).stem, str(Path(__file__).resolve())
    from probe.remote.protocol import FAST_JSON

    json_via = "orjson" if FAST_JSON else "json"  # what writes and reads v2 JSON tensors, client and server
    print(f"v2 JSON tensors through {json_via}", file=sys.stderr)
    report = Report(f"{'model':<20} {'n':>3} {'path':<10} {'ms/query':>9} {'ratio':>6}")
    for n in args.n or [1, 10]:
        reference = timed(local, rounds, args.sigma, n, queries)
        for path in args.paths.split(","):
            proc, closing = None, None
            if path == "local":
                seconds = reference
            elif path == "callable":
                seconds = timed(CallableModel(local.labels, input_shape=local.input_shape, num_classes=local.num_classes,
                                              batch_size=args.batch_size), rounds, args.sigma, n, queries)  # fmt: skip
            else:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                if path.startswith("v2-"):
                    server = ["-m", "probe", "serve", "--model", args.model, "--sigma", "0", "--no-keys", "--port",
                              str(port), "--batch-size", str(args.batch_size)]  # fmt: skip
                    protocol = "v2" if path == "v2-json" else "probe"
                    connect = lambda: RemoteRuntime(Endpoint(url=url, model=name, protocol=protocol,  # noqa: E731
                                                             concurrency=args.jobs, points_per_request=args.batch_size,
                                                             binary=path == "v2-binary"))
                elif path == "grpc":
                    from probe.remote.grpc_client import GrpcRuntime

                    server = [script, "--grpc-server", args.model, str(port)]
                    connect = lambda: GrpcRuntime(Endpoint(url=f"grpc://127.0.0.1:{port}", protocol="grpc",  # noqa: E731
                                                           model=name, concurrency=args.jobs, retries=0,
                                                           points_per_request=args.batch_size, timeout=120))
                else:
                    target = Path(f"/tmp/probe-bench-{port}.toml")
                    target.write_text(f'url = "{url}/batch"\nimages_per_request = 8\n[image]\nsize = '
                                      f'{list(local.spec.size)}\n[body]\njson = {{ instances = "${{images}}" }}\n'
                                      f'[answer]\nlabel = "predictions"\nkind = "index"\nnum_classes = {local.num_classes}\n')
                    server = [script, "--api-server", args.model, str(port)]
                    def connect():  # a plain API has no health check: one query says it is up
                        api = ApiRuntime(load_target(target), concurrency=args.jobs, retries=0)
                        api.labels(rounds[0][0][:1])
                        return api

                proc, closing = start(server, connect)
                try:
                    seconds = timed(closing, rounds, args.sigma, n, queries)
                finally:
                    closing.close()
                    proc.terminate()
                    proc.wait(30)
                    if path == "api-png":
                        target.unlink(missing_ok=True)  # the target file written for this run
            report.add({"model": args.model, "n": n, "path": path, "jobs": args.jobs, "points": args.points,
                        "rounds": args.rounds, "queries": queries, "s_per_query": seconds, "ratio": seconds / reference,
                        "json": json_via},
                       f"{args.model:<20} {n:>3} {path:<10} {seconds * 1e3:>9.3f} {seconds / reference:>6.2f}")  # fmt: skip
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
