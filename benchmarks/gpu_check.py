"""The GPU path, measured: run by ``benchmarks/gpu_check.sh`` in a venv with onnxruntime-gpu.

    python benchmarks/gpu_check.py --json benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --dry-run        # on CPU: the same steps, tiny, in-graph forced

1. CUDA really in use: ``session.get_providers()`` of the runtime and of the in-graph
   session (nothing else is trusted); the smoothed classifier picks the graph by itself.
2. In-graph vote frequencies against the CPU (NumPy) path, chi-square per point: a linear
   model at five margins and the CIFAR CNN on its sample images (Bonferroni over points);
   early-stopped answers in the graph against the exact full-vote frequency.
3. Inferences/s of a random-weight ResNet50 (built with onnx.helper: torchvision's
   ResNet50 v1.5 layout, BN folded, no torch needed) at n = 10 and 100 through the oracle
   against a bare ONNX Runtime CUDA session (target >= 0.9), and against the CPU oracle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probe.load import load_samples  # noqa: E402
from probe.oracle import Criterion, Oracle  # noqa: E402
from probe.runs.bench import oracle_overhead  # noqa: E402
from probe.runtime import Runtime  # noqa: E402
from probe.smoothing import SmoothedClassifier  # noqa: E402
from probe.zoo import resolve_model  # noqa: E402
from tests.onnx_models import linear_weights, save_linear  # noqa: E402


def resnet50_onnx(path: Path, seed: int = 0, width: int = 64) -> Path:
    """ResNet50 (bottlenecks 3-4-6-3, stride on the 3x3 conv, BN folded into conv biases)
    with He-normal random weights, dynamic batch, 224x224 NCHW in, 1000 logits out."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    count = [0]

    def name(tag: str) -> str:
        count[0] += 1
        return f"{tag}{count[0]}"

    def conv(x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        w, b = name("w"), name("b")
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k)) * 0.5).astype(np.float32), w))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), b))
        y = name("conv")
        nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4))
        if not relu:
            return y
        z = name("relu")
        nodes.append(helper.make_node("Relu", [y], [z]))
        return z

    x = conv("input", 3, width, 7, 2)
    pool = name("pool")
    nodes.append(helper.make_node("MaxPool", [x], [pool], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = pool, width
    for stage, (blocks, mid) in enumerate(zip((3, 4, 6, 3), (width, 2 * width, 4 * width, 8 * width))):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = conv(x, cin, mid, 1)
            y = conv(y, mid, mid, 3, stride)
            y = conv(y, mid, 4 * mid, 1, relu=False)
            short = conv(x, cin, 4 * mid, 1, stride, relu=False) if block == 0 else x
            s, r = name("add"), name("relu")
            nodes += [helper.make_node("Add", [y, short], [s]), helper.make_node("Relu", [s], [r])]
            x, cin = r, 4 * mid
    gap, flat, fw, fb = name("gap"), name("flat"), name("fw"), name("fb")
    inits.append(numpy_helper.from_array((rng.standard_normal((cin, 1000)) * 0.01).astype(np.float32), fw))
    inits.append(numpy_helper.from_array(np.zeros(1000, np.float32), fb))
    nodes += [helper.make_node("GlobalAveragePool", [x], [gap]), helper.make_node("Flatten", [gap], [flat]),
              helper.make_node("Gemm", [flat, fw, fb], ["logits"])]  # fmt: skip
    graph = helper.make_graph(nodes, "resnet50_random",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def chi2(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the chi-square test that two vote-count rows share one distribution."""
    keep = (a + b) > 0
    table = np.array([a[keep], b[keep]])
    return 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table).pvalue)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU only, tiny sizes, in-graph forced (checks the script)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time per throughput figure")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("PROBE_BENCH_DIR", "/tmp/probe-bench")))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels, when installed that way
        except Exception as exc:  # noqa: BLE001
            print(f"preload_dlls: {exc}")
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    in_graph = True if dry else None  # on CUDA the classifier must choose the graph itself
    seconds = 1.0 if dry else args.seconds
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict = {"dry_run": dry, "onnxruntime": ort.__version__, "available": ort.get_available_providers(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    failures = []

    # 1. providers
    cifar = Runtime(resolve_model("cifar10-cnn"), device=device)
    clf = SmoothedClassifier(cifar, 0.25, 10, in_graph=in_graph)
    clf.votes([(np.full((1, *cifar.input_shape), 0.5, np.float32), np.random.default_rng(0))])
    out["providers"] = {"runtime": list(cifar.info.providers), "in_graph": clf.in_graph,
                        "graph_session": list(clf._graph.providers) if clf._graph is not None else None,
                        "batch_size": cifar.batch_size, "batch_curve": cifar.batch_curve}  # fmt: skip
    if not dry and not (cifar.on_cuda and clf.in_graph and "CUDAExecutionProvider" in clf._graph.providers):
        failures.append("CUDAExecutionProvider is not in use")
    print("providers:", json.dumps(out["providers"]), flush=True)

    # 2. in-graph against the CPU path
    w, b = linear_weights((3, 32, 32), seed=4)
    lin_path = save_linear(args.work / "gpu_check_linear.onnx", w, b)
    unit = (w / np.linalg.norm(w)).astype(np.float32)
    sigma, n = 0.1, 400 if dry else 20000
    margins = (-0.1, -0.02, 0.0, 0.03, 0.12)
    points = np.stack([np.full(w.shape, 0.5, np.float32) + np.float32(m) * unit for m in margins])
    lin_gpu = SmoothedClassifier(Runtime(lin_path, device=device), sigma, n, in_graph=True)
    lin_cpu = SmoothedClassifier(Runtime(lin_path, device="cpu"), sigma, n, in_graph=False)
    g = lin_gpu.votes([(points, np.random.default_rng(1))])[0]
    c = lin_cpu.votes([(points, np.random.default_rng(2))])[0]
    linear = [{"margin": m, "graph": gi.tolist(), "cpu": ci.tolist(), "exact_class1": float(stats.norm.cdf(m / sigma)),
               "p_value": chi2(gi, ci)} for m, gi, ci in zip(margins, g, c)]  # fmt: skip
    images = load_samples("cifar10-cnn", limit=2 if dry else 8)
    m_cifar = 200 if dry else 5000
    cifar_cpu = SmoothedClassifier(Runtime(resolve_model("cifar10-cnn"), device="cpu"), 0.25, m_cifar, in_graph=False)
    cifar_gpu = SmoothedClassifier(cifar, 0.25, m_cifar, in_graph=True if dry else None)
    gc = cifar_gpu.votes([(images.x, np.random.default_rng(3))])[0]
    cc = cifar_cpu.votes([(images.x, np.random.default_rng(4))])[0]
    cnn = [{"image": i, "graph": a.tolist(), "cpu": z.tolist(), "p_value": chi2(a, z)} for i, a, z in zip(images.ids, gc, cc)]
    tests = len(linear) + len(cnn)
    worst = min(r["p_value"] for r in linear + cnn)
    out["agreement"] = {"linear": linear, "cifar": cnn, "tests": tests, "min_p": worst, "level": 0.001 / tests}
    if worst < 0.001 / tests:
        failures.append(f"in-graph votes differ from the CPU path (min p = {worst:.2g})")
    # early-stopped answers in the graph: the exact full-vote frequency on the boundary (odd n: 1/2)
    early = SmoothedClassifier(lin_gpu.runtime, sigma, 11, in_graph=True)
    oracle = Oracle(early, Criterion(0), budget=10**6, rng=np.random.default_rng(5))
    k = 500 if dry else 20000
    answers = oracle(np.broadcast_to(points[2], (k, *points[2].shape)))
    p_early = float(stats.binomtest(int(answers.sum()), k, 0.5).pvalue)
    out["early_in_graph"] = {"answers": k, "adversarial": int(answers.sum()), "p_value": p_early,
                             "inferences_per_query": oracle.inferences / k}  # fmt: skip
    if p_early < 0.001:
        failures.append("early-stopped in-graph answers differ from the full vote")
    print("agreement: min p", f"{worst:.3g}", "over", tests, "| early in graph p", f"{p_early:.3g}",
          f"{oracle.inferences / k:.2f} inf/query", flush=True)  # fmt: skip

    # 3. throughput: ResNet50 random weights
    rn_path = args.work / ("resnet50_random_tiny.onnx" if dry else "resnet50_random_helper.onnx")
    if not rn_path.is_file():
        resnet50_onnx(rn_path, width=8 if dry else 64)
    rn = Runtime(rn_path, device=device)
    rn_cpu = Runtime(rn_path, device="cpu")
    rows = []
    for n_ in (10, 100):
        r = oracle_overhead(rn, n_, sigma=0.25, seconds=seconds, max_rounds=30)
        row = {"n": n_, "batch_size": rn.batch_size, "providers": r.providers, "in_graph": r.in_graph,
               "bare_ips": r.bare_ips, "oracle_ips": r.oracle_ips, "ratio": r.ratio, "ratio_min": r.ratio_min,
               "ratio_max": r.ratio_max}  # fmt: skip
        if n_ == 10:
            rc = oracle_overhead(rn_cpu, n_, sigma=0.25, seconds=min(seconds, 10.0), max_rounds=5)
            row.update(cpu_oracle_ips=rc.oracle_ips, gpu_over_cpu=r.oracle_ips / rc.oracle_ips)
        rows.append(row)
        print("resnet50:", json.dumps(row), flush=True)
        if not dry and r.ratio < 0.9:
            failures.append(f"oracle / bare CUDA session at n = {n_}: {r.ratio:.3f} < 0.9")
    out["resnet50"] = rows
    out["failures"] = failures
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    print("FAILURES:" if failures else "all checks passed", *failures, sep="\n  ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
