"""The `probe` command line: info, predict, certify, accuracy, attack, models.

Bad input of any kind ends with a one-line ``error: ...`` on stderr and exit code 2.
Progress goes to stderr; with ``--json`` stdout holds the JSON document and nothing else.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from probe.errors import ProbeError
from probe.interrupt import stop_at_checkpoints

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Probe how robust an ONNX image classifier really is, with or without randomized smoothing.",
)
models_app = typer.Typer(no_args_is_help=True, help="List and export models.")
app.add_typer(models_app, name="models")

out = Console()
err = Console(stderr=True)

# ---------------------------------------------------------------- common options

ModelOpt = Annotated[
    Optional[str], typer.Option("--model", "-m", help="ONNX file or built-in name [default: efficientnet-lite0].")
]
ImagesOpt = Annotated[
    Optional[list[str]],
    typer.Option("--images", "-i", help="Image files, folders or globs (repeatable) [default: the model's samples]."),
]
LabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="CSV of file,label rows.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="Use only the first N images.")]
SigmaOpt = Annotated[float, typer.Option("--sigma", help="Smoothing noise std in [0,1] pixel space (0 = none).")]
NOpt = Annotated[int, typer.Option("--n", help="Noisy samples per smoothed query (majority vote).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random stream.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per model call.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout, nothing else there.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when it works), cpu or cuda.")]
LayoutOpt = Annotated[Optional[str], typer.Option("--layout", help="Third-party model input layout: NCHW or NHWC.")]
ChannelsOpt = Annotated[Optional[str], typer.Option("--channels", help="Channel order: RGB or BGR.")]
ScaleOpt = Annotated[Optional[float], typer.Option("--scale", help="Input scale: 1 for [0,1], 255 for [0,255].")]
MeanOpt = Annotated[Optional[str], typer.Option("--mean", help="Per-channel mean on that scale, e.g. 0.485,0.456,0.406.")]
StdOpt = Annotated[Optional[str], typer.Option("--std", help="Per-channel std on that scale.")]
SizeOpt = Annotated[Optional[str], typer.Option("--size", help="Input size HxW for models with dynamic size, e.g. 224x224.")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", help="Name of the logits output when there are several.")]


def _floats(text: str | None, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ProbeError(f"--{name} expects comma-separated numbers, got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ProbeError(f"--{name} needs 1 or 3 values, got {len(values)}")
    return values


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ProbeError(f"--size expects HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ProbeError(f"--size expects HxW, got {text!r}")
    return values  # type: ignore[return-value]


def open_runtime(
    model: str | None,
    batch_size: int = 64,
    device: str = "auto",
    layout: str | None = None,
    channels: str | None = None,
    scale: float | None = None,
    mean: str | None = None,
    std: str | None = None,
    size: str | None = None,
    output: str | None = None,
):
    from probe.models.zoo import DEFAULT_MODEL, resolve_model
    from probe.runtime import Runtime

    path = resolve_model(model or DEFAULT_MODEL)
    overrides = {
        "layout": layout.upper() if layout else None,
        "channels": channels.upper() if channels else None,
        "scale": scale,
        "mean": _floats(mean, "mean"),
        "std": _floats(std, "std"),
        "size": _size(size),
    }
    return Runtime(path, output=output, batch_size=batch_size, device=device, overrides=overrides)


def open_images(runtime, model: str | None, images: list[str] | None, labels: Path | None, limit: int | None):
    from probe.data import load_images
    from probe.models.zoo import DEFAULT_MODEL, default_images

    if not images:
        folder = default_images(model or DEFAULT_MODEL)
        if folder is None:
            raise ProbeError("this model has no bundled sample images: give some with --images")
        images = [str(folder)]
    loaded = load_images(images, runtime.spec.size, str(labels) if labels else None, limit)
    for path, why in loaded.skipped:
        err.print(f"[yellow]skipped unreadable image[/] {path}: {why}")
    return loaded


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ProbeError(message)


def _check_smoothing(sigma: float, n: int) -> None:
    _check(sigma >= 0, f"--sigma must be >= 0, got {sigma}")
    _check(n >= 1, f"--n must be >= 1, got {n}")


@contextmanager
def progress_bar(description: str, total: int, quiet: bool = False) -> Iterator:
    """A Rich progress bar on stderr; yields an ``advance(k)`` callable."""
    if quiet or total <= 0:
        yield lambda k=1: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(description, total=total, status="")
        yield lambda k=1, **fields: bar.update(task, advance=k, **fields)


def _emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# ---------------------------------------------------------------- commands


@app.command()
def info(
    model: ModelOpt = None,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    layout: LayoutOpt = None,
    channels: ChannelsOpt = None,
    scale: ScaleOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    size: SizeOpt = None,
    output: OutputOpt = None,
    seconds: Annotated[float, typer.Option("--seconds", help="Time spent measuring throughput.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Input spec, providers in use, classes and a quick throughput figure of a model."""
    runtime = open_runtime(model, batch_size, device, layout, channels, scale, mean, std, size, output)
    data = runtime.describe()
    data["metadata"] = {k: v for k, v in runtime.info.metadata.items() if k != "probe.input_spec"}
    if seconds > 0:
        x = np.random.default_rng(0).random((runtime.batch_size, *runtime.input_shape), dtype=np.float32)
        runtime.labels(x)  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            runtime.labels(x)
            count += len(x)
        data["images_per_second"] = round(count / (time.perf_counter() - start), 1)
    if as_json:
        _emit_json(data)
        return
    table = Table(title=f"model {Path(runtime.info.path).name}", show_header=False)
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    out.print(table)


