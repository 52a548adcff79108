"""Interoperability with a v2 server no one here wrote: Seldon MLServer 1.7.1 serves the
embedded CIFAR model (a small model class running the ONNX file) and probe attacks it with
``--endpoint --protocol v2``; with sigma = 0 and the same seed the records equal a local run's.
The stock ``mlserver-sklearn`` runtime, which answers labels only (INT64 indices or BYTES
class names, no class count), is attacked with ``--num-classes`` / ``--classes`` and gives
the records of a local run of the same scikit-learn model.

MLServer pins protobuf 6 and an older FastAPI, so it lives in its own virtual environment,
created on first use under the temp dir and kept there (PROBE_MLSERVER_VENV overrides
where). Skipped, with its reason, when that environment cannot be built (no package index).
"""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

from probe.load import load_samples  # noqa: E402
from probe.remote.client import Endpoint, RemoteRuntime  # noqa: E402
from probe.runs.campaign import AttackConfig, attack_images  # noqa: E402
from probe.smoothing import SmoothedClassifier  # noqa: E402
from probe.zoo import resolve_model  # noqa: E402
from tests.test_remote import same_records  # noqa: E402
from tests.test_serve import cifar, free_port  # noqa: E402,F401

MLSERVER = "mlserver==1.7.1"
PACKAGES = (MLSERVER, "mlserver-sklearn==1.7.1", "onnxruntime", "numpy")

MODEL_CLASS = '''
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceResponse


class OnnxClassifier(MLModel):
    """Runs an ONNX classifier file as it is: the request's tensor in, its logits out."""

    async def load(self) -> bool:
        self.session = ort.InferenceSession(self.settings.parameters.uri, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        return True

    async def predict(self, payload):
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        logits = self.session.run(None, {self.input_name: x})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("logits", logits)])
'''


def mlserver_venv() -> Path:
    """A virtual environment with MLServer and ONNX Runtime (built once, then reused)."""
    return interop_venv("PROBE_MLSERVER_VENV", "probe-mlserver-1.7.1", PACKAGES, "MLServer")


def interop_venv(variable: str, folder: str, packages: tuple[str, ...], what: str) -> Path:
    """A virtual environment with ``packages`` at $``variable`` or ``folder`` under the temp dir
    (built once, then reused); the test is skipped, with pip's reason, when it cannot be built."""
    root = Path(os.environ.get(variable) or Path(tempfile.gettempdir()) / folder)
    python = root / "bin" / "python"
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == " ".join(packages):
        return root
    venv.create(root, with_pip=True, clear=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot build the {what} environment: {done.stderr.strip().splitlines()[-1:]}")
    marker.write_text(" ".join(packages))
    return root


@contextlib.contextmanager
def mlserver(env: Path, folder: Path, log_path: Path, models: tuple[str, ...], cwd: Path | None = None):
    """MLServer serving the model folders under ``folder`` on loopback; yields its REST URL and its
    gRPC address; stopped after."""
    port, grpc_port = free_port(), free_port()
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc_port, "metrics_port": free_port(), "parallel_workers": 0,
        "host": "127.0.0.1", "metrics_endpoint": None,
    }))  # fmt: skip
    command = [str(env / "bin" / "mlserver"), "start", str(folder)]
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return all(httpx.get(f"{url}/v2/models/{name}/ready", timeout=1).status_code == 200 for name in models)

    with served(command, log_path, ready, "MLServer", cwd=cwd or folder):
        yield url, f"grpc://127.0.0.1:{grpc_port}"


@contextlib.contextmanager
def served(command: list[str], log_path: Path, ready, what: str, *, cwd: Path, seconds: float = 90):
    """A server process (its output in ``log_path``) until ``ready()`` says so, within ``seconds``
    (its log's end in the failure when it dies or is late); terminated after (killed after 20 s)."""
    log = open(log_path, "w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        deadline = time.monotonic() + seconds
        while True:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, f"{what} did not become ready"
            try:
                if ready():
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_mlserver_serves_the_cifar_model_and_endpoint_records_equal_local(cifar, tmp_path):
    env = mlserver_venv()
    folder = tmp_path / "models"
    model_dir = folder / "cifar10-cnn"
    model_dir.mkdir(parents=True)
    (model_dir / "onnx_classifier.py").write_text(MODEL_CLASS)
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "cifar10-cnn", "implementation": "onnx_classifier.OnnxClassifier",
        "parameters": {"uri": str(resolve_model("cifar10-cnn"))},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }))  # fmt: skip
    images = load_samples("cifar10-cnn", limit=2)
    config = AttackConfig(attacks=("hsja", "surfree", "rays"), budget=40, seed=7, p_adv_samples=8)
    local = attack_images(SmoothedClassifier(cifar, 0.0, 1), images, config)
    grpc = importlib.util.find_spec("grpc") is not None
    with mlserver(env, folder, tmp_path / "mlserver.log", ("cifar10-cnn",), cwd=model_dir) as (url, address):
        remote = RemoteRuntime(Endpoint(url=url, protocol="v2", model="cifar10-cnn", points_per_request=16))
        assert remote.num_classes == 10 and remote.input.datatype == "FP32"
        records = attack_images(SmoothedClassifier(remote, 0.0, 1), images, config)
        remote.close()
        if grpc:  # the same server over KServe v2 gRPC (the grpc extra)
            from probe.remote.grpc_client import GrpcRuntime

            over = GrpcRuntime(Endpoint(url=address, protocol="grpc", model="cifar10-cnn", points_per_request=16))
            assert over.num_classes == 10
            grpc_records = attack_images(SmoothedClassifier(over, 0.0, 1), images, config)
            over.close()
    same_records(local, records)
    assert all(r["endpoint"] == f"{url}/v2/models/cifar10-cnn" and r["protocol"] == "v2" for r in records)
    assert sum(r["queries"] for r in records) >= 100
    if grpc:
        same_records(local, grpc_records)
        assert {r["protocol"] for r in grpc_records} == {"grpc"} and over.answered >= 100


