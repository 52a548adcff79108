"""``probe info``, ``predict``, ``accuracy`` and ``certify``: the model and its smoothed version."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.table import Table

from probe.cli.options import (
    ImageOptions,
    JsonOpt,
    ModelOptions,
    NOpt,
    SeedOpt,
    SigmaOpt,
    image_options,
    model_options,
    option_group,
    parse_numbers,
    require,
)
from probe.cli.checks import model_overrides as check_model_options
from probe.cli.checks import plot_path as check_plot_path
from probe.cli.output import emit_json, err, escape, fmt, out, progress_bar
from probe.validate import check_alpha, check_n, check_sigma

AlphaOpt = Annotated[float, typer.Option("--alpha", help="Abstain level of PREDICT.")]


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """The smoothing and PREDICT options that ``probe predict`` and ``probe accuracy`` share."""

    sigma: float = 0.05
    n: int = 100
    alpha: float = 0.001
    seed: int = 0


def prediction_options() -> Callable:
    """Add --sigma --n --alpha --seed to a command (``prediction: Prediction``)."""
    params = {"sigma": (SigmaOpt, 0.05), "n": (NOpt, 100), "alpha": (AlphaOpt, 0.001), "seed": (SeedOpt, 0)}
    return option_group("prediction", Prediction, params, {})


def _predictions(
    model_options: ModelOptions, image_options: ImageOptions, p: Prediction, *, title: str, need_labels: bool = False
):
    """(runtime, classifier, PREDICT records) of the images: what predict and accuracy share."""
    sigma, n, alpha, seed = p.sigma, p.n, p.alpha, p.seed
    check_sigma(sigma, name="--sigma")
    check_n(n, name="--n")
    check_alpha(alpha, name="--alpha")
    check_model_options(model_options)
    from probe.runs.certify import predict_images
    from probe.smoothing import SmoothedClassifier

    runtime = model_options.open()
    data = image_options.open(runtime, model_options.model)
    if need_labels:
        require(data.has_labels, "accuracy needs labels for every image (labels.csv, --labels or ImageNet val names)")
    from probe.cli.sanity import require_finite_outputs

    require_finite_outputs(runtime, data, first=runtime.batch_size)  # one model call
    classifier = SmoothedClassifier(runtime, sigma, n)
    with progress_bar(title, len(data)) as advance:
        records = predict_images(classifier, data, alpha=alpha, seed=seed, progress=advance)
    return runtime, classifier, records


@model_options()
def info(
    model_options: ModelOptions,
    seconds: Annotated[
        Optional[float],
        typer.Option(
            "--seconds",
            help="Time spent measuring throughput (default 1; a remote model is timed only when this is given, "
            "as every call is a query).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Input spec, providers in use, classes and a quick throughput figure of a model."""
    from probe.validate import check_real

    if seconds is not None:
        check_real("--seconds", seconds, 0.0, None)
    runtime = model_options.open()
    from probe.runtime import Runtime
    data = runtime.describe()
    data["metadata"] = {k: v for k, v in runtime.info.metadata.items() if k != "probe.input_spec"}
    remote = not isinstance(runtime, Runtime)  # an endpoint, a --target API or a Python function (#38)
    if remote and seconds is None:
        data["throughput"] = "not measured for a remote model: it would spend queries (--seconds N measures it)"
    elif seconds is None or seconds > 0:
        data["images_per_second"] = _throughput(runtime, 1.0 if seconds is None else seconds)
    if remote:
        data["queries_spent"] = int(getattr(runtime, "inferences", 0))  # opening may ask one to count the classes
    if as_json:
        emit_json(data)
        return
    table = Table(title=f"model {Path(runtime.info.path).name}", show_header=False)
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    out.print(table)


def _throughput(runtime, seconds: float) -> float:
    """Images a second through ``runtime.labels`` over about ``seconds`` (after one warm-up batch)."""
    import numpy as np

    x = np.random.default_rng(0).random((runtime.batch_size, *runtime.input_shape), dtype=np.float32)
    runtime.labels(x)  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        runtime.labels(x)
        count += len(x)
    return round(count / (time.perf_counter() - start), 1)


@model_options()
@image_options()
@prediction_options()
def predict(
    model_options: ModelOptions, image_options: ImageOptions, prediction: Prediction, as_json: JsonOpt = False
) -> None:
    """Plain and smoothed labels per image (majority vote, and PREDICT with abstain)."""
    runtime, classifier, records = _predictions(model_options, image_options, prediction, title="predict")
    sigma, alpha = prediction.sigma, prediction.alpha
    if as_json:
        emit_json({"sigma": sigma, "n": classifier.n, "alpha": alpha, "images": records})
        return
    table = Table(title=f"predictions (sigma={sigma}, n={classifier.n})")
    for col in ("image", "label", "plain", "vote", "votes", "PREDICT"):
        table.add_column(col)
    for r in records:
        name = runtime.class_name
        table.add_row(
            r["image"],
            "-" if r["label"] is None else f"{r['label']} {name(r['label'])}",
            f"{r['plain']} {name(r['plain'])}",
            f"{r['vote']} {name(r['vote'])}",
            f"{r['top_votes']}/{classifier.n}",
            "abstain" if r["predict"] < 0 else str(r["predict"]),
        )
    out.print(table)


