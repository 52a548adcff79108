"""Argument checks that need nothing heavy: the parse path of the command line.

A command checks its arguments here before it imports ONNX, ONNX Runtime, SciPy or the
attacks, so that a bad flag answers at once. The names below mirror the libraries'
registries (kept in :mod:`probe.runs.settings`, which validates a run's settings);
``tests/test_cli_fast.py`` holds them equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.runs.settings import ATTACK_NAMES, CRITERIA, PRESET_NAMES  # noqa: F401  (the parse path's names)

#: what --plot can write: the formats every matplotlib >= 3.7 writes without extra packages
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".gif")


def attack_names(text: str) -> tuple[str, ...]:
    """``--attack``: a comma list of attacks, or ``all``."""
    if text.strip().lower() == "all":
        return ATTACK_NAMES
    names = tuple(a.strip().lower() for a in text.split(","))
    unknown = [a for a in names if a not in ATTACK_NAMES]
    if unknown:
        raise ProbeError(f"unknown attack {', '.join(unknown)}; choose from {', '.join(ATTACK_NAMES)} or all")
    return names


def attack_option_targets(texts: list[str], names: tuple[str, ...]) -> None:
    """``--attack-option ATTACK.NAME=VALUE``: the form, and an attack that this run runs
    (an option of an attack left out would be silently ignored). Names and values are the
    attacks' own business (:func:`probe.attacks.presets.build_attack`)."""
    for text in texts:
        key, sep, raw = text.partition("=")
        attack, dot, name = key.strip().partition(".")
        attack = attack.lower()
        if not sep or not dot or not name.strip() or not raw.strip():
            raise ProbeError(f"an attack option is ATTACK.NAME=VALUE (e.g. hsja.memory=0), got {text!r}")
        if attack == "confirm":
            continue
        if attack not in ATTACK_NAMES:
            raise ProbeError(f"unknown attack {attack!r} in option {text!r}; choose from {', '.join(ATTACK_NAMES)}")
        if attack not in names:
            raise ProbeError(
                f"option {text!r} is for {attack}, which this run does not attack with "
                f"(--attack {','.join(names)}): add {attack} to --attack or drop the option"
            )


def choice(flag: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ProbeError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
    return value


def plot_path(path: Path | None, flag: str = "--plot") -> Path | None:
    """A figure's file name, checked before the work that it would show: a format that
    matplotlib writes, a folder that exists, and matplotlib installed (not imported)."""
    if path is None:
        return None
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ProbeError(f"{flag} must name a {'/'.join(s[1:] for s in PLOT_SUFFIXES)} file, got {str(path)!r}")
    folder = path.expanduser().parent
    if not folder.is_dir():
        raise ProbeError(f"{flag} {str(path)!r}: no such folder {str(folder)!r}")
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ProbeError(f"{flag} needs the plot extra: pip install 'onnx-probe[plot]'")
    return path


def model_overrides(options) -> dict[str, Any]:
    """The input-convention overrides of a :class:`probe.cli.options.ModelOptions`, checked (and
    ``--batch-size``) without opening or importing anything heavy."""
    from probe.spec import InputSpec

    overrides = {
        "layout": options.layout.upper() if options.layout else None,
        "channels": options.channels.upper() if options.channels else None,
        "scale": options.scale,
        "mean": parse_floats(options.mean, "mean"),
        "std": parse_floats(options.std, "std"),
        "size": parse_size(options.size),
    }
    try:
        InputSpec().with_overrides(**overrides)
    except ProbeError as exc:  # "layout must be NCHW or NHWC, got 'X'": name the flag
        raise ProbeError(f"--{exc}") from None
    parse_batch_size(options.batch_size)
    if options.endpoint is not None:
        endpoint_url(options.endpoint, options.protocol)
    return overrides


def endpoint_url(url: str, protocol: str = "v2") -> str:
    """``--endpoint``: an http:// or https:// URL that parses (``http://[::1`` does not); with
    ``--protocol grpc`` also ``host:port``, ``grpc://`` or ``grpcs://``."""
    from urllib.parse import urlsplit

    schemes = ("http", "https", "grpc", "grpcs") if protocol == "grpc" else ("http", "https")
    kinds = "a host:port or an http(s)/grpc(s) URL" if protocol == "grpc" else "an http:// or https:// URL"
    full = url if protocol != "grpc" or "://" in url else f"grpc://{url}"
    try:
        parts = urlsplit(full)
        parts.port  # noqa: B018 (a port that is not a number in 0..65535 raises here)
    except ValueError as exc:
        raise ProbeError(f"--endpoint must be {kinds}, got {url!r} ({exc})") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ProbeError(f"--endpoint must be {kinds}, got {url!r}")
    return url


def _differences(stored: Any, given: Any, key: str = "") -> list[str]:
    """The settings (dotted keys) whose values differ between two JSON documents."""
    if isinstance(stored, dict) and isinstance(given, dict):
        return [d for k in dict.fromkeys([*stored, *given]) for d in
                _differences(stored.get(k), given.get(k), f"{key}.{k}" if key else k)]  # fmt: skip
    return [] if stored == given else [key]


def _shown(value: Any) -> str:
    if isinstance(value, list) and len(value) > 3:
        return f"{len(value)} items [{', '.join(map(repr, value[:2]))}, ...]"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse_other_settings(folder: Path, settings: dict, run_file: str = "run.json") -> None:
    """``--resume``: a ProbeError naming each setting that differs from the run in ``folder``
    (its ``run.json``), with both values; nothing when they agree or there is no run there."""
    import json

    from probe.runs.results import json_default

    path = Path(folder) / run_file
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the store's own check reports an unreadable run.json
    given = json.loads(json.dumps(settings, default=json_default))
    differ = _differences(stored, given)
    if differ:
        shown = "; ".join(
            f"{k.removeprefix('config.')} {_shown(_get(given, k))} here, {_shown(_get(stored, k))} in {run_file}"
            for k in differ[:4]
        )
        more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
        raise ProbeError(f"--resume: {folder} holds a run with other settings: {shown}{more}; use another folder")


def _get(doc: Any, key: str) -> Any:
    for part in key.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


# the eps points of robust accuracy (probe.runs.robust.default_eps holds these defaults)
EPS_HELP = (
    "Points of the robust-accuracy table, NORM:EPS,EPS (repeatable), e.g. l2:0.25,0.5,1 or linf:2/255,8/255; "
    "the first listed is the headline's. Default for CIFAR-sized inputs (up to 3x64x64): l2:0.5,0.25,1 and "
    "linf:8/255,2/255,4/255; larger (ImageNet): l2:1,0.5,2,4 and linf:4/255,1/255,2/255."
)


def parse_floats(text: str | None, name: str) -> tuple[float, ...] | None:
    """``--mean``/``--std``: 1 or 3 comma-separated numbers (one is repeated)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ProbeError(f"--{name} expects comma-separated numbers, got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ProbeError(f"--{name} needs 1 or 3 values, got {len(values)}")
    return values


def parse_batch_size(text: str | int) -> int | str:
    """``--batch-size``: ``auto`` or an integer >= 1."""
    from probe.validate import check_batch_size

    return check_batch_size(text, name="--batch-size")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--size``: HxW (or one number for a square input)."""
    if text is None:
        return None
    parts = text.lower().replace(",", "x").replace(" ", "x").split("x")
    try:
        values = tuple(int(p) for p in parts if p)
    except ValueError:
        raise ProbeError(f"--size expects HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise ProbeError(f"--size expects HxW, got {text!r}")
    return values  # type: ignore[return-value]
