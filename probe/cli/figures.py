"""The seed paper's figures: ``probe profile`` (Fig. 1), ``slice`` (Fig. 2), ``bsearch`` (Fig. 3).

Each writes ``--out FILE.png`` and the numbers behind it as ``FILE.json``, and opens
its model with the same model options as every other command.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.table import Table

from probe.cli.options import (
    ImageOptions,
    JsonOpt,
    ModelOptions,
    SeedOpt,
    image_options,
    model_options,
    option_group,
    require,
)
from probe.cli.checks import model_overrides as check_model_options
from probe.cli.output import emit_json, err, escape, fmt, out
from probe.validate import check_int, check_n, check_pa, check_sigma


@dataclass(frozen=True, kw_only=True)
class PairOptions:
    """Where a figure's original and adversarial images come from."""

    image: Optional[str] = None
    result: Optional[Path] = None
    index: int = 0
    adversarial: Optional[Path] = None
    attack: str = "hsja"
    budget: int = 1000


_PAIR_PARAMS = {
    "image": (
        Annotated[
            Optional[str],
            typer.Option("--image", help="The original image: a file name among the images, or an index."),
        ],
        None,
    ),
    "result": (
        Annotated[
            Optional[Path],
            typer.Option(
                "--result",
                help="A results.jsonl; its record --index gives the original, the adversarial (and the model).",
            ),
        ],
        None,
    ),
    "index": (Annotated[int, typer.Option("--index", help="Record (0-based) of --result to use (needs adv_path).")], 0),
    "adversarial": (
        Annotated[Optional[Path], typer.Option("--adversarial", help="An adversarial PNG of the --image original.")],
        None,
    ),
    "attack": (
        Annotated[
            str,
            typer.Option("--attack", help="Without --result/--adversarial: attack the plain model with this first."),
        ],
        "hsja",
    ),
    "budget": (Annotated[int, typer.Option("--budget", help="Queries of that first attack.")], 1000),
}


def pair_options() -> Callable:
    """Add the original/adversarial options to a figure command (``pair_options: PairOptions``)."""
    return option_group("pair_options", PairOptions, _PAIR_PARAMS, {})


NsOpt = Annotated[list[int], typer.Option("--n", help="Sample size n of g(sigma, n); repeat for several curves.")]


def _out_paths(path: Path) -> tuple[Path, Path]:
    require(path.suffix.lower() == ".png", f"--out must name a .png file, got {path}")
    return path, path.with_suffix(".json")


