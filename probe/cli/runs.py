"""``probe sweep``, ``report`` and ``check``: grids of runs, their report, and the CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from probe.cli.options import JsonOpt, require
from probe.errors import ProbeError
from probe.cli.output import emit_json, err, escape, fmt, out, progress
from probe.interrupt import exit_code, stop_at_checkpoints
from probe.cli.checks import EPS_HELP


def sweep(
    config: Annotated[Path, typer.Argument(help="The sweep's TOML file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder of results.jsonl, configs.jsonl, sweep.json.")],
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    ray: Annotated[
        Optional[str],
        typer.Option(
            "--ray",
            metavar="auto|ADDRESS",
            help="Run the jobs on Ray workers: 'auto' (the running cluster, else a local one) or a cluster's "
            "address; needs the ray extra (docs/scaling.md).",
        ),
    ] = None,
    ray_cpus: Annotated[
        int, typer.Option("--ray-cpus", help="CPU cores per Ray worker on a cluster without GPUs (one per GPU else).")
    ] = 1,
    full_votes: Annotated[
        bool, typer.Option("--full-votes", help="Draw all n votes of every query (as full_votes = true in the file).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run (or resume) a grid of configurations x attacks x images; finished jobs are skipped."""
    require(ray is not None or ray_cpus == 1, "--ray-cpus needs --ray")
    require(config.is_file(), f"no such sweep file: {config}")
    from probe.runs.results import RESULTS, load_results_dir  # after the arguments: nothing heavy before
    from probe.runs.robust import budget_spent
    from probe.runs.summary import summarize_sweep
    from probe.runs.sweep import SweepHooks, run_sweep
    from probe.runs.sweep_file import load_sweep

    if ray is not None:
        from probe.runs.ray_sweep import RaySweep
        from probe.runs.ray_worker import import_ray

        import_ray()  # before any work: without the extra, one error line
    plan = load_sweep(config)
    if full_votes:  # other noise streams than early-stopped votes: other configurations (their own ids)
        plan = plan.with_settings(full_votes=True)
    err.print(f"sweep {escape(plan.name)}: {len(plan.configs)} configurations -> {escape(out_dir / RESULTS)}")
    interrupted = False
    with progress("success {task.fields[wins]}", "median L2 {task.fields[l2]}", quiet=quiet) as bar:
        state: dict = {}  # per configuration (a Ray sweep runs several at once): its task, successes, L2s

        def start(cfg, position, total, todo, done) -> None:
            label = f"[{position}/{total}] {cfg.label}"
            task = bar.add_task(label, total=todo + done, completed=done, wins="-", l2="-")
            state[cfg.id] = {"task": task, "wins": 0, "l2": []}

        def record(rec: dict) -> None:
            import numpy as np

            mine = state[rec["config"]]
            if rec["success"]:
                mine["wins"] += 1
                mine["l2"].append(rec["l2"])
            bar.update(
                mine["task"],
                advance=1,
                wins=str(mine["wins"]),
                l2=f"{np.median(mine['l2']):.3f}" if mine["l2"] else "-",
            )

        hooks = SweepHooks(start=start, record=record, message=lambda m: err.print(escape(m)))
        try:
            with stop_at_checkpoints():  # Ctrl-C stops between engine rounds, a second one at once
                if ray is not None:
                    outcome = RaySweep(plan, out_dir, hooks, address=ray, cpus=ray_cpus).run()
                else:
                    outcome = run_sweep(plan, out_dir, hooks)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        err.print(
            f"[yellow]interrupted:[/] finished jobs are in {escape(out_dir / RESULTS)}; run the same command to resume"
        )
        raise typer.Exit(exit_code())  # 130 after Ctrl-C, 143 after SIGTERM
    records, configs, _, _ = load_results_dir(out_dir)
    rows = summarize_sweep(records, configs)
    err.print(f"{outcome.written} new results, {outcome.skipped_jobs} jobs already done, {outcome.seconds:.1f} s")
    spent = sum(1 for r in records if budget_spent(r))  # "verdict" is three-valued now: not a sign of it
    if spent:
        err.print(f"[yellow]note:[/] the endpoint's key budget ran out: {spent} record(s) cut short or without a "
                  "verdict (their 'stopped' and 'verdict_note' fields say so)", highlight=False)  # fmt: skip
    if as_json:
        emit_json({"out": str(out_dir), "written": outcome.written, "skipped": outcome.skipped_jobs, "rows": rows})
        return
    _print_rows(rows, f"sweep {plan.name}")
    from probe.runs.gate import headlines

    for line in headlines(out_dir):  # the answer per configuration (robust accuracy at the headline eps)
        out.print(escape(line), highlight=False, soft_wrap=True)


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
        table.add_row(
            name,
            r["attack"],
            "-" if rate is None else f"{rate:.0%}",
            fmt(r["mean_l2"]),
            fmt(r["median_l2"]),
            fmt(r["median_linf"], 4),
            fmt(r["mean_queries"], 0),
            fmt(r["defended_accuracy"], 2),
        )
    out.print(table)


