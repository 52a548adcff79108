"""CLI commands of the experiments: sweep, profile (Fig. 1), slice (Fig. 2), bsearch (Fig. 3),
report (Fig. 5 and tables), check (the CI gate).

Registered on :data:`probe.cli.app` when ``probe.cli`` imports this module. Same
conventions as the core commands: bad input -> one-line error, exit 2; progress
on stderr; ``--json`` puts the JSON document alone on stdout. Figure commands
write ``--out FILE.png`` and the numbers behind it as ``FILE.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from probe.cli import (
    BatchOpt,
    DeviceOpt,
    ImagesOpt,
    JsonOpt,
    LabelsOpt,
    LimitOpt,
    ModelOpt,
    SeedOpt,
    _check,
    _emit_json,
    _fmt,
    app,
    err,
    open_images,
    open_runtime,
    out,
)
from probe.interrupt import stop_at_checkpoints

ImageOpt = Annotated[
    Optional[str], typer.Option("--image", help="The original image: a file name among the images, or an index.")
]
ResultOpt = Annotated[
    Optional[Path],
    typer.Option("--result", help="A results.jsonl; its record --index gives the original, the adversarial (and the model)."),
]
IndexOpt = Annotated[int, typer.Option("--index", help="Record (0-based) of --result to use (needs adv_path).")]
AdversarialOpt = Annotated[
    Optional[Path], typer.Option("--adversarial", help="An adversarial PNG of the --image original.")
]
AttackOpt = Annotated[
    str, typer.Option("--attack", help="Without --result/--adversarial: attack the plain model with this first.")
]
BudgetOpt = Annotated[int, typer.Option("--budget", help="Queries of that first attack.")]
NsOpt = Annotated[list[int], typer.Option("--n", help="Sample size n of g(sigma, n); repeat for several curves.")]


def _out_paths(path: Path) -> tuple[Path, Path]:
    _check(path.suffix.lower() == ".png", f"--out must name a .png file, got {path}")
    return path, path.with_suffix(".json")


def _pair(runtime, model, images, labels, limit, image, result, index, adversarial, attack, budget, seed):
    """Original and adversarial images from --result, --adversarial, or a quick attack on the plain model."""
    from probe.experiments import common

    _check(result is None or adversarial is None, "give --result or --adversarial, not both")
    data = open_images(runtime, model, images, labels, limit)
    if result is not None:
        return common.pair_from_result(result, index, data)
    if adversarial is not None:
        return common.pair_from_file(adversarial, data, image)
    from probe.attacks import ATTACKS

    _check(attack in ATTACKS, f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    _check(budget >= 1, f"--budget must be >= 1, got {budget}")
    with err.status(f"no adversarial given: attacking the plain model with {attack} ({budget} queries) ..."):
        return common.pair_from_attack(runtime, data, image, attack, budget, seed)


def _model_of(model: str | None, result: Path | None, index: int) -> str | None:
    """--model, or the model named in the --result record (sweeps record it)."""
    if model is not None or result is None or not result.is_file():
        return model
    from probe.report import read_results

    records = read_results(result)
    return records[index].get("model") if 0 <= index < len(records) else None


def _finish_figure(data: dict, png: Path, js: Path, plot, as_json: bool, pair=None) -> None:
    from probe.experiments.plots import write_json

    if pair is not None:
        data = {"image": pair.image, "source": pair.source, **data}
    write_json(js, data)
    plot(data, png)
    if as_json:
        _emit_json(data)
    err.print(f"wrote {png} and {js}")


# --------------------------------------------------------------------------- Fig. 1


@app.command()
def profile(
    model: ModelOpt = None,
    images: ImagesOpt = None,
    labels: LabelsOpt = None,
    limit: LimitOpt = None,
    image: ImageOpt = None,
    result: ResultOpt = None,
    index: IndexOpt = 0,
    adversarial: AdversarialOpt = None,
    attack: AttackOpt = "hsja",
    budget: BudgetOpt = 1000,
    sigma: Annotated[float, typer.Option("--sigma", help="Smoothing noise std (> 0).")] = 0.05,
    n: NsOpt = [10, 50, 100],
    samples: Annotated[int, typer.Option("--samples", help="Micro-decisions per point.")] = 400,
    points: Annotated[int, typer.Option("--points", help="Points along the direction.")] = 41,
    stop: Annotated[
        Optional[float], typer.Option("--stop", help="Last L2 distance from x_o (default: max(2D, D + 6 sigma), D = distance of x_a).")
    ] = None,
    start: Annotated[float, typer.Option("--start", help="First L2 distance from x_o (zoom on the boundary).")] = 0.0,
    level: Annotated[list[float], typer.Option("--level", help="P_a levels to mark (repeatable).")] = [0.5, 0.8],
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write (numbers in the same stem .json).")] = Path(
        "profile.png"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Fig. 1: probability of being adversarial along the direction from an image to an adversarial one."""
    from probe.experiments import plots
    from probe.experiments.profile import probability_profile

    png, js = _out_paths(out_file)
    _check(sigma > 0, f"--sigma must be > 0, got {sigma}")
    _check(samples >= 1 and points >= 2, "--samples must be >= 1 and --points >= 2")
    _check(all(k >= 1 for k in n), "every --n must be >= 1")
    _check(all(0 < v <= 1 for v in level), "every --level must be in (0, 1]")
    plots.pyplot()
    model = _model_of(model, result, index)
    runtime = open_runtime(model, batch_size, device)
    pair = _pair(runtime, model, images, labels, limit, image, result, index, adversarial, attack, budget, seed)
    with err.status(f"profile: {points} points x {samples} micro-decisions ..."):
        data = probability_profile(runtime, pair.x0, pair.x_adv, sigma, tuple(n), samples, points, stop, start,
                                   tuple(level), seed=seed)
    _finish_figure(data, png, js, plots.plot_profile, as_json, pair)
    if not as_json:
        table = Table(title=f"where g(sigma={sigma:g}, n) becomes adversarial (L2 from x_o; x_a at {data['adversarial_distance']:.3f})")
        table.add_column("curve")
        for v in level:
            table.add_column(f"P_a={v:g}", justify="right")
        for name, row in data["crossings"].items():
            table.add_row(name, *(_fmt(row[f"{v:g}"]) for v in level))
        out.print(table)