def _pair(runtime, model: str | None, images: ImageOptions, pair: PairOptions, *, seed: int):
    """Original and adversarial images from --result, --adversarial, or a quick attack on the plain model."""
    from probe.experiments import common

    image, result, index, adversarial, attack, budget = (
        pair.image,
        pair.result,
        pair.index,
        pair.adversarial,
        pair.attack,
        pair.budget,
    )
    require(result is None or adversarial is None, "give --result or --adversarial, not both")
    data = images.open(runtime, model)
    if result is not None:
        return common.pair_from_result(result, index, data)
    if adversarial is not None:
        return common.pair_from_file(adversarial, data, image)
    from probe.attacks import ATTACKS

    require(attack in ATTACKS, f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    check_int("--budget", budget, 1)
    with err.status(f"no adversarial given: attacking the plain model with {escape(attack)} ({budget} queries) ..."):
        return common.pair_from_attack(runtime, data, image=image, attack=attack, budget=budget, seed=seed)


def _open_pair(models: ModelOptions, images: ImageOptions, pair: PairOptions, *, seed: int):
    """The runtime (the --result record's model when --model is not given) and the image pair."""
    models = replace(models, model=_model_of(models.model, pair.result, pair.index))
    runtime = models.open()
    return runtime, _pair(runtime, models.model, images, pair, seed=seed)


def _model_of(model: str | None, result: Path | None, index: int) -> str | None:
    """--model, or the model named in the --result record (sweeps record it)."""
    if model is not None or result is None or not result.is_file():
        return model
    from probe.runs.results import read_results

    records = read_results(result)
    return records[index].get("model") if 0 <= index < len(records) else None


def _finish_figure(data: dict, png: Path, js: Path, plot, as_json: bool, pair=None) -> None:
    from probe.experiments.plots import write_json

    if pair is not None:
        data = {"image": pair.image, "source": pair.source, **data}
    write_json(js, data)
    plot(data, png)
    if as_json:
        emit_json(data)
    err.print(f"wrote {escape(png)} and {escape(js)}")


# --------------------------------------------------------------------------- Fig. 1


@model_options()
@image_options()
@pair_options()
def profile(
    model_options: ModelOptions,
    image_options: ImageOptions,
    pair_options: PairOptions,
    sigma: Annotated[float, typer.Option("--sigma", help="Smoothing noise std (> 0).")] = 0.05,
    n: NsOpt = [10, 50, 100],
    samples: Annotated[int, typer.Option("--samples", help="Micro-decisions per point.")] = 400,
    points: Annotated[int, typer.Option("--points", help="Points along the direction.")] = 41,
    stop: Annotated[
        Optional[float],
        typer.Option("--stop", help="Last L2 distance from x_o (default: max(2D, D + 6 sigma), D = distance of x_a)."),
    ] = None,
    start: Annotated[float, typer.Option("--start", help="First L2 distance from x_o (zoom on the boundary).")] = 0.0,
    level: Annotated[list[float], typer.Option("--level", help="P_a levels to mark (repeatable).")] = [0.5, 0.8],
    seed: SeedOpt = 0,
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write (numbers in the same stem .json).")] = Path(
        "profile.png"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Fig. 1: probability of being adversarial along the direction from an image to an adversarial one."""
    png, js = _out_paths(out_file)
    check_sigma(sigma, positive=True, name="--sigma")
    check_int("--samples", samples, 1)
    check_int("--points", points, 2)
    for k in n:
        check_n(k, name="--n")
    for v in level:
        check_pa(v, name="--level")
    check_model_options(model_options)
    from probe.experiments import plots  # after the arguments: nothing heavy on the parse path
    from probe.experiments.profile import probability_profile

    plots.pyplot()
    runtime, pair = _open_pair(model_options, image_options, pair_options, seed=seed)
    with err.status(f"profile: {points} points x {samples} micro-decisions ..."):
        data = probability_profile(
            runtime,
            pair.x0,
            pair.x_adv,
            sigma=sigma,
            ns=tuple(n),
            samples=samples,
            points=points,
            stop=stop,
            start=start,
            levels=tuple(level),
            seed=seed,
        )
    _finish_figure(data, png, js, plots.plot_profile, as_json, pair)
    if not as_json:
        table = Table(
            title=f"where g(sigma={sigma:g}, n) becomes adversarial (L2 from x_o; x_a at {data['adversarial_distance']:.3f})"
        )
        table.add_column("curve")
        for v in level:
            table.add_column(f"P_a={v:g}", justify="right")
        for name, row in data["crossings"].items():
            table.add_row(name, *(fmt(row[f"{v:g}"]) for v in level))
        out.print(table)


# --------------------------------------------------------------------------- Fig. 2


@model_options()
@image_options()
@pair_options()
def slice_cmd(
    model_options: ModelOptions,
    image_options: ImageOptions,
    pair_options: PairOptions,
    direction: Annotated[
        str, typer.Option("--direction", help="random (two random directions) or adversarial (toward x_a, and random).")
    ] = "random",
    sigma: Annotated[float, typer.Option("--sigma", help="Smoothing noise std.")] = 0.05,
    n: Annotated[int, typer.Option("--n", help="Noisy samples of the majority vote per cell.")] = 50,
    grid: Annotated[int, typer.Option("--grid", help="Cells per side (grid x grid).")] = 41,
    radius: Annotated[
        Optional[float], typer.Option("--radius", help="Half-width in L2 (default: 2 ||x_a - x_o||, or 20 sigma).")
    ] = None,
    seed: SeedOpt = 0,
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write (numbers in the same stem .json).")] = Path(
        "slice.png"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Fig. 2: a 2-D slice of input space around an image, labels without and with smoothing."""
    png, js = _out_paths(out_file)
    require(direction in ("random", "adversarial"), f"--direction must be random or adversarial, got {direction!r}")
    check_sigma(sigma, name="--sigma")
    check_n(n, name="--n")
    check_int("--grid", grid, 2)
    check_model_options(model_options)
    from probe.experiments import common, plots
    from probe.experiments.slice2d import label_slice

    plots.pyplot()
    model_options = replace(model_options, model=_model_of(model_options.model, pair_options.result, pair_options.index))
    runtime = model_options.open()
    if direction == "adversarial" or pair_options.result is not None or pair_options.adversarial is not None:
        pair = _pair(runtime, model_options.model, image_options, pair_options, seed=seed)
    else:
        data_set = image_options.open(runtime, model_options.model)
        x0, name = common.pick_original(data_set, pair_options.image)
        pair = common.Pair(x0, None, name, "none")
    with err.status(f"slice: {grid}x{grid} cells, {n} samples each ..."):
        data = label_slice(runtime, pair.x0, sigma=sigma, n=n, grid=grid, radius=radius, x_adv=pair.x_adv, seed=seed)
    _finish_figure(data, png, js, plots.plot_slice, as_json, pair)
    if not as_json:
        out.print(
            f"labels seen: {len(data['labels'])}; the original's label covers {data['plain_center_fraction']:.0%} "
            f"of the plain slice and {data['smoothed_center_fraction']:.0%} of the smoothed one; "
            f"agreement {data['agreement']:.0%}"
        )


# --------------------------------------------------------------------------- Fig. 3


@model_options()
@image_options()
@pair_options()
def bsearch(
    model_options: ModelOptions,
    image_options: ImageOptions,
    pair_options: PairOptions,
    sigma: Annotated[float, typer.Option("--sigma", help="Smoothing noise std.")] = 0.05,
    n: NsOpt = [10, 50, 100],
    repeats: Annotated[int, typer.Option("--repeats", help="Binary searches per n.")] = 100,
    steps: Annotated[int, typer.Option("--steps", help="Bisection steps (resolution 2^-steps of the segment).")] = 12,
    pa: Annotated[float, typer.Option("--pa", help="Level P_a of the oracle's criterion.")] = 0.5,
    genie_samples: Annotated[
        int,
        typer.Option("--genie-samples", help="Micro-decisions per step locating the frontier of g_sigma (0: skip)."),
    ] = 2000,
    seed: SeedOpt = 0,
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write (numbers in the same stem .json).")] = Path(
        "bsearch.png"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Fig. 3: distribution of the end point of a binary search under the smoothed oracle."""
    png, js = _out_paths(out_file)
    check_sigma(sigma, name="--sigma")
    check_int("--repeats", repeats, 1)
    check_int("--steps", steps, 1)
    for k in n:
        check_n(k, name="--n")
    check_pa(pa, name="--pa")
    check_int("--genie-samples", genie_samples, 0)
    check_model_options(model_options)
    from probe.experiments import plots
    from probe.experiments.bsearch import bsearch_distribution

    plots.pyplot()
    runtime, pair = _open_pair(model_options, image_options, pair_options, seed=seed)
    with err.status(f"bsearch: {repeats} searches x {len(n)} sample sizes ..."):
        data = bsearch_distribution(
            runtime,
            pair.x0,
            pair.x_adv,
            sigma=sigma,
            ns=tuple(n),
            repeats=repeats,
            pa=pa,
            steps=steps,
            genie_samples=genie_samples,
            seed=seed,
        )
    _finish_figure(data, png, js, plots.plot_bsearch, as_json, pair)
    if not as_json:
        table = Table(
            title=f"binary search end points (L2 to x_o; frontier of g_sigma at {fmt(data['boundary_g_sigma'])})"
        )
        for col in ("n", "mean", "median", "std", "IQR", "5%", "95%"):
            table.add_column(col, justify="right")
        for k in n:
            row = data["per_n"][str(k)]
            table.add_row(str(k), *(fmt(row[c], 4) for c in ("mean", "median", "std", "iqr", "q05", "q95")))
        out.print(table)
