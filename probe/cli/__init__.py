"""The `probe` command line: the Typer app and its wiring.

Imports run one way: this module imports the command modules and registers their
functions; they never import it. Shared options live in :mod:`probe.cli.options`,
printing in :mod:`probe.cli.output`.

Bad input of any kind ends with a one-line ``error: ...`` on stderr and exit code 2: a
ProbeError, a file-system error, and the parser's own usage errors (``--n 2.5``, an
unknown flag) alike. Progress goes to stderr; with ``--json`` stdout holds the JSON
document and nothing else.

The parse path (``--help``, ``--version``, every argument error) imports nothing heavy:
the command modules import NumPy, ONNX, SciPy and the attacks inside the commands, after
their arguments are checked (``tests/test_cli_fast.py`` holds them to it).
"""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import typer

from probe import __version__
from probe.cli import attack, bench, core, figures, models, runs, serve
from probe.cli.output import err, escape, print_error
from probe.errors import ParameterError, ProbeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Probe how robust an ONNX image classifier really is, with or without randomized smoothing.",
)
models_app = typer.Typer(no_args_is_help=True, help="List and export models.")

EXAMPLES = {
    "info": ["probe info --model cifar10-cnn", "probe info --model model.onnx --layout NHWC --scale 255 --json"],
    "predict": ["probe predict --sigma 0.25 --n 100 --limit 5", "probe predict --model model.onnx val/*.png"],
    "accuracy": ["probe accuracy --model cifar10-cnn --sigma 0.05 --n 10", "probe accuracy --sigma 0"],
    "certify": ["probe certify --sigma 0.12 --sigma 0.25 --n 1000 --plot cert.png --limit 10"],
    "attack": [
        "probe attack --sigma 0.05 --n 10 --limit 1 --budget 150",
        "probe attack --model cifar10-cnn --attack hsja,rays --budget 1000 --out runs/a",
        "probe attack --preset paper --criterion paper --attack-option hsja.gamma=2 --out runs/b",
        "probe attack --list-options",
    ],
    "profile": ["probe profile --result runs/a/results.jsonl --index 0 --sigma 0.05 --n 10 --n 50"],
    "slice": ["probe slice --sigma 0.05 --n 50 --grid 41"],
    "bsearch": ["probe bsearch --result runs/a/results.jsonl --sigma 0.05 --n 1 --n 10"],
    "sweep": ["probe sweep examples/reproduction.toml --out runs/repro   # re-run to resume"],
    "report": ["probe report runs/repro"],
    "check": [
        "probe check runs/repro --min-success-l2 0.5 --min-accuracy 0.8",
        "probe check runs/repro --baseline baseline.json --max-drop 10%",
    ],
    "bench": ["probe bench --model cifar10-cnn --n 10 --seconds 5"],
    "list": ["probe models list --json"],
    "export": ["probe models export resnet50 --checkpoint resnet50.pth --format torchvision"],
}


def _print_version(value: bool) -> None:
    if value:
        print(f"probe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[  # a plain bool: Typer coerces it without importing pydantic
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print probe's version and exit."),
    ] = False,
) -> None:
    """Probe how robust an ONNX image classifier really is, with or without randomized smoothing."""


def _epilog(name: str) -> str:
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in EXAMPLES[name])


COMMANDS = {
    "info": core.info,
    "predict": core.predict,
    "accuracy": core.accuracy,
    "certify": core.certify,
    "attack": attack.attack,
    "profile": figures.profile,
    "slice": figures.slice_cmd,
    "bsearch": figures.bsearch,
    "sweep": runs.sweep,
    "report": runs.report,
    "check": runs.check,
    "bench": bench.bench,
}
for _name, _function in COMMANDS.items():
    app.command(_name, epilog=_epilog(_name))(_function)
models_app.command("list", epilog=_epilog("list"))(models.models_list)
models_app.command("export", epilog=_epilog("export"))(models.models_export)
app.add_typer(models_app, name="models")
app.add_typer(serve.serve_app, name="serve")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _joined_size(argv: list[str]) -> list[str]:
    """``--size 224 224`` -> ``--size 224x224`` (an option takes one value; ``HxW`` is the form)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--size" and i + 2 < len(argv) and argv[i + 1].isdigit() and argv[i + 2].isdigit():
            out += ["--size", f"{argv[i + 1]}x{argv[i + 2]}"]
            i += 3
            continue
        out.append(argv[i])
        i += 1
    return out


def _hide_flag_types() -> None:
    """Typer's help shows ``<bool>`` beside flags as if they took a value: show nothing there."""
    from typer.core import TyperOption

    show = getattr(TyperOption, "display_type_rich", None)
    if show is None or getattr(show, "_probe", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else show(self, ctx)

    display_type_rich._probe = True
    TyperOption.display_type_rich = display_type_rich


def _click_error(name: str) -> type[Exception]:
    """Click's exception class ``name`` (Typer vendors Click in recent versions, uses it in older ones)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


def _usage_line(exc: Exception) -> str:
    """A usage error of the parser on one line, with where to read more."""
    message = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see {ctx.command_path} --help)" if ctx is not None else message


#: the flag that sets each library parameter whose errors reach the command line (others print as named)
FLAGS = {
    "attacks": "--attack", "options": "--attack-option", "batch_size": "--batch-size",
    "points_per_request": "--batch-size", "concurrency": "--concurrency", "limit": "--limit",
    "max_rate": "--max-rate", "num_classes": "--num-classes", "output": "--output", "protocol": "--protocol",
    "size": "--size HxW", "timeout": "--timeout", "url": "--endpoint",
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Console entry point: ProbeError, a file-system error or a usage error -> one line on
    stderr and exit 2; ``typer.Exit(code)`` -> that code."""
    warnings.showwarning = _show_warning
    _hide_flag_types()
    args = _joined_size(sys.argv[1:] if argv is None else [str(a) for a in argv])
    try:
        code = app(args=args, prog_name="probe", standalone_mode=False)
    except _click_error("UsageError") as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `probe` alone: Typer printed the help
            sys.exit(2)
        print_error(_usage_line(exc))
        sys.exit(2)
    except _click_error("ClickException") as exc:
        print_error(_usage_line(exc))
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:
        print_error("aborted")
        sys.exit(1)
    except ParameterError as exc:  # a library's parameter, named by the flag that sets it
        print_error(exc.render(FLAGS))
        sys.exit(2)
    except ProbeError as exc:
        print_error(exc)
        sys.exit(2)
    except OSError as exc:  # a read-only folder, a full disk, ...
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print_error(f"{exc.strerror or exc}{where}")
        sys.exit(2)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


__all__ = ["app", "main"]
