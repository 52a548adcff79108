"""What the commands print: consoles, progress bars, JSON and number formatting.

Progress and messages go to stderr (``err``); tables and JSON to stdout (``out``).
Text that comes from the user or the file system (paths, messages) is escaped before
it reaches Rich, so ``my[model].onnx`` prints as it is.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape as _escape

from probe.runs.render import fmt  # noqa: F401  (the one number formatter, re-exported for the commands)


def _width(stream) -> int | None:
    """Rich's width on a terminal; 160 columns when writing to a file or a pipe (Rich would
    use 80 and cut the tables' columns), unless COLUMNS says otherwise."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return None if terminal or os.environ.get("COLUMNS") else 160


out = Console(width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))


def escape(text: object) -> str:
    """``text`` with Rich markup characters escaped."""
    return _escape(str(text))


def progress(*fields: str, quiet: bool = False, width: int = 0):
    """A Rich progress display on stderr (use it as a context manager): each task's description
    (right-aligned to ``width``), bar, done/total, the ``fields`` (Rich templates such as
    ``"queries {task.fields[queries]:>7}"``), time elapsed and time remaining."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    description = TextColumn(f"[bold]{{task.description:>{width}}}" if width else "[bold]{task.description}")
    columns = (description, BarColumn(), MofNCompleteColumn(), *map(TextColumn, fields))
    return Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=quiet)


@contextmanager
def progress_bar(description: str, total: int, *, quiet: bool = False) -> Iterator:
    """A progress bar for one task (:func:`progress`); yields an ``advance(k, status=...)`` callable."""
    if quiet or total <= 0:
        yield lambda k=1, **fields: None
        return
    with progress("{task.fields[status]}") as bar:
        task = bar.add_task(description, total=total, status="")
        yield lambda k=1, **fields: bar.update(task, advance=k, **fields)


def emit_json(data: Any) -> None:
    """The command's JSON document, alone on stdout."""
    from probe.runs.results import json_default

    sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")


