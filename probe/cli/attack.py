"""``probe attack``: HSJA, SurFree and RayS through the query-only (smoothed) oracle."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

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
    require,
)
from probe.cli.output import emit_json, err, escape, out, print_attack_summary, print_cost, progress
from probe.interrupt import exit_code, stop_at_checkpoints
from probe.cli.checks import EPS_HELP
from probe.runs.settings import RunSettings

#: the run's defaults, written once (:class:`probe.runs.settings.RunSettings`)
_D = RunSettings()
#: the flag of each setting whose flag is not ``--`` + its name with dashes
_FLAGS = {"attacks": "--attack", "options": "--attack-option"}


@model_options()
@image_options()
def attack(
    model_options: ModelOptions,
    image_options: ImageOptions,
    attack_name: Annotated[
        str,
        typer.Option(
            "--attack",
            "-a",
            help="Comma list of hsja, surfree, rays, cgba, popskipjump, psj, or all (default: the paper's three).",
        ),
    ] = ",".join(_D.attacks),
    norm: Annotated[str, typer.Option("--norm", help="l2 or linf (HSJA; SurFree is L2, RayS Linf).")] = _D.norm,
    sigma: SigmaOpt = _D.sigma,
    n: NOpt = _D.n,
    pa: Annotated[
        float, typer.Option("--pa", help="Level P_a: a result is adversarial when eq. (4)'s interval for p_adv clears P_a.")
    ] = _D.pa,
    budget: Annotated[int, typer.Option("--budget", help="Queries per image and attack.")] = _D.budget,
    p_adv_samples: Annotated[
        int,
        typer.Option(
            "--p-adv-samples",
            help="The most fresh evaluations of the verdict's test (raise it when many results are undecided).",
        ),
    ] = _D.p_adv_samples,
    confidence: Annotated[
        float, typer.Option("--confidence", help="Confidence of the verdict's and the clean label's tests.")
    ] = _D.confidence,
    targeted: Annotated[
        Optional[int],
        typer.Option("--targeted", help="Target class; the start is another image that g(sigma) gives that class."),
    ] = _D.targeted,
    criterion: Annotated[
        str,
        typer.Option(
            "--criterion",
            help="The attacker's answer per query: label (the defended label differs: what a deployed "
            "defense shows) or paper (at least ceil(n P_a) noisy votes wrong: reads the votes, a stronger oracle).",
        ),
    ] = _D.criterion,
    domain: Annotated[
        str,
        typer.Option(
            "--domain",
            help="float (the paper's protocol) or uint8 (every query rounded to 8 bits, as an attacker sending "
            "images must; distances on the rounded points). A UINT8 endpoint implies uint8.",
        ),
    ] = _D.domain,
    preset: Annotated[
        str, typer.Option("--preset", help="probe (improved variants) or paper (the attacks as published).")
    ] = _D.preset,
    attack_option: Annotated[
        Optional[list[str]],
        typer.Option("--attack-option", "-o", help="ATTACK.NAME=VALUE, e.g. hsja.memory=0 (repeatable)."),
    ] = None,
    list_options: Annotated[
        bool, typer.Option("--list-options", help="Print every attack's parameters with defaults, and exit.")
    ] = False,
    certify_n: Annotated[
        int, typer.Option("--certify-n", help="CERTIFY samples per original under smoothing (0: no radius).")
    ] = _D.certify_n,
    certify_n0: Annotated[
        int, typer.Option("--certify-n0", help="CERTIFY's samples that choose the class (before --certify-n).")
    ] = _D.certify_n0,
    certify_alpha: Annotated[
        float, typer.Option("--certify-alpha", help="CERTIFY's failure probability.")
    ] = _D.certify_alpha,
    full_votes: Annotated[
        bool, typer.Option("--full-votes", help="Draw all n votes of every query (no early stop once decided).")
    ] = _D.full_votes,
    max_jobs: Annotated[
        Optional[int],
        typer.Option(
            "--max-jobs",
            help="(image, attack) jobs run at once (default: what a quarter of this machine's memory "
            "holds, at least 8). Fewer: less memory, records written sooner. Records do not depend on it.",
        ),
    ] = _D.max_jobs,
    seed: SeedOpt = _D.seed,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for results.jsonl and summary.json.")] = None,
    save_images: Annotated[
        bool, typer.Option("--save-images", help="Also save adversarial PNGs (needs --out).")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out: its finished jobs are kept and skipped.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the results already in --out.")] = False,
    eps: Annotated[Optional[list[str]], typer.Option("--eps", help=EPS_HELP)] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Also write report.md and report.html into --out (as `probe report`).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Attack each image with HSJA, SurFree, RayS, CGBA and/or PSJ through the query-only (smoothed) oracle."""
    from probe.cli import checks  # the arguments first: nothing heavy is imported before they pass

    if list_options:
        _print_options(as_json)
        return
    from probe.runs.settings import build_settings

    values = dict(attacks=attack_name, norm=norm, sigma=sigma, n=n, pa=pa, budget=budget, seed=seed, targeted=targeted,
                  criterion=criterion, domain=domain, preset=preset, p_adv_samples=p_adv_samples, confidence=confidence,
                  certify_n0=certify_n0, certify_n=certify_n, certify_alpha=certify_alpha, full_votes=full_votes,
                  max_jobs=max_jobs)  # fmt: skip
    config = build_settings(values, terms=lambda key: _FLAGS.get(key, "--" + key.replace("_", "-")))
    names = config.attacks
    checks.attack_option_targets(attack_option or [], names)
    require(not save_images or out_dir is not None, "--save-images needs --out DIR")
    require(not (resume or overwrite) or out_dir is not None, "--resume and --overwrite need --out DIR")
    require(not (resume and overwrite), "give --resume or --overwrite, not both")
    require(not report or out_dir is not None, "--report needs --out DIR")
    from probe.runs.eps import parse_eps

    parse_eps(eps)  # a bad --eps fails here, before the model loads
    checks.model_overrides(model_options)

    from probe.attacks import ATTACKS
    from probe.attacks.presets import parse_options

    options = parse_options(attack_option or [], tuple(ATTACKS))
    config = build_settings({"options": options}, terms=_FLAGS, base=config)
    for name in names:  # option names and values are the attacks' to judge: before the model opens
        config.attack(name, randomized=False)
    from probe.cli.sanity import require_finite_outputs
    from probe.runs.results import locked, start_run
    from probe.smoothing import SmoothedClassifier

    runtime = model_options.open()
    require(
        targeted is None or 0 <= targeted < runtime.num_classes,
        f"--targeted must be a class in [0, {runtime.num_classes})",
    )
    data = image_options.open(runtime, model_options.model)
    require_finite_outputs(runtime, data)  # NaN logits would read as a robust model
    classifier = SmoothedClassifier(runtime, config.sigma, config.n, early_stop=not config.full_votes)
    for name in names:  # unknown options and bad values fail here, before any model run
        config.attack(name, classifier.random)

    # images_sha1: a --resume on images of the same names but other pixels is refused
    settings_doc = {"model": runtime.info.path, "images": list(data.ids), "sigma": config.sigma, "n": classifier.n,
                    "early_stop": classifier.early_stop,
                    "config": {k: v for k, v in asdict(config).items() if k != "max_jobs"},  # records do not depend on it
                    "images_sha1": hashlib.sha1(data.x.tobytes()).hexdigest()}  # fmt: skip
    eps_points = parse_eps(eps, math.prod(runtime.input_shape))
    if out_dir is None:
        _run(classifier, data, config, out_dir=None, save_images=False, kept=[], as_json=as_json, summary_extra={},
             max_jobs=max_jobs, eps=eps_points)  # fmt: skip
        return
    with locked(out_dir):
        if resume:
            checks.refuse_other_settings(out_dir, settings_doc)  # names the settings that differ
        kept = start_run(out_dir, settings_doc, resume=resume, overwrite=overwrite)
        _run(classifier, data, config, out_dir=out_dir, save_images=save_images, kept=kept, as_json=as_json,
             summary_extra={}, max_jobs=max_jobs, eps=eps_points, report=report)  # fmt: skip


