"""Attacks that know the defense is random (#13): every attack, adaptive and not, on the smoothed model.

    # the grid (sigma 0.05 and 0.15, n = 1, 5, 10, 1,000 and 2,000 queries, 20 images): hours on a CPU
    python benchmarks/adaptive.py --run --out results/adaptive
    # what this machine measured (the cells it ran, in priority order, resumable)
    python benchmarks/adaptive.py --run --out results/adaptive --images 8 \\
        --cells 0.05:10:1000 0.05:1:1000 0.15:10:1000 0.15:1:1000
    # table and PNG from the records, the bare model's figures and the white-box reference
    # (smoothed_whitebox.py) beside them
    python benchmarks/adaptive.py --summarize results/adaptive --bare results/strength_effnet.jsonl \\
        results/strength_effnet_adaptive.jsonl --whitebox results/whitebox.jsonl \\
        --table results/adaptive.md --png results/adaptive.png
    # images 8-19 apart (--first 8 --images 12), then merged with the first 8 (a record
    # depends on its image, not on its position)
    python benchmarks/adaptive.py --run --out results/adaptive_images08-19 --first 8 --images 12 \\
        --cells 0.05:10:1000 --config psj rays
    python benchmarks/adaptive.py --summarize results/adaptive results/adaptive_images08-19 \\
        --cells 0.05:10:1000 --config psj rays --bare results/strength_effnet.jsonl \\
        results/strength_effnet_adaptive.jsonl --table results/adaptive20.md
    # image by image: on how many images one configuration is closer than another
    python benchmarks/adaptive.py --summarize results/adaptive results/adaptive_images08-19 \\
        --cells 0.05:10:1000 0.15:10:1000 --versus cgba+bayes cgba
    # on a lent GPU whose ONNX Runtime has no CUDA provider: the model in PyTorch
    # (torch_runtime.py), 11 runs at once, stopped (resumably) after 420 s; adaptive_gpu.sh
    # does this for images 8-19 and the 2,000-query cells of images 0-7
    python benchmarks/adaptive.py --run --out results/adaptive_images08-19 --first 8 --images 12 \\
        --torch-device cuda --jobs 11 --deadline 420

Each cell (sigma, n, budget) runs ``probe attack`` once per configuration, as a user runs
it (preset ``probe``, the confirmation phase, criterion ``label``, p_adv by eq. (4) on up
to 100 fresh evaluations, votes that stop when decided, no CERTIFY), into
``OUT/MODEL/s{sigma}_n{n}_q{budget}/{config}/``, with ``--resume``: a run cut short goes
on where it stopped. The configurations:

- the paper's attacks: ``hsja``, ``surfree``, ``rays``, and ``cgba`` (curvature-aware,
  not noise-aware);
- the adaptive ones (they model the noise): ``psj`` (PopSkipJump-style HSJA),
  ``rays+bayes`` and ``surfree+bayes`` (their boundary searches by the Bayesian bisection),
  ``cgba+bayes`` (CGBA's noise-aware mode: its line and arc searches Bayesian, its probes
  across the measured band),
  and ``psj+f4``, PSJ with its former default ``max_noise_factor=4`` (up to 4x the probes
  under noise; 2 since 2026-12-03: on EfficientNet-Lite0 the iterations pay more than the
  probes). The ``psj+f4`` folders were run as ``psj`` before the change (their ``run.json``
  shows no option).

The run folders are not kept in git: ``pack_runs.py`` packs them into ``results/runs.jsonl.gz``,
which ``--summarize`` reads for a root (or a run) that is not on disk; ``pack_runs.py --unpack``
writes them back, so that ``--run`` skips the finished runs and resumes the others.

A record counts when p_adv >= P_a = 0.5; the figure is the median L2 of the successful
records, beside the successes. The bare model's figures come from
``attack_strength.py`` rows (``--bare``): the closest adversarial each attack had been
answered by 1,000 and 2,000 queries, on the same images.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import run_folders

CONFIGS: dict[str, tuple[str, list[str]]] = {
    "hsja": ("hsja", []),
    "surfree": ("surfree", []),
    "rays": ("rays", []),
    "cgba": ("cgba", []),
    "psj": ("psj", []),
    "rays+bayes": ("rays", ["rays.bisection=bayes"]),
    "surfree+bayes": ("surfree", ["surfree.bisection=bayes"]),
    # CGBA noise aware (2026-12-04): noise-aware searches, probes across the measured band
    "cgba+bayes": ("cgba", ["cgba.bisection=bayes"]),
    # PSJ's former default (until 2026-12-03): up to 4x the probes under noise
    "psj+f4": ("psj", ["psj.max_noise_factor=4"]),
}
ADAPTIVE = ("psj", "rays+bayes", "surfree+bayes", "psj+f4", "cgba+bayes")
# the grid, in the order this machine runs it: the goal's cell first
DEFAULT_CELLS = [
    (0.05, 10, 1000), (0.05, 1, 1000), (0.05, 5, 1000), (0.15, 10, 1000), (0.15, 1, 1000), (0.15, 5, 1000),
    (0.05, 10, 2000), (0.05, 1, 2000), (0.05, 5, 2000), (0.15, 10, 2000), (0.15, 1, 2000), (0.15, 5, 2000),
]  # fmt: skip


def cell_dir(out: Path, model: str, sigma: float, n: int, budget: int, config: str) -> Path:
    return out / model / f"s{sigma:g}_n{n}_q{budget}" / config


def parse_cell(text: str) -> tuple[float, int, int]:
    sigma, n, budget = text.split(":")
    return float(sigma), int(n), int(budget)


def finished(folder: Path, images: int) -> bool:
    """Whether the run in ``folder`` ended on its own with every one of ``images`` images recorded:
    nothing to resume (its ``run.json`` may name options that its configuration now leaves to
    the defaults, or the reverse: ``psj+f4``)."""
    path = folder / "summary.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text())
    return not summary.get("interrupted") and summary.get("results") == summary.get("images") == images


def image_args(model: str, first: int, count: int) -> list[str]:
    """``probe attack``'s image arguments: the first ``count`` bundled images, or with ``first``
    the ``count`` from the ``first``-th on (sorted by name, as ``probe attack`` reads a folder),
    with the folder's labels."""
    if first == 0:
        return ["--limit", str(count)]
    from probe.zoo import default_images

    folder = default_images(model)
    if folder is None:
        raise SystemExit(f"adaptive.py: {model} has no bundled images to start at --first {first}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[first:first + count]
    if len(files) < count:
        raise SystemExit(f"adaptive.py: {folder} has {len(files) + first} images, not {first + count}")
    return ["--images", *map(str, files), "--labels", str(folder / "labels.csv")]


def run(args) -> int:
    """Every (cell, configuration) not finished, in order, ``--jobs`` ``probe attack`` processes at once;
    past ``--deadline`` seconds the running ones are asked to stop (SIGTERM: each keeps its finished
    records, and ``--resume`` goes on from them) and no more are started."""
    cells = [parse_cell(c) for c in args.cells] if args.cells else DEFAULT_CELLS
    images = image_args(args.model, args.first, args.images)
    launcher, env = [sys.executable, "-m", "probe"], dict(os.environ)
    if args.torch_device:  # the model in PyTorch (torch_runtime.py): a GPU without ONNX Runtime's CUDA provider
        launcher = [sys.executable, str(Path(__file__).with_name("torch_runtime.py"))]
        env["PROBE_TORCH_DEVICE"] = args.torch_device
    if args.jobs > 1:  # one core a run
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    logs = args.out / "_logs"
    todo = []
    for sigma, n, budget in cells:
        for config in args.config or list(CONFIGS):
            attack, options = CONFIGS[config]
            folder = cell_dir(args.out, args.model, sigma, n, budget, config)
            if finished(folder, args.images):
                print(f"== sigma {sigma:g} n {n} budget {budget} {config}: done", flush=True)
                continue
            cmd = [*launcher, "attack", "--model", args.model, "--attack", attack,
                   "--sigma", str(sigma), "--n", str(n), "--budget", str(budget), *images,
                   "--certify-n", "0", "--seed", str(args.seed), "--device", args.device, "--out", str(folder)]
            cmd += [a for o in options for a in ("-o", o)]
            if (folder / "results.jsonl").exists():
                cmd.append("--resume")
            todo.append((f"sigma {sigma:g} n {n} budget {budget} {config}", cmd))
    started = time.monotonic()
    deadline = started + args.deadline if args.deadline else math.inf
    running: list[tuple[str, subprocess.Popen, object]] = []
    failed, stopped = 0, False
    while todo or running:
        while todo and len(running) < args.jobs and time.monotonic() < deadline:
            name, cmd = todo.pop(0)
            print(f"== {name}", flush=True)
            log = None
            if args.jobs > 1:  # progress bars of several runs would interleave: each run's output to its log
                logs.mkdir(parents=True, exist_ok=True)
                log = open(logs / (name.replace(" ", "_") + ".log"), "w")
            running.append((name, subprocess.Popen(cmd, env=env, stdout=log, stderr=log), log))
        if time.monotonic() >= deadline and not stopped:
            stopped, todo = True, []
            for _, proc, _ in running:  # once: a second SIGTERM would stop it at once, not at a checkpoint
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        for name, proc, log in list(running):
            if proc.poll() is not None:
                running.remove((name, proc, log))
                if log is not None:
                    log.close()
                print(f"== {name}: exit {proc.returncode} ({time.monotonic() - started:.0f} s)", flush=True)
                failed += proc.returncode != 0
                if proc.returncode and args.jobs == 1 and not args.deadline:
                    return proc.returncode
    return 1 if failed else 0


def records(root: Path) -> list[dict]:
    """The attacked images' records of the runs under ``root`` (an ``--out``: MODEL/CELL/CONFIG/), each
    with its ``config``; from ``results/runs.jsonl.gz`` where the folders are not on disk (pack_runs.py)."""
    rows = []
    for name, run in sorted(run_folders(root).items()):
        parts = name.split("/")
        if len(parts) != 3 or not fnmatch.fnmatchcase(parts[1], "s*_n*_q*"):
            continue
        rows += [dict(r, config=parts[2]) for r in run["records"] if r.get("skipped") is None]
    return rows


def bare_medians(paths: list[Path], images: set[str], marks=("1000", "2000")) -> dict[str, dict[str, float]]:
    """Median L2 by configuration (``hsja``, ...) at each mark, on ``images`` only."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for p in paths:
        for line in p.read_text().splitlines():
            r = json.loads(line) if line.strip() else None
            if r and r["sigma"] == 0 and r["image"] in images and r["config"] != "art":
                name = r["config"].split(":")[0] if r["config"].endswith(":probe") else r["config"]
                found.setdefault(name, {})[r["image"]] = r["l2_at"]
    return {c: {m: statistics.median(v[m] for v in per.values()) for m in marks} for c, per in found.items()}


def whitebox_l2(paths: list[Path]) -> dict[tuple[float, int], dict[str, float]]:
    """``smoothed_whitebox.py`` rows: (sigma, n) -> image -> the white-box L2 (sigma 0: the bare model)."""
    found: dict[tuple[float, int], dict[str, float]] = {}
    for p in paths:
        for line in p.read_text().splitlines():
            r = json.loads(line) if line.strip() else None
            if r and r.get("l2") is not None:
                found.setdefault((float(r["sigma"]), 1 if r["sigma"] == 0 else int(r["n"])), {})[r["image"]] = r["l2"]
    return found


def summarize(roots: list[Path], bare: list[Path], table: Path | None, png: Path | None,
              whitebox: list[Path] | None = None, only_cells: list[str] | None = None,
              only_configs: list[str] | None = None, versus: list[str] | None = None,
              budgets: list[int] | None = None) -> int:
    """The tables (and the PNG) of the records under ``roots``, merged (records are keyed by image,
    never by position: a cell run on images 0-7 in one root and 8-19 in another is the cell on 0-19; a
    later root's record replaces an earlier one's for the same configuration, cell and image, as a rerun),
    restricted to ``only_cells`` (SIGMA:N:BUDGET) and ``only_configs`` when given."""
    wanted = {parse_cell(c) for c in only_cells} if only_cells else None
    keyed = {(r["config"], r["sigma"], r["n"], r["budget"], r["image"]): r for root in roots for r in records(root)
             if (wanted is None or (r["sigma"], r["n"], r["budget"]) in wanted)
             and (not only_configs or r["config"] in only_configs)}
    rows = list(keyed.values())
    if not rows:
        print(f"no records under {', '.join(map(str, roots))}", file=sys.stderr)
        return 1
    cells = sorted({(r["sigma"], r["n"], r["budget"]) for r in rows})
    configs = [c for c in CONFIGS if any(r["config"] == c for r in rows)]
    attacked = {cell: {r["image"] for r in rows if (r["sigma"], r["n"], r["budget"]) == cell} for cell in cells}
    # a configuration that ran on part of a cell's images only (merged roots): in the first table, not compared or plotted
    whole = {(c, *cell) for cell in cells for c in configs
             if {r["image"] for r in rows if r["config"] == c and (r["sigma"], r["n"], r["budget"]) == cell}
             == attacked[cell]}
    white = whitebox_l2(whitebox or [])
    med: dict[tuple, float] = {}
    names = [f"{c}{' *' if c in ADAPTIVE else ''}" for c in configs]
    lines = [("Median L2 of the successes (p_adv >= 0.5, eq. 4), successes / attacked images (the first images "
             "the smoothed model gets right; fewer than the cell's when a configuration ran on part of them, "
             "which the second table leaves out); * adaptive (models the noise); white-box: PGD with the model's "
             "gradients, a reference, no attack of probe's\n"),
             "| cell | " + " | ".join(names) + (" | white-box |" if white else " |"),
             "|---|" + "---|" * (len(configs) + bool(white))]  # fmt: skip
    for cell in cells:
        out = []
        for c in configs:
            sel = [r for r in rows if r["config"] == c and (r["sigma"], r["n"], r["budget"]) == cell]
            ok = sorted(r["l2"] for r in sel if r["success"])
            if sel:
                med[(c, *cell)] = statistics.median(ok) if ok else math.inf
            out.append(f"{med[(c, *cell)]:.2f} ({len(ok)}/{len(sel)})" if sel else "")
        if white:
            got = [v for k, v in white.get(cell[:2], {}).items() if k in attacked[cell]]
            out.append(f"{statistics.median(got):.2f} ({len(got)})" if got else "")
        lines.append(f"| sigma {cell[0]:g}, n {cell[1]}, {cell[2]} q | " + " | ".join(out) + " |")
    if bare:
        lines += ["", ("The best attack under smoothing against the best on the bare model (no smoothing), on the "
                  "same images and budget (the goal, for the adaptive ones at sigma 0.05, n 10: <= 2x); "
                  "white-box: the same, by gradients\n"),
                  ("| cell | images | best adaptive | best of all | bare best | adaptive / bare | white-box smoothed "
                  "/ bare |"), "|---|---|---|---|---|---|---|"]  # fmt: skip
        for cell in cells:
            q = str(cell[2])
            bare_med = bare_medians(bare, attacked[cell])
            if not bare_med or q not in next(iter(bare_med.values())):
                continue
            compared = [c for c in configs if (c, *cell) in med and (c, *cell) in whole]
            if not compared:
                continue
            best = min((med[(c, *cell)], c) for c in compared)
            adaptive = min(((med[(c, *cell)], c) for c in compared if c in ADAPTIVE), default=(math.inf, "none"))
            b, b_name = min((v[q], c) for c, v in bare_med.items())
            ws, wb = white.get(cell[:2], {}), white.get((0.0, 1), {})
            both = [i for i in attacked[cell] if i in ws and i in wb]
            wr = ""
            if both:
                smoothed, plain = (statistics.median(w[i] for i in both) for w in (ws, wb))
                wr = f"{smoothed:.2f} / {plain:.2f} = {smoothed / plain:.1f}x"
            lines.append(f"| sigma {cell[0]:g}, n {cell[1]}, {q} q | {len(attacked[cell])} | {adaptive[1]} "
                         f"{adaptive[0]:.2f} | {best[1]} {best[0]:.2f} | {b_name} {b:.2f} | "
                         f"{adaptive[0] / b:.2f}x | {wr} |")  # fmt: skip
    if versus:
        lines += ["", head_to_head(rows, cells, *versus)]
    if budgets:
        lines += ["", across_budgets(rows, cells, configs, *budgets)]
    text = "\n".join(lines)
    print(text)
    if table:
        table.write_text(text + "\n")
    if png:
        shown = {k: v for k, v in med.items() if k in whole}
        plot(shown, cells, configs, lambda images: bare_medians(bare, images) if bare else {}, attacked, png)
    return 0


def record_l2(rows: list[dict], config: str, cell: tuple) -> dict[str, float]:
    """Image -> the L2 of ``config``'s record in ``cell`` (a failure: infinitely far)."""
    return {r["image"]: (r["l2"] if r["success"] else math.inf) for r in rows
            if r["config"] == config and (r["sigma"], r["n"], r["budget"]) == cell}


def closer(a: dict[str, float], b: dict[str, float]) -> tuple[int, int, int]:
    """On the images both have: how many, on how many ``a`` is closer, on how many ``b`` (ties: neither)."""
    both = set(a) & set(b)
    return len(both), sum(a[i] < b[i] for i in both), sum(a[i] > b[i] for i in both)


def head_to_head(rows: list[dict], cells: list[tuple], a: str, b: str) -> str:
    """Image by image, in each cell: on how many of the images both ran is ``a`` closer than ``b``
    (a failure is infinitely far; ties count for neither). Medians hide this when the spread is wide."""
    lines = [f"Image by image: {a} closer than {b} (L2 of the record; a failure is infinitely far)\n",
             f"| cell | images | {a} closer | {b} closer |", "|---|---|---|---|"]
    for cell in cells:
        images, wins, losses = closer(record_l2(rows, a, cell), record_l2(rows, b, cell))
        if images:
            lines.append(f"| sigma {cell[0]:g}, n {cell[1]}, {cell[2]} q | {images} | {wins} | {losses} |")
    return "\n".join(lines)


def across_budgets(rows: list[dict], cells: list[tuple], configs: list[str], low: int, high: int) -> str:
    """Image by image, each configuration in each (sigma, n): on how many images its record at ``high``
    queries is closer than its record at ``low`` (a failure is infinitely far; ties count for neither)."""
    lines = [f"Image by image: the record at {high} queries closer than at {low} (a failure is infinitely far)\n",
             f"| sigma, n | configuration | images | closer at {high} | closer at {low} |", "|---|---|---|---|---|"]
    for sigma, n in sorted({cell[:2] for cell in cells}):
        for c in configs:
            images, wins, losses = closer(record_l2(rows, c, (sigma, n, high)), record_l2(rows, c, (sigma, n, low)))
            if images:
                lines.append(f"| sigma {sigma:g}, n {n} | {c} | {images} | {wins} | {losses} |")
    return "\n".join(lines)


def plot(med, cells, configs, bare_med_of, attacked, png: Path) -> None:
    """Query-vs-distortion: one panel per (sigma, n), rows by sigma, columns by n, from ``med`` (only the
    configurations that ran on all of a cell's images); the dashed line is the best attack on the bare
    model, on that panel's images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sigmas, ns = sorted({s for s, _, _ in cells}), sorted({n for _, n, _ in cells})
    fig, axes = plt.subplots(len(sigmas), len(ns), figsize=(4.5 * len(ns), 3.6 * len(sigmas)), squeeze=False,
                             sharey=True)  # fmt: skip
    for row, sigma in enumerate(sigmas):
        for col, n in enumerate(ns):
            ax = axes[row][col]
            budgets = sorted(q for s, k, q in cells if (s, k) == (sigma, n))
            if not budgets:
                ax.set_visible(False)
                continue
            for c in configs:
                pts = [(q, med[(c, sigma, n, q)]) for q in budgets if math.isfinite(med.get((c, sigma, n, q), math.inf))]
                if pts:
                    ax.plot(*zip(*pts), marker="o", linestyle="-" if c in ADAPTIVE else ":", label=c,
                            color=f"C{list(CONFIGS).index(c)}")  # fmt: skip
            images = set().union(*(attacked[(sigma, n, q)] for q in budgets))
            bare_med = bare_med_of(images)
            if bare_med:
                marks = ("1000", "2000")
                ax.plot([int(m) for m in marks], [min(v[m] for v in bare_med.values()) for m in marks],
                        color="black", linestyle="--", label="best, bare model")  # fmt: skip
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks([1000, 2000], ["1000", "2000"])
            ax.set_xlabel("queries")
            ax.set_title(f"sigma {sigma:g}, n {n} ({len(images)} images)")
            ax.grid(True, which="both", alpha=0.3)
        axes[row][0].set_ylabel("median L2 of successes")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(png, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true")
    ap.add_argument("--summarize", type=Path, nargs="+",
                    help="the --out folders of runs (their records merged; a later folder's record replaces an "
                    "earlier one's)")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--images", type=int, default=20, help="how many bundled images (default: 20)")
    ap.add_argument("--first", type=int, default=0, help="the index of the first bundled image (default: 0)")
    ap.add_argument("--cells", nargs="+", help="SIGMA:N:BUDGET, in the order to run (default: the issue's grid); "
                    "with --summarize, the cells to summarize")
    ap.add_argument("--config", nargs="+", action="extend", choices=list(CONFIGS), help="configurations (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--torch-device", help="run the model in PyTorch on this device (torch_runtime.py), e.g. cuda")
    ap.add_argument("--jobs", type=int, default=1, help="probe attack processes at once (default: 1)")
    ap.add_argument("--deadline", type=float, help="seconds after which the runs are stopped (resumable)")
    ap.add_argument("--out", type=Path, default=Path("results/adaptive"))
    ap.add_argument("--bare", type=Path, nargs="*", default=[], help="attack_strength.py rows without smoothing")
    ap.add_argument("--whitebox", type=Path, nargs="*", default=[], help="smoothed_whitebox.py rows")
    ap.add_argument("--table", type=Path)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--versus", nargs=2, choices=list(CONFIGS), metavar=("A", "B"),
                    help="with --summarize: image by image, on how many images A is closer than B")
    ap.add_argument("--budgets", nargs=2, type=int, metavar=("LOW", "HIGH"),
                    help="with --summarize: image by image, on how many images each configuration's record at HIGH "
                    "queries is closer than its record at LOW")
    args = ap.parse_args(argv)
    if args.jobs < 1 or (args.deadline is not None and args.deadline <= 0):
        ap.error("--jobs must be >= 1 and --deadline > 0")
    if args.summarize:
        return summarize(args.summarize, args.bare, args.table, args.png, args.whitebox, args.cells, args.config,
                         args.versus, args.budgets)
    if args.run:
        return run(args)
    ap.error("give --run or --summarize")
    return 2


if __name__ == "__main__":
    sys.exit(main())
