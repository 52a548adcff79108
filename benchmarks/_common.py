"""Helpers the benchmark scripts share (imported as ``_common``: the scripts run from this folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_results(path: Path | None, **figures) -> None:
    """With ``--json PATH``: write ``figures`` there as JSON, after the 1-minute load average."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"load": os.getloadavg(), **figures}, indent=2))


class Report:
    """A benchmark's table, printed row by row as the figures come in (flushed, so a long
    run shows progress), and the same figures for ``--json`` (``{"load": ..., "results": [...]}``)."""

    def __init__(self, header: str) -> None:
        self.results: list[dict] = []
        print(header, flush=True)

    def add(self, record: dict, row: str) -> None:
        self.results.append(record)
        print(row, flush=True)

    def finish(self, json_path: Path | None) -> int:
        """Write the figures with ``--json``; the script's exit status (0)."""
        write_results(json_path, results=self.results)
        return 0
