"""``probe attack``: HSJA, SurFree and RayS through the query-only (smoothed) oracle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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
    require,
)
from probe.cli.output import emit_json, err, escape, fmt, out
from probe.interrupt import stop_at_checkpoints
from probe.validate import check_int, check_n, check_pa, check_sigma


@model_options()
@image_options()
def attack(
    model_options: ModelOptions,
    image_options: ImageOptions,
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
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for results.jsonl and summary.json.")] = None,
    save_images: Annotated[bool, typer.Option("--save-images", help="Also save adversarial PNGs (needs --out).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Attack each image with HSJA, SurFree and/or RayS through the query-only (smoothed) oracle."""
    from probe.attacks import ATTACKS
    from probe.runs.campaign import AttackConfig, attack_images
    from probe.runs.results import RESULTS, ResultsWriter, prepare_dir, save_record_image, write_json
    from probe.runs.summary import summarize
    from probe.smoothing import SmoothedClassifier

    names = tuple(ATTACKS) if attack_name == "all" else tuple(a.strip().lower() for a in attack_name.split(","))
    unknown = [a for a in names if a not in ATTACKS]
    require(not unknown, f"unknown attack {', '.join(unknown)}; choose from {', '.join(ATTACKS)} or all")
    require(norm in ("l2", "linf"), f"--norm must be l2 or linf, got {norm!r}")
    check_sigma(sigma, name="--sigma")
    check_n(n, name="--n")
    check_pa(pa, name="--pa")
    check_int("--budget", budget, 1)
    check_int("--p-adv-samples", p_adv_samples, 1)
    require(not save_images or out_dir is not None, "--save-images needs --out DIR")
    runtime = model_options.open()
    require(targeted is None or 0 <= targeted < runtime.num_classes, f"--targeted must be a class in [0, {runtime.num_classes})")
    data = image_options.open(runtime, model_options.model)
    classifier = SmoothedClassifier(runtime, sigma, n)
    config = AttackConfig(attacks=names, norm=norm, pa=pa, budget=budget, seed=seed, targeted=targeted,
                          p_adv_samples=p_adv_samples)

    writer = None
    image_dir = None
    if out_dir is not None:
        prepare_dir(out_dir)
        (out_dir / RESULTS).unlink(missing_ok=True)
        writer = ResultsWriter(out_dir / RESULTS)
        if save_images:
            image_dir = out_dir / "images"
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
                rec["adv_path"] = str(save_record_image(image_dir, rec, x0, job.outcome.x_adv))
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
        emit_json(summary)
    else:
        _print_summary(summary)
    if interrupted:
        where = f" in {out_dir}" if out_dir else ""
        err.print(f"[yellow]interrupted:[/] kept {len(records)} finished results{escape(where)}")
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
            fmt(row["mean_l2"]),
            fmt(row["median_l2"]),
            fmt(row["mean_linf"], 4),
            fmt(row["median_linf"], 4),
            fmt(row["mean_queries"], 0),
        )
    out.print(table)
    out.print(
        f"clean accuracy of the defended model: {fmt(acc)}  |  {summary['inferences']} model inferences "
        f"in {summary['seconds']} s on {', '.join(summary['providers'])}"
    )
