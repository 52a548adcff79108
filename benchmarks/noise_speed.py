"""Speed of the oracle's Gaussian sampler against NumPy's standard_normal (float32).

    python benchmarks/noise_speed.py

Interleaved rounds, median ns per sample, for ImageNet-size rows (3x224x224) and
CIFAR-size rows (3x32x32), 64 rows at a time (one model batch).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from probe.smoothing.noise import NormalSampler


def main() -> int:
    rng = np.random.default_rng(0)
    sampler = NormalSampler()
    print(f"{'rows':>14s} {'standard_normal ns':>19s} {'probe.smoothing.noise ns':>15s} {'speed-up':>8s}")
    for d in (3 * 224 * 224, 3 * 32 * 32):
        out = np.empty((64, d), np.float32)
        base = rng.random((1, d), dtype=np.float32)
        index = np.zeros(64, np.intp)
        a_t, b_t, c_t = [], [], []
        for _ in range(15):
            t0 = time.perf_counter()
            rng.standard_normal(out=out, dtype=np.float32)
            t1 = time.perf_counter()
            sampler.fill(rng, out, 0.25)
            t2 = time.perf_counter()
            sampler.fill(rng, out, 0.25, base, index)
            t3 = time.perf_counter()
            a_t.append(t1 - t0)
            b_t.append(t2 - t1)
            c_t.append(t3 - t2)
        a, b, c = (statistics.median(v) / out.size * 1e9 for v in (a_t, b_t, c_t))
        print(f"{'64 x ' + str(d):>14s} {a:19.2f} {b:15.2f} {a / b:7.2f}x   (with the point added: {c:.2f} ns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
