"""``probe attack``: HSJA, SurFree and RayS through the query-only (smoothed) oracle."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
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
from probe.interrupt import exit_code, stop_at_checkpoints
from probe.validate import check_int, check_n, check_pa, check_sigma


@model_options()
@image_options()
def attack(
    model_options: ModelOptions,
    image_options: ImageOptions,
    attack_name: Annotated[
        str,
        typer.Option(
            "--attack", "-a", help="Comma list of hsja, surfree, rays, cgba, psj, or all (default: the paper's three)."
        ),
    ] = "hsja,surfree,rays",
    norm: Annotated[str, typer.Option("--norm", help="l2 or linf (HSJA; SurFree is L2, RayS Linf).")] = "l2",
    sigma: SigmaOpt = 0.05,
    n: NOpt = 10,
    pa: Annotated[float, typer.Option("--pa", help="Level P_a: success needs p_adv >= P_a.")] = 0.5,
    budget: Annotated[int, typer.Option("--budget", help="Queries per image and attack.")] = 2000,
    p_adv_samples: Annotated[
        int, typer.Option("--p-adv-samples", help="Fresh smoothed evaluations that estimate p_adv.")
    ] = 100,
    targeted: Annotated[
        Optional[int],
        typer.Option("--targeted", help="Target class; the start is another image that g(sigma) gives that class."),
    ] = None,
    criterion: Annotated[
        str,
        typer.Option(
            "--criterion",
            help="The attacker's answer per query: label (the defended label differs: what a deployed "
            "defense shows) or paper (at least ceil(n P_a) noisy votes wrong: reads the votes, a stronger oracle).",
        ),
    ] = "label",
    preset: Annotated[
        str, typer.Option("--preset", help="probe (improved variants) or paper (the attacks as published).")
    ] = "probe",
    attack_option: Annotated[
        Optional[list[str]],
        typer.Option("--attack-option", "-o", help="ATTACK.NAME=VALUE, e.g. hsja.memory=0 (repeatable)."),
    ] = None,
    list_options: Annotated[
        bool, typer.Option("--list-options", help="Print every attack's parameters with defaults, and exit.")
    ] = False,
    certify_n: Annotated[
        int, typer.Option("--certify-n", help="CERTIFY samples per original under smoothing (0: no radius).")
    ] = 1000,
    full_votes: Annotated[
        bool, typer.Option("--full-votes", help="Draw all n votes of every query (no early stop once decided).")
    ] = False,
    max_jobs: Annotated[
        Optional[int],
        typer.Option(
            "--max-jobs",
            help="(image, attack) jobs run at once (default: what a quarter of this machine's memory "
            "holds, at least 8). Fewer: less memory, records written sooner. Records do not depend on it.",
        ),
    ] = None,
    seed: SeedOpt = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for results.jsonl and summary.json.")] = None,
    save_images: Annotated[
        bool, typer.Option("--save-images", help="Also save adversarial PNGs (needs --out).")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out: its finished jobs are kept and skipped.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the results already in --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Attack each image with HSJA, SurFree, RayS, CGBA and/or PSJ through the query-only (smoothed) oracle."""
    from probe.cli import checks  # the arguments first: nothing heavy is imported before they pass

    if list_options:
        _print_options(as_json)
        return
    names = checks.attack_names(attack_name)
    checks.choice("--criterion", criterion, checks.CRITERIA)
    checks.choice("--preset", preset, checks.PRESET_NAMES)
    checks.attack_option_targets(attack_option or [], names)
    require(norm in ("l2", "linf"), f"--norm must be l2 or linf, got {norm!r}")
    check_sigma(sigma, name="--sigma")
    check_n(n, name="--n")
    check_pa(pa, name="--pa")
    check_int("--budget", budget, 1)
    check_int("--p-adv-samples", p_adv_samples, 1)
    check_int("--certify-n", certify_n, 0)
    if max_jobs is not None:
        check_int("--max-jobs", max_jobs, 1)
    require(not save_images or out_dir is not None, "--save-images needs --out DIR")
    require(not (resume or overwrite) or out_dir is not None, "--resume and --overwrite need --out DIR")
    require(not (resume and overwrite), "give --resume or --overwrite, not both")
    checks.model_overrides(model_options)

    from probe.attacks import ATTACKS, resolve_norm
    from probe.attacks.presets import AttackSettings, build_attack, parse_options

    settings = AttackSettings(preset=preset, options=parse_options(attack_option or [], tuple(ATTACKS)))
    for name in names:  # option names and values are the attacks' to judge: before the model opens
        build_attack(name, norm=resolve_norm(name, norm), settings=settings)
    from probe.cli.sanity import require_finite_outputs
    from probe.runs.campaign import AttackConfig
    from probe.runs.results import locked, start_run
    from probe.smoothing import SmoothedClassifier

    runtime = model_options.open()
    require(
        targeted is None or 0 <= targeted < runtime.num_classes,
        f"--targeted must be a class in [0, {runtime.num_classes})",
    )
    data = image_options.open(runtime, model_options.model)
    require_finite_outputs(runtime, data)  # NaN logits would read as a robust model
    classifier = SmoothedClassifier(runtime, sigma, n, early_stop=not full_votes)
    config = AttackConfig(
        attacks=names, norm=norm, pa=pa, budget=budget, seed=seed, targeted=targeted, criterion=criterion,
        preset=settings.preset, options=settings.options, p_adv_samples=p_adv_samples, certify_n=certify_n,
    )  # fmt: skip
    for name in names:  # unknown options and bad values fail here, before any model run
        config.attack(name, classifier.random)

    # images_sha1: a --resume on images of the same names but other pixels is refused
    settings_doc = {"model": runtime.info.path, "images": list(data.ids), "sigma": sigma, "n": classifier.n,
                    "early_stop": classifier.early_stop, "config": asdict(config),
                    "images_sha1": hashlib.sha1(data.x.tobytes()).hexdigest()}  # fmt: skip
    if out_dir is None:
        _run(classifier, data, config, out_dir=None, save_images=False, kept=[], as_json=as_json, summary_extra={},
             max_jobs=max_jobs)  # fmt: skip
        return
    with locked(out_dir):
        if resume:
            checks.refuse_other_settings(out_dir, settings_doc)  # names the settings that differ
        kept = start_run(out_dir, settings_doc, resume=resume, overwrite=overwrite)
        _run(classifier, data, config, out_dir=out_dir, save_images=save_images, kept=kept, as_json=as_json,
             summary_extra={}, max_jobs=max_jobs)  # fmt: skip