FIT_SKLEARN = """
import sys
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

data = np.load(sys.argv[1])
x, y, names = data["x"], data["y"], data["names"]
for kind, labels in (("index", y), ("name", names[y])):
    model = make_pipeline(FunctionTransformer(np.reshape, kw_args={"shape": (-1, x[0].size)}),
                          LogisticRegression(max_iter=300))
    model.fit(x, labels)
    joblib.dump(model, sys.argv[2] + "/sk-" + kind + "/model.joblib")
    last = model[-1]
    np.savez(sys.argv[2] + "/sk-" + kind + "/weights.npz", coef=last.coef_, intercept=last.intercept_,
             classes=last.classes_.astype(str))
"""


def linear_twin(weights: Path, names: tuple[str, ...] | None):
    """The local twin of a served scikit-learn LogisticRegression: the same weights, the same arithmetic."""
    from probe.remote.callable import CallableModel

    w = np.load(weights)
    coef, intercept, classes = w["coef"], w["intercept"], [str(c) for c in w["classes"]]

    def predict(x):
        scores = x.reshape(len(x), -1) @ coef.T + intercept  # float32 @ float64, as sklearn's decision_function
        picked = [classes[i] for i in np.argmax(scores, axis=1)]
        return picked if names else [int(c) for c in picked]

    return CallableModel(predict, input_shape=(3, 32, 32), num_classes=10, classes=names)


@pytest.mark.slow
def test_stock_mlserver_sklearn_runtime_answering_labels_only(tmp_path, run_cli):
    """mlserver-sklearn as shipped: FP32 [-1, 3, 32, 32] in, ``predict`` INT64 or BYTES out, no class count."""
    from probe.errors import ProbeError
    from probe.remote.classes import Classes
    from probe.zoo import default_images
    from tests.test_remote_labels import NAMES
    from tests.test_remote_labels import same_records as same_records_but

    env = mlserver_venv()
    folder = tmp_path / "models"
    samples = load_samples("cifar10-cnn")
    rng = np.random.default_rng(0)
    x = np.clip(np.repeat(samples.x, 10, axis=0) + 0.1 * rng.standard_normal((200, 3, 32, 32)), 0, 1)
    np.savez(tmp_path / "train.npz", x=x.astype(np.float32), y=np.repeat(samples.labels, 10), names=np.array(NAMES))
    for kind, datatype in (("index", "INT64"), ("name", "BYTES")):
        (folder / f"sk-{kind}").mkdir(parents=True)
        (folder / f"sk-{kind}" / "model-settings.json").write_text(json.dumps({
            "name": f"sk-{kind}", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}],
            "outputs": [{"name": "predict", "datatype": datatype, "shape": [-1, 1]}],
        }))  # fmt: skip
    fit = subprocess.run([str(env / "bin" / "python"), "-c", FIT_SKLEARN, str(tmp_path / "train.npz"), str(folder)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-2000:]
    (tmp_path / "classes.txt").write_text("\n".join(NAMES) + "\n")
    images = load_samples("cifar10-cnn", limit=2)
    config = AttackConfig(attacks=("hsja", "rays"), budget=40, seed=7, p_adv_samples=8)
    with mlserver(env, folder, tmp_path / "mlserver.log", ("sk-index", "sk-name")) as (url, address):
        with pytest.raises(ProbeError, match="declares no class count and answers labels only: give it with --num"):
            RemoteRuntime(Endpoint(url=url, model="sk-index"))
        results = {}
        for kind, classes in (("index", Classes(count=10)), ("name", Classes(names=NAMES))):
            remote = RemoteRuntime(Endpoint(url=url, model=f"sk-{kind}", classes=classes, points_per_request=16))
            assert remote.num_classes == 10 and remote.meta.outputs[0].datatype in ("INT64", "BYTES")
            results[kind] = attack_images(SmoothedClassifier(remote, 0.0, 1), images, config)
            if importlib.util.find_spec("grpc") is not None:  # the same labels over gRPC (INT64 and BYTES outputs)
                from probe.remote.grpc_client import GrpcRuntime

                over = GrpcRuntime(Endpoint(url=address, protocol="grpc", model=f"sk-{kind}", classes=classes))
                probes = rng.random((9, 3, 32, 32), dtype=np.float32)
                assert np.array_equal(over.labels(probes), remote.labels(probes))
                over.close()
            remote.close()
        done = run_cli("attack", "--endpoint", url, "--model", "sk-name", "--classes", tmp_path / "classes.txt",
                       "--sigma", "0", "--attack", "rays", "--budget", "20", "--p-adv-samples", "2", "--limit", "1",
                       "--images", default_images("cifar10-cnn"), "--out", tmp_path / "cli")  # fmt: skip
    assert done.exit_code == 0, done.output
    (rec,) = [json.loads(line) for line in (tmp_path / "cli" / "results.jsonl").read_text().splitlines()]
    assert rec["endpoint"] == f"{url}/v2/models/sk-name" and rec["queries"] == 20
    for kind, names in (("index", None), ("name", NAMES)):
        twin = linear_twin(folder / f"sk-{kind}" / "weights.npz", names)
        local = attack_images(SmoothedClassifier(twin, 0.0, 1), images, config)
        same_records_but(local, results[kind], extra={"model_function"})
        assert sum(r["queries"] for r in results[kind]) >= 60


if __name__ == "__main__":  # build the environment ahead of a test run
    print(mlserver_venv(), file=sys.stderr)
