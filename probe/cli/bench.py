"""``probe bench``: oracle overhead and engine batching figures for a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from probe.cli.options import (
    ImageOptions,
    JsonOpt,
    ModelOptions,
    SeedOpt,
    model_options,
)
from probe.cli.output import emit_json, err, out
from probe.validate import check_int, check_n, check_real, check_sigma


@model_options()
def bench(
    model_options: ModelOptions,
    n: Annotated[
        Optional[list[int]], typer.Option("--n", help="Noisy samples per query (repeatable) (default: 10 and 100).")
    ] = None,
    sigma: Annotated[float, typer.Option("--sigma", help="Smoothing noise std (speed does not depend on it).")] = 0.25,
    threads: Annotated[int, typer.Option("--threads", help="Intra-op threads (0 = ONNX Runtime default).")] = 0,
    seconds: Annotated[float, typer.Option("--seconds", help="Measuring time per figure.")] = 10.0,
    batching: Annotated[
        bool, typer.Option("--batching/--no-batching", help="Also measure the engine's batch fill with real attacks.")
    ] = True,
    images: Annotated[int, typer.Option("--images", help="Images attacked at once for the batching figure.")] = 3,
    budget: Annotated[int, typer.Option("--budget", help="Queries per attack for the batching figure.")] = 60,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Throughput of the smoothed oracle against the bare ONNX Runtime session, and engine batch fill.

    Throughput curve: images per second of one model call at each batch size the autotune
    tries (``--batch-size auto``, the default, keeps the fastest; measured afresh here).

    Oracle overhead: model inferences per second through the smoothed oracle (noise,
    model, vote) over the bare session's on the same rows, batch size and threads
    (median of interleaved rounds), with the oracle's time split into noise, model and
    the rest. Batching: the mean batch the model sees while HSJA, SurFree and RayS
    attack several sample images at once, over the configured batch size.
    """
    ns = n or [10, 100]
    for value in ns:
        check_n(value, name="--n")
    check_sigma(sigma, positive=True, name="--sigma")
    check_real("--seconds", seconds, 0.0, None, low_closed=False)
    check_int("--images", images, 1)
    check_int("--budget", budget, 1)
    check_int("--threads", threads, 0)
    from probe.cli.checks import model_overrides

    model_overrides(model_options)
    from probe.runs.bench import engine_batching, oracle_overhead  # after the arguments: nothing heavy before

    runtime = model_options.open()
    if threads:
        runtime = _with_threads(runtime, threads, auto=runtime.batch_curve is not None)
    with err.status("throughput by batch size ..."):
        curve = batch_curve(runtime)
    data: dict = {
        "model": runtime.info.path,
        "providers": list(runtime.info.providers),
        "batch_size": runtime.batch_size,
        "batch_size_auto": runtime.batch_curve is not None,
        "batch_curve": {str(b): round(v, 2) for b, v in curve.items()},
    }
    overhead = []
    for value in ns:
        with err.status(f"oracle overhead, n={value} ..."):
            overhead.append(oracle_overhead(runtime, value, sigma=sigma, seconds=seconds, threads=threads, seed=seed))
    data["oracle_overhead"] = [r.as_dict() for r in overhead]
    result = None
    if batching:
        try:
            import probe.attacks  # noqa: F401
        except ImportError:
            err.print("[yellow]attacks not available: skipping the batching figure[/]")
        else:
            loaded = ImageOptions(limit=images).open(runtime, model_options.model)
            with err.status(f"engine batching: {len(loaded)} images x 3 attacks, budget {budget} ..."):
                result = engine_batching(runtime, loaded.x, budget=budget, sigma=sigma, n=ns[0], seed=seed)
            data["batching"] = result.as_dict()
    if as_json:
        emit_json(data)
        return
    how = "chosen by measuring (cached)" if runtime.batch_curve is not None else "as given"
    table = Table(title=f"throughput by batch size (model calls of one batch; batch size {runtime.batch_size}, {how})")
    for col in ("batch", "images/s", "vs best"):
        table.add_column(col, justify="right")
    best = max(curve.values())
    for b, ips in sorted(curve.items()):
        mark = " *" if b == runtime.batch_size else ""
        table.add_row(f"{b}{mark}", f"{ips:.1f}", f"{ips / best:.2f}")
    out.print(table)
    table = Table(title=f"oracle overhead: {Path(runtime.info.path).name} ({', '.join(data['providers'])})")
    for col in ("n", "bare inf/s", "oracle inf/s", "ratio", "noise", "model", "rest", "noise ns/value"):
        table.add_column(col, justify="right")
    for r in overhead:
        table.add_row(
            str(r.n),
            f"{r.bare_ips:.1f}",
            f"{r.oracle_ips:.1f}",
            f"{r.ratio:.3f}",
            f"{r.noise_share:.1%}",
            f"{r.model_share:.1%}",
            f"{r.rest_share:.1%}",
            "in graph" if r.in_graph else f"{r.noise_ns_per_value:.2f}",
        )
    out.print(table)
    if result is not None:
        table = Table(title=f"engine batching (sigma={sigma}, n={result.n}, batch {result.batch_size})")
        for col in ("jobs", "calls", "mean batch", "fill", "attacks", "noise", "model", "ms/q", "1-by-1 ms/q", "gain"):
            table.add_column(col, justify="right")
        table.add_row(
            f"{result.images} x {len(result.attacks)}",
            str(result.calls),
            f"{result.mean_batch:.1f}",
            f"{result.fill:.1%}",
            f"{result.attack_share:.1%}",
            f"{result.noise_share:.1%}",
            f"{result.model_share:.1%}",
            f"{result.ms_per_query:.2f}",
            f"{result.sequential_ms_per_query:.2f}",
            f"{result.speedup:.2f}x",
        )
        out.print(table)


def batch_curve(runtime) -> dict[int, float]:
    """Images per second of one model call by batch size, measured now: the autotune's
    candidates and the runtime's own batch size (:func:`probe.autotune.measure`)."""
    from probe.autotune import CPU_CANDIDATES, CUDA_CANDIDATES, measure

    candidates = CUDA_CANDIDATES if runtime.on_cuda else CPU_CANDIDATES
    sizes = [runtime.batch_size] if runtime.info.fixed_batch else sorted({*candidates, runtime.batch_size})
    try:
        return measure(runtime._run, runtime.input_shape, sizes)
    finally:
        runtime.reset_counters()


def _with_threads(runtime, threads: int, *, auto: bool):
    from probe.runtime import Runtime

    return Runtime(
        runtime.info.path,
        spec=runtime.info.spec,
        output=runtime.info.output_name,
        batch_size="auto" if auto else runtime.batch_size,
        device="cuda" if runtime.on_cuda else "cpu",
        threads=threads,
    )
