"""Parameter validation, in one place: every check raises :class:`~probe.errors.ParameterError`
with the parameter's name, its value and the accepted range (scikit-learn style).

Pure Python (NumPy's booleans are refused without importing NumPy), so that every layer
(the attacks included) can use it, and the command line can check its arguments before
anything heavy is imported.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Iterable

from probe.errors import ParameterError, braces


def _is_bool(value: object) -> bool:
    """A Python or NumPy boolean (NumPy only when it is already imported: a NumPy boolean
    cannot exist before)."""
    np = sys.modules.get("numpy")
    return isinstance(value, bool) or (np is not None and isinstance(value, np.bool_))


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (either bound may be None)."""
    lo = "-inf" if minimum is None else minimum
    hi = "inf" if maximum is None else maximum
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{{name}} must be an integer in [{lo}, {hi}], got {braces(repr(value))}", name=name)
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ParameterError(f"{{name}} must be an integer in [{lo}, {hi}], got {v}", name=name)
    return v


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_closed: bool = True,
    high_closed: bool = True,
) -> float:
    """``value`` as a finite float in the interval (None: unbounded on that side)."""
    left = "[" if low_closed and low is not None else "("
    right = "]" if high_closed and high is not None else ")"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{{name}} must be a real number in {interval}, got {braces(repr(value))}", name=name)
    v = float(value)
    if not math.isfinite(v):
        raise ParameterError(f"{{name}} must be a finite number in {interval}, got {v!r}", name=name)
    if low is not None and (v < low or (v == low and not low_closed)):
        raise ParameterError(f"{{name}} must be in {interval}, got {v!r}", name=name)
    if high is not None and (v > high or (v == high and not high_closed)):
        raise ParameterError(f"{{name}} must be in {interval}, got {v!r}", name=name)
    return v


def check_choice(name: str, value: object, choices: Iterable[object]) -> object:
    """``value`` if it is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        listed = braces(", ".join(map(str, options)))
        raise ParameterError(f"{{name}} must be one of {listed}, got {braces(repr(value))}", name=name)
    return value


def check_sigma(sigma: object, *, positive: bool = False, name: str = "sigma") -> float:
    """Noise std in canonical [0, 1] space: >= 0 (> 0 with ``positive``)."""
    return check_real(name, sigma, 0.0, None, low_closed=not positive)


def check_n(n: object, *, name: str = "n", maximum: int = 10**9) -> int:
    """Noisy copies (votes) per query."""
    return check_int(name, n, 1, maximum)


def check_pa(pa: object, *, name: str = "pa") -> float:
    """Level P_a of eq. (4), in (0, 1]."""
    return check_real(name, pa, 0.0, 1.0, low_closed=False)


def check_alpha(alpha: object, *, name: str = "alpha") -> float:
    """A test level in (0, 1)."""
    return check_real(name, alpha, 0.0, 1.0, low_closed=False, high_closed=False)


def check_batch_size(value: object, *, name: str = "batch_size") -> int | str:
    """Rows per model call: ``"auto"`` (measured) or an integer >= 1 (a digit string is read)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit():
            raise ParameterError(f"{{name}} must be auto or an integer >= 1, got {braces(repr(value))}", name=name)
        value = int(text)
    if _is_bool(value) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ParameterError(f"{{name}} must be auto or an integer >= 1, got {braces(repr(value))}", name=name)
    return int(value)
