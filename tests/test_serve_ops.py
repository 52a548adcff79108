"""Operating ``probe serve`` safely (#39 items 5, 6, 7): metrics and key names only on their
own loopback listener, API docs off, a seed never repeats the noise unless asked, requests
without a valid key limited per address, read deadlines, private files, per-point digests
in the log, 499 for a client that left, TLS, and one ``error:`` line for a bad start."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from probe.errors import ProbeError  # noqa: E402
from probe.remote.keys import KeyStore  # noqa: E402
from probe.remote.listen import check_tls, is_loopback  # noqa: E402
from probe.remote.observe import RequestLog, near_digests  # noqa: E402
from probe.remote.server import noise_stream  # noqa: E402
from tests.test_serve import SHAPE, cifar, free_port, infer_body, metric, probe_app, running  # noqa: E402,F401

PATH = "/v2/models/cifar10-cnn/infer"


def in_process(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def test_metrics_name_keys_only_on_their_own_listener_and_docs_are_off(cifar, tmp_path):
    app, db = probe_app(cifar, tmp_path)
    token = KeyStore(db).add("auditor-7", 100)
    port = free_port()
    server, thread = app.state.metrics.listen("127.0.0.1", port)
    try:
        with in_process(app) as client:
            assert client.post(PATH, json=infer_body(np.zeros((3, *SHAPE), np.float32)),
                               headers={"X-API-Key": token}).status_code == 200  # fmt: skip
            api = {path: client.get(path).status_code for path in ("/metrics", "/docs", "/redoc", "/openapi.json")}
            assert "auditor-7" not in client.get("/v2/models/cifar10-cnn").text
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        server.shutdown()
        server.server_close()
    assert api == {"/metrics": 404, "/docs": 404, "/redoc": 404, "/openapi.json": 404}
    assert metric(text, 'probe_queries_total{key="auditor-7"}') == 3
    (tmp_path / "docs").mkdir()
    docs, _ = probe_app(cifar, tmp_path / "docs", docs=True)
    with in_process(docs) as client:
        assert [client.get(p).status_code for p in ("/docs", "/redoc", "/openapi.json")] == [200, 200, 200]


def test_a_seed_repeats_the_noise_only_with_insecure_seed(cifar, tmp_path, run_cli):
    x = np.random.default_rng(3).random((40, *SHAPE), dtype=np.float32)

    def answers(**config) -> list[int]:
        app, _ = probe_app(cifar, tmp_path, sigma=1.0, n=1, keys=False, **config)
        with in_process(app) as client:
            return client.post(PATH, json=infer_body(x)).json()["outputs"][0]["data"]

    restarts = [answers(seed=7, insecure_seed=False) for _ in range(2)]
    repeated = [answers(seed=7, insecure_seed=True) for _ in range(2)]
    assert sum(a != b for a, b in zip(*restarts)) >= 10  # before #39: the same 40 answers after a restart
    assert repeated[0] == repeated[1]
    assert noise_stream(7).random() != noise_stream(7).random()
    assert noise_stream(7, insecure_seed=True).random() == noise_stream(7, insecure_seed=True).random()
    refused = run_cli("serve", "--model", "cifar10-cnn", "--no-keys", "--seed", "7")
    assert isinstance(refused.exception, ProbeError) and "--insecure-seed" in str(refused.exception)


def test_requests_without_a_valid_key_are_limited_per_address_and_logged_with_it(cifar, tmp_path):
    app, db = probe_app(cifar, tmp_path, anonymous_rate=1.0, anonymous_burst=5)
    KeyStore(db).add("k", 10)
    body = infer_body(np.zeros((1, *SHAPE), np.float32))
    with in_process(app) as client:
        codes = [client.post(PATH, json=body, headers={"X-API-Key": f"pk_00_guess{i}"}).status_code for i in range(30)]
    assert codes == [401] * 5 + [429] * 25  # before #39: 3,000 401s at up to 528/s
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert len(log) == 30 and {e["client"] for e in log} == {"testclient"}
    assert metric(app.state.metrics.text().decode(), 'probe_requests_total{status="429"}') == 25


def test_slow_headers_and_slow_bodies_are_cut_at_the_deadline(cifar, tmp_path):
    app, _ = probe_app(cifar, tmp_path, keys=False, read_timeout=1.0)
    with running(app, header_timeout=1.0) as url:
        port = int(url.rsplit(":", 1)[1])
        start = time.monotonic()
        slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
        for s in slow:  # headers that never end
            s.sendall(b"POST /v2/models/cifar10-cnn/infer HTTP/1.1\r\nHost: x\r\n")
        closed = [s.recv(100) for s in slow]
        held = time.monotonic() - start
        body = socket.create_connection(("127.0.0.1", port), timeout=10)
        body.sendall(b"POST /v2/models/cifar10-cnn/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"inputs\":")  # fmt: skip
        start = time.monotonic()
        answer = body.recv(1000)
        waited = time.monotonic() - start
        while chunk := body.recv(1000):  # the server closes the connection after the 408
            answer += chunk
        for s in [*slow, body]:
            s.close()
    assert closed == [b""] * 50 and held < 5  # before #39: 500 slow connections held for 30 s
    assert answer.startswith(b"HTTP/1.1 408") and b'"code":"timeout"' in answer and 0.8 < waited < 5


def test_files_are_private_and_the_log_holds_a_digest_per_point(cifar, tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    key = store.authenticate(store.add("k", 100))
    store.charge(key.id, 1, "r", [0])
    RequestLog(tmp_path / "log.jsonl").close()
    files = ["keys.sqlite", "keys.sqlite-wal", "keys.sqlite-shm", "log.jsonl"]
    assert {f: stat.S_IMODE(os.stat(tmp_path / f).st_mode) for f in files} == dict.fromkeys(files, 0o600)
    rng = np.random.default_rng(4)
    base = np.linspace(0, 1, 3 * 32 * 32, dtype=np.float32).reshape(SHAPE) ** 2
    near = np.clip(base + rng.normal(0, 0.002, (20, *SHAPE)), 0, 1).astype(np.float32)  # an attack's queries
    spread = rng.random((20, *SHAPE), dtype=np.float32)  # twenty unrelated images
    app, _ = probe_app(cifar, tmp_path, keys=False)
    with in_process(app) as client:
        assert client.post(PATH, json=infer_body(near)).status_code == 200
        assert client.post(PATH, json=infer_body(spread)).status_code == 200
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert [len(e["digests"]) for e in log] == [20, 20] and len(set(log[0]["digests"])) == 20
    assert len(set(log[0]["near"])) <= 2 and len(set(log[1]["near"])) == 20
    assert near_digests(near[:1]) == [log[0]["near"][0]]


def test_a_client_that_left_is_logged_499_not_200(cifar, tmp_path):
    app, _ = probe_app(cifar, tmp_path, keys=False, wait=0.8)
    payload = json.dumps(infer_body(np.zeros((1, *SHAPE), np.float32), "gone")).encode()
    with running(app) as url:
        port = int(url.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (PATH.encode(), len(payload), payload))  # fmt: skip
        time.sleep(0.2)
        s.close()  # before the batcher's 0.8 s are up
        deadline = time.monotonic() + 10
        log = tmp_path / "requests.jsonl"
        while time.monotonic() < deadline and not (log.exists() and log.read_text()):
            time.sleep(0.05)
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["status"] == 499 and entry["id"] == "gone"
    assert metric(app.state.metrics.text().decode(), 'probe_requests_total{status="499"}') == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_tls_serves_https_with_the_given_certificate(cifar, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    check_tls(str(cert), str(key))
    with pytest.raises(ProbeError, match="go together"):
        check_tls(str(cert), None)
    with pytest.raises(ProbeError, match="cannot load"):
        check_tls(str(key), str(key))
    app, _ = probe_app(cifar, tmp_path, keys=False)
    with running(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        assert url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        answer = httpx.post(f"{url}{PATH}", json=infer_body(np.zeros((1, *SHAPE), np.float32)), verify=context)
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https:", "http:") + "/v2/health/ready", timeout=5)
    assert answer.status_code == 200


def test_no_keys_off_loopback_needs_insecure_and_a_busy_port_is_one_error_line(run_cli, run_main):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("no-such-host.invalid")
    refused = run_cli("serve", "--model", "cifar10-cnn", "--no-keys", "--host", "0.0.0.0")
    assert isinstance(refused.exception, ProbeError) and "--insecure" in str(refused.exception)
    public = run_cli("serve", "--model", "cifar10-cnn", "--no-keys", "--metrics-port", "9", "--metrics-host", "0.0.0.0")
    assert isinstance(public.exception, ProbeError) and "metrics name every key" in str(public.exception)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_main("serve", "--model", "cifar10-cnn", "--no-keys", "--port", port, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}")
    bad = run_cli("serve", "--model", "cifar10-cnn", "--no-keys", "--insecure", "--host", "no-such-host.invalid")
    assert isinstance(bad.exception, ProbeError) and "cannot listen on no-such-host.invalid" in str(bad.exception)


def test_probe_serve_end_to_end_metrics_port_private_files(tmp_path, run_cli):
    db, log, port, mport = tmp_path / "keys.sqlite", tmp_path / "requests.jsonl", free_port(), free_port()
    token = KeyStore(db).add("ops-key", 50)
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "serve", "--model", "cifar10-cnn", "--sigma", "0", "--keys", str(db),
         "--port", str(port), "--metrics-port", str(mport), "--log", str(log)],  # fmt: skip
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "probe serve did not start"
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        answer = httpx.post(f"{url}{PATH}", json=infer_body(np.zeros((2, *SHAPE), np.float32)),
                            headers={"X-API-Key": token}, timeout=30)  # fmt: skip
        on_api = httpx.get(f"{url}/metrics", timeout=5).status_code
        text = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).text
        modes = [stat.S_IMODE(os.stat(f).st_mode) for f in (log, db, f"{db}-wal", f"{db}-shm")]  # while it runs
    finally:
        proc.terminate()
        proc.wait(20)
    assert answer.status_code == 200 and on_api == 404
    assert metric(text, 'probe_queries_total{key="ops-key"}') == 2
    assert modes == [0o600] * 4  # before #39: 0644
