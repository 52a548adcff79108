"""``probe serve`` under hostile bodies (#39 items 1, 2): a 60 MiB body is refused without
stalling the server, deep nesting is a 400, and every answer (a 500 too) is logged and counted."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from probe.remote import protocol as v2  # noqa: E402
from probe.remote.intake import Limits  # noqa: E402
from probe.remote.keys import KeyStore  # noqa: E402
from tests.test_serve import SHAPE, cifar, infer_body, metric, probe_app, running  # noqa: E402,F401

PATH = "/v2/models/cifar10-cnn/infer"


def huge_json(points: int = 5120, number: bytes = b"0.5") -> bytes:
    """A JSON request for ``points`` CIFAR points (5120: 15.7 million numbers, 60 MiB), built as bytes."""
    head = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[%d,3,32,32],"data":[' % points
    count = points * 3072
    return head + (number + b",") * (count - 1) + number + b"]}]}"


class Health:
    """Polls /v2/health/ready from a thread of its own; ``worst`` is its slowest answer in seconds."""

    def __init__(self, url: str) -> None:
        self.url, self.worst, self.answers, self.failures = url, 0.0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get("/v2/health/ready").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.worst = max(self.worst, time.perf_counter() - start)
                self.answers += ok
                self.failures += not ok
                time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)


def test_limits_follow_the_model_not_a_fixed_64_mib():
    limits = Limits((3, 32, 32), 256)
    assert limits.values == 256 * 3072
    assert limits.most_bytes(binary=True) == 64 * 1024 + 4 * 256 * 3072  # 3.1 MiB
    assert limits.most_bytes(binary=False) == 64 * 1024 + 32 * 256 * 3072  # 24.1 MiB, not 64
    assert Limits((3, 32, 32), 256, cap=1000).most_bytes(binary=False) == 1000


def test_a_60_mib_body_is_refused_fast_while_health_answers_within_a_second(cifar, tmp_path):
    app, db = probe_app(cifar, tmp_path)
    token = KeyStore(db).add("k", 1000)
    body = huge_json()
    assert len(body) > 60 * 2**20
    auth = {"Authorization": f"Bearer {token}"}
    limit = Limits(SHAPE, 256).most_bytes(binary=False)
    chunk = 2**20

    def send(how: str) -> tuple[int, float]:
        start = time.perf_counter()
        with httpx.Client(base_url=url, headers=auth, timeout=60) as client:
            if how == "length":  # Content-Length declared: refused before a byte of it is read
                answer = client.post(PATH, content=body)
            elif how == "chunked":  # no length: read up to the bound, then refused
                answer = client.post(PATH, content=(body[i : i + chunk] for i in range(0, len(body), chunk)))
            else:  # under the byte bound, but more numbers than 256 points hold: refused before json.loads
                answer = client.post(PATH, content=huge_json(4000, b"0")[: limit - 10] + b"0]}]}")
        return answer.status_code, time.perf_counter() - start

    with running(app) as url, Health(url) as health:
        time.sleep(0.2)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(send, ["length", "length", "length", "chunked"]))
        dense = send("dense")
        time.sleep(0.2)
        ok = httpx.post(f"{url}{PATH}", json=infer_body(np.zeros((2, *SHAPE), np.float32)), headers=auth)
    print(f"refused in {[round(s, 2) for _, s in results]} s, dense {dense[1]:.2f} s; "
          f"health: {health.answers} answers, worst {health.worst:.3f} s")  # fmt: skip
    assert [status for status, _ in results] == [413] * 4 and dense[0] == 413
    assert health.failures == 0 and health.answers >= 5
    assert health.worst < 1.0  # the server never stalled (before #39: up to 12.9 s)
    assert max(seconds for _, seconds in results) < 10 and dense[1] < 10  # before #39: 12.4, 21.9 and 30.2 s
    assert ok.status_code == 200 and KeyStore(db).authenticate(token).spent == 2  # refusals cost nothing
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert [e["status"] for e in log].count(413) == 5 and all(e["code"] == "too_large" for e in log if e["status"] == 413)


def test_binary_data_is_bounded_by_its_declared_shape(cifar, tmp_path):
    app, _ = probe_app(cifar, tmp_path, keys=False)
    x = np.zeros((2, *SHAPE), np.float32)
    body, headers = v2.encode(x, v2.ImageInput("input", "FP32", "NCHW", (32, 32), True), request_id="b", binary=True)
    with running(app) as url, httpx.Client(base_url=url) as client:
        assert client.post(PATH, content=body, headers=headers).status_code == 200
        extra = client.post(PATH, content=body + b"\0" * 4096, headers=headers)  # more bytes than the shape asks
        assert extra.status_code == 400 and "bytes after the header" in extra.json()["error"]
        huge = client.post(PATH, content=body + b"\0" * (4 * 2**20), headers=headers)  # past the model's bound
        assert huge.status_code == 413
        header = {**headers, v2.HEADER_LENGTH: str(200_000)}  # a JSON header larger than any request needs
        assert client.post(PATH, content=b" " * 200_001, headers=header).status_code == 413
        deep = b"[" * 5000 + b"]" * 5000  # a binary request's JSON header nested too deeply
        nested = client.post(PATH, content=deep, headers={**headers, v2.HEADER_LENGTH: str(len(deep))})
        assert nested.status_code == 400 and "nested too deeply" in nested.json()["error"]


@pytest.mark.parametrize("depth", [2000, 100_000])  # past both parsers' limits (json ~1000, orjson 1024)
def test_deep_nesting_is_a_400_logged_and_counted_and_a_500_is_too(cifar, tmp_path, depth):
    from fastapi.testclient import TestClient

    app, _ = probe_app(cifar, tmp_path, keys=False)
    deep = b'{"inputs":' + b"[" * depth + b"]" * depth + b"}"
    ok = infer_body(np.zeros((1, *SHAPE), np.float32))
    with TestClient(app) as client:
        answers = [client.post(PATH, content=deep) for _ in range(3)]
        answers.append(client.post(PATH, json=ok))

        async def broken(points):
            raise RuntimeError("the model thread died")

        app.state.batcher.labels = broken
        answers.append(client.post(PATH, json=ok))
        answers.append(client.get("/v2/no/such/route"))
    assert [a.status_code for a in answers] == [400, 400, 400, 200, 500, 404]
    assert all(set(a.json()) == {"error", "code"} for a in answers if a.status_code != 200)
    assert "nested too deeply" in answers[0].json()["error"] and answers[4].json()["code"] == "internal"
    text = app.state.metrics.text().decode()
    assert metric(text, "probe_requests_total") == 6  # before #39: the 500s went uncounted
    assert metric(text, 'probe_requests_total{status="500"}') == 1
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert [e["status"] for e in log] == [400, 400, 400, 200, 500, 404]
    assert "RuntimeError: the model thread died" in log[4]["error"] and log[0]["client"] == "testclient"


def test_rate_limiter_forgets_refilled_buckets_of_many_addresses(monkeypatch):
    from probe.remote.checks import RateLimiter

    limiter = RateLimiter(1e6, 2)  # refilled within a microsecond
    monkeypatch.setattr(RateLimiter, "MAX_BUCKETS", 50)
    for i in range(200):
        limiter.wait_time(f"10.0.0.{i}")
    assert len(limiter._buckets) <= 51
    assert limiter.blocked("10.0.0.199") == 0.0 and limiter.wait_time("x") == 0.0


def test_bodies_read_at_once_share_a_bound_past_it_503_and_a_client_leaving_mid_body_is_a_499(cifar, tmp_path):
    import socket

    app, _ = probe_app(cifar, tmp_path, keys=False, max_inflight_bytes=1_000_000)
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        port = int(url.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n\r\n"
                     % PATH.encode() + b" " * 800_000)  # fmt: skip
        time.sleep(0.5)  # 800 kB of the pool's 1 MB held by a body that stalls
        busy = client.post(PATH, content=b" " * 300_000)
        slow.close()
        time.sleep(0.5)
        after = client.post(PATH, content=b" " * 300_000)
    assert busy.status_code == 503 and busy.json()["code"] == "busy" and busy.headers["Retry-After"] == "1"
    assert after.status_code == 400  # the pool was given back: read, and found not to be JSON
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert sorted(e["status"] for e in log) == [400, 499, 503]
    assert [e["code"] for e in log if e["status"] == 499] == ["client_gone"]


def test_the_largest_json_requests_are_parsed_in_a_worker_process_while_health_answers(cifar, tmp_path):
    import pickle

    from probe.remote.checks import RequestError

    again = pickle.loads(pickle.dumps(RequestError(413, "too big", "too_large")))  # crosses the process boundary
    assert (again.status, again.message, again.code) == (413, "too big", "too_large")
    app, _ = probe_app(cifar, tmp_path, keys=False)
    x = np.random.default_rng(5).random((256, *SHAPE), dtype=np.float32)
    body = json.dumps(infer_body(x)).encode()  # 15 MiB: json.loads takes about a second here
    truth = cifar.labels(x).tolist()
    with running(app) as url, Health(url) as health, httpx.Client(base_url=url, timeout=60) as client:
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: client.post(PATH, content=body), range(3)))
    print(f"health: {health.answers} answers, worst {health.worst:.3f} s")
    assert [a.status_code for a in answers] == [200] * 3
    assert all(a.json()["outputs"][0]["data"] == truth for a in answers)
    assert health.failures == 0 and health.worst < 1.0  # parsed in a thread: up to 1.67 s (3 clients x 5 requests)


def _exit_worker(body: bytes) -> None:
    import os

    os._exit(3)


def _size(body: bytes) -> int:
    return len(body)


def test_a_parser_worker_that_dies_is_a_503_and_the_next_request_gets_a_new_one():
    import asyncio

    from probe.remote.checks import RequestError
    from probe.remote.intake import PROCESS_BYTES, Parser

    async def go() -> tuple[int, int, int]:
        parser = Parser()
        try:
            try:
                await parser.run(_exit_worker, b" " * PROCESS_BYTES, False)
            except RequestError as refused:
                status = refused.status
            return status, await parser.run(_size, b" " * PROCESS_BYTES, False), await parser.run(_size, b"ab", False)
        finally:
            parser.close()

    assert asyncio.run(go()) == (503, PROCESS_BYTES, 2)


@pytest.mark.parametrize("fast", [False, True], ids=["json", "orjson"])
def test_json_tensors_read_back_exactly_and_shorter_without_orjson(monkeypatch, fast):
    """v2 JSON data: every float32 (all exponents, subnormals, -0) parsed to float64 and cast back
    (MLServer, KServe) or read by ``probe serve`` is the value sent, with orjson or without it."""
    if fast:
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(v2, "_orjson", None)
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 0x7F800000, 200_000, dtype=np.uint32)  # finite positive float32 bit patterns
    special = [0.0, -0.0, 1.0, 1 / 255, 0.99999994, 1e-45, 1.1754942e-38, 3.4028235e38, -2.5, 0.1]
    x = np.concatenate([bits.view(np.float32), -bits[:999].view(np.float32), np.array(special, np.float32),
                        rng.random(30_000, dtype=np.float32)])  # fmt: skip
    tensor = v2.ImageInput("input", "FP32", "NCHW", None, True)
    body, headers = v2.encode(x, tensor, request_id="r", binary=False)
    assert headers["Content-Type"] == "application/json"
    for parsed in (json.loads(body), v2.loads(body)):
        assert parsed["id"] == "r" and parsed["inputs"][0]["shape"] == [len(x)] and parsed["inputs"][0]["name"] == "input"
        back = np.asarray(parsed["inputs"][0]["data"], np.float64).astype(np.float32)
        assert np.array_equal(back.view(np.uint32), x.view(np.uint32))  # bit for bit: -0 stays -0
    if not fast:
        assert len(body) < 0.75 * len(json.dumps(x.tolist()))  # 9 digits, not a float64's 17
    pixels = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    body, _ = v2.encode(pixels, v2.ImageInput("x", "UINT8", "NHWC", (8, 8), True), request_id="u", binary=False)
    assert json.loads(body)["inputs"][0]["data"] == pixels.ravel().tolist()
    odd, _ = v2.encode(np.array([0.5, np.nan], np.float32), tensor, request_id="n", binary=False)
    assert b"NaN" in odd and json.loads(odd)["inputs"][0]["data"][0] == 0.5  # never sent by probe: kept as before
