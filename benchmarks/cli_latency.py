"""Command-line latency: wall time of ``python -m probe ARGS`` from start to exit, for the
answers that need no model (help, --version, an argument error), in fresh interpreters.

    python benchmarks/cli_latency.py                    # 9 runs of each, this checkout
    python benchmarks/cli_latency.py --runs 5 --root /old/checkout --root . --json out.json   # interleaved

Each command of each checkout runs ``--runs`` times, interleaved (one of each in turn, so
that a burst of load on a shared machine falls on all of them alike); the table gives the
median, the fastest and the slowest run, the median over that of ``python -c pass`` (the
interpreter's own start, the floor no command can go under), and the median CPU time (user
+ system) of the child, which a loaded machine inflates far less than the wall time. Only
commands that stop on their arguments belong here: against an older checkout that checks
them after the model opens, each still ends in seconds. Run it from anywhere: each
``--root`` (default: this checkout) is put first on PYTHONPATH in turn. The 1-minute load
average is printed too.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import Report

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "probe --version": ["-m", "probe", "--version"],
    "probe --help": ["-m", "probe", "--help"],
    "probe attack --help": ["-m", "probe", "attack", "--help"],
    "probe attack --budget -1": ["-m", "probe", "attack", "--budget", "-1"],
    "probe attack --n 2.5": ["-m", "probe", "attack", "--n", "2.5"],
    "probe predict --seed -1": ["-m", "probe", "predict", "--seed", "-1"],
}


def once(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, of the child) and exit code of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="runs of each command (default 9)")
    parser.add_argument("--root", type=Path, action="append", default=None,
                        help="a probe checkout to measure (repeatable: interleaved; default: this one)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    opts = parser.parse_args()
    roots = opts.root or [Path(__file__).resolve().parent.parent]
    envs = [{**os.environ, "COLUMNS": "100", "PYTHONPATH": os.pathsep.join([str(r), os.environ.get("PYTHONPATH", "")])}
            for r in roots]  # fmt: skip
    keys = [(i, name) for i in range(len(roots)) for name in COMMANDS]
    times: dict[tuple[int, str], list[float]] = {key: [] for key in keys}
    cpu: dict[tuple[int, str], list[float]] = {key: [] for key in keys}
    codes: dict[tuple[int, str], int] = {}
    for i, name in keys:  # warm the file cache once
        once(COMMANDS[name], envs[i])
    for _ in range(opts.runs):  # one of each in turn: a burst of load falls on all alike
        for i, name in keys:
            seconds, cpu_seconds, codes[i, name] = once(COMMANDS[name], envs[i])
            times[i, name].append(seconds)
            cpu[i, name].append(cpu_seconds)
    report = Report(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the end, {opts.runs} runs each, interleaved\n"
        + "".join(f"[{i}] {root}\n" for i, root in enumerate(roots))
        + f"{'command':<32} {'exit':>4} {'median s':>9} {'min s':>7} {'max s':>7} {'over python':>12} {'cpu s':>6}"
    )
    for i, name in keys:
        values = times[i, name]
        median, floor = statistics.median(values), statistics.median(times[i, "python -c pass"])
        cpu_median = statistics.median(cpu[i, name])
        report.add(
            {"root": str(roots[i]), "command": name, "exit": codes[i, name], "median_s": round(median, 4),
             "min_s": round(min(values), 4), "max_s": round(max(values), 4), "over_python_s": round(median - floor, 4),
             "cpu_median_s": round(cpu_median, 4), "runs": [round(v, 4) for v in values],
             "cpu_runs": [round(v, 4) for v in cpu[i, name]]},
            f"[{i}] {name:<28} {codes[i, name]:>4} {median:>9.3f} {min(values):>7.3f} {max(values):>7.3f} "
            f"{median - floor:>12.3f} {cpu_median:>6.3f}",
        )  # fmt: skip
    return report.finish(opts.json)


if __name__ == "__main__":
    sys.exit(main())