@model_options()
@image_options()
@prediction_options()
def accuracy(
    model_options: ModelOptions, image_options: ImageOptions, prediction: Prediction, as_json: JsonOpt = False
) -> None:
    """Clean accuracy of the plain model and of the smoothed one (majority vote and PREDICT)."""
    runtime, classifier, records = _predictions(
        model_options, image_options, prediction, title="accuracy", need_labels=True
    )
    sigma, alpha = prediction.sigma, prediction.alpha
    total = len(records)
    result = {
        "images": total,
        "sigma": sigma,
        "n": classifier.n,
        "plain": sum(r["plain"] == r["label"] for r in records) / total,
        "smoothed_vote": sum(r["vote"] == r["label"] for r in records) / total,
        "smoothed_predict": sum(r["predict"] == r["label"] for r in records) / total,
        "abstain": sum(r["predict"] < 0 for r in records) / total,
    }
    if as_json:
        emit_json(result)
        return
    table = Table(title=f"clean accuracy on {total} images")
    table.add_column("classifier")
    table.add_column("accuracy")
    table.add_row("plain model", f"{result['plain']:.3f}")
    table.add_row(f"smoothed, majority vote (sigma={sigma}, n={classifier.n})", f"{result['smoothed_vote']:.3f}")
    table.add_row(
        f"smoothed, PREDICT alpha={alpha} (abstain {result['abstain']:.2f})", f"{result['smoothed_predict']:.3f}"
    )
    out.print(table)


@model_options()
@image_options()
def certify(
    model_options: ModelOptions,
    image_options: ImageOptions,
    sigma: Annotated[
        list[float], typer.Option("--sigma", help="Noise std in [0,1] space; repeat for several curves.")
    ] = [0.25],
    n: NOpt = 1000,
    n0: Annotated[int, typer.Option("--n0", help="Samples that select the class.")] = 100,
    alpha: Annotated[float, typer.Option("--alpha", help="Failure probability of the certificate.")] = 0.001,
    radii: Annotated[
        str, typer.Option("--radii", help="Radii of the certified-accuracy table.")
    ] = "0,0.25,0.5,0.75,1.0,1.5,2.0",
    plot: Annotated[
        Optional[Path], typer.Option("--plot", help="Write the certified-accuracy curves (Fig. 4) to this PNG.")
    ] = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Cohen et al.'s CERTIFY per image, then certified accuracy at several radii (per sigma)."""
    for s_ in sigma:
        check_sigma(s_, positive=True, name="--sigma")
    check_n(n, name="--n")
    check_n(n0, name="--n0")
    check_alpha(alpha, name="--alpha")
    radius_list = parse_numbers(radii, "--radii")
    check_plot_path(plot)  # before CERTIFY runs: a figure that cannot be written fails now
    check_model_options(model_options)
    from probe.runs.certify import certified_accuracy, certify_images
    from probe.smoothing import SmoothedClassifier

    runtime = model_options.open()
    data = image_options.open(runtime, model_options.model)
    from probe.cli.sanity import require_finite_outputs

    require_finite_outputs(runtime, data, first=runtime.batch_size)  # one model call
    runs = []
    for s_ in sigma:
        classifier = SmoothedClassifier(runtime, s_, n)
        with progress_bar(f"certify sigma={s_:g}", len(data)) as advance:
            records = certify_images(classifier, data, n0=n0, n=n, alpha=alpha, seed=seed, progress=advance)
        curve = certified_accuracy(records, radius_list)
        runs.append(
            {
                "sigma": s_,
                "n": n,
                "n0": n0,
                "alpha": alpha,
                "images": records,
                "certified_accuracy": {f"{k:g}": v for k, v in curve.items()},
            }
        )
    if plot is not None:
        from probe.experiments.plots import plot_certified_accuracy

        plot_certified_accuracy(runs, plot)
    if as_json:
        emit_json({"model": runtime.info.path, "runs": runs})
        return
    for run in runs:
        table = Table(title=f"certification (sigma={run['sigma']}, n0={n0}, n={n}, alpha={alpha})")
        for col in ("image", "label", "class", "pA lower", "radius", "correct"):
            table.add_column(col)
        for r in run["images"]:
            table.add_row(
                r["image"],
                fmt(r["label"]),
                "abstain" if r["abstain"] else f"{r['predicted']} {runtime.class_name(r['predicted'])}",
                fmt(r["pa_lower"], 4),
                fmt(r["radius"], 3),
                fmt(r["correct"]),
            )
        out.print(table)
    if runs[0]["certified_accuracy"]:
        acc = Table(title="certified accuracy")
        acc.add_column("radius")
        for run in runs:
            acc.add_column(f"sigma={run['sigma']:g}")
        for radius in runs[0]["certified_accuracy"]:
            acc.add_row(radius, *(f"{run['certified_accuracy'][radius]:.2f}" for run in runs))
        out.print(acc)
    if plot is not None:
        err.print(f"wrote {escape(plot)}")
