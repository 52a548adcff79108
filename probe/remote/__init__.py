"""Remote models: client oracles for served models, a Python function as a model, and ``probe serve``.

* :mod:`probe.remote.protocol`: the Open Inference Protocol (KServe v2 REST) in JSON:
  model metadata, tensors in and out, errors (pure Python and NumPy).
* :mod:`probe.remote.transport`: what every HTTP model shares (parallel requests,
  retries, ``Retry-After``, ``--max-rate``); :mod:`probe.remote.classes`: ``--num-classes``
  and ``--classes`` for servers that answer labels or names only.
* :mod:`probe.remote.client`: :class:`~probe.remote.client.RemoteRuntime`, an endpoint
  behind the same labels-only interface as :class:`probe.runtime.Runtime`, so that the
  smoothing, the oracle, the engine and the attacks run unchanged against it;
  :mod:`probe.remote.grpc_client` the same over KServe v2 gRPC (messages from
  :mod:`probe.remote.kserve_grpc`, the ``grpc`` extra).
* :mod:`probe.remote.api`, :mod:`probe.remote.target`, :mod:`probe.remote.images`: any
  JSON or multipart image API described by a TOML target file (``--target``).
* :mod:`probe.remote.callable`: :class:`~probe.remote.callable.CallableModel`, a Python
  function of canonical images (``--model module:function``); :mod:`probe.remote.open`
  picks one of these from the command line's flags.
* :mod:`probe.remote.keys`: API keys (hashed) and their query budgets in SQLite.
* :mod:`probe.remote.batcher`, :mod:`probe.remote.server`: a defended model as a v2
  service (FastAPI + uvicorn) answering labels only.

The HTTP libraries come with the ``serve`` extra (``pip install "onnx-probe[serve]"``) and
are imported only when a remote model is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from probe.errors import ProbeError

EXTRA = 'pip install "onnx-probe[serve]"'


def need(module: str) -> ModuleType:
    """Import an optional dependency of the ``serve`` extra, or fail with one line saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise ProbeError(f"{top} is not installed: remote models and probe serve need {EXTRA}") from None


__all__ = ["EXTRA", "need"]
