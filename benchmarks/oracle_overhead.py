"""Oracle overhead: smoothed-oracle throughput over bare ONNX Runtime throughput.

    python benchmarks/oracle_overhead.py                       # CIFAR CNN, EfficientNet-Lite0, ResNet50 (random weights)
    python benchmarks/oracle_overhead.py --model cifar10-cnn --n 10 --seconds 10

The ResNet50 is exported once with random weights (speed does not depend on them) to
$PROBE_BENCH_DIR (default /tmp/probe-bench); it needs torch. Prints a table and, with
--json FILE, writes every figure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from probe.runs.bench import oracle_overhead
from probe.zoo import resolve_model
from probe.runtime import Runtime

from _common import Report

BENCH_DIR = Path(os.environ.get("PROBE_BENCH_DIR", "/tmp/probe-bench"))


def random_resnet50(path: Path) -> Path:
    """Export a ResNet50 with random weights (speed does not depend on them); needs torch."""
    if path.is_file():
        return path
    import tempfile

    import torch

    from probe.recipes.export import export_resnet50
    from probe.recipes.resnet50 import build_resnet50

    torch.manual_seed(0)
    model = build_resnet50()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "resnet50_random.pth"
        torch.save(model.state_dict(), ckpt)
        return export_resnet50(ckpt, "torchvision", path, variant="resnet50-random")


def model_path(name: str) -> Path:
    if name == "resnet50-random":
        return random_resnet50(BENCH_DIR / "resnet50_random.onnx")
    return resolve_model(name)


def _row(name: str, n: int, r) -> str:
    """One line of the table for the result ``r`` of :func:`oracle_overhead`."""
    return (f"{name:28s} {n:4d} {r.bare_ips:10.1f} {r.oracle_ips:12.1f} {r.ratio:6.3f} "
            f"[{r.ratio_min:.3f},{r.ratio_max:.3f}] {r.noise_share:6.1%} {r.model_share:6.1%} "
            f"{r.rest_share:6.1%} {r.noise_ns_per_value:8.2f} {r.rounds}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="built-in name, file, or resnet50-random (repeatable)")
    ap.add_argument("--n", type=int, action="append", help="noisy copies per query (repeatable) [10, 100]")
    ap.add_argument("--sigma", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = ONNX Runtime default)")
    ap.add_argument("--seconds", type=float, default=30.0, help="measuring time per (model, n)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    models = args.model or ["cifar10-cnn", "efficientnet-lite0", "resnet50-random"]
    ns = args.n or [10, 100]
    report = Report(f"{'model':28s} {'n':>4s} {'bare inf/s':>10s} {'oracle inf/s':>12s} {'ratio':>6s} "
                    f"{'[min,max]':>13s} {'noise':>6s} {'model':>6s} {'rest':>6s} {'ns/value':>8s} rounds")
    for name in models:
        runtime = Runtime(model_path(name), batch_size=args.batch_size, device=args.device, threads=args.threads)
        for n in ns:
            r = oracle_overhead(runtime, n, sigma=args.sigma, seconds=args.seconds, threads=args.threads)
            report.add({"name": name, **r.as_dict()}, _row(name, n, r))
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
