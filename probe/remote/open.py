"""The CLI's way to a model that is not a local ONNX file.

* ``--endpoint URL``: a v2 server or ``probe serve`` (:mod:`probe.remote.client`);
* ``--target FILE``: any JSON or multipart image API described in TOML (:mod:`probe.remote.api`);
* ``--model module:function``: a Python function (:mod:`probe.remote.callable`).

``--num-classes`` and ``--classes`` apply to all three; ``--max-rate`` to the HTTP ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from probe.errors import ProbeError
from probe.remote.classes import open_classes


def open_remote(options, overrides: dict[str, Any]):
    """The model the options describe, or None when ``--model`` is no ``module:function`` after all."""
    from probe.remote.callable import is_reference, load_callable

    classes = open_classes(options.num_classes, options.classes)
    options = dataclasses.replace(options, batch_size=batch_size(options.batch_size))
    if options.endpoint is not None and options.target is not None:
        raise ProbeError("give either --endpoint or --target, not both")
    if options.target is not None:
        from probe.remote.api import open_target

        return open_target(options, overrides, classes)
    if options.endpoint is not None:
        if options.protocol == "grpc":
            try:
                from probe.remote.grpc_client import open_grpc
            except ImportError:
                raise ProbeError("--protocol grpc is not available in this version of probe") from None
            return open_grpc(options, overrides, classes)
        from probe.remote.client import open_endpoint

        return open_endpoint(options, overrides, classes)
    if not is_reference(options.model):
        if classes.given is not None or options.max_rate is not None:
            raise ProbeError("--num-classes, --classes and --max-rate need --endpoint, --target or --model module:function")
        return None
    if options.api_key or options.header or options.max_rate is not None:
        raise ProbeError("--api-key, --header and --max-rate need --endpoint or --target, not a Python function")
    given = {k: v for k, v in overrides.items() if k != "size" and v is not None}
    if given:
        raise ProbeError(f"a Python function takes canonical images: --{'/--'.join(sorted(given))} do not apply")
    return load_callable(
        options.model, size=overrides.get("size"), num_classes=classes.count, classes=classes.names,
        batch_size=int(options.batch_size), defended=options.defended,
    )  # fmt: skip


def batch_size(text: str | int) -> int:
    """``--batch-size`` for a model with nothing local to time: ``auto`` means 64 points a request."""
    from probe.validate import check_batch_size

    value = check_batch_size(text)
    return 64 if value == "auto" else int(value)