# --------------------------------------------------------------------------- Fig. 2


@app.command("slice")
def slice_cmd(
    model: ModelOpt = None,
    images: ImagesOpt = None,
    labels: LabelsOpt = None,
    limit: LimitOpt = None,
    image: ImageOpt = None,
    direction: Annotated[
        str, typer.Option("--direction", help="random (two random directions) or adversarial (toward x_a, and random).")
    ] = "random",
    result: ResultOpt = None,
    index: IndexOpt = 0,
    adversarial: AdversarialOpt = None,
    attack: AttackOpt = "hsja",
    budget: BudgetOpt = 1000,
    sigma: Annotated[float, typer.Option("--sigma", help="Smoothing noise std.")] = 0.05,
    n: Annotated[int, typer.Option("--n", help="Noisy samples of the majority vote per cell.")] = 50,
    grid: Annotated[int, typer.Option("--grid", help="Cells per side (grid x grid).")] = 41,
    radius: Annotated[
        Optional[float], typer.Option("--radius", help="Half-width in L2 (default: 2 ||x_a - x_o||, or 20 sigma).")
    ] = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write (numbers in the same stem .json).")] = Path(
        "slice.png"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Fig. 2: a 2-D slice of input space around an image, labels without and with smoothing."""
    from probe.experiments import common, plots
    from probe.experiments.slice2d import label_slice

    png, js = _out_paths(out_file)
    _check(direction in ("random", "adversarial"), f"--direction must be random or adversarial, got {direction!r}")
    _check(sigma >= 0 and n >= 1, "--sigma must be >= 0 and --n >= 1")
    _check(grid >= 2, f"--grid must be >= 2, got {grid}")
    plots.pyplot()
    model = _model_of(model, result, index)
    runtime = open_runtime(model, batch_size, device)
    if direction == "adversarial" or result is not None or adversarial is not None:
        pair = _pair(runtime, model, images, labels, limit, image, result, index, adversarial, attack, budget, seed)
    else:
        data_set = open_images(runtime, model, images, labels, limit)
        x0, name = common.pick_original(data_set, image)
        pair = common.Pair(x0, None, name, "none")
    with err.status(f"slice: {grid}x{grid} cells, {n} samples each ..."):
        data = label_slice(runtime, pair.x0, sigma, n, grid, radius, pair.x_adv, seed)
    _finish_figure(data, png, js, plots.plot_slice, as_json, pair)
    if not as_json:
        out.print(
            f"labels seen: {len(data['labels'])}; the original's label covers {data['plain_center_fraction']:.0%} "
            f"of the plain slice and {data['smoothed_center_fraction']:.0%} of the smoothed one; "
            f"agreement {data['agreement']:.0%}"
        )


# --------------------------------------------------------------------------- Fig. 3


@app.command()
def bsearch(
    model: ModelOpt = None,
    images: ImagesOpt = None,
    labels: LabelsOpt = None,
    limit: LimitOpt = None,
    image: ImageOpt = None,
    result: ResultOpt = None,
    index: IndexOpt = 0,
    adversarial: AdversarialOpt = None,
    attack: AttackOpt = "hsja",
    budget: BudgetOpt = 1000,
    sigma: Annotated[float, typer.Option("--sigma", help="Smoothing noise std.")] = 0.05,
    n: NsOpt = [10, 50, 100],
    repeats: Annotated[int, typer.Option("--repeats", help="Binary searches per n.")] = 100,
    steps: Annotated[int, typer.Option("--steps", help="Bisection steps (resolution 2^-steps of the segment).")] = 12,
    pa: Annotated[float, typer.Option("--pa", help="Level P_a of the oracle's criterion.")] = 0.5,
    genie_samples: Annotated[
        int, typer.Option("--genie-samples", help="Micro-decisions per step locating the frontier of g_sigma (0: skip).")
    ] = 2000,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write (numbers in the same stem .json).")] = Path(
        "bsearch.png"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Fig. 3: distribution of the end point of a binary search under the smoothed oracle."""
    from probe.experiments import plots
    from probe.experiments.bsearch import bsearch_distribution

    png, js = _out_paths(out_file)
    _check(sigma >= 0, f"--sigma must be >= 0, got {sigma}")
    _check(repeats >= 1 and steps >= 1, "--repeats and --steps must be >= 1")
    _check(all(k >= 1 for k in n), "every --n must be >= 1")
    _check(0 < pa <= 1, f"--pa must be in (0, 1], got {pa}")
    _check(genie_samples >= 0, "--genie-samples must be >= 0")
    plots.pyplot()
    model = _model_of(model, result, index)
    runtime = open_runtime(model, batch_size, device)
    pair = _pair(runtime, model, images, labels, limit, image, result, index, adversarial, attack, budget, seed)
    with err.status(f"bsearch: {repeats} searches x {len(n)} sample sizes ..."):
        data = bsearch_distribution(runtime, pair.x0, pair.x_adv, sigma, tuple(n), repeats, pa, steps,
                                    genie_samples, seed)
    _finish_figure(data, png, js, plots.plot_bsearch, as_json, pair)
    if not as_json:
        table = Table(title=f"binary search end points (L2 to x_o; frontier of g_sigma at {_fmt(data['boundary_g_sigma'])})")
        for col in ("n", "mean", "median", "std", "IQR", "5%", "95%"):
            table.add_column(col, justify="right")
        for k in n:
            row = data["per_n"][str(k)]
            table.add_row(str(k), *(_fmt(row[c], 4) for c in ("mean", "median", "std", "iqr", "q05", "q95")))
        out.print(table)


# --------------------------------------------------------------------------- sweeps


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="The sweep's TOML file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder of results.jsonl, configs.jsonl, sweep.json.")],
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run (or resume) a grid of configurations x attacks x images; finished jobs are skipped."""
    from probe.sweep import RESULTS, SweepHooks, load_sweep, load_results_dir, run_sweep, summarize_sweep

    plan = load_sweep(config)
    err.print(f"sweep {plan.name}: {len(plan.configs)} configurations -> {out_dir / RESULTS}")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("success {task.fields[wins]}"),
        TextColumn("median L2 {task.fields[l2]}"),
        TimeElapsedColumn(),
    )
    interrupted = False
    with Progress(*columns, console=err, disable=quiet) as bar:
        state: dict = {}

        def start(cfg, position, total, todo, done) -> None:
            state["l2"] = []
            state["wins"] = 0
            state["task"] = bar.add_task(f"[{position}/{total}] {cfg.label}", total=todo + done, completed=done,
                                         wins="-", l2="-")

        def record(rec: dict) -> None:
            import numpy as np

            if rec["success"]:
                state["wins"] += 1
                state["l2"].append(rec["l2"])
            bar.update(state["task"], advance=1, wins=str(state["wins"]),
                       l2=f"{np.median(state['l2']):.3f}" if state["l2"] else "-")

        hooks = SweepHooks(start=start, record=record, message=lambda m: err.print(m))
        try:
            with stop_at_checkpoints():  # Ctrl-C stops between engine rounds, a second one at once
                outcome = run_sweep(plan, out_dir, hooks)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        err.print(f"[yellow]interrupted:[/] finished jobs are in {out_dir / RESULTS}; run the same command to resume")
        raise typer.Exit(130)
    records, configs, _, _ = load_results_dir(out_dir)
    rows = summarize_sweep(records, configs)
    err.print(f"{outcome.written} new results, {outcome.skipped_jobs} jobs already done, {outcome.seconds:.1f} s")
    if as_json:
        _emit_json({"out": str(out_dir), "written": outcome.written, "skipped": outcome.skipped_jobs, "rows": rows})
        return
    _print_rows(rows, f"sweep {plan.name}")


def _setting(row: dict) -> str:
    """A short name of a configuration for narrow tables."""
    if row["sigma"] == 0:
        return "no RS"
    return f"s={row['sigma']:g} n={row['n']} Pa={row['pa']:g}"


def _print_rows(rows: list[dict], title: str) -> None:
    models = {Path(str(r.get("model") or "-")).stem for r in rows}
    budgets = {r["budget"] for r in rows}
    several = len(models) > 1 or len(budgets) > 1
    if not several:
        title += f" ({models.pop()}, {budgets.pop()} queries)"
    table = Table(title=title)
    for col in ("setting", "attack", "success", "mean L2", "median L2", "median Linf", "queries", "acc."):
        table.add_column(col, justify="right")
    for r in rows:
        rate = r["success_rate"]
        name = _setting(r) + (f" {Path(str(r.get('model'))).stem} b={r['budget']}" if several else "")
        table.add_row(name, r["attack"], "-" if rate is None else f"{rate:.0%}", _fmt(r["mean_l2"]),
                      _fmt(r["median_l2"]), _fmt(r["median_linf"], 4), _fmt(r["mean_queries"], 0),
                      _fmt(r["defended_accuracy"], 2))
    out.print(table)


# --------------------------------------------------------------------------- report and check


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="A sweep's (or `probe attack --out`) results folder.")],
    title: Annotated[Optional[str], typer.Option("--title", help="Title of the report.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write report.md and a self-contained report.html (Fig. 5, tables, certified vs practical, versions)."""
    from probe.reporting import build_report

    paths = build_report(folder, title)
    if as_json:
        _emit_json({k: str(v) for k, v in paths.items()})
        return
    err.print(f"wrote {paths['markdown']} and {paths['html']}")


