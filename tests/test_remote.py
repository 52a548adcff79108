"""The HTTP client oracle against real servers on loopback: records equal local ones,
UINT8 inputs, retries that never double-count, budgets, a restart mid-attack, and the
one-line errors."""

import json
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from probe.errors import ProbeError  # noqa: E402
from probe.load import load_samples  # noqa: E402
from probe.remote.client import Endpoint, EndpointBudgetSpent, RemoteRuntime  # noqa: E402
from probe.remote.keys import KeyStore  # noqa: E402
from probe.runs.campaign import AttackConfig, attack_images  # noqa: E402
from probe.smoothing import SmoothedClassifier  # noqa: E402
from tests.test_serve import cifar, free_port, probe_app, running  # noqa: E402,F401

REMOTE_FIELDS = {"seconds", "endpoint", "protocol", "defended", "endpoint_sigma", "endpoint_n", "endpoint_datatype",
                 "verdict_queries_charged"}


def same_records(local: list[dict], remote: list[dict]) -> None:
    key = lambda r: (r["image"], r["attack"])  # noqa: E731
    local, remote = sorted(local, key=key), sorted(remote, key=key)
    assert len(local) == len(remote) > 0
    for a, b in zip(local, remote):
        diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if k not in REMOTE_FIELDS and a.get(k) != b.get(k)}
        assert not diff, diff


@pytest.fixture(scope="module")
def images():
    return load_samples("cifar10-cnn", limit=2)


@pytest.mark.parametrize("protocol", ["v2", "probe"])
def test_endpoint_records_equal_local_records_for_every_attack(cifar, images, tmp_path, protocol):
    config = AttackConfig(attacks=("hsja", "surfree", "rays"), budget=60, seed=3, p_adv_samples=8)
    local = attack_images(SmoothedClassifier(cifar, 0.0, 1), images, config)
    app, _ = probe_app(cifar, tmp_path, keys=False)
    with running(app) as url:
        remote = RemoteRuntime(Endpoint(url=url, protocol=protocol, model="cifar10-cnn", points_per_request=16))
        records = attack_images(SmoothedClassifier(remote, 0.0, 1), images, config)
        remote.close()
    same_records(local, records)
    assert {r["protocol"] for r in records} == {protocol} and not any(r["defended"] for r in records)
    assert sum(r["queries"] for r in records) > 100 and remote.answered >= sum(r["queries"] for r in records)


def test_client_side_smoothing_around_a_plain_endpoint_equals_local(cifar, images, tmp_path):
    config = AttackConfig(attacks=("rays",), budget=40, seed=1, p_adv_samples=8, certify_n=0)
    local = attack_images(SmoothedClassifier(cifar, 0.05, 4), images, config)
    app, _ = probe_app(cifar, tmp_path, keys=False)
    with running(app) as url:
        remote = RemoteRuntime(Endpoint(url=f"{url}/v2/models/cifar10-cnn", protocol="probe", concurrency=3))
        records = attack_images(SmoothedClassifier(remote, 0.05, 4), images, config)
    same_records(local, records)
    assert records[0]["sigma"] == 0.05 and records[0]["n"] == 4 and records[0]["endpoint_sigma"] == 0.0