def _run(classifier, data, config, *, out_dir: Path | None, save_images: bool, kept: list[dict], as_json: bool,
         summary_extra: dict, max_jobs: int | None = None) -> None:  # fmt: skip
    """Attack, write records as they arrive, then the summary (also after Ctrl-C or SIGTERM)."""
    import numpy as np

    from probe.runs.campaign import attack_images, clean_labels
    from probe.runs.results import RESULTS, ResultsWriter, save_record_array, save_record_image, write_json
    from probe.runs.summary import summarize

    runtime = classifier.runtime
    names = config.attacks
    done = {(r["image"], r["attack"]) for r in kept}
    todo = len(data) * len(names) - len(done)
    err.print(
        f"{len(data)} images x {len(names)} attacks ({todo} jobs to run), up to {config.budget} queries each: "
        f"at most {todo * config.budget * classifier.n:,} model inferences ({classifier.n} per query)"
        + ("" if out_dir is not None else "; results are not kept (no --out)"),
        highlight=False,
    )
    writer = ResultsWriter(out_dir / RESULTS) if out_dir is not None else None
    index = {name: i for i, name in enumerate(data.ids)}
    columns = (
        TextColumn("[bold]{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("queries {task.fields[queries]:>7}"),
        TextColumn("median L2 {task.fields[l2]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    records: list[dict] = list(kept)
    interrupted = False
    started = time.perf_counter()
    with Progress(*columns, console=err, disable=False) as bar:
        tasks = {
            name: bar.add_task(name, total=len(data), completed=sum(1 for r in kept if r["attack"] == name),
                               queries=0, l2="-")
            for name in names
        }  # fmt: skip
        spent = {name: 0 for name in names}
        seen: dict[int, int] = {}

        def on_record(rec: dict, job) -> None:
            if out_dir is not None and rec["l2"] is not None:
                rec["adv_file"] = str(save_record_array(out_dir, rec, job.outcome.x_adv))
                if save_images:
                    x0 = data.x[index[rec["image"]]]
                    rec["adv_path"] = str(save_record_image(out_dir / "images", rec, x0, job.outcome.x_adv))
            records.append(rec)
            if writer:
                writer.write(rec)
            wins = [r["l2"] for r in records if r["attack"] == rec["attack"] and r["success"]]
            bar.update(tasks[rec["attack"]], advance=1, l2=f"{np.median(wins):.3f}" if wins else "-")

        def on_round(jobs) -> None:
            for job in jobs:
                name = job.meta["attack"]
                spent[name] += job.oracle.queries - seen.get(id(job), 0)
                seen[id(job)] = job.oracle.queries
            for name in {job.meta["attack"] for job in jobs}:
                bar.update(tasks[name], queries=spent[name])

        clean = None
        try:
            with stop_at_checkpoints():  # Ctrl-C or SIGTERM stops between engine rounds, a second one at once
                clean = clean_labels(classifier, data, seed=config.seed, evaluations=config.p_adv_samples,
                                     confidence=config.confidence)  # fmt: skip
                attack_images(classifier, data, config, on_record=on_record, on_round=on_round, clean=clean,
                              skip=lambda image, attack: (image, attack) in done, max_jobs=max_jobs)  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
    if writer:
        writer.close()
    accuracy = None
    if clean is not None:
        known = [c.accuracy for c in clean if c.accuracy is not None]
        accuracy = float(np.mean(known)) if known else None
    summary = {
        "model": runtime.info.path,
        "providers": list(runtime.info.providers),
        "sigma": classifier.sigma,
        "n": classifier.n,
        "early_stop": classifier.early_stop,
        "pa": config.pa,
        "budget": config.budget,
        "seed": config.seed,
        "targeted": config.targeted,
        "criterion": config.criterion,
        "preset": config.preset,
        "options": config.options,
        "images": len(data),
        "results": len(records),
        "interrupted": interrupted,
        "seconds": round(time.perf_counter() - started, 2),
        "inferences": runtime.inferences,
        "defended_accuracy": accuracy,
        "attacks": _same_accuracy(summarize(records), accuracy),
        "skipped_reasons": _reasons(records),
        "endpoint_budget_spent": sum(1 for r in records if r.get("stopped") or r.get("verdict")),
        "dimension": int(np.prod(runtime.input_shape)),
        **summary_extra,
    }
    if out_dir is not None:
        write_json(out_dir / "summary.json", summary)
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary)
    if summary["endpoint_budget_spent"]:
        err.print(
            f"[yellow]note:[/] the endpoint's key budget ran out: {summary['endpoint_budget_spent']} record(s) cut "
            "short or without a verdict (their 'stopped'/'verdict' fields say so)", highlight=False,
        )
    if interrupted:
        where = f" in {out_dir}" if out_dir else ""
        err.print(f"[yellow]interrupted:[/] kept {len(records)} finished results{escape(where)}")
        raise typer.Exit(exit_code())  # 130 after Ctrl-C, 143 after SIGTERM


def _same_accuracy(rows: dict[str, dict], accuracy: float | None) -> dict[str, dict]:
    """Every attack's row gets the run's defended accuracy (all images' clean labels), not the
    mean over the images that have records, which after Ctrl-C may be only the misclassified
    ones, written first (0.0 beside 0.9)."""
    if accuracy is not None:
        for row in rows.values():
            row["defended_accuracy"] = accuracy
    return rows


def _reasons(records: list[dict]) -> dict[str, int]:
    """Images skipped, by reason (each image once)."""
    seen = {r["image"]: r["skipped"] for r in records if r["skipped"]}
    reasons: dict[str, int] = {}
    for why in seen.values():
        reasons[why] = reasons.get(why, 0) + 1
    return reasons


def _print_summary(summary: dict) -> None:
    acc = summary["defended_accuracy"]
    title = (
        f"attacks on {summary['images']} images, sigma={summary['sigma']}, n={summary['n']}, "
        f"P_a={summary['pa']}, budget={summary['budget']}"
    )
    table = Table(title=title)
    for col in ("attack", "attacked", "skipped", "success", "median L2", "median Linf", "L2/radius", "queries"):
        table.add_column(col, justify="right")
    for name, row in summary["attacks"].items():
        rate = row["success_rate"]
        table.add_row(
            name,
            str(row["attacked"]),
            str(row["skipped"]),
            "-" if rate is None else f"{rate:.0%}",
            fmt(row["median_l2"]),
            fmt(row["median_linf"], 4),
            fmt(row["median_l2_over_radius"], 1),
            fmt(row["mean_queries"], 0),
        )
    out.print(table)
    unjudged = {name: row["unjudged"] for name, row in summary["attacks"].items() if row.get("unjudged")}
    if unjudged:
        out.print("not judged (the endpoint's budget was spent before p_adv): "
                  + ", ".join(f"{name} {k}" for name, k in unjudged.items()))
    reasons = summary.get("skipped_reasons") or {}
    if reasons:
        out.print("skipped: " + ", ".join(f"{k} {escape(why)}" for why, k in reasons.items()))
    d = summary.get("dimension")
    out.print(
        f"success: an adversarial found with p_adv >= P_a = {summary['pa']} (eq. 4, fresh evaluations of "
        f"g(sigma, n)); L2 and Linf are in canonical [0, 1] pixels over the whole C x H x W image"
        + (f" (d = {d}: L2 = 1 is a per-pixel RMS change of {1 / d**0.5:.4f})" if d else ""),
        highlight=False,
    )
    below = sum(row["below_bound_eq6"] for row in summary["attacks"].values())
    if below:
        err.print(f"[bold red]warning:[/] {below} distortion(s) below eq. (6)'s bound: a bug or an unsound certificate")
    out.print(
        f"clean accuracy of the defended model: {fmt(acc)}  |  {summary['inferences']} model inferences "
        f"in {summary['seconds']} s on {', '.join(summary['providers'])}"
    )


def _print_options(as_json: bool) -> None:
    """``--list-options``: each attack's parameters, defaults and meaning, and the presets."""
    from probe.attacks import ATTACKS
    from probe.attacks.presets import PRESETS, describe_options

    rows = {name: describe_options(name) for name in ATTACKS}
    if as_json:
        emit_json({
            "attacks": {name: [{"name": p, "default": d, "meaning": m} for p, d, m in r] for name, r in rows.items()},
            "presets": PRESETS,
        })  # fmt: skip
        return
    for name, options in rows.items():
        table = Table(title=f"{name} (set with --attack-option {name}.NAME=VALUE)")
        for col in ("option", "default", "paper preset", "meaning"):
            table.add_column(col)
        for param, default, meaning in options:
            paper = PRESETS["paper"][name].get(param, "")
            table.add_row(param, repr(default), "" if paper == "" else repr(paper), escape(meaning))
        out.print(table)
