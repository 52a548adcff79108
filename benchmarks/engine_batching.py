"""Engine batching: how full are the model's batches while many attacks run at once?

    python benchmarks/engine_batching.py                              # CIFAR CNN, 20 images x (HSJA, SurFree, RayS)
    python benchmarks/engine_batching.py --model efficientnet-lite0 --images 3 --budget 200

For each (sigma, n) setting: every attack on every image through one Engine (Runtime
instrumented: session calls and rows), then the same jobs one after another (one
Engine run per job). Reports the mean batch over the configured batch size and the
wall time per query of both, and their ratio (> 1: the engine is faster).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from probe.runs.bench import engine_batching
from probe.data import load_images
from probe.zoo import default_images, resolve_model
from probe.runtime import Runtime

from _common import Report


def _row(model: str, batch: int, sigma: float, images: int, r) -> str:
    """One line of the table for the result ``r`` of :func:`engine_batching`."""
    rest = r.oracle_share - r.noise_share - r.model_share + r.engine_share
    seq = (f"{r.sequential_ms_per_query:9.3f} {r.sequential_fill:8.1%} {r.speedup:7.2f}x "
           + ",".join(f"{v:.2f}" for v in r.speedups) if r.speedup else "")
    return (f"{model:20s} {batch:5d} {sigma:5.2f} {r.n:3d} {images * len(r.attacks):5d} {r.calls:6d} "
            f"{r.mean_batch:10.1f} {r.fill:6.1%} {r.attack_share:7.1%} {r.noise_share:6.1%} "
            f"{r.model_share:6.1%} {rest:6.1%} {r.ms_per_query:9.3f} {seq}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cifar10-cnn")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--batch-size", type=int, action="append", help="repeatable [64]")
    ap.add_argument("--setting", action="append", help="sigma:n, repeatable [0:1, 0.05:10]")
    ap.add_argument("--attacks", default="hsja,surfree,rays")
    ap.add_argument("--no-sequential", action="store_true", help="skip the one-after-another run")
    ap.add_argument("--repeats", type=int, default=3, help="engine / one-by-one alternations (median ratio)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    settings = [tuple(float(v) for v in s.split(":")) for s in (args.setting or ["0:1", "0.05:10"])]
    report = Report(f"{'model':20s} {'batch':>5s} {'sigma':>5s} {'n':>3s} {'jobs':>5s} {'calls':>6s} "
                    f"{'mean batch':>10s} {'fill':>6s} {'attacks':>7s} {'noise':>6s} {'model':>6s} {'rest':>6s} "
                    f"{'ms/query':>9s} {'seq ms/q':>9s} {'seq fill':>8s} {'speed-up':>8s} per repeat")
    for batch in args.batch_size or [64]:
        runtime = Runtime(resolve_model(args.model), batch_size=batch)
        images = load_images([str(default_images(args.model))], runtime.spec.size, labels_csv=None, limit=args.images)
        for sigma, n in settings:
            r = engine_batching(runtime, images.x, attacks=args.attacks.split(","), budget=args.budget,
                                sigma=sigma, n=int(n), sequential=not args.no_sequential, repeats=args.repeats)
            report.add({**r.as_dict(), "load": os.getloadavg()}, _row(args.model, batch, sigma, len(images), r))
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