@app.command()
def check(
    folder: Annotated[Path, typer.Argument(help="A sweep's results folder.")],
    min_success_l2: Annotated[
        Optional[float], typer.Option("--min-success-l2", help="Fail when an attack's median L2 of successes is below.")
    ] = None,
    min_accuracy: Annotated[
        Optional[float], typer.Option("--min-accuracy", help="Fail when the defended clean accuracy is below.")
    ] = None,
    baseline: Annotated[
        Optional[Path], typer.Option("--baseline", help="A baseline JSON (from --write-baseline) to compare with.")
    ] = None,
    max_drop: Annotated[
        str, typer.Option("--max-drop", help="Allowed drop below the baseline: a fraction or a percentage.")
    ] = "10%",
    write_baseline_to: Annotated[
        Optional[Path], typer.Option("--write-baseline", help="Store the current results as a baseline JSON and exit.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The CI gate: exit 1 with a table of what regressed, 0 when every check passes (2 on bad input)."""
    from probe.check import checks_json, parse_fraction, run_checks, write_baseline

    if write_baseline_to is not None:
        doc = write_baseline(folder, write_baseline_to)
        err.print(f"wrote baseline {write_baseline_to} ({len(doc['entries'])} entries)")
        if min_success_l2 is None and min_accuracy is None and baseline is None:
            if as_json:
                _emit_json(doc)
            return
    drop = parse_fraction(max_drop)
    _check(min_success_l2 is None or min_success_l2 >= 0, "--min-success-l2 must be >= 0")
    _check(min_accuracy is None or 0 <= min_accuracy <= 1, "--min-accuracy must be in [0, 1]")
    checks, _ = run_checks(folder, min_success_l2, min_accuracy, baseline, drop)
    failed = [c for c in checks if not c.ok]
    if as_json:
        _emit_json(checks_json(checks))
    else:
        shown = failed or checks
        table = Table(title=f"{len(failed)} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed")
        for col in ("configuration", "attack", "metric", "value", "required", "result", "note"):
            table.add_column(col)
        for c in shown:
            table.add_row(c.label.replace("sigma=", "s=").replace("budget=", "b="), c.attack or "-", c.metric,
                          _fmt(c.value, 4),
                          "-" if c.threshold is None else f">= {c.threshold:.4g}",
                          "[green]ok[/]" if c.ok else "[bold red]REGRESSED[/]", c.note)
        out.print(table)
    if failed:
        raise typer.Exit(1)


__all__ = ["profile", "slice_cmd", "bsearch", "sweep", "report", "check"]
