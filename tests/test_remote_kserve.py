"""Interoperability with KServe's own Python ``ModelServer`` (kserve 0.21.0, #38): a small
``kserve.Model`` runs the embedded CIFAR ONNX file, and ``probe attack`` reaches it through
``--endpoint`` (v2 REST, JSON tensors: KServe lists no binary extension) and ``--protocol grpc``
(v2 gRPC); with the same seed the records equal a local run's, client-side smoothing included.

KServe pins its own FastAPI, protobuf and grpcio, so it lives in its own virtual environment,
created on first use under the temp dir and kept there (PROBE_KSERVE_VENV overrides where).
Skipped, with its reason, when that environment cannot be built (no package index). KServe
binds 0.0.0.0 and [::]: the server script below keeps both servers on 127.0.0.1.
"""

import contextlib
import importlib.util
import json
import socket
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from probe.zoo import default_images, resolve_model  # noqa: E402
from tests.test_remote import same_records  # noqa: E402
from tests.test_remote_interop import interop_venv, served  # noqa: E402
from tests.test_serve import free_port  # noqa: E402

PACKAGES = ("kserve==0.21.0", "onnxruntime", "numpy")

SERVER = '''
"""KServe's ModelServer around an ONNX classifier on loopback: serve.py MODEL.onnx NAME HTTP_PORT GRPC_PORT."""
import sys

import grpc.aio
import numpy as np
import onnxruntime as ort
import uvicorn

_Config, _add_port = uvicorn.Config, grpc.aio._server.Server.add_insecure_port


class LoopbackConfig(_Config):  # KServe binds 0.0.0.0 (REST) and [::] (gRPC): both stay on 127.0.0.1
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "host": "127.0.0.1"})


uvicorn.Config = LoopbackConfig
grpc.aio._server.Server.add_insecure_port = lambda self, where: _add_port(self, where.replace("[::]", "127.0.0.1"))

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402


class OnnxClassifier(Model):
    """The request's FP32 tensor through ONNX Runtime as it is; its logits out."""

    def __init__(self, name, path):
        super().__init__(name)
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.ready = True

    def get_input_types(self):
        return [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]

    def get_output_types(self):
        return [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32)
        logits = self.session.run(None, {self.input_name: x})[0]
        out = InferOutput(name="logits", shape=list(logits.shape), datatype="FP32")
        out.set_data_from_numpy(logits, binary_data=False)
        return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id)


if __name__ == "__main__":
    path, name, http_port, grpc_port = sys.argv[1:5]
    server = ModelServer(http_port=int(http_port), grpc_port=int(grpc_port), enable_grpc=True)
    server.start([OnnxClassifier(name, path)])
'''


def kserve_venv() -> Path:
    """A virtual environment with KServe and ONNX Runtime (built once, then reused)."""
    return interop_venv("PROBE_KSERVE_VENV", "probe-kserve-0.21.0", PACKAGES, "KServe")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def kserve(env: Path, folder: Path, name: str):
    """KServe's ModelServer serving the CIFAR model as ``name`` on loopback; yields its REST URL
    and its gRPC address; stopped after (at most 90 s to start, 20 s to stop)."""
    (folder / "serve.py").write_text(SERVER)
    port, grpc_port = free_port(), free_port()
    args = [str(env / "bin" / "python"), str(folder / "serve.py"), str(resolve_model("cifar10-cnn")), name, str(port),
            str(grpc_port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return httpx.get(f"{url}/v2/models/{name}/ready", timeout=1).status_code == 200 and _listening(grpc_port)

    with served(args, folder / "kserve.log", ready, "KServe", cwd=folder):
        yield url, f"127.0.0.1:{grpc_port}"


def records_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_kserve_model_server_rest_and_grpc_records_equal_a_local_run(tmp_path, run_cli):
    env = kserve_venv()
    attack = ("attack", "--attack", "hsja,surfree,rays", "--budget", "40", "--seed", "7", "--p-adv-samples", "8",
              "--images", default_images("cifar10-cnn"), "--limit", "2")  # fmt: skip
    smoothed = ("attack", "--attack", "rays", "--budget", "30", "--seed", "2", "--sigma", "0.05", "--n", "4",
                "--p-adv-samples", "4", "--images", default_images("cifar10-cnn"), "--limit", "1")  # fmt: skip
    paths = {"rest": ("--endpoint",), "grpc": ("--protocol", "grpc", "--endpoint")}
    if importlib.util.find_spec("grpc") is None:  # the grpc extra is not installed: REST only
        paths.pop("grpc")
    runs = {}
    with kserve(env, tmp_path, "cifar10-cnn") as (url, address):
        info = run_cli("info", "--endpoint", url, "--model", "cifar10-cnn", "--json")
        for path, flags in paths.items():
            where = url if path == "rest" else address
            for kind, args in (("plain", attack), ("smoothed", smoothed)):
                out = tmp_path / f"{path}-{kind}"
                done = run_cli(*args, *flags, where, "--model", "cifar10-cnn", "--out", out)
                assert done.exit_code == 0, done.output
                runs[path, kind] = records_of(out)
    for kind, args in (("plain", attack), ("smoothed", smoothed)):
        done = run_cli(*args, "--model", "cifar10-cnn", "--out", tmp_path / f"local-{kind}")
        assert done.exit_code == 0, done.output
        local = records_of(tmp_path / f"local-{kind}")
        for path in paths:
            same_records(local, runs[path, kind])
    described = json.loads(info.stdout)
    assert described["num_classes"] == 10 and not described["binary_tensors"] and described["queries_spent"] == 0
    rest, grpc = runs["rest", "plain"], runs.get(("grpc", "plain"), [])
    assert {r["protocol"] for r in rest} == {"v2"} and {r["endpoint"] for r in rest} == {f"{url}/v2/models/cifar10-cnn"}
    assert sum(r["queries"] for r in rest) >= 100 and len(rest) == 6
    assert not grpc or {r["protocol"] for r in grpc} == {"grpc"}
    assert all(r["inferences"] >= r["queries"] > 0 for r in runs["rest", "smoothed"])


if __name__ == "__main__":  # build the environment ahead of a test run
    import sys

    print(kserve_venv(), file=sys.stderr)
