"""The eps points of robust accuracy: defaults per input size, and ``--eps`` parsed.

Light on purpose (no NumPy): the command line checks ``--eps`` before anything heavy loads.
"""

from __future__ import annotations

import math
from fractions import Fraction

from probe.errors import ProbeError

NORMS = ("l2", "linf")
NORM_NAMES = {"l2": "L2", "linf": "Linf"}
SMALL_INPUT = 3 * 64 * 64  # CIFAR-sized inputs and below
DEFAULT_EPS = {  # (table points, headline point) per input size
    "small": {"l2": ([0.25, 0.5, 1.0], 0.5), "linf": ([2 / 255, 4 / 255, 8 / 255], 8 / 255)},
    "large": {"l2": ([0.5, 1.0, 2.0, 4.0], 1.0), "linf": ([1 / 255, 2 / 255, 4 / 255], 4 / 255)},
}
# --------------------------------------------------------------------------- eps points


def default_eps(dimension: int | None) -> dict[str, list[float]]:
    """The table's eps per norm for an input of ``dimension`` values (C x H x W); headline first."""
    size = "small" if dimension is None or dimension <= SMALL_INPUT else "large"
    out = {}
    for norm, (points, head) in DEFAULT_EPS[size].items():
        out[norm] = [head, *[p for p in points if p != head]]
    return out


def parse_eps(specs: list[str] | None, dimension: int | None = None) -> dict[str, list[float]]:
    """``["l2:0.25,0.5", "linf:8/255"]`` -> {"l2": [0.25, 0.5], "linf": [8/255]}, in the order given
    (the first is the headline's); a norm not given keeps its defaults. ProbeError on bad text."""
    eps = default_eps(dimension)
    given: dict[str, list[float]] = {}
    for spec in specs or []:
        norm, sep, values = str(spec).partition(":")
        norm = norm.strip().lower()
        if not sep or norm not in NORMS:
            raise ProbeError(
                f"--eps expects NORM:EPS[,EPS...] with NORM l2 or linf, e.g. l2:0.5 or linf:8/255, got {spec!r}"
            )
        for text in values.split(","):
            try:
                value = float(Fraction(text.strip()))
            except (ValueError, ZeroDivisionError):
                raise ProbeError(f"--eps: {text.strip()!r} is not a number (write 0.5 or 8/255)") from None
            if not value > 0 or not math.isfinite(value):
                raise ProbeError(f"--eps values must be > 0, got {text.strip()!r}")
            given.setdefault(norm, [])
            if value not in given[norm]:
                given[norm].append(value)
    eps.update(given)
    return eps


def eps_key(value: float) -> str:
    """The key of an eps in ``summary.json`` (``f"{eps:g}"``)."""
    return f"{value:g}"


def eps_label(norm: str, value: float) -> str:
    """0.031372... in Linf -> '8/255'; else '%g'."""
    k = value * 255
    if norm == "linf" and abs(k - round(k)) < 1e-4 and round(k) > 0:
        return f"{round(k)}/255"
    return f"{value:g}"
