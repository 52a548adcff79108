"""Property-based tests of what reads user input (issue #39, item 12): every input gives a
result or a ProbeError, never another exception. The image loader (random bytes, truncated
and mutated PNG and JPEG files), the labels reader, the sweep-file parser and the endpoint
URL check. Example counts are small (60 a test, a few seconds in all); PROBE_FUZZ_EXAMPLES=1000
searches harder."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from probe.errors import ProbeError  # noqa: E402

FUZZ = settings(
    max_examples=int(os.environ.get("PROBE_FUZZ_EXAMPLES", 60)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _encoded(fmt: str, mode: str = "RGB") -> bytes:
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def _png16() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000).save(buf, format="PNG")
    return buf.getvalue()


SEEDS = {"png": _encoded("PNG"), "png16": _png16(), "jpeg": _encoded("JPEG"), "gif": _encoded("GIF", "P"),
         "bmp": _encoded("BMP")}  # fmt: skip


@st.composite
def damaged_images(draw) -> tuple[str, bytes]:
    """A real PNG, 16-bit PNG, JPEG, GIF or BMP file, truncated, with bytes flipped or inserted,
    or plain random bytes."""
    kind = draw(st.sampled_from([*SEEDS, "random"]))
    if kind == "random":
        return ".png", draw(st.binary(max_size=300))
    data = bytearray(SEEDS[kind])
    how = draw(st.sampled_from(["truncate", "flip", "insert", "intact"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif how == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=20))
    suffix = ".jpg" if kind == "jpeg" else f".{kind.removesuffix('16')}"
    return suffix, bytes(data)


@FUZZ
@given(damaged_images(), st.sampled_from([(8, 8), (5, 7), (16, 12)]))
def test_the_image_loader_gives_images_or_a_probe_error(tmp_path_factory, image, size):
    from probe.data import load_images

    folder = tmp_path_factory.mktemp("img")
    suffix, data = image
    (folder / f"x{suffix}").write_bytes(data)
    try:
        loaded = load_images([str(folder)], size)
    except ProbeError:
        return
    assert loaded.x.shape == (1, 3, *size) and loaded.x.dtype == np.float32
    assert np.isfinite(loaded.x).all() and loaded.x.min() >= 0 and loaded.x.max() <= 1


LABEL_PIECES = st.sampled_from(["file", "label", "a.png", "b.jpg", "x", "0", "1", "-1", "2.5", "999", "", " ",
                                ",", ";", "\t", "\n", "\r\n", '"', "\ufeff", "\x00", "é", "#"])  # fmt: skip


@FUZZ
@given(st.one_of(st.lists(LABEL_PIECES, max_size=30).map("".join).map(str.encode), st.binary(max_size=200)),
       st.sampled_from([None, 1, 2, 1000]))  # fmt: skip
def test_the_labels_reader_gives_a_table_or_a_probe_error(tmp_path_factory, raw, num_classes):
    from probe.data import read_label_csv

    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    path.write_bytes(raw)
    try:
        table = read_label_csv(path, num_classes=num_classes)
    except ProbeError:
        return
    for name, label in table.items():
        assert isinstance(name, str) and isinstance(label, int) and label >= 0
        assert num_classes is None or label < num_classes


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 5000), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["", "all", "hsja", "rays", "label", "paper", "probe", "auto", "l2", "cifar10-cnn",
                                     "x.onnx", "http://[::1", "http://127.0.0.1:1", "ftp://h", "nope"]))  # fmt: skip
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(["hsja", "rays", "url", "n",
                                                                       "n0", "alpha", "protocol", "memory", "sigma",
                                                                       "timeout", "x"]), inner, max_size=3)),
                      max_leaves=6)  # fmt: skip
SWEEP_KEYS = st.sampled_from(["name", "models", "model", "images", "limit", "attack_limit", "attacks", "budget",
                              "sigma", "n", "pa", "seed", "norm", "p_adv_samples", "batch_size", "full_votes",
                              "endpoint", "device", "save_images", "certify", "criterion", "preset", "attack", "extra",
                              "labels", "unknown"])  # fmt: skip


@FUZZ
@given(st.dictionaries(SWEEP_KEYS, VALUES, max_size=6))
def test_the_sweep_parser_gives_a_sweep_or_a_probe_error(tmp_path_factory, data):
    from probe.runs.sweep_file import parse_sweep

    try:
        sweep = parse_sweep(data, tmp_path_factory.mktemp("sweep"))
    except ProbeError:
        return
    assert sweep.configs
    for cfg in sweep.configs:
        assert math.isfinite(cfg.sigma) and cfg.sigma >= 0 and cfg.n >= 1 and 0 < cfg.pa <= 1 and cfg.budget >= 1


@FUZZ
@given(st.one_of(st.text(max_size=40), st.binary(max_size=60).map(lambda b: b.decode("utf-8", "replace"))))
def test_the_sweep_loader_gives_a_sweep_or_a_probe_error(tmp_path_factory, text):
    from probe.runs.sweep_file import load_sweep

    path = tmp_path_factory.mktemp("sweepfile") / "s.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_sweep(path)
    except ProbeError:
        pass


URL_PIECES = st.sampled_from(["http", "https", "ftp", "://", ":", "/", "[", "]", "::1", "127.0.0.1", "host", "@",
                              "99999", "80", "-1", "%", "?", "#", " ", "\x00", "v2", "models", "é"])  # fmt: skip


@FUZZ
@given(st.one_of(st.lists(URL_PIECES, max_size=10).map("".join), st.text(max_size=30)))
def test_the_endpoint_url_check_gives_the_url_or_a_probe_error(url):
    from probe.cli.checks import endpoint_url

    try:
        assert endpoint_url(url) == url
    except ProbeError:
        return
    if Path(__file__).parent.joinpath("..", "probe", "remote", "client.py").exists():  # the client agrees
        pytest.importorskip("httpx")
        from probe.remote.client import Endpoint

        Endpoint(url=url)


def test_a_grpc_endpoint_may_be_host_and_port():
    from probe.cli.checks import endpoint_url

    assert endpoint_url("127.0.0.1:8001", "grpc") == "127.0.0.1:8001"
    assert endpoint_url("grpcs://triton.example:443", "grpc") == "grpcs://triton.example:443"
    for bad in ("127.0.0.1:8001", "grpc://h:1"):  # neither is an HTTP URL
        with pytest.raises(ProbeError, match="http:// or https://"):
            endpoint_url(bad)
    with pytest.raises(ProbeError, match="host:port"):
        endpoint_url("127.0.0.1:99999", "grpc")
