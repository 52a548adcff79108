"""``probe serve`` on loopback: keys and budgets in SQLite, validation (4xx, never 500),
the request log, /metrics, server-side batching, a bounded load test and schemathesis."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from probe.remote import protocol as v2  # noqa: E402
from probe.remote.keys import BudgetSpent, KeyStore  # noqa: E402
from probe.remote.server import ServeConfig, create_app  # noqa: E402
from probe.runtime import Runtime  # noqa: E402
from probe.smoothing import SmoothedClassifier  # noqa: E402
from probe.zoo import resolve_model  # noqa: E402

SHAPE = (3, 32, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, port: int | None = None, **options):
    """Serve an ASGI app with uvicorn in a thread on 127.0.0.1 (probe serve's timeouts and limits,
    ``options``: :func:`probe.remote.listen.uvicorn_config`'s); yields its base URL; stops it after."""
    import uvicorn

    from probe.remote.listen import uvicorn_config

    port = port or free_port()
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=port, log_level="error", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"{'https' if options.get('ssl_certfile') else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture(scope="module")
def cifar():
    return Runtime(resolve_model("cifar10-cnn"), batch_size=64)


def probe_app(runtime, tmp_path, *, sigma=0.0, n=1, keys=True, **config):
    """(app, keys store path or None) for the CIFAR model."""
    db = tmp_path / "keys.sqlite" if keys else None
    config = {"seed": 0, "insecure_seed": True, "log": tmp_path / "requests.jsonl", **config}
    cfg = ServeConfig(name="cifar10-cnn", sigma=sigma, n=n, keys=db, **config)
    return create_app(SmoothedClassifier(runtime, sigma, n), cfg), db


def infer_body(x: np.ndarray, request_id: str | None = None) -> dict:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    return {**body, "id": request_id} if request_id else body


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))


def test_keys_are_hashed_compared_and_their_spending_survives_a_reopen(tmp_path):
    db = tmp_path / "k.sqlite"
    store = KeyStore(db)
    token = store.add("alice", 10)
    key = store.authenticate(token)
    assert key is not None and key.name == "alice" and key.remaining == 10
    assert store.authenticate(token[:-1] + ("x" if token[-1] != "x" else "y")) is None  # one character off
    assert store.authenticate("pk_nothere_abc") is None and store.authenticate(None) is None
    assert store.charge(key.id, 4, "r1", [1, 2, 3, 4]) == 6
    with pytest.raises(BudgetSpent):
        store.charge(key.id, 7, "r2", [0] * 7)  # refused whole: nothing charged
    store.close()
    raw = db.read_bytes() + (tmp_path / "k.sqlite-wal").read_bytes() if (tmp_path / "k.sqlite-wal").exists() else db.read_bytes()
    assert token.split("_", 2)[2].encode() not in raw  # the secret itself (token_urlsafe: may hold "_") is never stored
    again = KeyStore(db)
    assert again.get(key.id).spent == 4 and again.answer(key.id, "r1") == [1, 2, 3, 4]
    again.revoke("alice")
    assert again.authenticate(token) is None


def test_validation_answers_4xx_with_a_json_error_never_500(cifar, tmp_path):
    app, db = probe_app(cifar, tmp_path, max_points=4, max_bytes=200_000)
    token = KeyStore(db).add("k", 1000)
    x = np.full((1, *SHAPE), 0.5, np.float32)
    ok = infer_body(x)
    bad = {
        "nan": infer_body(np.full((1, *SHAPE), np.nan, np.float32)),
        "range": infer_body(np.full((1, *SHAPE), 11.5, np.float32)),
        "shape": {"inputs": [{**ok["inputs"][0], "shape": [1, 3, 16, 16]}]},
        "datatype": {"inputs": [{**ok["inputs"][0], "datatype": "INT64"}]},
        "name": {"inputs": [{**ok["inputs"][0], "name": "x"}]},
        "strings": {"inputs": [{**ok["inputs"][0], "data": ["0.5"] * 3072}]},
        "count": {"inputs": [{**ok["inputs"][0], "data": [0.5] * 3071}]},
        "no inputs": {"id": "a"},
    }
    auth = {"Authorization": f"Bearer {token}"}
    with running(app) as url, httpx.Client(base_url=url, headers=auth) as client:
        path = "/v2/models/cifar10-cnn/infer"
        assert client.post(path, json=ok).status_code == 200
        for why, body in bad.items():
            answer = client.post(path, content=json.dumps(body))  # NaN as JSON's NaN literal
            assert answer.status_code == 400, (why, answer.text)
            assert answer.json()["error"], why
        assert client.post(path, content=b"{not json").status_code == 400
        assert client.post(path, json=infer_body(np.zeros((5, *SHAPE), np.float32))).status_code == 413  # > 4 points
        assert client.post(path, content=b"0" * 300_000).status_code == 413  # > max_bytes
        assert client.post(path, json=ok, headers={"Authorization": "Bearer pk_00_wrong"}).status_code == 401
        assert client.post("/v2/models/other/infer", json=ok).status_code == 404
        assert KeyStore(db).authenticate(token).spent == 1  # refusals cost nothing


