"""Options shared by the commands, declared once.

* :func:`model_options` adds the model-opening group (``--model``, ``--device``,
  ``--batch-size`` and the third-party input convention ``--layout --channels --scale
  --mean --std --size --output``) to a command and hands it one :class:`ModelOptions`;
  every command that opens a model uses it, so they all take the same flags.
* :func:`image_options` adds ``--images --labels --limit`` likewise (:class:`ImageOptions`).
* The ``Annotated`` aliases below are the other options that several commands share.

Validation goes through :mod:`probe.validate`: a bad value is a ProbeError, which the
entry point prints as one ``error:`` line with exit code 2.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from probe.cli.checks import parse_batch_size, parse_floats, parse_size
from probe.errors import ProbeError

MODEL_PANEL = "Model (third-party input convention)"
IMAGE_PANEL = "Images"

SigmaOpt = Annotated[float, typer.Option("--sigma", help="Smoothing noise std in [0,1] pixel space (0 = none).")]
NOpt = Annotated[int, typer.Option("--n", help="Noisy samples per smoothed query (majority vote).")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed of every random stream (>= 0).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout, nothing else there.")]


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """The model-opening flags of a command, as given."""

    model: Optional[str] = None
    device: str = "auto"
    batch_size: str = "auto"  # "auto" or a number (parse_batch_size)
    layout: Optional[str] = None
    channels: Optional[str] = None
    scale: Optional[float] = None
    mean: Optional[str] = None
    std: Optional[str] = None
    size: Optional[str] = None
    output: Optional[str] = None
    endpoint: Optional[str] = None
    protocol: str = "v2"
    concurrency: int = 4
    api_key: Optional[str] = None
    header: Optional[list[str]] = None
    timeout: float = 30.0
    defended: bool = False
    num_classes: Optional[int] = None
    classes: Optional[Path] = None
    target: Optional[Path] = None
    max_rate: Optional[float] = None

    def open(self):
        """The :class:`probe.runtime.Runtime` these flags describe (a
        :class:`probe.remote.client.RemoteRuntime` with ``--endpoint``)."""
        from probe.cli.checks import model_overrides

        overrides = model_overrides(self)  # checked before anything heavy is imported
        from probe.runtime import Runtime
        from probe.zoo import DEFAULT_MODEL, resolve_model

        if self.endpoint or self.target or self.num_classes or self.classes or self.max_rate or ":" in (self.model or ""):
            from probe.remote.open import open_remote  # --endpoint, --target, --model module:function (#38)

            try:
                if model := open_remote(self, overrides):  # None: --model NAME:X is no module:function
                    return model
            except ValueError as exc:  # not a ProbeError: an answer that is not JSON (an HTML page) and the like
                if isinstance(exc, ProbeError):
                    raise
                json_error = type(exc).__name__ == "JSONDecodeError"
                what = "not JSON (a proxy's or a login page?)" if json_error else "unusable"
                raise ProbeError(f"{self.endpoint or self.target}: the answer is {what}: {exc}") from None
        require(not (self.defended or self.api_key or self.header), "--defended, --api-key and --header need --endpoint")
        path = resolve_model(self.model or DEFAULT_MODEL)
        batch = parse_batch_size(self.batch_size)
        return Runtime(path, output=self.output, batch_size=batch, device=self.device, overrides=overrides)

    def adjust(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``--defended``: the endpoint smooths itself, so the command's own ``--sigma``/``--n`` are off."""
        sigma = kwargs.get("sigma")
        if not self.defended or sigma is None:
            return kwargs
        require(not isinstance(sigma, list), "certify needs vote counts: a defended endpoint answers labels only")
        if sigma:
            from probe.cli.output import err

            err.print(f"--defended: the endpoint smooths; client-side --sigma {sigma} is off", highlight=False)
        return {**kwargs, "sigma": 0.0, **({"n": 1} if isinstance(kwargs.get("n"), int) else {})}


