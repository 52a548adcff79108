"""Remote models: an HTTP client oracle and ``probe serve``.

* :mod:`probe.remote.protocol`: the Open Inference Protocol (KServe v2 REST) in JSON:
  model metadata, tensors in and out, errors (pure Python and NumPy).
* :mod:`probe.remote.client`: :class:`~probe.remote.client.RemoteRuntime`, an endpoint
  behind the same labels-only interface as :class:`probe.runtime.Runtime`, so that the
  smoothing, the oracle, the engine and the attacks run unchanged against it.
* :mod:`probe.remote.keys`: API keys (hashed) and their query budgets in SQLite.
* :mod:`probe.remote.batcher`, :mod:`probe.remote.server`: a defended model as a v2
  service (FastAPI + uvicorn) answering labels only.

The HTTP libraries come with the ``serve`` extra (``pip install "probe[serve]"``) and
are imported only when a remote model is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from probe.errors import ProbeError

EXTRA = 'pip install "probe[serve]"'


def need(module: str) -> ModuleType:
    """Import an optional dependency of the ``serve`` extra, or fail with one line saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise ProbeError(f"{top} is not installed: remote models and probe serve need {EXTRA}") from None


__all__ = ["EXTRA", "need"]
