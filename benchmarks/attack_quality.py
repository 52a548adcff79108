"""Attack quality on linear models: distance found / optimal distance, at a fixed budget.

For f(x) = 1[w.x + b > 0] the optimal adversarial distances are known exactly
(L2: |w.x0 + b| / ||w||_2, Linf: |w.x0 + b| / ||w||_1), so the ratio measures how
much of the budget an attack turns into progress. The information limit is the
ratio below which no attack can go with one bit per query (for the L2 attacks).

    python benchmarks/attack_quality.py                      # 3x8x8, 3x32x32, 3x224x224
    python benchmarks/attack_quality.py --shapes 3x32x32 --seeds 5 --budget 1000

Wall time is the attack's own work plus the (cheap) linear oracle: no model runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# one BLAS thread: on a shared 2-core machine, spinning BLAS threads slow every small
# matrix-vector product by 100x; the attacks' work is measured single-threaded
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.attacks import make_attack, run_attack  # noqa: E402
from tests.linear import information_limit, make_problem  # noqa: E402

CONFIGS = [("hsja", "l2"), ("hsja", "linf"), ("surfree", "l2"), ("rays", "linf")]


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["3x8x8", "3x32x32", "3x224x224"])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3, help="problems per shape (median reported)")
    ap.add_argument("--big-seeds", type=int, default=1, help="problems for shapes with d > 100000")
    args = ap.parse_args(argv)

    print(f"budget {args.budget} queries; ratio = distance / optimum (median over seeds), L2 and Linf of one point")
    header = (
        f"{'shape':>10} {'attack':>8} {'norm':>5} {'L2 ratio':>9} {'Linf ratio':>10} {'queries':>8} {'s/run':>7}  runs"
    )
    for text in args.shapes:
        shape = parse_shape(text)
        d = int(np.prod(shape))
        seeds = range(args.seeds if d <= 100_000 else args.big_seeds)
        print()
        print(f"{text}: d = {d}, information limit (L2) = {information_limit(d, args.budget):.3f}x")
        print(header)
        for name, norm in CONFIGS:
            l2, linf, queries, secs = [], [], [], []
            for s in seeds:
                p = make_problem(shape, seed=s)
                attack = make_attack(name, norm=norm)
                t0 = time.perf_counter()
                out = run_attack(attack, p.x0, p.is_adv, args.budget, np.random.default_rng(1000 + s))
                secs.append(time.perf_counter() - t0)
                assert out.queries == p.points <= args.budget
                l2.append(p.ratio(out.x_adv, "l2"))
                linf.append(p.ratio(out.x_adv, "linf"))
                queries.append(out.queries)
            runs = " ".join(f"{v:.3f}" for v in (l2 if norm == "l2" else linf))
            print(
                f"{text:>10} {name:>8} {norm:>5} {np.median(l2):9.3f} {np.median(linf):10.3f} "
                f"{int(np.median(queries)):8d} {np.median(secs):7.2f}  {runs}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
