"""Opening things by name: a model (built-in name, exported name or ONNX path) and images."""

from __future__ import annotations

import os

from probe.data import ImageSet, load_images
from probe.errors import ProbeError
from probe.runtime import Runtime
from probe.zoo import DEFAULT_MODEL, default_images, read_spec, resolve_model


def load_model(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str = "auto",
    batch_size: int | str = "auto",
    output: str | None = None,
    num_classes: int | None = None,
    classes: list[str] | tuple[str, ...] | None = None,
    **spec: object,
) -> Runtime:
    """The :class:`~probe.runtime.Runtime` of a model: a built-in name (``"efficientnet-lite0"``,
    ``"cifar10-cnn"``), an exported model's name, or an ONNX file; or ``"module:function"``,
    a Python function of canonical images (a :class:`probe.CallableModel`; ``size``,
    ``num_classes`` or ``classes`` unless the function carries them).

    batch_size : images per model call, or ``"auto"`` (measured once and cached; see
        :class:`~probe.runtime.Runtime`).
    spec : input-convention overrides for a third-party model (``layout``, ``channels``,
        ``scale``, ``mean``, ``std``, ``size``), as :meth:`probe.spec.InputSpec.with_overrides`.
    """
    from probe.remote.callable import is_reference, load_callable

    if is_reference(model):
        size = spec.pop("size", None)
        if spec or output:
            raise ProbeError(f"a Python function takes canonical images: {sorted(spec) or ['output']} do not apply")
        batch = None if batch_size == "auto" else int(batch_size)
        found = load_callable(str(model), size=size, num_classes=num_classes, classes=classes, batch_size=batch)  # type: ignore[arg-type]
        return found  # type: ignore[return-value]
    if num_classes is not None or classes is not None:
        raise ProbeError("num_classes and classes are for a Python function (module:function), not an ONNX model")
    return Runtime(resolve_model(model), output=output, batch_size=batch_size, device=device, overrides=spec or None)


def load_samples(model: str | os.PathLike = DEFAULT_MODEL, *, limit: int | None = None) -> ImageSet:
    """The bundled sample images (with labels) that fit a model, at its input size.

    Returns an :class:`~probe.data.ImageSet`: ``x`` (N, 3, H, W) float32 in [0, 1], ``ids``, ``labels``.
    """
    folder = default_images(model)
    spec = read_spec(resolve_model(model))
    if folder is None or spec is None or spec.size is None:
        raise ProbeError(f"model {model} has no bundled sample images")
    return load_images([str(folder)], spec.size, labels_csv=None, limit=limit)
