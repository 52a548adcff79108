"""The paper's figures (Fig. 1-4) on a tiny linear model whose answers are known exactly.

For f(x) = 1[w.x + b > 0] the smoothed classifier equals f, and the probability that a
noisy copy x + sigma N is on the other side of the hyperplane is Phi(t / sigma), t the
signed distance past the hyperplane: that is what Fig. 1 must show. A binary search
under g_{sigma,n} ends closer to the hyperplane as n grows (Fig. 3).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from probe.cli import app
from probe.data import load_image
from tests.onnx_models import margin

pytest.importorskip("matplotlib")

SHAPE = (3, 8, 8)
SIGMA = 0.1


def _to_png(path, x: np.ndarray) -> None:
    Image.fromarray((np.clip(x, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def linear(make_linear, tmp_path_factory):
    """A linear model, an original at margin ~ -0.3 (class 0) and an adversarial just past the hyperplane."""
    root = tmp_path_factory.mktemp("fig")
    lin = make_linear(SHAPE, seed=3)
    model, w, b = lin.model, lin.w, lin.b
    rng = np.random.default_rng(5)
    x = (0.5 + 0.08 * rng.standard_normal(SHAPE)).astype(np.float32)
    wn = w / np.linalg.norm(w)
    x = np.clip(x - (margin(x, w, b) + 0.3) * wn, 0, 1)  # margin about -0.3
    folder = root / "imgs"
    folder.mkdir()
    _to_png(folder / "orig.png", x)
    x0 = load_image(folder / "orig.png", SHAPE[1:])
    x_adv = x0 - (margin(x0, w, b) - 0.02) * wn  # 0.02 past the hyperplane
    _to_png(root / "adv.png", x_adv)
    x_adv = load_image(root / "adv.png", SHAPE[1:])
    assert margin(x0, w, b) < -0.2 and margin(x_adv, w, b) > 0
    return {"root": root, "model": model, "folder": folder, "adv": root / "adv.png", "w": w, "b": b,
            "x0": x0, "x_adv": x_adv}


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def assert_figure(path, min_size=(300, 200)) -> np.ndarray:
    """``path`` is a valid PNG of at least ``min_size`` (width, height) with something drawn on it."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()  # the whole file decodes (CRCs, no truncation)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] >= min_size[0] and pixels.shape[0] >= min_size[1], pixels.shape
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # curves, text and axes, not a blank canvas
    return pixels


def _common(lin):
    return ["--model", lin["model"], "--images", lin["folder"], "--adversarial", lin["adv"]]


def _margins(lin, distances):
    """Signed distance past the hyperplane of x0 + t u, u toward the adversarial."""
    x0, w, b = lin["x0"], lin["w"], lin["b"]
    u = (lin["x_adv"] - x0).astype(np.float64)
    u /= np.linalg.norm(u)
    slope = float(np.dot(w.ravel(), u.ravel()) / np.linalg.norm(w))
    return margin(x0, w, b) + slope * np.asarray(distances)


def test_profile_follows_phi_of_distance_past_the_boundary(linear):
    png = linear["root"] / "profile.png"
    samples = 600
    run("profile", *_common(linear), "--sigma", SIGMA, "--n", 10, "--n", 100, "--samples", samples,
        "--points", 31, "--out", png)
    data = json.loads(png.with_suffix(".json").read_text())
    assert_figure(png)
    for key in ("distance", "p_wrong", "p_low", "p_high", "adversarial_probability", "crossings", "levels",
                "boundary_f", "boundary_g_sigma", "micro_threshold", "image", "source"):
        assert key in data, key
    assert data["label"] == 0 and data["levels"] == [0.5, 0.8] and data["source"] == "file"
    t = _margins(linear, data["distance"])
    expected = stats.norm.cdf(t / SIGMA)
    p = np.asarray(data["p_wrong"])
    tolerance = 4.5 * np.sqrt(expected * (1 - expected) / samples) + 0.01
    assert np.all(np.abs(p - expected) <= tolerance), np.max(np.abs(p - expected) - tolerance)
    assert np.all(np.asarray(data["p_low"]) <= p) and np.all(p <= np.asarray(data["p_high"]))
    # the frontiers of f and of g_sigma coincide for a linear model: where the margin is 0
    boundary = -margin(linear["x0"], linear["w"], linear["b"]) / (_margins(linear, [1.0])[0] - _margins(linear, [0.0])[0])
    assert data["boundary_f"] == pytest.approx(boundary, abs=1e-3)
    assert data["boundary_g_sigma"] == pytest.approx(boundary, abs=0.25 * SIGMA)
    # more votes: a sharper step (far below the boundary less adversarial, far above more)
    far_in = np.argmin(np.abs(t + SIGMA))
    assert data["adversarial_probability"]["100"][far_in] <= data["adversarial_probability"]["10"][far_in]
    assert data["crossings"]["n=100"]["0.8"] <= data["crossings"]["n=10"]["0.8"]


