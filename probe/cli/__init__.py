"""The `probe` command line: the Typer app and its wiring.

Imports run one way: this module imports the command modules and registers their
functions; they never import it. Shared options live in :mod:`probe.cli.options`,
printing in :mod:`probe.cli.output`.

Bad input of any kind ends with a one-line ``error: ...`` on stderr and exit code 2.
Progress goes to stderr; with ``--json`` stdout holds the JSON document and nothing else.
"""

from __future__ import annotations

import sys

import typer

from probe.cli import attack, bench, core, figures, models, runs
from probe.cli.output import print_error
from probe.errors import ProbeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Probe how robust an ONNX image classifier really is, with or without randomized smoothing.",
)
models_app = typer.Typer(no_args_is_help=True, help="List and export models.")

app.command("info")(core.info)
app.command("predict")(core.predict)
app.command("accuracy")(core.accuracy)
app.command("certify")(core.certify)
app.command("attack")(attack.attack)
app.command("profile")(figures.profile)
app.command("slice")(figures.slice_cmd)
app.command("bsearch")(figures.bsearch)
app.command("sweep")(runs.sweep)
app.command("report")(runs.report)
app.command("check")(runs.check)
app.command("bench")(bench.bench)
models_app.command("list")(models.models_list)
models_app.command("export")(models.models_export)
app.add_typer(models_app, name="models")


def main() -> None:
    """Console entry point: ProbeError -> one line on stderr and exit 2."""
    try:
        app()
    except ProbeError as exc:
        print_error(exc)
        sys.exit(2)


__all__ = ["app", "main"]
