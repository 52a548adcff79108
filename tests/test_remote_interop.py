"""Interoperability with a v2 server no one here wrote: Seldon MLServer 1.7.1 serves the
embedded CIFAR model (a small model class running the ONNX file) and probe attacks it with
``--endpoint --protocol v2``; with sigma = 0 and the same seed the records equal a local run's.

MLServer pins protobuf 6 and an older FastAPI, so it lives in its own virtual environment,
created on first use under the temp dir and kept there (PROBE_MLSERVER_VENV overrides
where). Skipped, with its reason, when that environment cannot be built (no package index).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

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
    root = Path(os.environ.get("PROBE_MLSERVER_VENV") or Path(tempfile.gettempdir()) / "probe-mlserver-1.7.1")
    python = root / "bin" / "python"
    if (root / ".complete").exists():
        return root
    venv.create(root, with_pip=True, clear=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", MLSERVER, "onnxruntime", "numpy"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot build the MLServer environment: {done.stderr.strip().splitlines()[-1:]}")
    (root / ".complete").write_text(MLSERVER)
    return root


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
    port = free_port()
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0,
        "host": "127.0.0.1", "metrics_endpoint": None,
    }))  # fmt: skip
    log = open(tmp_path / "mlserver.log", "w")
    proc = subprocess.Popen([str(env / "bin" / "mlserver"), "start", str(folder)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=model_dir)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "mlserver.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "MLServer did not become ready"
            try:
                if httpx.get(f"{url}/v2/models/cifar10-cnn/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        images = load_samples("cifar10-cnn", limit=2)
        config = AttackConfig(attacks=("hsja", "surfree", "rays"), budget=40, seed=7, p_adv_samples=8)
        local = attack_images(SmoothedClassifier(cifar, 0.0, 1), images, config)
        remote = RemoteRuntime(Endpoint(url=url, protocol="v2", model="cifar10-cnn", points_per_request=16))
        assert remote.num_classes == 10 and remote.input.datatype == "FP32"
        records = attack_images(SmoothedClassifier(remote, 0.0, 1), images, config)
        remote.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    same_records(local, records)
    assert all(r["endpoint"] == f"{url}/v2/models/cifar10-cnn" and r["protocol"] == "v2" for r in records)
    assert sum(r["queries"] for r in records) >= 100


if __name__ == "__main__":  # build the environment ahead of a test run
    print(mlserver_venv(), file=sys.stderr)