def test_slice_labels_match_the_hyperplane(linear):
    png = linear["root"] / "slice.png"
    run("slice", *_common(linear), "--direction", "adversarial", "--sigma", SIGMA, "--n", 25, "--grid", 21,
        "--out", png)
    data = json.loads(png.with_suffix(".json").read_text())
    assert_figure(png)
    plain, smoothed = np.asarray(data["plain"]), np.asarray(data["smoothed"])
    assert plain.shape == smoothed.shape == (21, 21)
    assert set(data["labels"]) == {"0", "1"} and data["center_label"] == 0
    # u points at the adversarial, v is orthogonal to it: the label depends (almost only) on the u coordinate
    coords = np.asarray(data["coords"])
    boundary = data["adversarial_distance"] - 0.02
    expected = np.broadcast_to(coords[None, :] > boundary, plain.shape)
    assert np.mean(plain == expected) >= 0.95
    assert data["agreement"] >= 0.85  # g_sigma = f for a linear model; only cells near the boundary may differ
    assert np.all(plain[:, 0] == 0) and np.all(plain[:, -1] == 1)


def test_bsearch_concentrates_with_more_samples(linear):
    png = linear["root"] / "bsearch.png"
    run("bsearch", *_common(linear), "--sigma", SIGMA, "--n", 1, "--n", 64, "--repeats", 60, "--steps", 10,
        "--genie-samples", 2000, "--out", png)
    data = json.loads(png.with_suffix(".json").read_text())
    assert_figure(png)
    small, large = data["per_n"]["1"], data["per_n"]["64"]
    assert len(small["end_distances"]) == len(large["end_distances"]) == 60
    d_adv = data["adversarial_distance"]
    assert all(0 <= e <= d_adv + 1e-6 for e in small["end_distances"] + large["end_distances"])
    assert large["std"] < 0.6 * small["std"]
    assert large["iqr"] < small["iqr"]
    boundary = -margin(linear["x0"], linear["w"], linear["b"]) / (_margins(linear, [1.0])[0] - _margins(linear, [0.0])[0])
    ends_large = np.asarray(large["end_distances"])
    ends_small = np.asarray(small["end_distances"])
    assert np.mean(np.abs(ends_large - boundary)) < np.mean(np.abs(ends_small - boundary))
    assert abs(large["median"] - boundary) < 0.5 * SIGMA
    assert data["boundary_g_sigma"] == pytest.approx(boundary, abs=0.25 * SIGMA)


def test_bsearch_without_noise_always_ends_at_the_same_point(linear):
    from probe.experiments.bsearch import bsearch_distribution
    from probe.runtime import Runtime

    data = bsearch_distribution(Runtime(linear["model"]), linear["x0"], linear["x_adv"], sigma=0.0, ns=(1, 5), repeats=5,
                                steps=12)
    ends = data["per_n"]["1"]["end_distances"]
    assert max(ends) - min(ends) < 1e-9 and data["per_n"]["5"]["std"] == 0.0
    assert data["boundary_g_sigma"] == pytest.approx(min(ends), abs=data["adversarial_distance"] * 2 ** -11)


def test_certified_accuracy_curve_and_plot(tmp_path):
    """Certified accuracy at r = fraction of the labelled images certified correct with radius >= r,
    counted by hand; the figure's JSON carries those numbers and the per-image radii."""
    from probe.experiments.plots import plot_certified_accuracy
    from probe.runs.certify import certified_accuracy

    def rec(name, label, predicted, radius):
        abstain = predicted == -1
        return {"image": name, "label": label, "predicted": predicted, "abstain": abstain,
                "pa_lower": 0.4 if abstain else 0.9, "radius": radius,
                "correct": None if label is None else predicted == label}

    images = [
        rec("a", 1, 1, 0.3),  # certified correct up to 0.3
        rec("b", 2, -1, 0.0),  # abstains
        rec("c", 0, 1, 0.8),  # certified, but wrong: never counts
        rec("d", 0, 0, 0.6),  # certified correct up to 0.6
        rec("e", None, 1, 0.9),  # no label: not counted at all
    ]
    curve = certified_accuracy(images, (0.0, 0.25, 0.3, 0.5, 0.6, 0.7))
    # 4 labelled images; correct with radius >= r: {a, d} up to 0.3, {d} up to 0.6, none beyond
    assert curve == {0.0: 2 / 4, 0.25: 2 / 4, 0.3: 2 / 4, 0.5: 1 / 4, 0.6: 1 / 4, 0.7: 0.0}
    runs = [{"sigma": s, "n": 100, "n0": 10, "alpha": 0.001, "images": images,
             "certified_accuracy": {f"{k:g}": v for k, v in curve.items()}} for s in (0.12, 0.25)]
    path = plot_certified_accuracy(runs, tmp_path / "fig4.png")
    assert_figure(path)
    data = json.loads((tmp_path / "fig4.json").read_text())
    assert data["figure"] == "certified_accuracy"
    assert [(r["sigma"], r["n"], r["n0"], r["alpha"]) for r in data["runs"]] == [(0.12, 100, 10, 0.001),
                                                                                (0.25, 100, 10, 0.001)]
    for r in data["runs"]:
        assert r["certified_accuracy"] == {"0": 0.5, "0.25": 0.5, "0.3": 0.5, "0.5": 0.25, "0.6": 0.25, "0.7": 0.0}
        assert r["radii"] == [0.3, 0.0, 0.8, 0.6, 0.9] and r["correct"] == [True, False, False, True, None]


