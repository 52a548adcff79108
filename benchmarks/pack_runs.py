"""Pack the raw run folders of ``results/`` into ``results/runs.jsonl.gz`` (kept in git; the folders are not).

    python benchmarks/pack_runs.py [RESULTS]                  # pack (default RESULTS: benchmarks/results)
    python benchmarks/pack_runs.py --unpack [RESULTS] [ROOT ...]   # the archived runs back as folders

Every folder that holds a ``results.jsonl`` (a ``probe attack --out``: ``adaptive.py``'s cells,
``results/psj_tuning``'s runs) goes into the archive: its records, ``run.json`` and ``summary.json``,
one JSON line each (``{"run": FOLDER, "kind": "record" | "run" | "summary", "data": ...}``). Runs
archived before whose folder is gone are kept; a folder on disk replaces its archived copy. The
scripts that read run folders (``adaptive.py --summarize``, ``smoothed_whitebox.py --adaptive``) read
the archive in their place, so every table of README.md regenerates from it with its own command.
Run it after a benchmark that writes run folders, before committing. ``--unpack`` writes the
archived runs back (the ``ROOT`` folders only, when given; folders on disk are left alone), so that
``adaptive.py --run`` skips what is finished and resumes what is not.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ARCHIVE, pack_runs, unpack_runs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    unpack = "--unpack" in argv
    if unpack:
        argv.remove("--unpack")
    results = Path(argv[0]) if argv else Path(__file__).resolve().parent / "results"
    if unpack:
        print(f"{results}: {unpack_runs(results, argv[1:] or None)} runs unpacked from {ARCHIVE}")
        return 0
    runs, records = pack_runs(results)
    size = (results / ARCHIVE).stat().st_size
    print(f"{results / ARCHIVE}: {runs} runs, {records} records, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