def fake_v2(cifar, *, datatype="FP32", fail=None, output="scores"):
    """A small third-party-style v2 server around the CIFAR model (NHWC for UINT8).

    fail(request_id, attempt) -> None or an HTTP status to answer instead; ``seen``
    counts the attempts per id, ``answered`` the ids answered 200, ``received`` the arrays.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()
    state = {"seen": Counter(), "answered": Counter(), "received": []}
    shape = [-1, 32, 32, 3] if datatype == "UINT8" else [-1, 3, 32, 32]

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    @app.get("/v2/models/m")
    async def meta():
        return {"name": "m", "inputs": [{"name": "images", "datatype": datatype, "shape": shape}],
                "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 10]}]}  # fmt: skip

    @app.post("/v2/models/m/infer")
    async def infer(request: Request):
        body = await request.json()
        rid = body["id"]
        state["seen"][rid] += 1
        status = fail(rid, state["seen"][rid]) if fail else None
        if status:
            return JSONResponse({"error": "injected"}, status_code=status, headers={"Retry-After": "0"})
        t = body["inputs"][0]
        x = np.asarray(t["data"], dtype=np.uint8 if datatype == "UINT8" else np.float32).reshape(t["shape"])
        state["received"].append(x)
        canonical = x.transpose(0, 3, 1, 2) / np.float32(255) if datatype == "UINT8" else x
        labels = cifar.labels(canonical.astype(np.float32))
        state["answered"][rid] += 1
        if output == "image":  # not a classifier's answer
            return {"outputs": [{"name": "y", "datatype": "FP32", "shape": [len(x), 3, 4], "data": [0.0] * (12 * len(x))}]}
        return {"outputs": [{"name": "scores", "datatype": "FP32", "shape": [len(x), 10],
                             "data": np.eye(10, dtype=np.float32)[labels].ravel().tolist()}]}  # fmt: skip

    return app, state


def test_uint8_endpoint_gets_8bit_points_and_distances_are_on_what_was_sent(cifar):
    app, state = fake_v2(cifar, datatype="UINT8")
    x = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    with running(app) as url:
        remote = RemoteRuntime(Endpoint(url=url, model="m", points_per_request=2, concurrency=1))  # in order
        labels = remote.labels(x)
    sent = remote.as_sent(x)
    assert remote.input.layout == "NHWC" and remote.num_classes == 10 and remote.calls == 3
    received = np.concatenate(state["received"])
    assert received.dtype == np.uint8 and np.array_equal(received, np.rint(x * 255).transpose(0, 2, 3, 1))
    assert np.array_equal(labels, cifar.labels(sent)) and 0 < np.abs(sent - x).max() <= 0.5 / 255 + 1e-7


def test_uint8_endpoint_saves_the_8bit_point_that_was_sent(cifar, tmp_path, run_cli):
    from probe.zoo import default_images

    app, state = fake_v2(cifar, datatype="UINT8")
    with running(app) as url:
        done = run_cli("attack", "--endpoint", url, "--model", "m", "--sigma", "0", "--attack", "rays", "--budget", "40",
                       "--p-adv-samples", "1", "--images", default_images("cifar10-cnn"), "--limit", "1",
                       "--out", tmp_path)  # fmt: skip
    assert done.exit_code == 0, done.output
    (rec,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert rec["found"] and rec["endpoint_datatype"] == "UINT8"
    saved = np.load(tmp_path / rec["adv_file"])
    assert np.array_equal(saved * np.float32(255), np.rint(saved * 255))  # on the 8-bit grid
    assert any(np.array_equal(np.rint(saved * 255).astype(np.uint8).transpose(1, 2, 0), x) for r in state["received"]
               for x in r)  # exactly a point the server received  # fmt: skip
    x0 = load_samples("cifar10-cnn", limit=1).x[0]
    assert abs(rec["l2"] - float(np.linalg.norm((saved - x0).ravel()))) < 1e-5  # the distance is the saved point's


def test_defended_endpoint_verdict_is_sequential_queries_to_it(cifar, tmp_path, run_cli):
    app, _ = probe_app(cifar, tmp_path, keys=False, sigma=0.05, n=4)  # server-side smoothing: random answers
    with running(app) as url:
        done = run_cli("attack", "--endpoint", url, "--protocol", "probe", "--model", "cifar10-cnn", "--defended",
                       "--attack", "rays", "--budget", "40", "--p-adv-samples", "16", "--limit", "1",
                       "--out", tmp_path / "out")  # fmt: skip
    assert done.exit_code == 0, done.output
    (rec,) = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert rec["defended"] and rec["sigma"] == 0.0 and rec["n"] == 1 and rec["endpoint_sigma"] == 0.05
    assert rec["verdict_queries_charged"] is True
    assert rec["clean_evaluations"] > 1  # g_sigma(x_o) from several answers of the endpoint
    assert rec["found"] and rec["p_adv_evaluations"] > 1  # eq. (4): sequential rounds, not one evaluation
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    sent = sum(e["points"] for e in log if e["status"] == 200)
    assert sent >= rec["clean_evaluations"] + rec["queries"] + rec["p_adv_evaluations"]  # all charged to the endpoint


def test_retries_on_5xx_and_429_never_count_twice_and_give_up_in_one_line(cifar):
    fails = {1: 503, 2: 429}  # every request: 503, then 429, then answered
    app, state = fake_v2(cifar, fail=lambda rid, attempt: fails.get(attempt))
    x = np.random.default_rng(1).random((6, 3, 32, 32), dtype=np.float32)
    with running(app) as url:
        remote = RemoteRuntime(Endpoint(url=url, model="m", points_per_request=2, backoff=0.01))
        labels = remote.labels(x)
        assert np.array_equal(labels, cifar.labels(x))
        assert remote.answered == 6 and remote.retried == 6 and set(state["answered"].values()) == {1}
        assert all(v == 3 for v in state["seen"].values()) and len(state["seen"]) == 3
        fails.update({3: 503, 4: 503})
        stubborn = RemoteRuntime(Endpoint(url=url, model="m", retries=2, backoff=0.01))
        with pytest.raises(ProbeError, match="failed 3 times: HTTP 503"):
            stubborn.labels(x[:1])
        assert stubborn.answered == 0


def test_errors_are_one_line_probe_errors(cifar, tmp_path, run_main):
    app, _ = fake_v2(cifar, output="image")
    with running(app) as url:
        with pytest.raises(ProbeError, match="not a classifier's answer"):
            RemoteRuntime(Endpoint(url=url, model="m")).labels(np.zeros((1, 3, 32, 32), np.float32))
        with pytest.raises(ProbeError, match="TLS failure"):
            RemoteRuntime(Endpoint(url=url.replace("http:", "https:"), model="m", retries=0))
        with pytest.raises(ProbeError, match="no such model"):
            RemoteRuntime(Endpoint(url=url, model="other"))
    probe_served, db = probe_app(cifar, tmp_path)
    KeyStore(db).add("k", 10)
    with running(probe_served) as url:
        remote = RemoteRuntime(Endpoint(url=url, model="cifar10-cnn", api_key="pk_0_wrong", protocol="probe"))
        with pytest.raises(ProbeError, match="HTTP 401"):
            remote.labels(np.zeros((1, 3, 32, 32), np.float32))
    port = free_port()  # nothing listens there
    done = run_main("predict", "--endpoint", f"http://127.0.0.1:{port}", "--model", "cifar10-cnn", "--limit", "1")
    assert done.returncode == 2 and done.stderr.strip().startswith("error: cannot reach")
    assert len(done.stderr.strip().splitlines()) == 1


def test_key_budget_ends_the_jobs_it_cuts_keeps_their_records_and_never_goes_past_it(cifar, tmp_path, run_cli):
    app, db = probe_app(cifar, tmp_path)
    store = KeyStore(db)
    exact, short = store.add("exact", 31), store.add("short", 17)
    args = ("attack", "--model", "cifar10-cnn", "--sigma", "0", "--budget", "30", "--p-adv-samples", "8",
            "--limit", "1")  # fmt: skip
    with running(app) as url:
        # 1 clean label + 30 queries: the attack ends on its own budget, its p_adv finds the key spent
        first = run_cli(*args, "--protocol", "probe", "--attack", "hsja", "--api-key", exact, "--endpoint", url,
                        "--out", tmp_path / "a")  # fmt: skip
        # v2 (the client learns the budget from the 429): 1 clean label, then both attacks run dry together
        second = run_cli(*args, "--protocol", "v2", "--attack", "hsja,rays", "--api-key", short, "--endpoint", url,
                         "--out", tmp_path / "b")  # fmt: skip
        # the probe protocol knows nothing is left: the clean label is refused before anything is sent
        third = run_cli(*args, "--protocol", "probe", "--attack", "hsja", "--api-key", exact, "--endpoint", url)
    assert first.exit_code == 0 and second.exit_code == 0, (first.output, second.output)
    assert "budget ran out" in first.output and "budget ran out" in second.output
    (a,) = [json.loads(line) for line in (tmp_path / "a" / "results.jsonl").read_text().splitlines()]
    assert a["queries"] == 30 and a["found"] and a["stopped"] is None and a["l2"] > 0
    assert a["p_adv"] is None and a["success"] is None and a["verdict"] is None
    assert a["verdict_note"].startswith("endpoint budget spent")
    assert np.load(tmp_path / "a" / a["adv_file"]).shape == (3, 32, 32)  # the best verified adversarial is kept
    row = json.loads((tmp_path / "a" / "summary.json").read_text())["attacks"]["hsja"]
    assert row["unjudged"] == 1 and row["success_rate"] is None  # not judged is no failure
    assert "not judged (the endpoint's budget was spent before p_adv): hsja 1" in first.output
    b = [json.loads(line) for line in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["attack"] for r in b) == ["hsja", "rays"]
    assert all(r["stopped"] == "endpoint budget spent" for r in b) and sum(r["queries"] for r in b) <= 16
    for r in b:  # a verdict is measured only while the key pays for it
        assert (r["p_adv"] is None) == (r["verdict_note"] is not None or not r["found"])
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["results"] == 2 and summary["endpoint_budget_spent"] == 2
    assert isinstance(third.exception, EndpointBudgetSpent) and "budget for this key is spent" in str(third.exception)
    assert store.authenticate(exact).spent == 31 and store.authenticate(short).spent <= 17  # never past a budget
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert sum(e["points"] for e in log if e["status"] == 200) == 31 + store.authenticate(short).spent
    refused = [e for e in log if e["status"] == 429]
    assert refused and all(e["code"] == "budget_exhausted" and e["key"] != "exact" for e in refused), refused


def test_sweep_against_an_endpoint_gives_the_local_sweeps_records(cifar, tmp_path):
    from probe.runs.results import RESULTS, read_jsonl
    from probe.runs.sweep import run_sweep
    from probe.runs.sweep_file import parse_sweep

    grid = {"model": "cifar10-cnn", "limit": 2, "attacks": ["hsja", "rays"], "budget": 40, "sigma": [0],
            "p_adv_samples": 4, "batch_size": 16}  # fmt: skip
    run_sweep(parse_sweep(grid), tmp_path / "local")
    app, _ = probe_app(cifar, tmp_path, keys=False)
    with running(app) as url:
        plan = parse_sweep({**grid, "endpoint": {"url": url, "protocol": "probe", "concurrency": 2}})
        run_sweep(plan, tmp_path / "remote")
    local, remote = read_jsonl(tmp_path / "local" / RESULTS), read_jsonl(tmp_path / "remote" / RESULTS)
    same_records(local, remote)
    assert {r["protocol"] for r in remote} == {"probe"} and all(r["endpoint"].startswith(url) for r in remote)
    assert not any("endpoint" in r for r in local)


def _serve_process(db, port: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "probe", "serve", "--model", "cifar10-cnn", "--sigma", "0", "--keys", str(db),
         "--port", str(port)],  # fmt: skip
        stdout=log, stderr=subprocess.STDOUT,
    )


def _wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "probe serve exited"
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("probe serve did not start")


@pytest.mark.slow
def test_server_killed_and_restarted_mid_attack_loses_and_double_charges_nothing(cifar, images, tmp_path):
    config = AttackConfig(attacks=("hsja", "rays"), budget=150, seed=5, p_adv_samples=8)
    local = attack_images(SmoothedClassifier(cifar, 0.0, 1), images, config)
    db, port = tmp_path / "keys.sqlite", free_port()
    token = KeyStore(db).add("k", 100_000)
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w")
    proc = _serve_process(db, port, log)
    _wait_ready(url, proc)
    remote = RemoteRuntime(Endpoint(url=url, model="cifar10-cnn", protocol="probe", api_key=token, retries=12,
                                    backoff=0.25, points_per_request=8, timeout=10))  # fmt: skip
    records, failure = [], []

    def attack() -> None:
        try:
            records.extend(attack_images(SmoothedClassifier(remote, 0.0, 1), images, config))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)

    thread = threading.Thread(target=attack)
    thread.start()
    while remote.answered < 60 and thread.is_alive():
        time.sleep(0.005)
    proc.kill()  # mid-attack, without warning
    proc.wait()
    before = remote.answered
    proc = _serve_process(db, port, log)
    try:
        thread.join(120)
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
    assert not failure, failure
    assert before < remote.answered and remote.retried > 0  # the attack went on after the restart
    same_records(local, records)
    assert KeyStore(db).authenticate(token).spent == remote.answered  # nothing lost, nothing charged twice


def test_without_the_serve_extra_the_error_is_one_line_naming_it(monkeypatch):
    import importlib

    import probe.remote as remote

    real = importlib.import_module

    def no_httpx(name: str):
        if name.split(".")[0] == "httpx":
            raise ImportError(name)
        return real(name)

    monkeypatch.setattr(remote.importlib, "import_module", no_httpx)
    with pytest.raises(ProbeError, match=r'httpx is not installed: .* pip install "onnx-probe\[serve\]"'):
        RemoteRuntime(Endpoint(url="http://127.0.0.1:1"))