def test_certify_cli_plot_matches_the_exact_smoothed_probabilities(make_linear, tmp_path):
    """For f linear, a noisy copy keeps the true label with probability p = Phi(|margin| / sigma)
    exactly, so CERTIFY's count of it is Bin(n, p): the radius of each image must lie between
    the radii of that count's 1e-6 and 1 - 1e-6 quantiles, and below the true distance |margin|."""
    lin = make_linear(SHAPE, seed=3, images=8, image_seed=1)
    n, n0, alpha = 200, 20, 0.001
    png = tmp_path / "cert.png"
    run("certify", "--model", lin.model, "--images", lin.folder, "--sigma", 0.12, "--sigma", 0.25,
        "--n", n, "--n0", n0, "--alpha", alpha, "--radii", "0,0.1,0.2,0.3", "--plot", png)
    assert_figure(png)
    data = json.loads(png.with_suffix(".json").read_text())
    assert [r["sigma"] for r in data["runs"]] == [0.12, 0.25]

    def radius_of(k: int, sigma: float) -> float:  # CERTIFY's radius for k of n votes (0: abstain)
        p_low = stats.beta.ppf(alpha, k, n - k + 1) if k > 0 else 0.0
        return sigma * stats.norm.ppf(p_low) if p_low > 0.5 else 0.0

    decided = 0
    for run_ in data["runs"]:
        sigma = run_["sigma"]
        assert (run_["n"], run_["n0"], run_["alpha"]) == (n, n0, alpha)
        assert len(run_["radii"]) == len(lin.names)
        for x, radius, correct in zip(lin.x, run_["radii"], run_["correct"]):
            m = abs(lin.margin(x))
            p = stats.norm.cdf(m / sigma)
            lo = radius_of(int(stats.binom.ppf(1e-6, n, p)), sigma)
            hi = radius_of(int(stats.binom.isf(1e-6, n, p)), sigma)
            assert radius < m  # the certificate is sound
            if correct:
                assert lo - 1e-9 <= radius <= hi + 1e-9, (m, sigma, radius, lo, hi)
            else:  # abstained: the wrong class has probability <= 1/2 and is never certified
                assert radius == 0.0 and lo == 0.0, (m, sigma, lo)
            if lo > 0 and stats.binom.cdf(n0 // 2, n0, p) < 1e-5:  # the selection and the bound both hold
                assert correct
                decided += 1
        # the curve at each radius: the images certified correct at least that far
        expected = {f"{r:g}": np.mean([bool(c) and rad >= r for rad, c in zip(run_["radii"], run_["correct"])])
                    for r in (0, 0.1, 0.2, 0.3)}
        assert run_["certified_accuracy"] == pytest.approx(expected)
    assert decided >= 4  # the check above is not vacuous


def test_figure_errors_are_one_line_and_exit_2(linear, tmp_path, run_main):
    common = _common(linear)
    for args, message in [
        (["--out", tmp_path / "x.jpg"], f"--out must name a .png file, got {tmp_path / 'x.jpg'}"),
        (["--sigma", "0"], "--sigma must be in (0.0, inf), got 0.0"),
    ]:
        result = run_main("profile", *common, *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"error: {message}"


def test_profile_zooms_on_a_window(linear):
    from probe.experiments.profile import probability_profile
    from probe.runtime import Runtime

    data = probability_profile(Runtime(linear["model"]), linear["x0"], linear["x_adv"], sigma=SIGMA, ns=(5,), samples=200,
                               points=11, start=0.2, stop=0.4)
    assert data["distance"][0] == pytest.approx(0.2) and data["distance"][-1] == pytest.approx(0.4)
    assert data["label"] == 0 and 0.2 < data["boundary_g_sigma"] < 0.4
