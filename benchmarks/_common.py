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


# --------------------------------------------------------------------------- run folders and their archive

#: the raw run folders under ``results/`` are not kept in git (``.gitignore``); this file, next to
#: them, is: every run's records, ``run.json`` and ``summary.json``, one JSON line each
ARCHIVE = "runs.jsonl.gz"
RUN_FILES = ("run.json", "summary.json")


def read_run(folder: Path) -> dict:
    """A ``probe attack --out`` folder: ``{"records": [...], "run": {...} | None, "summary": {...} | None}``."""
    text = (folder / "results.jsonl").read_text()
    run = {"records": [json.loads(line) for line in text.splitlines() if line.strip()]}
    for name in RUN_FILES:
        path = folder / name
        run[name.removesuffix(".json")] = json.loads(path.read_text()) if path.is_file() else None
    return run


def read_archive(path: Path) -> dict[str, dict]:
    """The runs of an archive written by :func:`pack_runs`, by folder (relative to ``results/``)."""
    import gzip

    runs: dict[str, dict] = {}
    if not path.is_file():
        return runs
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            run = runs.setdefault(item["run"], {"records": [], "run": None, "summary": None})
            if item["kind"] == "record":
                run["records"].append(item["data"])
            else:
                run[item["kind"]] = item["data"]
    return runs


def run_folders(root: Path) -> dict[str, dict]:
    """The runs under ``root`` (a folder of ``results/``, e.g. ``results/adaptive``), keyed by their path
    relative to ``root``: those of ``root.parent / ARCHIVE``, each replaced by its folder when that is on
    disk (a rerun), and the folders on disk that the archive does not hold."""
    prefix = root.name + "/"
    runs = {k[len(prefix):]: v for k, v in read_archive(root.parent / ARCHIVE).items() if k.startswith(prefix)}
    if root.is_dir():
        for path in sorted(root.glob("**/results.jsonl")):
            runs[path.parent.relative_to(root).as_posix()] = read_run(path.parent)
    return runs


def pack_runs(results: Path) -> tuple[int, int]:
    """Write every run folder under ``results`` (a folder holding a ``results.jsonl``, at any depth
    below a folder of ``results``) into ``results / ARCHIVE``, keeping the archived runs whose folder
    is gone and replacing those whose folder is on disk. Deterministic (sorted, no time stamp), so
    that packing the same runs twice writes the same bytes. Returns (runs, records) written."""
    import gzip

    runs = read_archive(results / ARCHIVE)
    for path in sorted(results.glob("*/**/results.jsonl")):
        runs[path.parent.relative_to(results).as_posix()] = read_run(path.parent)
    lines = []
    for name in sorted(runs):
        run = runs[name]
        for kind in ("run", "summary"):
            if run[kind] is not None:
                lines.append({"run": name, "kind": kind, "data": run[kind]})
        lines += [{"run": name, "kind": "record", "data": r} for r in run["records"]]
    out = results / ARCHIVE
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
        for item in lines:
            f.write((json.dumps(item, sort_keys=True) + "\n").encode("utf-8"))
    tmp.replace(out)
    return len(runs), sum(len(r["records"]) for r in runs.values())


def unpack_runs(results: Path, roots: list[str] | None = None) -> int:
    """Write the archived runs back as folders under ``results`` (those of ``roots`` only, when
    given: names of folders of ``results``), so that ``adaptive.py --run`` skips the finished ones
    and ``probe attack --resume`` goes on from the others. A folder already on disk is left as it
    is. Returns the number of runs written."""
    written = 0
    for name, run in sorted(read_archive(results / ARCHIVE).items()):
        folder = results / name
        if (roots and name.split("/")[0] not in roots) or (folder / "results.jsonl").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for kind in ("run", "summary"):
            if run[kind] is not None:
                (folder / f"{kind}.json").write_text(json.dumps(run[kind], indent=2) + "\n")
        (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in run["records"]))
        written += 1
    return written