_MODEL_PARAMS: dict[str, tuple[Any, Any]] = {
    "model": (
        Annotated[
            Optional[str],
            typer.Option(
                "--model",
                "-m",
                help="ONNX file or built-in name (default: efficientnet-lite0).",
                rich_help_panel=MODEL_PANEL,
            ),
        ],
        None,
    ),
    "device": (
        Annotated[
            str, typer.Option("--device", help="auto (CUDA when it works), cpu or cuda.", rich_help_panel=MODEL_PANEL)
        ],
        "auto",
    ),
    "batch_size": (
        Annotated[
            str,
            typer.Option(
                "--batch-size",
                help="Images per model call, or auto: the fastest per image of a few, measured once per model and cached.",
                rich_help_panel=MODEL_PANEL,
            ),
        ],
        "auto",
    ),
    "layout": (
        Annotated[
            Optional[str], typer.Option("--layout", help="Input layout: NCHW or NHWC.", rich_help_panel=MODEL_PANEL)
        ],
        None,
    ),
    "channels": (
        Annotated[
            Optional[str], typer.Option("--channels", help="Channel order: RGB or BGR.", rich_help_panel=MODEL_PANEL)
        ],
        None,
    ),
    "scale": (
        Annotated[
            Optional[float],
            typer.Option("--scale", help="Input scale: 1 for [0,1], 255 for [0,255].", rich_help_panel=MODEL_PANEL),
        ],
        None,
    ),
    "mean": (
        Annotated[
            Optional[str],
            typer.Option(
                "--mean", help="Per-channel mean on that scale, e.g. 0.485,0.456,0.406.", rich_help_panel=MODEL_PANEL
            ),
        ],
        None,
    ),
    "std": (
        Annotated[
            Optional[str], typer.Option("--std", help="Per-channel std on that scale.", rich_help_panel=MODEL_PANEL)
        ],
        None,
    ),
    "size": (
        Annotated[
            Optional[str],
            typer.Option(
                "--size", help="Input size HxW for models with dynamic size, e.g. 224x224.", rich_help_panel=MODEL_PANEL
            ),
        ],
        None,
    ),
    "output": (
        Annotated[
            Optional[str],
            typer.Option(
                "--output", help="Name of the logits output when there are several.", rich_help_panel=MODEL_PANEL
            ),
        ],
        None,
    ),
}

REMOTE_PANEL = "Remote model (--endpoint)"


def _remote(flag: str, kind: Any, default: Any, text: str, **extra: Any) -> tuple[Any, Any]:
    return Annotated[kind, typer.Option(flag, help=text, rich_help_panel=REMOTE_PANEL, **extra)], default


_MODEL_PARAMS.update({
    "endpoint": _remote("--endpoint", Optional[str], None, "Query a served model at this URL instead of a file "
                        "(--model is its name there); needs pip install \"probe\\[serve]\"."),
    "protocol": _remote("--protocol", str, "v2", "v2 (Open Inference Protocol: Triton, KServe, MLServer), grpc "
                        "(the same over gRPC) or probe (probe serve)."),
    "concurrency": _remote("--concurrency", int, 4, "Requests in flight at once (each up to --batch-size points)."),
    "api_key": _remote("--api-key", Optional[str], None, "Bearer token for the endpoint.", envvar="PROBE_API_KEY"),
    "header": _remote("--header", Optional[list[str]], None, "Extra request header 'Name: value' (repeatable)."),
    "timeout": _remote("--timeout", float, 30.0, "Seconds per request (failed requests are retried)."),
    "defended": _remote("--defended", bool, False, "The endpoint smooths itself: no client-side --sigma/--n."),
    # served models beyond ONNX files and v2 tensors (#38)
    "num_classes": _remote("--num-classes", Optional[int], None, "Class count of a model answering labels only."),
    "classes": _remote("--classes", Optional[Path], None, "Class names, one per line (index = line)."),
    "target": _remote("--target", Optional[Path], None, "TOML file describing a plain HTTP image API."),
    "max_rate": _remote("--max-rate", Optional[float], None, "At most this many requests per second."),
})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ImageOptions:
    """The image-selecting flags of a command, as given."""

    images: Optional[list[str]] = None
    labels: Optional[Path] = None
    limit: Optional[int] = None
    paths: Optional[list[str]] = None

    def open(self, runtime, model: str | None):
        """The :class:`probe.data.ImageSet` (the model's bundled samples by default)."""
        from probe.cli.output import err, escape
        from probe.data import load_images
        from probe.zoo import DEFAULT_MODEL, default_images

        images = [*(self.images or []), *(self.paths or [])]  # --images and positional images alike
        if not images:
            from probe.runtime import Runtime

            if (model is None and not isinstance(runtime, Runtime)) or ":" in (model or ""):
                raise ProbeError("a --target API or a Python function has no bundled sample images: give --images")
            folder = default_images(model or DEFAULT_MODEL)
            if folder is None:
                raise ProbeError("this model has no bundled sample images: give some with --images")
            images = [str(folder)]
        loaded = load_images(
            images,
            runtime.spec.size,
            labels_csv=str(self.labels) if self.labels else None,
            limit=self.limit,
            num_classes=runtime.num_classes,
        )
        for path, why in loaded.skipped:
            err.print(f"[yellow]skipped unreadable image[/] {escape(path)}: {escape(why)}")
        return loaded


