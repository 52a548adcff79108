"""Plain HTTP image APIs through a target file (``--target api.toml``, #38): base64 JPEG in
JSON with a class name back, a list of PNGs with indices back, multipart uploads, ${ENV}
secrets, Retry-After, --max-rate, and what is measured (what the server decoded)."""

import base64
import io
import json
import time
from collections import Counter
from email.parser import BytesParser

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from probe.errors import ProbeError  # noqa: E402
from probe.load import load_samples  # noqa: E402
from probe.remote.api import ApiRuntime  # noqa: E402
from probe.remote.callable import CallableModel  # noqa: E402
from probe.remote.images import ImageCodec, decode  # noqa: E402
from probe.remote.target import load_target  # noqa: E402
from probe.runs.campaign import AttackConfig, attack_images  # noqa: E402
from probe.smoothing import SmoothedClassifier  # noqa: E402
from tests.test_remote_labels import NAMES, same_records  # noqa: E402
from tests.test_serve import cifar, running  # noqa: E402,F401

TOKEN = "s3cret-token"


def image_api(cifar, *, limited=0):
    """A small FastAPI app in front of the CIFAR model, the way image APIs are written.

    /classify: {"image": base64 JPEG or PNG} -> {"label": "cat"} (needs the bearer token);
    /batch: {"instances": [base64 PNG, ...]} -> {"predictions": [{"class_id": 3}, ...]};
    /upload: multipart file(s) "file" -> {"result": {"class_id": 3}};
    the first ``limited`` requests get 429 with Retry-After: 1.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()
    state = {"decoded": [], "requests": 0, "fields": Counter(), "times": []}

    def classify(x):
        state["decoded"].extend(x)
        return cifar.labels(np.stack(x))

    def gate():
        state["requests"] += 1
        state["times"].append(time.monotonic())
        if state["requests"] <= limited:
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "1"})
        return None

    @app.post("/classify")
    async def single(request: Request):
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": "bad token"}, status_code=401)
        refused = gate()
        if refused:
            return refused
        body = await request.json()
        (label,) = classify([decode(base64.b64decode(body["image"]))])
        return {"label": NAMES[label], "model": "cifar"}

    @app.post("/batch")
    async def batch(request: Request):
        refused = gate()
        if refused:
            return refused
        body = await request.json()
        labels = classify([decode(base64.b64decode(b)) for b in body["instances"]])
        return {"predictions": [{"class_id": int(k)} for k in labels]}

    @app.post("/upload")
    async def upload(request: Request):
        refused = gate()
        if refused:
            return refused
        raw = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode() + await request.body()
        parts = BytesParser().parsebytes(raw).get_payload()
        files = [p.get_payload(decode=True) for p in parts if p.get_param("name", header="content-disposition") == "file"]
        for p in parts:
            state["fields"][p.get_param("name", header="content-disposition")] += 1
        labels = classify([decode(f) for f in files])
        return {"result": {"class_id": int(labels[0])}}

    return app, state


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def images():
    return load_samples("cifar10-cnn", limit=2)


def test_base64_jpeg_json_api_answering_names_through_the_cli(cifar, tmp_path, run_cli, monkeypatch):
    from probe.zoo import default_images

    write(tmp_path / "classes.txt", "\n".join(NAMES))
    app, state = image_api(cifar)
    with running(app) as url:
        target = write(tmp_path / "api.toml", f'''
url = "{url}/classify"
headers = {{ Authorization = "Bearer ${{API_TOKEN}}" }}
[image]
format = "jpeg"
quality = 90
size = [32, 32]
[body]
json = {{ image = "${{image}}", top_k = 1 }}
[answer]
label = "label"
kind = "name"
classes = "classes.txt"
''')
        args = ("attack", "--target", target, "--sigma", "0", "--attack", "rays", "--budget", "60", "--p-adv-samples",
                "4", "--images", default_images("cifar10-cnn"), "--limit", "1", "--concurrency", "2")  # fmt: skip
        unset = run_cli(*args)
        monkeypatch.setenv("API_TOKEN", TOKEN)
        done = run_cli(*args, "--out", tmp_path / "o")
    assert isinstance(unset.exception, ProbeError) and "uses ${API_TOKEN}, which is not set" in str(unset.exception)
    assert done.exit_code == 0, done.output
    (rec,) = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert rec["encoding"] == "jpeg:q90" and rec["protocol"] == "http" and rec["endpoint"] == f"{url}/classify"
    assert rec["found"] and rec["queries"] <= 60
    saved = np.load(tmp_path / "o" / rec["adv_file"])
    assert any(np.array_equal(saved, d) for d in state["decoded"])  # measured on exactly what the server decoded
    x0 = load_samples("cifar10-cnn", limit=1).x[0]
    assert abs(rec["l2"] - float(np.linalg.norm((saved - x0).ravel()))) < 1e-5
    assert cifar.labels(saved[None])[0] != rec["clean_label"]  # and the server's model is fooled by it


def test_jpeg_point_handed_out_is_sent_again_byte_for_byte():
    codec = ImageCodec("jpeg", 75)
    x = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    seen = codec.as_sent(x)
    assert np.abs(seen - x).max() > 2 / 255  # JPEG is lossy: the server does not see the asked point
    for point in seen:  # re-encoding the decoded image would change it; the kept bytes do not
        assert np.array_equal(decode(codec.encode(point)), point)
    assert np.array_equal(codec.as_sent(seen), seen)


class EightBit(CallableModel):
    """The local twin of a PNG API: the CIFAR model fed the 8-bit grid, measured as sent."""

    def as_sent(self, x):
        return ImageCodec("png").as_sent(x)


def test_png_list_api_records_equal_a_local_run_on_the_8bit_grid(cifar, images, tmp_path):
    config = AttackConfig(attacks=("hsja", "surfree", "rays"), budget=50, seed=2, p_adv_samples=8)
    twin = EightBit(lambda x: cifar.labels(np.rint(x * 255) / np.float32(255)), input_shape=(3, 32, 32), num_classes=10)
    local = attack_images(SmoothedClassifier(twin, 0.0, 1), images, config)
    app, state = image_api(cifar)
    with running(app) as url:
        target = write(tmp_path / "api.toml", f'''
url = "{url}/batch"
images_per_request = 8
[image]
size = [32, 32]
[body]
json = {{ instances = "${{images}}" }}
[answer]
label = "predictions[*].class_id"
kind = "index"
num_classes = 10
''')
        remote = ApiRuntime(load_target(target), concurrency=3)
        records = attack_images(SmoothedClassifier(remote, 0.0, 1), images, config)
        remote.close()
    same_records(local, records, extra={"model_function", "encoding"})
    assert {r["encoding"] for r in records} == {"png"} and sum(r["queries"] for r in records) > 100
    decoded = np.stack(state["decoded"])
    assert np.array_equal(decoded * np.float32(255), np.rint(decoded * 255))  # the server got 8-bit images
    assert remote.answered == len(decoded) and remote.calls == state["requests"]
    assert remote.points_per_request == 8 and remote.calls >= len(decoded) / 8


def test_multipart_upload_retry_after_and_max_rate(cifar, tmp_path):
    app, state = image_api(cifar, limited=1)
    x = np.random.default_rng(5).random((6, 3, 32, 32), dtype=np.float32)
    with running(app) as url:
        target = load_target(write(tmp_path / "up.toml", f'''
url = "{url}/upload"
[image]
format = "png"
size = [32, 32]
[body]
kind = "multipart"
field = "file"
filename = "probe.png"
fields = {{ model = "v3" }}
[answer]
label = "result.class_id"
kind = "index"
num_classes = 10
'''))
        remote = ApiRuntime(target, concurrency=1, backoff=0.01, max_rate=10.0)
        start = time.monotonic()
        labels = remote.labels(x)
        elapsed = time.monotonic() - start
    assert np.array_equal(labels, cifar.labels(ImageCodec("png").as_sent(x)))
    assert state["fields"] == Counter({"file": 6, "model": 6}) and remote.retried == 1 and state["requests"] == 7
    gaps = np.diff(state["times"])
    assert gaps[0] >= 0.95  # Retry-After: 1 honoured, not the 0.01 s backoff
    span = state["times"][-1] - state["times"][1]  # 6 requests after the wait: 5 intervals of >= 0.1 s
    assert span >= 5 * 0.1 - 0.03 and elapsed >= 1.0 + 5 * 0.1 - 0.03  # at most 10 requests a second


def test_target_file_faults_are_one_line_errors(cifar, tmp_path, run_main):
    bad = write(tmp_path / "bad.toml", 'url = "http://127.0.0.1:1/x"\n[answer]\nlabel = "label"\nkind = "colour"\n')
    with pytest.raises(ProbeError, match="answer.kind must be one of name, index, scores"):
        load_target(bad)
    with pytest.raises(ProbeError, match="unknown key body.jsn"):
        load_target(write(tmp_path / "typo.toml", 'url = "http://h/x"\n[body]\njsn = {}\n[answer]\nlabel = "l"\n'))
    with pytest.raises(ProbeError, match='needs "\\${images}"'):
        load_target(write(tmp_path / "n.toml", 'url = "http://h/x"\nimages_per_request = 2\n[answer]\nlabel = "l"\n'))
    app, _ = image_api(cifar)
    with running(app) as url:
        t = load_target(write(tmp_path / "w.toml", f'url = "{url}/batch"\n[image]\nsize = [32, 32]\n[body]\n'
                              'json = { instances = ["${image}"] }\n[answer]\nlabel = "predictions[0].label"\n'
                              'kind = "index"\nnum_classes = 10\n'))  # fmt: skip
        with pytest.raises(ProbeError, match="the API's answer has no predictions.0.label"):
            ApiRuntime(t).labels(np.zeros((1, 3, 32, 32), np.float32))
        done = run_main("predict", "--target", tmp_path / "bad.toml", "--limit", "1", timeout=60)
        good = write(tmp_path / "g.toml", f'url = "{url}/batch"\n[image]\nsize = [32, 32]\n[body]\n'
                     'json = { instances = ["${image}"] }\n[answer]\nlabel = "predictions[0].label"\n'
                     'kind = "index"\nnum_classes = 10\n')  # fmt: skip
        no_images = run_main("predict", "--target", good, "--limit", "1", timeout=60)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: ") and "answer.kind" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    # an API has no bundled samples: without --images it is an error, not the default model's images
    assert no_images.returncode == 2 and "has no bundled sample images: give --images" in no_images.stderr


def test_retry_after_and_the_rate_limiter():
    from email.utils import formatdate

    from probe.remote.transport import RateLimiter, retry_after

    assert retry_after("3") == 3.0 and retry_after(None) is None and retry_after("soon") is None
    assert 8 <= retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10  # an HTTP date
    assert retry_after(formatdate(time.time() - 60, usegmt=True)) == 0.0
    limiter, start = RateLimiter(50.0), time.monotonic()
    for _ in range(11):
        limiter.wait()
    assert time.monotonic() - start >= 10 / 50 - 0.01  # evenly spaced slots: 10 intervals of 20 ms
    with pytest.raises(ProbeError, match="^max_rate must be") as error:
        RateLimiter(0.0)
    from probe.cli import FLAGS

    assert error.value.render(FLAGS).startswith("--max-rate must be")
