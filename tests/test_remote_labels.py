"""Servers that answer labels or class names only (#38): ``--num-classes`` and ``--classes``;
a defended ``probe serve`` without ``--defended``; a Python function as the model
(:class:`probe.CallableModel`, ``--model module:function``)."""

import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from probe.errors import BudgetExceeded, ProbeError  # noqa: E402
from probe.load import load_samples  # noqa: E402
from probe.remote.classes import Classes, read_classes  # noqa: E402
from probe.remote.client import Endpoint, RemoteRuntime  # noqa: E402
from probe.runs.campaign import AttackConfig, attack_images  # noqa: E402
from probe.smoothing import SmoothedClassifier  # noqa: E402
from tests.test_remote import REMOTE_FIELDS  # noqa: E402
from tests.test_serve import cifar, probe_app, running  # noqa: E402,F401

NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def same_records(local, remote, extra=()):
    key = lambda r: (r["image"], r["attack"])  # noqa: E731
    local, remote = sorted(local, key=key), sorted(remote, key=key)
    assert len(local) == len(remote) > 0
    skip = REMOTE_FIELDS | set(extra)
    for a, b in zip(local, remote):
        diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if k not in skip and a.get(k) != b.get(k)}
        assert not diff, diff


@pytest.fixture(scope="module")
def images():
    return load_samples("cifar10-cnn", limit=2)


def labels_server(cifar, *, answer="index"):
    """A v2 server like a stock MLServer scikit-learn runtime: FP32 [-1, 3, 32, 32] in, one
    ``predict`` output of labels (INT64 [-1, 1]) or class names (BYTES [-1]), no class count."""
    from fastapi import FastAPI, Request

    app = FastAPI()
    state = {"points": 0}
    out = {"name": "predict", "datatype": "INT64" if answer == "index" else "BYTES", "shape": [-1, 1]}

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    @app.get("/v2/models/m")
    async def meta():
        return {"name": "m", "platform": "sklearn", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 32, 32]}],
                "outputs": [out]}  # fmt: skip

    @app.post("/v2/models/m/infer")
    async def infer(request: Request):
        t = (await request.json())["inputs"][0]
        x = np.asarray(t["data"], np.float32).reshape(t["shape"])
        labels = cifar.labels(x)
        state["points"] += len(x)
        data = labels.tolist() if answer == "index" else [NAMES[k] if answer == "name" else "okapi" for k in labels]
        return {"model_name": "m", "outputs": [{**out, "shape": [len(x), 1], "data": data}]}

    return app, state


def test_labels_only_server_needs_a_class_count_and_then_gives_the_local_records(cifar, images):
    config = AttackConfig(attacks=("hsja", "rays"), budget=50, seed=4, p_adv_samples=8)
    local = attack_images(SmoothedClassifier(cifar, 0.0, 1), images, config)
    app, state = labels_server(cifar)
    with running(app) as url:
        with pytest.raises(ProbeError, match=r"declares no class count and answers labels only: give it with --num-classes"):
            RemoteRuntime(Endpoint(url=url, model="m"))
        assert state["points"] == 1  # one query to learn that the answer holds no scores
        with pytest.raises(ProbeError, match=r"answered labels outside \[0, 3\)"):  # a count too small shows
            RemoteRuntime(Endpoint(url=url, model="m", classes=Classes(count=3))).labels(images.x)
        remote = RemoteRuntime(Endpoint(url=url, model="m", classes=Classes(count=10), points_per_request=16))
        assert remote.num_classes == 10 and not remote.binary  # no GET /v2 here: JSON tensors
        records = attack_images(SmoothedClassifier(remote, 0.0, 1), images, config)
        remote.close()
    same_records(local, records)
    assert sum(r["queries"] for r in records) > 100


