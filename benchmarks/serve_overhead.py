"""Wall time per query through ``probe serve`` on loopback against the local smoothed oracle.

    python benchmarks/serve_overhead.py                                   # EfficientNet-Lite0, n = 10
    python benchmarks/serve_overhead.py --model cifar10-cnn --rounds 20 --json results/serve_cifar.json

The workload is what the engine sends while many attacks run: each round, ``--jobs``
requests of ``--points`` points (binary-search steps and small gradient batches).
Locally: one ``SmoothedClassifier.votes`` call per round (the engine's merged batch).
Remotely: ``probe serve --sigma S --n N`` in its own process (defended, labels only),
the client sending the round's requests at once (``--concurrency`` = jobs, binary tensors),
the server merging concurrent requests into full model batches. Ratio = remote / local
seconds per query, same model, same n, same points.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from probe.remote.client import Endpoint, RemoteRuntime
from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier
from probe.zoo import resolve_model

from _common import Report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=8, help="requests per round (concurrent attacks)")
    parser.add_argument("--points", type=int, default=4, help="points per request")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    local_rt = Runtime(resolve_model(args.model), batch_size=args.batch_size)
    shape = local_rt.input_shape
    rounds = [[rng.random((args.points, *shape), dtype=np.float32) for _ in range(args.jobs)] for _ in range(args.rounds)]
    queries = args.rounds * args.jobs * args.points
    local = SmoothedClassifier(local_rt, args.sigma, args.n)
    local.votes([(rounds[0][0], rng)])  # warm-up
    start = time.perf_counter()
    for requests in rounds:
        local.votes([(points, rng) for points in requests])
    local_s = (time.perf_counter() - start) / queries
    del local, local_rt

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "probe", "serve", "--model", args.model, "--sigma", str(args.sigma), "--n", str(args.n),
         "--no-keys", "--port", str(port), "--batch-size", str(args.batch_size), "--seed", "0"],  # fmt: skip
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                remote = RemoteRuntime(Endpoint(url=url, model=Path(args.model).stem, protocol="probe",
                                                concurrency=args.jobs, points_per_request=args.points))  # fmt: skip
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        else:
            raise SystemExit("probe serve did not start")
        with ThreadPoolExecutor(args.jobs) as pool:  # one thread per attack job, as a client engine would
            list(pool.map(remote.labels, rounds[0]))  # warm-up
            start = time.perf_counter()
            for requests in rounds:
                list(pool.map(remote.labels, requests))
            remote_s = (time.perf_counter() - start) / queries
    finally:
        server.terminate()
        server.wait(30)
    report = Report(f"{'model':<20} {'n':>4} {'jobs x points':>14} {'local ms/q':>11} {'served ms/q':>12} {'ratio':>6}")
    ratio = remote_s / local_s
    report.add(
        {"model": args.model, "sigma": args.sigma, "n": args.n, "jobs": args.jobs, "points": args.points,
         "rounds": args.rounds, "queries": queries, "local_s_per_query": local_s, "served_s_per_query": remote_s,
         "ratio": ratio},  # fmt: skip
        f"{args.model:<20} {args.n:>4} {f'{args.jobs} x {args.points}':>14} {local_s * 1e3:>11.2f} "
        f"{remote_s * 1e3:>12.2f} {ratio:>6.2f}",
    )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
