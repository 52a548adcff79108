"""The runtime's batch size, chosen by measuring a few at start-up and cached on disk.

On CPU a larger batch is not always faster per image (EfficientNet-Lite0 ran batch 64
slower than smaller ones), so :class:`probe.runtime.Runtime` with ``batch_size="auto"``
times a few batch sizes on its own session and keeps the fastest per image (the largest
within 3% of the fastest: load noise should not pick a small one). The figure is cached
in ``$PROBE_CACHE_DIR/batch_size.json`` (default ``~/.cache/probe/``), keyed by the model
file (resolved path, size, modification time), the input size, the providers and the
thread count, so that it is measured once per model and machine setting.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

CPU_CANDIDATES = (1, 4, 16, 64)
CUDA_CANDIDATES = (64, 128, 256)
ROWS = 16  # images timed per candidate and pass (one whole batch when larger)
PASSES = 2  # passes over all candidates, in turn; each keeps its best
TOLERANCE = 0.03
CACHE_FILE = "batch_size.json"


def cache_dir() -> Path:
    """``$PROBE_CACHE_DIR``, else ``~/.cache/probe``."""
    env = os.environ.get("PROBE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "probe"


def cache_key(path: str | os.PathLike, input_shape: Sequence[int], providers: Sequence[str], threads: int) -> str:
    """Model file (resolved path, size, mtime), input size, providers and threads."""
    p = Path(path).resolve()
    st = p.stat()
    shape = "x".join(str(int(v)) for v in input_shape)
    used = f"{threads}" if threads else f"default/{os.cpu_count()}"
    return f"{p}|{st.st_size}|{st.st_mtime_ns}|{shape}|{','.join(providers)}|threads={used}"


def measure(
    run: Callable[[np.ndarray], object],
    input_shape: Sequence[int],
    candidates: Sequence[int] = CPU_CANDIDATES,
    *,
    rows: int = ROWS,
    passes: int = PASSES,
) -> dict[int, float]:
    """Images per second of ``run(x)`` for batches x (b, *input_shape) of each candidate b.

    Each candidate is run once untimed (the session sizes its buffers for each shape),
    then ``passes`` times in turn over all candidates, ``max(b, rows)`` images a time;
    the best pass counts (load from other processes only slows a pass down).
    """
    x = np.random.default_rng(0).random((max(candidates), *input_shape), dtype=np.float32)
    for b in candidates:
        run(x[:b])
    best = {b: float("inf") for b in candidates}
    for _ in range(passes):
        for b in candidates:
            calls = -(-rows // b)
            start = time.perf_counter()
            for _ in range(calls):
                run(x[:b])
            best[b] = min(best[b], (time.perf_counter() - start) / (calls * b))
    return {b: 1.0 / max(t, 1e-12) for b, t in best.items()}


def choose(curve: dict[int, float], tolerance: float = TOLERANCE) -> int:
    """The largest batch size within ``tolerance`` of the fastest per image."""
    top = max(curve.values())
    return max(b for b, ips in curve.items() if ips >= (1.0 - tolerance) * top)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def auto_batch_size(
    run: Callable[[np.ndarray], object],
    *,
    path: str | os.PathLike,
    input_shape: Sequence[int],
    providers: Sequence[str],
    threads: int = 0,
) -> tuple[int, dict[int, float], bool]:
    """(batch size, throughput curve {batch: images/s}, whether it came from the cache).

    A cache that cannot be read or written is ignored (the figure is then measured again).
    """
    key = cache_key(path, input_shape, providers, threads)
    file = cache_dir() / CACHE_FILE
    entry = _read(file).get(key)
    if isinstance(entry, dict) and isinstance(entry.get("batch_size"), int):
        curve = {int(b): float(v) for b, v in entry.get("curve", {}).items()}
        return entry["batch_size"], curve, True
    candidates = CUDA_CANDIDATES if "CUDAExecutionProvider" in providers else CPU_CANDIDATES
    curve = measure(run, input_shape, candidates)
    batch = choose(curve)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        data = _read(file)
        data[key] = {"batch_size": batch, "curve": {str(b): round(v, 2) for b, v in curve.items()}}
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, file)
    except OSError:
        pass
    return batch, curve, False