@app.command()
def predict(
    model: ModelOpt = None,
    images: ImagesOpt = None,
    labels: LabelsOpt = None,
    limit: LimitOpt = None,
    sigma: SigmaOpt = 0.05,
    n: NOpt = 100,
    alpha: Annotated[float, typer.Option("--alpha", help="Abstain level of PREDICT.")] = 0.001,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    layout: LayoutOpt = None,
    channels: ChannelsOpt = None,
    scale: ScaleOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    size: SizeOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Plain and smoothed labels per image (majority vote, and PREDICT with abstain)."""
    from probe.certification import predict_images
    from probe.oracle import SmoothedClassifier

    _check_smoothing(sigma, n)
    _check(0 < alpha < 1, f"--alpha must be in (0, 1), got {alpha}")
    runtime = open_runtime(model, batch_size, device, layout, channels, scale, mean, std, size, output)
    data = open_images(runtime, model, images, labels, limit)
    classifier = SmoothedClassifier(runtime, sigma, n)
    with progress_bar("predict", len(data), quiet=False) as advance:
        records = predict_images(classifier, data, alpha, seed, advance)
    if as_json:
        _emit_json({"sigma": sigma, "n": classifier.n, "alpha": alpha, "images": records})
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


@app.command()
def certify(
    model: ModelOpt = None,
    images: ImagesOpt = None,
    labels: LabelsOpt = None,
    limit: LimitOpt = None,
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
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    layout: LayoutOpt = None,
    channels: ChannelsOpt = None,
    scale: ScaleOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    size: SizeOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cohen et al.'s CERTIFY per image, then certified accuracy at several radii (per sigma)."""
    from probe.certification import certified_accuracy, certify_images
    from probe.oracle import SmoothedClassifier

    for s_ in sigma:
        _check(s_ > 0, f"certification needs --sigma > 0, got {s_}")
    _check(n >= 1 and n0 >= 1, "--n and --n0 must be >= 1")
    _check(0 < alpha < 1, f"--alpha must be in (0, 1), got {alpha}")
    try:
        radius_list = tuple(float(r) for r in radii.split(","))
    except ValueError:
        raise ProbeError(f"--radii expects comma-separated numbers, got {radii!r}") from None
    runtime = open_runtime(model, batch_size, device, layout, channels, scale, mean, std, size, output)
    data = open_images(runtime, model, images, labels, limit)
    runs = []
    for s_ in sigma:
        classifier = SmoothedClassifier(runtime, s_, n)
        with progress_bar(f"certify sigma={s_:g}", len(data)) as advance:
            records = certify_images(classifier, data, n0, n, alpha, seed, advance)
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
        _emit_json({"model": runtime.info.path, "runs": runs})
        return
    for run in runs:
        table = Table(title=f"certification (sigma={run['sigma']}, n0={n0}, n={n}, alpha={alpha})")
        for col in ("image", "label", "class", "pA lower", "radius", "correct"):
            table.add_column(col)
        for r in run["images"]:
            table.add_row(
                r["image"],
                _fmt(r["label"]),
                "abstain" if r["abstain"] else f"{r['predicted']} {runtime.class_name(r['predicted'])}",
                _fmt(r["pa_lower"], 4),
                _fmt(r["radius"], 3),
                _fmt(r["correct"]),
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
        err.print(f"wrote {plot}")


@app.command()
def accuracy(
    model: ModelOpt = None,
    images: ImagesOpt = None,
    labels: LabelsOpt = None,
    limit: LimitOpt = None,
    sigma: SigmaOpt = 0.05,
    n: NOpt = 100,
    alpha: Annotated[float, typer.Option("--alpha", help="Abstain level of PREDICT.")] = 0.001,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    layout: LayoutOpt = None,
    channels: ChannelsOpt = None,
    scale: ScaleOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    size: SizeOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Clean accuracy of the plain model and of the smoothed one (majority vote and PREDICT)."""
    from probe.certification import predict_images
    from probe.oracle import SmoothedClassifier

    _check_smoothing(sigma, n)
    runtime = open_runtime(model, batch_size, device, layout, channels, scale, mean, std, size, output)
    data = open_images(runtime, model, images, labels, limit)
    _check(data.has_labels, "accuracy needs labels for every image (labels.csv, --labels or ImageNet val names)")
    classifier = SmoothedClassifier(runtime, sigma, n)
    with progress_bar("accuracy", len(data)) as advance:
        records = predict_images(classifier, data, alpha, seed, advance)
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
        _emit_json(result)
        return
    table = Table(title=f"clean accuracy on {total} images")
    table.add_column("classifier")
    table.add_column("accuracy")
    table.add_row("plain model", f"{result['plain']:.3f}")
    table.add_row(f"smoothed, majority vote (sigma={sigma}, n={classifier.n})", f"{result['smoothed_vote']:.3f}")
    table.add_row(f"smoothed, PREDICT alpha={alpha} (abstain {result['abstain']:.2f})", f"{result['smoothed_predict']:.3f}")
    out.print(table)



@app.command()
def attack(
    model: ModelOpt = None,
    images: ImagesOpt = None,
    labels: LabelsOpt = None,
    limit: LimitOpt = None,
    attack_name: Annotated[str, typer.Option("--attack", "-a", help="hsja, surfree, rays or all.")] = "all",
    norm: Annotated[str, typer.Option("--norm", help="l2 or linf (HSJA; SurFree is L2, RayS Linf).")] = "l2",
    sigma: SigmaOpt = 0.05,
    n: NOpt = 10,
    pa: Annotated[float, typer.Option("--pa", help="Level P_a: success needs p_adv >= P_a.")] = 0.5,
    budget: Annotated[int, typer.Option("--budget", help="Queries per image and attack.")] = 2000,
    p_adv_samples: Annotated[
        int, typer.Option("--p-adv-samples", help="Fresh smoothed evaluations that estimate p_adv.")
    ] = 100,
    targeted: Annotated[Optional[int], typer.Option("--targeted", help="Target class (needs an image of it).")] = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for results.jsonl and summary.json.")] = None,
    save_images: Annotated[bool, typer.Option("--save-images", help="Also save adversarial PNGs (needs --out).")] = False,
    layout: LayoutOpt = None,
    channels: ChannelsOpt = None,
    scale: ScaleOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    size: SizeOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attack each image with HSJA, SurFree and/or RayS through the query-only (smoothed) oracle."""
    from probe.attacks import ATTACKS
    from probe.audit import AttackConfig, attack_images, summarize
    from probe.oracle import SmoothedClassifier
    from probe.report import ResultsWriter, prepare_dir, save_adversarial, write_json

    names = tuple(ATTACKS) if attack_name == "all" else tuple(a.strip().lower() for a in attack_name.split(","))
    unknown = [a for a in names if a not in ATTACKS]
    _check(not unknown, f"unknown attack {', '.join(unknown)}; choose from {', '.join(ATTACKS)} or all")
    _check(norm in ("l2", "linf"), f"--norm must be l2 or linf, got {norm!r}")
    _check_smoothing(sigma, n)
    _check(0 < pa <= 1, f"--pa must be in (0, 1], got {pa}")
    _check(budget >= 1, f"--budget must be >= 1, got {budget}")
    _check(p_adv_samples >= 1, f"--p-adv-samples must be >= 1, got {p_adv_samples}")
    _check(not save_images or out_dir is not None, "--save-images needs --out DIR")
    runtime = open_runtime(model, batch_size, device, layout, channels, scale, mean, std, size, output)
    _check(targeted is None or 0 <= targeted < runtime.num_classes, f"--targeted must be a class in [0, {runtime.num_classes})")
    data = open_images(runtime, model, images, labels, limit)
    classifier = SmoothedClassifier(runtime, sigma, n)
    config = AttackConfig(names, norm, pa, budget, seed, targeted, p_adv_samples)

    writer = None
    image_dir = None
    if out_dir is not None:
        prepare_dir(out_dir)
        (out_dir / "results.jsonl").unlink(missing_ok=True)
        writer = ResultsWriter(out_dir / "results.jsonl")
        if save_images:
            image_dir = prepare_dir(out_dir / "images")
    index = {name: i for i, name in enumerate(data.ids)}
    columns = (
        TextColumn("[bold]{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("queries {task.fields[queries]:>7}"),
        TextColumn("mean L2 {task.fields[l2]}"),
        TimeElapsedColumn(),
    )
    records: list[dict] = []
    interrupted = False
    started = time.perf_counter()
    with Progress(*columns, console=err, disable=False) as bar:
        tasks = {name: bar.add_task(name, total=len(data), queries=0, l2="-") for name in names}
        spent = {name: 0 for name in names}
        seen: dict[int, int] = {}

        def on_record(rec: dict, job) -> None:
            if image_dir is not None and rec["l2"] is not None:
                x0 = data.x[index[rec["image"]]]
                stem = f"{Path(rec['image']).stem}_{rec['attack']}"
                rec["adv_path"] = str(save_adversarial(image_dir, stem, x0, job.outcome.x_adv))
            records.append(rec)
            if writer:
                writer.write(rec)
            wins = [r["l2"] for r in records if r["attack"] == rec["attack"] and r["success"]]
            bar.update(tasks[rec["attack"]], advance=1, l2=f"{np.mean(wins):.3f}" if wins else "-")

        def on_round(jobs) -> None:
            for job in jobs:
                name = job.meta["attack"]
                spent[name] += job.oracle.queries - seen.get(id(job), 0)
                seen[id(job)] = job.oracle.queries
            for name in {job.meta["attack"] for job in jobs}:
                bar.update(tasks[name], queries=spent[name])

        try:
            with stop_at_checkpoints():  # Ctrl-C stops between engine rounds, a second one at once
                attack_images(classifier, data, config, on_record=on_record, on_round=on_round)
        except KeyboardInterrupt:
            interrupted = True
    if writer:
        writer.close()
    summary = {
        "model": runtime.info.path,
        "providers": list(runtime.info.providers),
        "sigma": sigma,
        "n": classifier.n,
        "pa": pa,
        "budget": budget,
        "seed": seed,
        "targeted": targeted,
        "images": len(data),
        "results": len(records),
        "interrupted": interrupted,
        "seconds": round(time.perf_counter() - started, 2),
        "inferences": runtime.inferences,
        "attacks": summarize(records),
    }
    if out_dir is not None:
        write_json(out_dir / "summary.json", summary)
    if as_json:
        _emit_json(summary)
    else:
        _print_summary(summary)
    if interrupted:
        where = f" in {out_dir}" if out_dir else ""
        err.print(f"[yellow]interrupted:[/] kept {len(records)} finished results{where}")
        raise typer.Exit(130)


def _print_summary(summary: dict) -> None:
    acc = next((a["defended_accuracy"] for a in summary["attacks"].values()), None)
    title = (
        f"attacks on {summary['images']} images, sigma={summary['sigma']}, n={summary['n']}, "
        f"P_a={summary['pa']}, budget={summary['budget']}"
    )
    table = Table(title=title)
    for col in ("attack", "attacked", "success", "mean L2", "median L2", "mean Linf", "median Linf", "mean queries"):
        table.add_column(col, justify="right")
    for name, row in summary["attacks"].items():
        rate = row["success_rate"]
        table.add_row(
            name,
            str(row["attacked"]),
            "-" if rate is None else f"{rate:.0%}",
            _fmt(row["mean_l2"]),
            _fmt(row["median_l2"]),
            _fmt(row["mean_linf"], 4),
            _fmt(row["median_linf"], 4),
            _fmt(row["mean_queries"], 0),
        )
    out.print(table)
    out.print(
        f"clean accuracy of the defended model: {_fmt(acc)}  |  {summary['inferences']} model inferences "
        f"in {summary['seconds']} s on {', '.join(summary['providers'])}"
    )



@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Built-in models and the models exported into the model directory."""
    from probe.models.zoo import list_models, model_dir

    infos = list_models()
    rows = [
        {
            "name": m.name,
            "builtin": m.builtin,
            "path": str(m.path),
            "size_mb": round(m.size_bytes / 2**20, 1),
            "input": None if m.spec is None else f"{m.spec.layout} {m.spec.channels} x{m.spec.scale:g} {m.spec.size}",
            "dataset": None if m.spec is None else m.spec.dataset,
            "source": (m.provenance or {}).get("source_format") or (m.provenance or {}).get("source_package"),
        }
        for m in infos
    ]
    if as_json:
        _emit_json({"model_dir": str(model_dir()), "models": rows})
        return
    table = Table(title=f"models (model directory: {model_dir()})")
    for col in ("name", "built-in", "input", "dataset", "size MB", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], "yes" if r["builtin"] else "", r["input"] or "-", r["dataset"] or "-", str(r["size_mb"]), r["source"] or "-")
    out.print(table)


@models_app.command("export")
def models_export(
    arch: Annotated[str, typer.Argument(help="Architecture to export (resnet50).")] = "resnet50",
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Checkpoint file.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="torchvision, cohen or madry.")] = "torchvision",
    weights: Annotated[
        Optional[str], typer.Option("--weights", help="'torchvision' downloads the official weights (internet).")
    ] = None,
    variant: Annotated[Optional[str], typer.Option("--variant", help="Name of the exported model.")] = None,
    out_file: Annotated[
        Optional[Path], typer.Option("--out", help="ONNX file to write [default: MODEL_DIR/VARIANT.onnx].")
    ] = None,
) -> None:
    """Export a checkpoint to an ONNX file that probe reads (normalization folded in, dynamic batch)."""
    from probe.models.export import FORMATS, default_variant, export_resnet50
    from probe.models.zoo import model_dir

    _check(arch == "resnet50", f"unknown architecture {arch!r}; available: resnet50")
    _check(fmt in FORMATS, f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    _check((checkpoint is None) != (weights is None), "give either --checkpoint PATH or --weights torchvision")
    _check(weights in (None, "torchvision"), f"--weights accepts only 'torchvision', got {weights!r}")
    name = variant or default_variant(fmt, checkpoint)
    target = out_file or (model_dir() / f"{name}.onnx")
    with err.status(f"exporting {name} ..."):
        path = export_resnet50(checkpoint, fmt, target, variant=name, weights=weights)
    out.print(f"exported [bold]{name}[/] to {path}  (use it with --model {name if out_file is None else path})")


# ---------------------------------------------------------------- entry point


def main() -> None:
    """Console entry point: ProbeError -> one line on stderr and exit 2."""
    try:
        app()
    except ProbeError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


from probe import cli_experiments  # noqa: E402,F401
from probe import cli_bench  # noqa: E402,F401