_IMAGE_PARAMS: dict[str, tuple[Any, Any]] = {
    "images": (
        Annotated[
            Optional[list[str]],
            typer.Option(
                "--images",
                "-i",
                help="Image files, folders or globs (repeatable) (default: the model's samples).",
                rich_help_panel=IMAGE_PANEL,
            ),
        ],
        None,
    ),
    "labels": (
        Annotated[
            Optional[Path], typer.Option("--labels", help="CSV of file,label rows.", rich_help_panel=IMAGE_PANEL)
        ],
        None,
    ),
    "limit": (
        Annotated[
            Optional[int],
            typer.Option("--limit", min=1, help="Use only the first N images.", rich_help_panel=IMAGE_PANEL),
        ],
        None,
    ),
    "paths": (
        Annotated[
            Optional[list[str]],
            typer.Argument(
                help="Images (files, folders, globs), as with --images: an unquoted dir/*.png works.",
                show_default=False,
            ),
        ],
        None,
    ),
}


def option_group(target: str, cls: type, params: dict[str, tuple[Any, Any]], defaults: dict[str, Any]) -> Callable:
    """A decorator adding ``params`` to a command's signature, collected into one ``cls`` argument."""
    unknown = set(defaults) - set(params)
    if unknown:
        raise TypeError(f"no such option in the group: {sorted(unknown)}")

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)  # resolved: no string annotations left
        kept = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values()
            if p.name != target
        ]
        added = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=defaults.get(name, default)
            )
            for name, (annotation, default) in params.items()
        ]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            group = cls(**{name: kwargs.pop(name) for name in params})
            kwargs = group.adjust(kwargs) if hasattr(group, "adjust") else kwargs
            return func(**kwargs, **{target: group})

        command.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
        command.__annotations__ = {
            **{k: v for k, v in hints.items() if k != target},
            **{name: annotation for name, (annotation, _) in params.items()},
        }
        del command.__wrapped__  # Typer must read the new signature, not the wrapped one
        return command

    return decorate


def model_options(**defaults: Any) -> Callable:
    """Add the model options to a command; it receives them as ``model_options: ModelOptions``."""
    return option_group("model_options", ModelOptions, _MODEL_PARAMS, defaults)


def image_options(**defaults: Any) -> Callable:
    """Add the image options to a command; it receives them as ``image_options: ImageOptions``."""
    return option_group("image_options", ImageOptions, _IMAGE_PARAMS, defaults)


def parse_numbers(text: str, name: str) -> tuple[float, ...]:
    """A comma-separated list of numbers (e.g. ``--radii``)."""
    try:
        return tuple(float(r) for r in text.split(","))
    except ValueError:
        raise ProbeError(f"{name} expects comma-separated numbers, got {text!r}") from None


def require(condition: bool, message: str) -> None:
    """A cross-option rule of a command (e.g. ``--save-images needs --out``)."""
    if not condition:
        raise ProbeError(message)


__all__ = [
    "ImageOptions",
    "JsonOpt",
    "ModelOptions",
    "NOpt",
    "SeedOpt",
    "SigmaOpt",
    "image_options",
    "model_options",
    "option_group",
    "parse_floats",
    "parse_numbers",
    "parse_size",
    "require",
]
