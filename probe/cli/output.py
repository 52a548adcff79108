"""What the commands print: consoles, progress bars, JSON and number formatting.

Progress and messages go to stderr (``err``); tables and JSON to stdout (``out``).
Text that comes from the user or the file system (paths, messages) is escaped before
it reaches Rich, so ``my[model].onnx`` prints as it is.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rich.console import Console
from rich.markup import escape as _escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

out = Console()
err = Console(stderr=True)


def escape(text: object) -> str:
    """``text`` with Rich markup characters escaped."""
    return _escape(str(text))


@contextmanager
def progress_bar(description: str, total: int, *, quiet: bool = False) -> Iterator:
    """A Rich progress bar on stderr; yields an ``advance(k)`` callable."""
    if quiet or total <= 0:
        yield lambda k=1, **fields: None
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


def json_default(value: Any) -> Any:
    """JSON for NumPy scalars and paths."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def emit_json(data: Any) -> None:
    """The command's JSON document, alone on stdout."""
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