def test_budget_enforced_repeats_free_log_and_metrics(cifar, tmp_path):
    app, db = probe_app(cifar, tmp_path)
    token = KeyStore(db).add("k", 5)
    x = np.random.default_rng(0).random((3, *SHAPE), dtype=np.float32)
    expected = cifar.labels(x).tolist()
    with running(app) as url, httpx.Client(base_url=url, headers={"X-API-Key": token}) as client:
        path = "/v2/models/cifar10-cnn/infer"
        first = client.post(path, json=infer_body(x, "req-1"))
        assert first.status_code == 200 and first.json()["outputs"][0]["data"] == expected
        assert first.headers[v2.BUDGET_HEADER] == "2"
        again = client.post(path, json=infer_body(x, "req-1"))  # a retry: same answer, not charged again
        assert again.json()["outputs"][0]["data"] == expected and again.headers[v2.BUDGET_HEADER] == "2"
        over = client.post(path, json=infer_body(x, "req-2"))  # 3 points, 2 left: the query after the budget
        assert over.status_code == 429 and over.json()["code"] == v2.BUDGET_CODE
        assert client.post(path, json=infer_body(x[:2], "req-3")).status_code == 200
        assert client.post(path, json=infer_body(x[:1], "req-4")).status_code == 429
        assert client.get("/metrics").status_code == 404  # metrics live on their own listener
        text = app.state.metrics.text().decode()
    assert metric(text, "probe_queries_total") == 5 and metric(text, "probe_inferences_total") == 5
    assert metric(text, 'probe_requests_total{status="429"}') == 2
    assert KeyStore(db).authenticate(token).spent == 5
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    answered = [e for e in log if e["status"] == 200]
    assert [e["points"] for e in answered] == [3, 3, 2] and answered[0]["answers"] == expected
    assert answered[1]["repeated"] and [e["status"] for e in log].count(429) == 2


def test_rate_limit_answers_429_with_retry_after(cifar, tmp_path):
    app, _ = probe_app(cifar, tmp_path, keys=False, rate=1.0, burst=2)
    body = infer_body(np.zeros((1, *SHAPE), np.float32))
    with running(app) as url, httpx.Client(base_url=url) as client:
        codes = [client.post("/v2/models/cifar10-cnn/infer", json=body) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert codes[2].json()["code"] == "rate_limited" and int(codes[2].headers["Retry-After"]) >= 1


def test_load_8_clients_x_200_requests_answers_right_counts_exact_batches_merged(cifar, tmp_path):
    app, db = probe_app(cifar, tmp_path, sigma=0.0)
    token = KeyStore(db).add("load", 10_000)
    x = np.random.default_rng(1).random((16, *SHAPE), dtype=np.float32)
    truth = cifar.labels(x)

    def client_run(c: int) -> int:
        wrong = 0
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            for r in range(200):
                i = (c * 7 + r) % 16
                body, headers = v2.encode(x[i : i + 1], INPUT, request_id=f"{c}-{r}", binary=True)
                answer = client.post("/v2/models/cifar10-cnn/infer", content=body, headers=headers)
                wrong += answer.status_code != 200 or answer.json()["outputs"][0]["data"] != [int(truth[i])]
        return wrong

    with running(app) as url:
        with ThreadPoolExecutor(8) as pool:
            wrong = sum(pool.map(client_run, range(8)))
        text = app.state.metrics.text().decode()
    assert wrong == 0
    assert KeyStore(db).authenticate(token).spent == 1600
    assert metric(text, "probe_queries_total") == 1600
    calls = metric(text, "probe_batch_points_count")
    assert metric(text, "probe_batch_points_sum") == 1600 and calls < 1600  # concurrent requests were merged


INPUT = v2.ImageInput("input", "FP32", "NCHW", (32, 32), True)


def test_schemathesis_finds_no_500(cifar, tmp_path):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    app, db = probe_app(cifar, tmp_path, keys=False, max_bytes=1_000_000, docs=True)
    statuses: list[int] = []
    with running(app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [op.ok() for op in schema.get_all_operations()]
        assert any(op.path.endswith("/infer") for op in operations)
        for op in operations:
            examples = 150 if op.path.endswith("/infer") else 10

            @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy())
            def check(case) -> None:
                response = case.call(base_url=url, timeout=10)
                statuses.append(response.status_code)
                assert response.status_code < 500, (case.path, case.body if hasattr(case, "body") else None)

            check()
    assert len(statuses) >= 150 and any(400 <= s < 500 for s in statuses)


def test_serve_keys_cli_adds_lists_and_stores_no_secret(tmp_path, run_cli):
    from probe.errors import ProbeError

    db = tmp_path / "keys.sqlite"
    added = run_cli("serve", "keys", "add", "bob", "--budget", "42", "--keys", str(db))
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("pk_")
    listed = run_cli("serve", "keys", "list", "--keys", str(db), "--json")
    rows = json.loads(listed.stdout)
    assert rows[0]["name"] == "bob" and rows[0]["budget"] == 42 and rows[0]["spent"] == 0
    digests = [r[0] for r in sqlite3.connect(db).execute("SELECT digest FROM keys")]
    assert token not in digests and len(digests[0]) == 64
    duplicate = run_cli("serve", "keys", "add", "bob", "--budget", "1", "--keys", str(db))
    assert isinstance(duplicate.exception, ProbeError) and "exists" in str(duplicate.exception)
