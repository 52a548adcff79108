"""Checks of a model on the clean images, before any attack or estimate is spent on it.

The runtime returns labels only (a top-1 ArgMax folded into the graph), and ArgMax of
logits that are NaN is some fixed class: such a model would look perfectly robust (no
attack ever changes its label). :func:`require_finite_outputs` runs the clean images once
through the same graph with the logits kept, and refuses a model whose logits are not
finite on them.
"""

from __future__ import annotations

from probe.errors import ProbeError


def nonfinite_images(runtime, x) -> list[int]:
    """Indices of the canonical images ``x`` (N, 3, H, W) on which ``runtime``'s logits (its
    chosen output, after the input mapping) hold a NaN or an infinity. A remote runtime has no
    logits to read: nothing is checked ([])."""
    if not hasattr(runtime, "wrapped_model") or not getattr(runtime, "path", None):
        return []
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = runtime.wrapped_model()
    original = onnx.load(str(runtime.path), load_external_data=False)  # the logits' declared type
    logits = runtime.info.output_name
    model.graph.output.append(next(o for o in original.graph.output if o.name == logits))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fixed = runtime.info.fixed_batch
    step = fixed or max(1, int(runtime.batch_size))
    bad: list[int] = []
    for start in range(0, len(x), step):
        chunk = np.ascontiguousarray(x[start : start + step], dtype=np.float32)
        rows = len(chunk)
        if fixed and rows < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - rows, *chunk.shape[1:]), np.float32)])
        out = np.asarray(session.run([logits], {"canonical": chunk})[0])[:rows]
        finite = np.isfinite(out.reshape(rows, -1)).all(axis=1)
        bad.extend(start + int(i) for i in np.flatnonzero(~finite))
    return bad


def require_finite_outputs(runtime, images, *, first: int | None = None) -> None:
    """A ProbeError when the model's logits are not finite on some clean image of ``images``
    (an :class:`probe.data.ImageSet`; its ``first`` images only, when given: one model call
    where a full pass would double a cheap command's work): its labels would mean nothing."""
    x = images.x if first is None else images.x[:first]
    bad = nonfinite_images(runtime, x)
    if bad:
        raise ProbeError(
            f"the model's output {runtime.info.output_name!r} is not finite (NaN or inf) on {len(bad)} of "
            f"{len(x)} clean images (first: {images.ids[bad[0]]}): its labels mean nothing"
        )
