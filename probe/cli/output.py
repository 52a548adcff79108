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
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape as _escape


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


@contextmanager
def progress_bar(description: str, total: int, *, quiet: bool = False) -> Iterator:
    """A Rich progress bar on stderr; yields an ``advance(k)`` callable."""
    if quiet or total <= 0:
        yield lambda k=1, **fields: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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


def emit_json(data: Any) -> None:
    """The command's JSON document, alone on stdout."""
    from probe.runs.results import json_default

    sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``-`` for None, fixed digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_error(message: object) -> None:
    """The one ``error:`` line of a failed command."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
