"""Peak memory of CERTIFY with a large n at ImageNet size (noise streamed in chunks).

    python benchmarks/certify_memory.py                          # tiny 3x224x224 conv model, n = 100,000
    python benchmarks/certify_memory.py --model efficientnet-lite0   # the real thing (~100k inferences: minutes)

Runs probe.runs.certify.certify_images on one 224x224 image in a fresh subprocess
and reports its peak RSS (resource.getrusage ru_maxrss), next to the RSS of the same
process before certifying (imports, session, image loaded) and the time taken.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np
from probe.runs.certify import certify_images
from probe.data import ImageSet
from probe.smoothing import SmoothedClassifier
from probe.runtime import Runtime
path, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runtime = Runtime(path, batch_size=batch)
x = np.random.default_rng(0).random((1, *runtime.input_shape), dtype=np.float32)
runtime.labels(x)  # warm the session up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
rec = certify_images(SmoothedClassifier(runtime, 0.25, n), ImageSet(x, ["x"], np.array([-1])), n0=100, n=n, alpha=0.001, seed=0)[0]
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"model": path, "n": n, "batch_size": batch, "rss_before_mb": before / 1024,
                  "peak_rss_mb": peak / 1024, "seconds": seconds, "inferences": runtime.inferences,
                  "predicted": rec["predicted"], "radius": rec["radius"]}))
"""


def tiny_imagenet_model(path: Path) -> Path:
    """A 3x224x224 -> 1000 classes conv net small enough to run 100k inferences quickly."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 16, 16)).astype(np.float32) * 0.05
    fc = rng.standard_normal((8, 1000)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], strides=[16, 16]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny224",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model name or file [default: a tiny 3x224x224 conv net]")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            path = tiny_imagenet_model(Path(tmp) / "tiny224.onnx")
        else:
            from probe.zoo import resolve_model

            path = resolve_model(args.model)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(args.n), str(args.batch_size)], capture_output=True, text=True
        )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