# --------------------------------------------------------------------------- report and check


def report(
    folder: Annotated[Path, typer.Argument(help="A sweep's (or `probe attack --out`) results folder.")],
    title: Annotated[Optional[str], typer.Option("--title", help="Title of the report.")] = None,
    eps: Annotated[Optional[list[str]], typer.Option("--eps", help=EPS_HELP.replace("Default", "Default: those of "
                                                      "the run (summary.json), else"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write report.md and a self-contained report.html: the headline per configuration, robust accuracy
    against eps and queries, a table per image with its pictures, counts, what was run, a glossary."""
    require(folder.is_dir(), f"no such results folder: {folder}")
    from probe.runs.report import build_report
    from probe.runs.eps import parse_eps

    parse_eps(eps)  # a bad --eps is one error line
    paths = build_report(folder, title, eps)
    if as_json:
        emit_json({k: str(v) for k, v in paths.items()})
        return
    err.print(f"wrote {escape(paths['markdown'])} and {escape(paths['html'])}")


def check(
    folder: Annotated[Path, typer.Argument(help="A sweep's results folder.")],
    min_robust: Annotated[
        Optional[list[str]],
        typer.Option(
            "--min-robust-accuracy",
            metavar="NORM:EPS=VALUE",
            help="Fail when the robust accuracy of the best of the attacks at NORM <= EPS is below VALUE "
            "(a fraction or a percentage), e.g. l2:0.5=0.3 or linf:8/255=40% (repeatable). Misclassified images "
            "count as not robust, undecided verdicts as adversarial.",
        ),
    ] = None,
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
    junit: Annotated[
        Optional[Path], typer.Option("--junit", help="Also write the checks as JUnit XML (one test case per check).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The CI gate: exit 1 with a table of what regressed, 0 when every check passes (2 on bad input).

    With $GITHUB_STEP_SUMMARY set (GitHub Actions), the headlines and the checks are appended to it as Markdown."""
    require(min_success_l2 is None or min_success_l2 >= 0, "--min-success-l2 must be >= 0")
    require(min_accuracy is None or 0 <= min_accuracy <= 1, "--min-accuracy must be in [0, 1]")
    import os

    from probe.runs.gate import (
        checks_json,
        headlines,
        junit_xml,
        markdown_summary,
        parse_fraction,
        parse_min_robust,
        run_checks,
        write_baseline,
    )

    gates = [parse_min_robust(text) for text in min_robust or []]

    if write_baseline_to is not None:
        doc = write_baseline(folder, write_baseline_to)
        err.print(f"wrote baseline {escape(write_baseline_to)} ({len(doc['entries'])} entries)")
        if min_success_l2 is None and min_accuracy is None and baseline is None and not gates:
            if as_json:
                emit_json(doc)
            return
    drop = parse_fraction(max_drop)
    checks, _ = run_checks(
        folder, min_success_l2=min_success_l2, min_accuracy=min_accuracy, baseline=baseline, max_drop=drop,
        min_robust=gates,
    )
    failed = [c for c in checks if not c.ok]
    if junit is not None:
        try:
            junit.write_text(junit_xml(checks), encoding="utf-8")
        except OSError as exc:
            raise ProbeError(f"cannot write {junit}: {exc.strerror or exc}") from None
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(markdown_summary(checks, headlines(folder)))
        except OSError as exc:
            err.print(f"[yellow]note:[/] cannot append to $GITHUB_STEP_SUMMARY ({escape(exc.strerror or exc)})")
    if as_json:
        emit_json(checks_json(checks))
    else:
        shown = failed or checks
        table = Table(
            title=f"{len(failed)} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed"
        )
        for col in ("configuration", "attack", "metric", "value", "required", "result", "note"):
            table.add_column(col)
        for line in headlines(folder):  # the answer first, then the checks made on it
            out.print(escape(line), highlight=False, soft_wrap=True)
        for c in shown:
            table.add_row(
                c.label.replace("sigma=", "s=").replace("budget=", "b="),
                c.attack or "-",
                c.metric,
                fmt(c.value, 4),
                "-" if c.threshold is None else f">= {c.threshold:.4g}",
                "[green]ok[/]" if c.ok else "[bold red]REGRESSED[/]",
                c.note,
            )
        out.print(table)
    if failed:
        raise typer.Exit(1)