def test_class_names_are_mapped_through_the_class_list(cifar, images, tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(NAMES) + "\n\n")
    names = read_classes(tmp_path / "classes.txt")
    assert names == NAMES
    x = np.random.default_rng(2).random((7, 3, 32, 32), dtype=np.float32)
    app, _ = labels_server(cifar, answer="name")
    with running(app) as url:
        remote = RemoteRuntime(Endpoint(url=url, model="m", classes=Classes(names=names), points_per_request=3))
        assert np.array_equal(remote.labels(x), cifar.labels(x)) and remote.answered == 7 and remote.calls == 3
        assert remote.class_name(3) == "cat"
        with pytest.raises(ProbeError, match="give the class list with --classes FILE"):
            RemoteRuntime(Endpoint(url=url, model="m", classes=Classes(count=10))).labels(x[:1])
    app, _ = labels_server(cifar, answer="unknown")
    with running(app) as url:
        with pytest.raises(ProbeError, match="class name 'okapi', which is not in the class list"):
            RemoteRuntime(Endpoint(url=url, model="m", classes=Classes(names=names))).labels(x[:1])
    (tmp_path / "dup.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ProbeError, match="names 'cat' twice"):
        read_classes(tmp_path / "dup.txt")
    with pytest.raises(ProbeError, match="does not match the 10 names"):
        Classes(count=9, names=NAMES)


def test_class_count_given_must_match_the_declared_one(cifar, tmp_path):
    app, _ = probe_app(cifar, tmp_path, keys=False)  # declares 10 scores' worth of classes
    with running(app) as url:
        with pytest.raises(ProbeError, match="--num-classes gives 12 classes but the endpoint declares 10"):
            RemoteRuntime(Endpoint(url=url, model="cifar10-cnn", classes=Classes(count=12)))
        remote = RemoteRuntime(Endpoint(url=url, model="cifar10-cnn", classes=Classes(count=10)))
        assert remote.num_classes == 10 and remote.binary  # probe serve lists binary_tensor_data at GET /v2
        x = np.random.default_rng(4).random((5, 3, 32, 32), dtype=np.float32)
        plain = RemoteRuntime(Endpoint(url=url, model="cifar10-cnn", binary=False))
        assert not plain.binary and np.array_equal(remote.labels(x), plain.labels(x))
        assert np.array_equal(remote.labels(x), cifar.labels(x))


def test_cli_labels_only_endpoint_with_classes_file(cifar, tmp_path, run_cli):
    from probe.zoo import default_images

    (tmp_path / "classes.txt").write_text("\n".join(NAMES) + "\n")
    app, _ = labels_server(cifar, answer="name")
    with running(app) as url:
        base = ("attack", "--endpoint", url, "--model", "m", "--sigma", "0", "--attack", "rays", "--budget", "30",
                "--p-adv-samples", "4", "--images", default_images("cifar10-cnn"), "--limit", "1")  # fmt: skip
        refused = run_cli(*base)
        done = run_cli(*base, "--classes", tmp_path / "classes.txt", "--max-rate", "1000", "--out", tmp_path / "o")
    assert isinstance(refused.exception, ProbeError) and "--classes FILE" in str(refused.exception)
    assert done.exit_code == 0, done.output
    (rec,) = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert rec["queries"] == 30 and rec["endpoint"].endswith("/v2/models/m")


def test_defended_server_without_defended_says_so_in_one_line(cifar, tmp_path, run_main):
    """The user forgets --defended: client-side noise leaves [0, 1] and probe serve refuses it."""
    app, _ = probe_app(cifar, tmp_path, keys=False, sigma=0.05, n=4)
    with running(app) as url:
        done = run_main("attack", "--endpoint", url, "--protocol", "probe", "--model", "cifar10-cnn", "--attack",
                        "rays", "--budget", "20", "--limit", "1", timeout=120)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len([ln for ln in lines if ln.startswith("error:")]) == 1, done.stderr
    assert "Traceback" not in done.stderr
    error = next(ln for ln in lines if ln.startswith("error:"))
    assert "probe_defended: true" in error and "--defended" in error and "sigma 0.05, n 4" in error


# ---------------------------------------------------------------------------------------- a Python function


def test_callable_model_gives_the_local_records_budgets_and_counters(cifar, images):
    from probe import CallableModel

    seen, noisy = [], []

    def classify(x):
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == (3, 32, 32)
        assert noisy or 0 <= x.min() <= x.max() <= 1  # canonical points (client-side noise is not clipped)
        seen.append(len(x))
        return cifar.labels(x).tolist()

    config = AttackConfig(attacks=("hsja", "surfree", "rays"), budget=60, seed=3, p_adv_samples=8)
    local = attack_images(SmoothedClassifier(cifar, 0.0, 1), images, config)
    model = CallableModel(classify, input_shape=(3, 32, 32), num_classes=10, batch_size=16)
    records = attack_images(SmoothedClassifier(model, 0.0, 1), images, config)
    same_records(local, records, extra={"model_function"})
    assert {r["model_function"] for r in records} == {model.name} and max(seen) <= 16
    assert model.inferences == sum(seen) == model.rows and model.calls == len(seen)
    assert sum(r["queries"] for r in records) <= 6 * 60 and all(r["queries"] <= 60 for r in records)
    noisy.append(True)
    smooth = AttackConfig(attacks=("rays",), budget=30, seed=1, p_adv_samples=4)  # noise, votes and inferences as local
    smoothed = attack_images(SmoothedClassifier(model, 0.05, 4), images, smooth)
    same_records(attack_images(SmoothedClassifier(cifar, 0.05, 4), images, smooth), smoothed, extra={"model_function"})
    assert sum(r["inferences"] for r in smoothed) >= sum(r["queries"] for r in smoothed) > 0


def test_callable_model_answers_names_and_its_errors_are_one_line(cifar):
    from probe import CallableModel
    from probe.oracle import Criterion, Oracle

    x = np.random.default_rng(3).random((5, 3, 32, 32), dtype=np.float32)
    named = CallableModel(lambda b: [NAMES[k] for k in cifar.labels(b)], input_shape=(32, 32), classes=NAMES, batch_size=2)
    assert np.array_equal(named.labels(x), cifar.labels(x)) and named.calls == 3 and named.num_classes == 10
    with pytest.raises(ProbeError, match=r"raised ZeroDivisionError: division by zero"):
        CallableModel(lambda b: 1 / 0, input_shape=(32, 32), num_classes=10).labels(x)
    with pytest.raises(ProbeError, match=r"answered 1 label\(s\) for 5 image\(s\)"):
        CallableModel(lambda b: [0], input_shape=(32, 32), num_classes=10).labels(x)
    with pytest.raises(ProbeError, match=r"outside \[0, 10\)"):
        CallableModel(lambda b: np.full(len(b), 10), input_shape=(32, 32), num_classes=10).labels(x)
    with pytest.raises(ProbeError, match="needs num_classes or classes"):
        CallableModel(lambda b: b, input_shape=(32, 32))
    calls = []
    model = CallableModel(lambda b: calls.append(len(b)) or np.zeros(len(b), int), input_shape=(32, 32), num_classes=10)
    oracle = Oracle(SmoothedClassifier(model, 0.0, 1), Criterion(label=1), budget=4, rng=np.random.default_rng(0))
    oracle(x[:4])
    with pytest.raises(BudgetExceeded):  # charged before the function runs
        oracle(x[:1])
    assert calls == [4] and model.inferences == 4


def test_cli_model_module_function(cifar, tmp_path, run_cli, run_main, monkeypatch):
    from probe.zoo import default_images, resolve_model

    (tmp_path / "my_sdk.py").write_text(
        "import numpy as np\nfrom probe.runtime import Runtime\n"
        f"_rt = Runtime({str(resolve_model('cifar10-cnn'))!r}, batch_size=8)\n"
        "def classify(x):\n    return _rt.labels(x)\n"
        "classify.input_shape = (3, 32, 32)\nclassify.num_classes = 10\n"
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ("--sigma", "0", "--attack", "rays", "--budget", "30", "--p-adv-samples", "4",
            "--images", default_images("cifar10-cnn"), "--limit", "1")  # fmt: skip
    done = run_cli("attack", "--model", "my_sdk:classify", *args, "--out", tmp_path / "o")
    local = run_cli("attack", "--model", "cifar10-cnn", *args, "--out", tmp_path / "l")
    assert done.exit_code == 0 and local.exit_code == 0, (done.output, local.output)
    (rec,) = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    (ref,) = [json.loads(line) for line in (tmp_path / "l" / "results.jsonl").read_text().splitlines()]
    assert rec["model_function"] == "my_sdk:classify" and rec["l2"] == ref["l2"] and rec["queries"] == ref["queries"]
    from probe import load_model

    fn = load_model("my_sdk:classify")  # the Python API resolves module:function too
    assert fn.num_classes == 10 and fn.input_shape == (3, 32, 32) and fn.name == "my_sdk:classify"
    missing = run_cli("predict", "--model", "my_sdk:nothing", "--limit", "1")
    assert str(missing.exception) == "module 'my_sdk' has no 'nothing' (--model my_sdk:nothing)"
    absent = run_main("predict", "--model", "no_such_sdk_module:classify", "--limit", "1", timeout=60)
    assert absent.returncode == 2 and absent.stderr.strip().startswith("error: cannot import 'no_such_sdk_module'")
    assert len(absent.stderr.strip().splitlines()) == 1


def test_info_on_a_remote_model_spends_no_queries_unless_timing_is_asked_for(cifar, tmp_path, run_cli, monkeypatch):
    """``probe info`` times a local model; an endpoint or a function is timed only with --seconds (#38)."""
    app, state = labels_server(cifar)
    with running(app) as url:
        base = ("info", "--endpoint", url, "--model", "m", "--num-classes", "10", "--json")
        quiet = run_cli(*base)
        assert quiet.exit_code == 0, quiet.output
        assert state["points"] == 0
        timed = run_cli(*base, "--seconds", "0.2", "--batch-size", "4", "--concurrency", "1")
        assert timed.exit_code == 0, timed.output
    said = json.loads(quiet.stdout)
    assert "not measured for a remote model" in said["throughput"] and said["queries_spent"] == 0
    assert "images_per_second" not in said and said["num_classes"] == 10
    timed_said = json.loads(timed.stdout)
    assert timed_said["images_per_second"] > 0 and state["points"] == timed_said["queries_spent"] >= 8  # warm-up + 1
    (tmp_path / "counted_sdk.py").write_text(
        "import numpy as np\nCALLS = []\n"
        "def classify(x):\n    CALLS.append(len(x))\n    return np.zeros(len(x), int)\n"
        "classify.input_shape = (3, 32, 32)\nclassify.num_classes = 10\n"
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    quiet = run_cli("info", "--model", "counted_sdk:classify")
    assert quiet.exit_code == 0, quiet.output
    assert importlib.import_module("counted_sdk").CALLS == [] and "not measured" in quiet.stdout
    local = json.loads(run_cli("info", "--model", "cifar10-cnn", "--json", "--seconds", "0.1").stdout)
    assert local["images_per_second"] > 0 and "queries_spent" not in local
