"""Request ids in ``probe serve`` (#39 items 3, 4): copies of a request in flight get its
answer or its error (never a 500), also with two servers on one key database; an id
reused with another payload is a 409, with the same payload the stored answer, free."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from probe.remote import protocol as v2  # noqa: E402
from probe.remote.keys import Answered, KeyStore  # noqa: E402
from tests.test_serve import SHAPE, cifar, infer_body, metric, probe_app, running  # noqa: E402,F401

PATH = "/v2/models/cifar10-cnn/infer"


def two_servers(cifar, tmp_path, wait_a: float, wait_b: float):
    """Two apps on one keys database, each with its own log (a.jsonl, b.jsonl)."""
    a, db = probe_app(cifar, tmp_path, wait=wait_a, log=tmp_path / "a.jsonl")
    b, _ = probe_app(cifar, tmp_path, wait=wait_b, log=tmp_path / "b.jsonl")
    return a, b, db


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_copies_in_flight_get_the_originals_refusal_when_another_server_spends_the_key(cifar, tmp_path):
    a, b, db = two_servers(cifar, tmp_path, wait_a=0.6, wait_b=0.0)  # a answers 0.6 s after a request arrives
    token = KeyStore(db).add("k", 2)
    x = np.random.default_rng(0).random((2, *SHAPE), dtype=np.float32)
    auth = {"Authorization": f"Bearer {token}"}
    with running(a) as url_a, running(b) as url_b:

        def copy(_: int) -> httpx.Response:
            return httpx.post(f"{url_a}{PATH}", json=infer_body(x, "same"), headers=auth, timeout=30)

        with ThreadPoolExecutor(4) as pool:
            copies = [pool.submit(copy, i) for i in range(4)]
            time.sleep(0.25)  # the four wait in a's batcher; b spends the whole key meanwhile
            spent = httpx.post(f"{url_b}{PATH}", json=infer_body(x, "other"), headers=auth, timeout=30)
            answers = [c.result() for c in copies]
    assert spent.status_code == 200
    assert [r.status_code for r in answers] == [429] * 4  # before #39: one 429 and three 500s
    assert {r.json()["code"] for r in answers} == {v2.BUDGET_CODE}
    log = read_log(tmp_path / "a.jsonl")
    assert [e["status"] for e in log] == [429] * 4 and sum(bool(e.get("repeated")) for e in log) == 3
    assert metric(a.state.metrics.text().decode(), 'probe_requests_total{status="429"}') == 4
    assert KeyStore(db).authenticate(token).spent == 2


def test_one_id_on_two_servers_at_once_is_charged_once(cifar, tmp_path):
    a, b, db = two_servers(cifar, tmp_path, wait_a=0.3, wait_b=0.3)
    token = KeyStore(db).add("k", 100)
    x = np.random.default_rng(1).random((3, *SHAPE), dtype=np.float32)
    auth = {"Authorization": f"Bearer {token}"}
    with running(a) as url_a, running(b) as url_b, ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda u: httpx.post(f"{u}{PATH}", json=infer_body(x, "r"), headers=auth, timeout=30),
                                [url_a, url_b]))  # fmt: skip
    assert [r.status_code for r in answers] == [200, 200]
    assert answers[0].json()["outputs"] == answers[1].json()["outputs"]
    assert KeyStore(db).authenticate(token).spent == 3  # not 6
    repeated = [e for e in read_log(tmp_path / "a.jsonl") + read_log(tmp_path / "b.jsonl") if e.get("repeated")]
    assert len(repeated) == 1


def test_a_reused_id_with_another_payload_is_a_409_the_same_payload_free(cifar, tmp_path):
    app, db = probe_app(cifar, tmp_path, wait=0.4)
    token = KeyStore(db).add("k", 100)
    x = np.random.default_rng(2).random((2, *SHAPE), dtype=np.float32)
    y = x.copy()
    y[0, 0, 0, 0] = np.nextafter(y[0, 0, 0, 0], np.float32(1))  # one value, one ulp apart
    auth = {"X-API-Key": token}
    with running(app) as url, httpx.Client(base_url=url, headers=auth, timeout=30) as client:
        first = client.post(PATH, json=infer_body(x, "id-1"))
        same = client.post(PATH, json=infer_body(x, "id-1"))
        other = client.post(PATH, json=infer_body(y, "id-1"))
        with ThreadPoolExecutor(2) as pool:  # the same id with two payloads at once: the second is a conflict
            pair = list(pool.map(lambda z: client.post(PATH, json=infer_body(z, "id-2")), [x, y]))
    assert first.status_code == 200 and same.status_code == 200
    assert same.json()["outputs"] == first.json()["outputs"] and same.headers[v2.BUDGET_HEADER] == "98"
    assert other.status_code == 409 and other.json()["code"] == "id_conflict"  # before #39: 200, the old answer
    assert sorted(r.status_code for r in pair) == [200, 409]
    assert KeyStore(db).authenticate(token).spent == 4
    log = read_log(tmp_path / "requests.jsonl")
    assert [e["status"] for e in log[:3]] == [200, 200, 409] and log[0]["digest"] == log[1]["digest"] != log[2]["digest"]


def test_the_store_keeps_digests_and_refuses_to_charge_an_answered_id(tmp_path):
    store = KeyStore(tmp_path / "k.sqlite")
    key = store.authenticate(store.add("k", 10))
    assert store.charge(key.id, 2, "r", [1, 2], "d1") == 8
    with pytest.raises(Answered) as answered:
        store.charge(key.id, 2, "r", [3, 4], "d2")
    assert answered.value.labels == [1, 2] and answered.value.digest == "d1"
    assert store.stored(key.id, "r") == ([1, 2], "d1") and store.get(key.id).spent == 2
