"""What a user sees when something is wrong (issue #39, items 9-11): one ``error:`` line and
exit code 2 before any work, never a traceback, a silent default or a meaningless result."""

from __future__ import annotations

import http.server
import json
import threading

import numpy as np
import pytest

from tests.entry import run_entry
from tests.onnx_models import save_linear


def _one_error_line(result, message: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def lin(make_linear):
    return make_linear((3, 8, 8), seed=1, images=2, image_seed=3)


@pytest.mark.parametrize("command", ["attack", "predict", "certify"])
def test_a_negative_seed_is_refused_before_anything_is_written(lin, tmp_path, command):
    out = ["--out", tmp_path / "run"] if command == "attack" else []
    result = run_entry(command, "--model", lin.model, "--images", lin.folder, "--seed", "-1", *out)
    _one_error_line(result, "'--seed'")
    assert not (tmp_path / "run").exists()  # no run.json, no empty results.jsonl


def test_certify_plot_with_an_unknown_format_fails_before_certify(lin):
    result = run_entry("certify", "--model", lin.model, "--images", lin.folder, "--plot", "out.xyz")
    _one_error_line(result, "--plot must name a png/")
    assert "certif" not in result.stdout  # no table: CERTIFY never ran


def test_a_model_with_nan_logits_is_refused_not_called_robust(tmp_path, lin):
    nan = save_linear(tmp_path / "nan.onnx", np.full((3, 8, 8), np.nan, np.float32), float("nan"))
    for command in (["attack", "--sigma", "0", "--budget", "20", "--attack", "hsja"], ["predict", "--sigma", "0"]):
        result = run_entry(*command, "--model", nan, "--images", lin.folder)
        _one_error_line(result, "is not finite (NaN or inf) on 2 of 2 clean images")
    ok = run_entry("predict", "--model", lin.model, "--images", lin.folder, "--sigma", "0", "--json")
    assert ok.returncode == 0, ok.stderr


def test_an_empty_sweep_file_is_refused(tmp_path):
    for text in ("", "sigma = [0.1]\n", "[[extra]]\nsigma = [0]\n"):
        (tmp_path / "s.toml").write_text(text)
        result = run_entry("sweep", tmp_path / "s.toml", "--out", tmp_path / "out")
        _one_error_line(result, "names no models and no images")
        assert not (tmp_path / "out").exists()


def test_resume_names_the_settings_that_differ(lin, tmp_path):
    out = tmp_path / "run"
    args = ["attack", "--model", lin.model, "--images", lin.folder, "--sigma", "0", "--attack", "hsja",
            "--budget", "30", "--out", out]  # fmt: skip
    assert run_entry(*args).returncode == 0
    other = run_entry(*args[:-4], "--budget", "31", "--seed", "2", "--out", out, "--resume")
    _one_error_line(other, "other settings: budget 31 here, 30 in run.json; seed 2 here, 0 in run.json")
    assert len((out / "results.jsonl").read_text().splitlines()) == 2  # untouched


def test_version_is_one_line_and_usage_errors_are_one_line():
    from probe import __version__

    version = run_entry("--version")
    assert version.returncode == 0 and version.stdout == f"probe {__version__}\n"
    _one_error_line(run_entry("attack", "--n", "2.5"), "Invalid value for '--n'")
    _one_error_line(run_entry("--versio"), "No such option: --versio")


def test_the_summary_reports_the_top_level_defended_accuracy(lin, tmp_path):
    """The per-attack rows and the top-level figure of summary.json, side by side."""
    out = tmp_path / "acc"
    result = run_entry("attack", "--model", lin.model, "--images", lin.folder, "--sigma", "0", "--attack", "hsja",
                       "--budget", "20", "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["defended_accuracy"] == 1.0
    assert all(row["defended_accuracy"] == 1.0 for row in summary["attacks"].values())
    assert "defended accuracy (mean share of fresh votes that give the true label): 1.000" in result.stdout


class _HtmlPage(http.server.BaseHTTPRequestHandler):
    """What a proxy or a login page answers to anything: 200, text/html."""

    def _page(self) -> None:
        body = b"<html><body>please log in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("protocol", ["v2", "probe"])
def test_an_endpoint_that_answers_html_is_one_error_line(protocol):
    pytest.importorskip("httpx")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for command in (["info"], ["attack", "--limit", "1", "--budget", "10"]):
            result = run_entry(*command, "--endpoint", url, "--protocol", protocol, "--model", "m")
            _one_error_line(result, "the answer is not JSON")
    finally:
        server.shutdown()
        server.server_close()
