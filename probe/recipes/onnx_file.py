"""What every recipe does once its torch model is built: trace it to ONNX, stamp probe's
metadata into the graph, check it and write the file.

Torch is imported inside the functions, so this module (like :mod:`probe.recipes.export`)
imports without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.spec import METADATA_KEY, InputSpec
from probe.zoo import PROVENANCE_KEY, VARIANT_KEY

TORCH_HINT = "needs the export extra: pip install torch==2.13.0 && pip install 'onnx-probe[export]'"
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def require_torch(what: str):
    """The torch module, or a ProbeError saying that ``what`` needs the export extra."""
    try:
        import torch
    except ImportError:
        raise ProbeError(f"{what} {TORCH_HINT}") from None
    return torch


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file (read in 1 MiB blocks); recorded as provenance by every recipe."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torch_to_onnx(model, dummy, *, opset: int = OPSET):
    """Trace ``model`` on ``dummy`` with the TorchScript exporter; return the ONNX ModelProto.

    One image input ``input`` and one output ``logits``, both with a dynamic batch
    dimension; constants folded. The exporter's notices are silenced.
    """
    import onnx

    torch = require_torch("exporting a model")
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter and constant-folding notices
        torch.onnx.export(
            model,
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def write_model(
    proto, out: Path | str, *, spec: InputSpec, provenance: dict[str, Any], variant: str, doc: str
) -> Path:
    """Stamp probe's metadata on ``proto``, check it and write it to ``out``; return ``out``.

    The metadata is ``probe.input_spec`` (the spec's JSON), ``probe.provenance`` (JSON,
    sorted keys, so that a rebuild gives the same bytes) and ``probe.variant``; other
    entries are kept. The file is written next to ``out`` and renamed, so a failed
    write never leaves a partial model under that name.
    """
    import onnx

    metadata = {
        METADATA_KEY: spec.to_json(),
        PROVENANCE_KEY: json.dumps(provenance, sort_keys=True),
        VARIANT_KEY: variant,
    }
    kept = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = doc
    onnx.checker.check_model(proto)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(proto, str(tmp))
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ProbeError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out

