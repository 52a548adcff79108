"""What a run will cost, said before it starts: a true upper bound on model inferences and an
estimate of the wall time.

Per image: the clean label (at most ``p_adv_samples`` fresh votes of n samples) and, under
smoothing, CERTIFY (n0 + N samples). Per (image, attack) job: the attack's queries (at most
``budget``, each at most n samples) and the verdict (p_adv at float32 and at 8 bits, each at
most ``p_adv_samples`` votes of n samples). Early-stopped votes and attacks that stop early
make the real count smaller, never larger.
"""

from __future__ import annotations

import time

import numpy as np


def inference_bound(*, images: int, jobs: int, n: int, budget: int, p_adv_samples: int, sigma: float,
                    certify_n0: int = 0, certify_n: int = 0) -> int:
    """The most model inferences a run of ``jobs`` (image, attack) jobs on ``images`` images can make."""
    per_image = p_adv_samples * n + (certify_n0 + certify_n if sigma > 0 and certify_n > 0 else 0)
    per_job = budget * n + 2 * p_adv_samples * n
    return images * per_image + jobs * per_job


def inference_rate(runtime, x: np.ndarray, batch: int = 64) -> float | None:
    """Inferences per second of a local model on a batch of copies of ``x`` (the second of two
    timed calls); None for a remote model (its queries may cost money) or when it fails."""
    if getattr(runtime, "record_fields", None) or hasattr(runtime, "as_sent"):
        return None
    counted = getattr(runtime, "inferences", None)
    try:
        xs = np.repeat(np.asarray(x, dtype=np.float32)[None], batch, axis=0)
        runtime.labels(xs)
        start = time.perf_counter()
        runtime.labels(xs)
        seconds = time.perf_counter() - start
    except Exception:  # an estimate is no reason to fail a run
        return None
    finally:
        if counted is not None:  # the run's count of inferences leaves these out
            runtime.inferences = counted
    return batch / seconds if seconds > 0 else None


def duration(seconds: float) -> str:
    """12 s, 4 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