def _run(classifier, data, config, *, out_dir: Path | None, save_images: bool, kept: list[dict], as_json: bool,
         summary_extra: dict, max_jobs: int | None = None, eps: dict | None = None,
         report: bool = False) -> None:  # fmt: skip
    """Attack, write records as they arrive, then the summary (also after Ctrl-C or SIGTERM)."""
    import numpy as np

    from probe.runs.campaign import attack_images, clean_labels
    from probe.runs.results import RESULTS, ResultsWriter, save_record_array, save_record_image, write_json
    from probe.runs.report_parts import save_original
    from probe.runs.robust import answer, budget_spent, default_eps
    from probe.runs.sweep import versions
    from probe.runs.summary import summarize

    runtime = classifier.runtime
    names = config.attacks
    done = {(r["image"], r["attack"]) for r in kept}
    todo = len(data) * len(names) - len(done)
    print_cost(classifier, data, config, todo, out_dir)
    writer = ResultsWriter(out_dir / RESULTS) if out_dir is not None else None
    index = {name: i for i, name in enumerate(data.ids)}
    records: list[dict] = list(kept)
    interrupted = False
    started = time.perf_counter()
    with progress("queries {task.fields[queries]:>7}", "median L2 {task.fields[l2]}", width=8) as bar:
        tasks = {
            name: bar.add_task(name, total=len(data), completed=sum(1 for r in kept if r["attack"] == name),
                               queries=0, l2="-")
            for name in names
        }  # fmt: skip
        spent = {name: 0 for name in names}
        seen: dict[int, int] = {}
        # all queries of the jobs to run: its time remaining is there within the first rounds
        overall = bar.add_task("all", total=max(todo, 1) * config.budget, queries="", l2="-")
        counted: dict[int, int] = {}

        def on_record(rec: dict, job) -> None:
            if out_dir is not None and rec["l2"] is not None:
                rec["adv_file"] = str(save_record_array(out_dir, rec, job.outcome.x_adv))
                save_original(out_dir, rec["image"], data.x[index[rec["image"]]])
                if save_images:
                    x0 = data.x[index[rec["image"]]]
                    rec["adv_path"] = str(save_record_image(out_dir / "images", rec, x0, job.outcome.x_adv))
            records.append(rec)
            if writer:
                writer.write(rec)
            wins = [r["l2"] for r in records if r["attack"] == rec["attack"] and r["success"]]
            bar.update(tasks[rec["attack"]], advance=1, l2=f"{np.median(wins):.3f}" if wins else "-")
            if job is None:  # a skipped image: its budget is done
                bar.update(overall, advance=config.budget)
            else:  # what the job did not spend is done too
                bar.update(overall, advance=max(0, config.budget - counted.get(id(job), 0)))
                counted[id(job)] = config.budget

        def on_round(jobs) -> None:
            for job in jobs:
                name = job.meta["attack"]
                spent[name] += job.oracle.queries - seen.get(id(job), 0)
                bar.update(overall, advance=max(0, job.oracle.queries - counted.get(id(job), 0)))
                counted[id(job)] = max(counted.get(id(job), 0), job.oracle.queries)
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
        "domain": config.domain,
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
        "endpoint_budget_spent": sum(1 for r in records if budget_spent(r)),
        "dimension": int(np.prod(runtime.input_shape)),
        "versions": versions(),
        **answer(records, eps or default_eps(int(np.prod(runtime.input_shape)))),
        **summary_extra,
    }
    if out_dir is not None:
        write_json(out_dir / "summary.json", summary)
    if as_json:
        emit_json(summary)
    else:
        print_attack_summary(summary)
    if summary["endpoint_budget_spent"]:
        err.print(
            f"[yellow]note:[/] the endpoint's key budget ran out: {summary['endpoint_budget_spent']} record(s) cut "
            "short or without a verdict (their 'stopped' and 'verdict_note' fields say so)", highlight=False,
        )
    if report and out_dir is not None and records:
        from probe.runs.report import build_report

        paths = build_report(out_dir)  # its eps: those of summary.json
        err.print(f"wrote {escape(paths['markdown'])} and {escape(paths['html'])}")
    if interrupted:
        if out_dir is None:
            err.print("[yellow]interrupted:[/] nothing kept (no --out): run with --out DIR to keep results as they "
                      "finish", highlight=False)
        elif records:
            err.print(f"[yellow]interrupted:[/] kept {len(records)} finished results in {escape(out_dir)}; "
                      "the same command with --resume continues")
        else:
            err.print(f"[yellow]interrupted:[/] no result had finished: nothing kept in {escape(out_dir)}")
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
