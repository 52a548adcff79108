"""How far the boundary is along a random start's blend, image by image (issue #37 item 2): the
spread over ``--draws`` random starts of HSJA's kind (uniform images) and SurFree's (x0 + 0.5
N(0, I)), each bisected along ``x0 + a (x - x0)`` to 0.1%. A wide spread means the start's
direction decides which stretch of the boundary the walk begins on.

    python benchmarks/start_spread.py --model cifar10-cnn --split tune --draws 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.attacks.base import Tracker, drive  # noqa: E402
from probe.attacks.search import bisect, blend, noise_init  # noqa: E402


def main(argv=None) -> int:
    from probe.load import load_model, load_samples

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="cifar10-cnn")
    ap.add_argument("--split", choices=["tune", "report"], default="tune")
    ap.add_argument("--draws", type=int, default=20)
    args = ap.parse_args(argv)
    runtime = load_model(args.model)
    samples = load_samples(args.model, limit=20)
    print("| image | kind | first | median | min | first / min | draws to an adversarial (median, max) |")
    print("|---|---|---|---|---|---|---|")
    for index in range(0, 10) if args.split == "tune" else range(10, 20):
        x0 = samples.x[index]
        label = int(runtime.labels(x0[None])[0])
        if samples.labels is not None and int(samples.labels[index]) != label:
            continue
        def oracle(points, label=label):
            return runtime.labels(np.asarray(points, np.float32)) != label
        for kind, scale in (("uniform", 0.5), ("gaussian", 0.5)):
            rng = np.random.default_rng(index)
            dists, tries = [], []
            for _ in range(args.draws):
                tracker = Tracker(x0, 10**6, "l2")
                x = drive(noise_init(tracker, x0, rng, kind=kind, scale=scale, max_tries=100), oracle)
                tries.append(tracker.spent)
                if x is None:
                    continue
                _, x_b = drive(bisect(tracker, blend(x0, x), 0.0, 1.0, tol=0.0, x_hi=x, rtol=1e-3), oracle)
                dists.append(float(np.linalg.norm((x_b - x0).ravel())))
            if dists:
                print(f"| {samples.ids[index]} | {kind} | {dists[0]:.3f} | {statistics.median(dists):.3f} "
                      f"| {min(dists):.3f} | {dists[0] / min(dists):.2f} "
                      f"| {statistics.median(tries):.0f}, {max(tries)} |", flush=True)
            else:
                print(f"| {samples.ids[index]} | {kind} | none in {args.draws} x 100 draws |||||", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