def print_error(message: object) -> None:
    """The one ``error:`` line of a failed command."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _pct(entry: dict | None) -> str:
    if not entry or entry.get("accuracy") is None:
        return "-"
    lo, hi = entry["interval"]
    text = f"{entry['accuracy']:.0%} [{lo:.0%}, {hi:.0%}]"
    return text + (f" to {entry['accuracy_upper']:.0%}" if entry.get("undecided") else "")


def print_attack_summary(summary: dict) -> None:
    """The closing summary of ``probe attack``: a table per attack with each column explained in
    one line, the robust accuracy of the best of the attacks at every eps, and the headline."""
    from rich.table import Table

    from probe.runs.robust import BEST, NORM_NAMES, eps_key, eps_label

    acc = summary["defended_accuracy"]
    head = summary.get("headline_eps") or {}
    norm, eps = head.get("norm"), head.get("eps")
    table_ra = summary.get("robust_accuracy") or {}
    at = (table_ra.get(norm) or {}).get(eps_key(eps)) if norm else None
    ra_col = f"robust acc. {NORM_NAMES[norm]}<={eps_label(norm, eps)}" if at else None
    title = (
        f"attacks on {summary['images']} images, sigma={summary['sigma']}, n={summary['n']}, "
        f"P_a={summary['pa']}, budget={summary['budget']}"
    )
    table = Table(title=title)
    columns = ["attack", "attacked", "skipped", "adv / not / undecided", "8-bit adv", "median L2", "median Linf",
               "L2/radius", "queries"]  # fmt: skip
    for col in columns + ([ra_col] if ra_col else []):
        table.add_column(col, justify="right")
    for name, row in summary["attacks"].items():
        verdicts = f"{row['adversarial']} / {row['not_adversarial'] + row['not_found']} / {row['undecided']}"
        cells = [name, str(row["attacked"]), str(row["skipped"]), verdicts if row["attacked"] else "-",
                 str(row["adversarial_8bit"]), fmt(row["median_l2"]), fmt(row["median_linf"], 4),
                 fmt(row["median_l2_over_radius"], 1), fmt(row["mean_queries"], 0)]
        table.add_row(*cells, *([_pct(at.get(name))] if at else []))
    out.print(table)
    d = summary.get("dimension")
    rms = f" (d = {d}: L2 = 1 is a per-pixel RMS change of {1 / d**0.5:.4f})" if d else ""
    lines = [
        "attacked / skipped: images attacked; images not attacked because the defended model already "
        "misclassifies them (they count as not robust)",
        f"adv / not / undecided: the verdict of eq. (4) as a test on fresh evaluations of g(sigma, n): p_adv's "
        f"interval lies at or above P_a = {summary['pa']} / below it (or nothing found) / across it (raise "
        f"--p-adv-samples to decide more)",
        "8-bit adv: adversarials still adversarial once rounded to 8 bits (what a PNG holds)",
        f"median L2 / Linf: distortion of the adversarials in [0, 1] pixels over the whole image{rms}",
        "L2/radius: median distortion over the certified radius of its original (the paper: at least 30x)",
        "queries: mean queries the attacker spent per image",
    ]
    if at:
        lines.append(f"robust acc.: share of the images still classified correctly with no adversarial within "
                     f"{NORM_NAMES[norm]} {eps_label(norm, eps)} [95% interval] (higher: more robust)")
    for line in lines:
        out.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    unjudged = {name: row["unjudged"] for name, row in summary["attacks"].items() if row.get("unjudged")}
    if unjudged:
        out.print("not judged (the endpoint's budget was spent before p_adv): "
                  + ", ".join(f"{name} {k}" for name, k in unjudged.items()))
    reasons = summary.get("skipped_reasons") or {}
    if reasons:
        out.print("skipped: " + ", ".join(f"{k} {escape(why)}" for why, k in reasons.items()))
    below = sum(row["below_bound_eq6"] for row in summary["attacks"].values())
    if below:
        err.print(f"[bold red]warning:[/] {below} distortion(s) below eq. (6)'s bound: a bug or an unsound certificate")
    if table_ra:
        best = "; ".join(f"{NORM_NAMES[n]} <= {eps_label(n, float(e))}: {_pct(v.get(BEST))}"
                         for n, points in table_ra.items()
                         for e, v in sorted(points.items(), key=lambda kv: float(kv[0])))
        out.print(f"robust accuracy, best of the attacks: {escape(best)}", highlight=False, soft_wrap=True)
    out.print(
        f"defended accuracy (mean share of fresh votes that give the true label): {fmt(acc)}  |  "
        f"{summary['inferences']:,} model inferences "
        f"in {summary['seconds']} s on {', '.join(summary['providers'])}", highlight=False,
    )
    if summary.get("headline"):
        out.print(f"[bold]{escape(summary['headline'])}[/]", highlight=False, soft_wrap=True)
        out.print("  A good value for the defense is close to the clean accuracy (no adversarial within eps); "
                  "a bad one is near 0 (nearly every image has one). An upper bound: stronger attacks can only "
                  "lower it.", highlight=False, soft_wrap=True)


def print_cost(classifier, data, config, todo: int, out_dir: Path | None) -> None:
    """The first line: jobs, a true upper bound on inferences and the time it could take."""
    from probe.runs.cost import duration, inference_bound, inference_rate

    bound = inference_bound(images=len(data), jobs=todo, n=classifier.n, budget=config.budget,
                            p_adv_samples=config.p_adv_samples, sigma=classifier.sigma,
                            certify_n0=config.certify_n0, certify_n=config.certify_n)  # fmt: skip
    rate = inference_rate(classifier.runtime, data.x[0]) if todo else None
    eta = bound / rate if rate else None
    err.print(
        f"{len(data)} images x {len(config.attacks)} attacks ({todo} jobs to run), up to {config.budget} queries "
        f"each: at most {bound:,} model inferences ({classifier.n} per query, with the verdicts"
        + (" and CERTIFY)" if classifier.sigma > 0 and config.certify_n else ")")
        + (f", up to {duration(eta)} at {rate:,.0f} inferences/s" if eta is not None else "")
        + ("" if out_dir is not None else "; results are not kept (no --out)"),
        highlight=False,
    )
    if out_dir is None and eta is not None and eta > 600:
        err.print(f"[yellow]note:[/] this may take {duration(eta)} and nothing will be kept: add --out DIR to keep each "
                  "result as it finishes (and --resume to continue after an interruption)", highlight=False)
