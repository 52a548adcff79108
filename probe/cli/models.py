"""``probe models list`` and ``probe models export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from probe.cli.options import JsonOpt, require
from probe.cli.output import emit_json, err, escape, out


def models_list(as_json: JsonOpt = False) -> None:
    """Built-in models and the models exported into the model directory."""
    from probe.zoo import list_models, model_dir

    infos = list_models()
    rows = [
        {
            "name": m.name,
            "builtin": m.builtin,
            "path": str(m.path),
            "size_mb": round(m.size_bytes / 2**20, 1),
            "input": None if m.spec is None else f"{m.spec.layout} {m.spec.channels} x{m.spec.scale:g} {m.spec.size}",
            "dataset": None if m.spec is None else m.spec.dataset,
            "source": (m.provenance or {}).get("source_format") or (m.provenance or {}).get("source_package"),
        }
        for m in infos
    ]
    if as_json:
        emit_json({"model_dir": str(model_dir()), "models": rows})
        return
    table = Table(title=f"models (model directory: {model_dir()})")
    for col in ("name", "built-in", "input", "dataset", "size MB", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            "yes" if r["builtin"] else "",
            r["input"] or "-",
            r["dataset"] or "-",
            str(r["size_mb"]),
            r["source"] or "-",
        )
    out.print(table)


def models_export(
    arch: Annotated[str, typer.Argument(help="Architecture to export (resnet50).")] = "resnet50",
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Checkpoint file.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="torchvision, cohen or madry.")] = "torchvision",
    weights: Annotated[
        Optional[str], typer.Option("--weights", help="'torchvision' downloads the official weights (internet).")
    ] = None,
    variant: Annotated[Optional[str], typer.Option("--variant", help="Name of the exported model.")] = None,
    out_file: Annotated[
        Optional[Path], typer.Option("--out", help="ONNX file to write (default: MODEL_DIR/VARIANT.onnx).")
    ] = None,
) -> None:
    """Export a checkpoint to an ONNX file that probe reads (normalization folded in, dynamic batch)."""
    from probe.recipes.export import FORMATS, default_variant, export_resnet50
    from probe.zoo import model_dir

    require(arch == "resnet50", f"unknown architecture {arch!r}; available: resnet50")
    require(fmt in FORMATS, f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    require((checkpoint is None) != (weights is None), "give either --checkpoint PATH or --weights torchvision")
    require(weights in (None, "torchvision"), f"--weights accepts only 'torchvision', got {weights!r}")
    name = variant or default_variant(fmt, checkpoint)
    target = out_file or (model_dir() / f"{name}.onnx")
    with err.status(f"exporting {escape(name)} ..."):
        path = export_resnet50(checkpoint, fmt, target, variant=name, weights=weights)
    out.print(
        f"exported [bold]{escape(name)}[/] to {escape(path)}  (use it with --model {escape(name if out_file is None else path)})"
    )
