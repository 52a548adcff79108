"""A Python function as a model: for a classifier that sits behind the user's own SDK.

:class:`CallableModel` wraps ``fn(x) -> labels``: ``x`` is a batch of canonical images
(float32 RGB in [0, 1], NCHW, at ``input_shape``), the answer one top-1 label per
image (ints, or class names when ``classes`` is given). It has the interface of
:class:`probe.runtime.Runtime` that the smoothing, the oracle, the engine and the
attacks use, so the same budgets, counters and records apply: the oracle charges
every query before ``fn`` runs, and ``fn`` sees nothing but the points it is asked
about. On the command line: ``--model module:function`` (with ``--size`` and
``--num-classes`` or ``--classes``, unless the function carries ``input_shape`` and
``num_classes`` attributes, or the name is a ``CallableModel`` already).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from probe.errors import ProbeError
from probe.remote.classes import Classes, check_names
from probe.runtime import LabelModel, ModelInfo
from probe.spec import InputSpec
from probe.validate import check_int

REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class CallableModel(LabelModel):
    """A classifier given as a Python function of canonical images.

    fn : ``fn(x)`` with x float32 (k, 3, H, W) in [0, 1], k <= batch_size; returns k
        labels (a sequence or array of ints in [0, num_classes), or of class names).
    input_shape : (3, H, W), or (H, W).
    num_classes : the number of classes (default: ``len(classes)``).
    classes : class names, index = label; the function may then answer names.
    batch_size : the most images per call of ``fn``.
    defended : ``fn`` smooths itself (random answers; no client-side noise wanted).
    name : what records call the model (default: ``module.qualname`` of fn).
    """

    on_cuda = False

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        *,
        input_shape: Sequence[int],
        num_classes: int | None = None,
        classes: Sequence[str] | None = None,
        batch_size: int = 64,
        defended: bool = False,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ProbeError(f"CallableModel needs a function, got {type(fn).__name__}")
        shape = tuple(int(d) for d in input_shape)
        if len(shape) == 2:
            shape = (3, *shape)
        if len(shape) != 3 or shape[0] != 3 or min(shape) < 1:
            raise ProbeError(f"input_shape must be (3, H, W) or (H, W), got {tuple(input_shape)}")
        names = check_names(classes, "classes") if classes is not None else None
        self.classes = Classes(count=num_classes, names=names)
        count = self.classes.given
        if count is None:
            raise ProbeError("CallableModel needs num_classes or classes (--num-classes N or --classes FILE)")
        self.fn = fn
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.defended = bool(defended)
        qualname = getattr(fn, "__qualname__", type(fn).__name__)
        self.name = name or f"{getattr(fn, '__module__', None) or 'python'}.{qualname}"
        self.info = ModelInfo(
            path=f"python:{self.name}", input_name="canonical", output_name="label", num_classes=int(count),
            fixed_batch=None, spec=InputSpec(size=shape[1:], class_names=names), providers=("python",), metadata={},
        )  # fmt: skip
        self.inferences = 0
        self.calls = 0
        self.rows = 0
        self.session_seconds = 0.0

    def labels(self, x: np.ndarray) -> np.ndarray:
        """Top-1 labels (int64, (N,)) of canonical images x (N, 3, H, W), ``batch_size`` per call of fn."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ProbeError(f"expected images of shape (N, {self.input_shape}), got {x.shape}")
        out = np.empty(len(x), np.int64)
        for start in range(0, len(x), self.batch_size):
            chunk = np.ascontiguousarray(x[start : start + self.batch_size])
            out[start : start + len(chunk)] = self._call(chunk)
        self.inferences += len(x)
        return out

    def _call(self, chunk: np.ndarray) -> np.ndarray:
        began = time.perf_counter()
        try:
            answer = self.fn(chunk.copy())  # a copy: the function may write to its argument
        except (ProbeError, KeyboardInterrupt):  # BudgetExceeded, EndpointBudgetSpent, the user's stop
            raise
        except Exception as exc:
            text = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ProbeError(f"the model function {self.name} raised {type(exc).__name__}: {text}") from None
        finally:
            self.session_seconds += time.perf_counter() - began
        labels = self._read(answer, len(chunk))
        self.calls += 1
        self.rows += len(chunk)
        return labels

    def _read(self, answer: Any, k: int) -> np.ndarray:
        data = np.asarray(answer).reshape(-1) if not isinstance(answer, (str, bytes)) else np.asarray([answer])
        if data.size != k:
            raise ProbeError(f"the model function {self.name} answered {data.size} label(s) for {k} image(s)")
        whole = data.dtype.kind == "f" and np.all(np.isfinite(data)) and np.all(data == np.round(data))
        if data.dtype.kind in "iu" or whole:
            labels = data.astype(np.int64)
        elif data.dtype.kind in "USO":
            labels = np.array([self._index(v) for v in data], np.int64)
        else:
            raise ProbeError(f"the model function {self.name} answered {data.dtype} values, not labels")
        if np.any(labels < 0) or np.any(labels >= self.num_classes):
            raise ProbeError(f"the model function {self.name} answered labels outside [0, {self.num_classes})")
        return labels

    def _index(self, value: Any) -> int:
        if isinstance(value, (int, np.integer)):
            return int(value)
        return self.classes.index(value)

    def wrapped_model(self):
        raise ProbeError("a Python function has no ONNX graph (in-graph smoothing needs a local file)")

    @property
    def record_fields(self) -> dict[str, Any]:
        """What every result record says about the model."""
        return {"model_function": self.name, "defended": self.defended}

    def describe(self) -> dict:
        """A JSON-able summary (for `probe info`)."""
        return {
            "path": self.info.path,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "batch_size": self.batch_size,
            "defended": self.defended,
            "providers": list(self.info.providers),
        }

    def close(self) -> None:
        close = getattr(self.fn, "close", None)
        if callable(close):
            close()


def is_reference(text: object) -> bool:
    """True for ``module:function`` (and not a file that exists under that name)."""
    return isinstance(text, str) and bool(REFERENCE.match(text)) and not os.path.exists(text)


def load_callable(
    reference: str,
    *,
    size: Sequence[int] | None = None,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int | None = None,
    defended: bool = False,
) -> LabelModel:
    """The model named ``module:function`` (the current folder is importable, as with ``python -m``).

    The name may be a :class:`CallableModel` (or any model with ``labels``) already, or a
    function: its shape and classes then come from the arguments, else from the
    function's ``input_shape``, ``num_classes`` and ``classes`` attributes.
    """
    module_name, _, attr = reference.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProbeError(f"cannot import {module_name!r} for --model {reference}: {exc}") from None
    except Exception as exc:
        raise ProbeError(f"importing {module_name!r} raised {type(exc).__name__}: {str(exc)[:200]}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ProbeError(f"module {module_name!r} has no {attr!r} (--model {reference})")
        obj = getattr(obj, part)
    if isinstance(obj, LabelModel):
        return obj
    if not callable(obj):
        raise ProbeError(f"--model {reference} is a {type(obj).__name__}, not a function")
    shape = tuple(size) if size else getattr(obj, "input_shape", None)
    if shape is None:
        raise ProbeError(f"give the input size of {reference} with --size HxW (e.g. --size 32x32)")
    if classes is None and num_classes is None:
        classes, num_classes = getattr(obj, "classes", None), getattr(obj, "num_classes", None)
    return CallableModel(
        obj, input_shape=shape, num_classes=num_classes, classes=classes,
        batch_size=batch_size or getattr(obj, "batch_size", 64), defended=defended, name=reference,
    )  # fmt: skip


__all__ = ["CallableModel", "is_reference", "load_callable"]
