#!/usr/bin/env bash
# The #13 grid on 20 images on a lent GPU machine whose ONNX Runtime has no CUDA provider
# (and no registry to install one from): the model runs in PyTorch on CUDA through
# benchmarks/torch_runtime.py (onnx2torch, carried as a wheel in .whl/), everything else is
# probe's own. Many `probe attack` processes share the GPU (adaptive.py --jobs); past the
# deadline they stop at a checkpoint (finished records kept, --resume goes on from them).
#
#   pip download --no-deps --only-binary=:all: -d .whl onnx2torch==1.5.15   # here, once
#   benchmarks/adaptive_gpu.sh DEADLINE_S                                     # there
#
# Output: on stdout, the agreement of PyTorch's labels with ONNX Runtime's and the GPU's load;
# under $OUT (benchmarks/results when unset) adaptive_gpu_a.log and adaptive_gpu_b.log (the two
# adaptive.py runs) and results.tgz (the records of both roots).
set -uo pipefail
cd "$(dirname "$0")/.."
DEADLINE=${1:-380}
OUT=${OUT:-benchmarks/results}
# 15 processes on one GPU: at PyTorch batches of 1,024 rows their caching allocators ran the
# H200's 140 GB out (2026-12-04: 4 runs of 26 failed); at 128 they held 28 GB together
export PROBE_TORCH_BATCH=${PROBE_TORCH_BATCH:-128} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L
python3 - <<'EOF'
import numpy as np, onnxruntime, torch
from probe.runtime import Runtime
from probe.zoo import resolve_model
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "onnxruntime", onnxruntime.__version__,
      onnxruntime.get_available_providers(), "numpy", np.__version__, flush=True)
import sys; sys.path.insert(0, "benchmarks")
from torch_runtime import TorchSession
rt = Runtime(resolve_model("efficientnet-lite0"), batch_size=256)
gpu = TorchSession(rt.wrapped_model(), "cuda")
rng = np.random.default_rng(0)
x0 = np.stack([rng.random((3, 224, 224), dtype=np.float32) * 0.5 + 0.25 for _ in range(8)])
x = np.clip(np.repeat(x0, 64, 0) + rng.standard_normal((512, 3, 224, 224), dtype=np.float32) * 0.15, 0, 1)
a, b = rt.labels(x), gpu.run(["label"], {"canonical": x})[0]
print(f"labels of 512 noisy images: PyTorch CUDA agrees with ONNX Runtime CPU on {int((a == b).sum())}", flush=True)
EOF
cd benchmarks
start=$(date +%s)
timeout $((DEADLINE + 90)) python3 adaptive.py --run --out results/adaptive_images08-19 --first 8 --images 12 \
    --cells 0.05:10:1000 0.05:5:1000 0.15:10:1000 0.15:5:1000 0.05:1:1000 0.15:1:1000 \
    0.05:10:2000 0.05:1:2000 0.05:5:2000 0.15:10:2000 0.15:1:2000 0.15:5:2000 \
    --jobs 11 --deadline "$DEADLINE" --torch-device cuda > "$OUT/adaptive_gpu_a.log" 2>&1 &
timeout $((DEADLINE + 90)) python3 adaptive.py --run --out results/adaptive --images 8 \
    --cells 0.05:10:2000 0.05:1:2000 0.05:5:2000 0.15:10:2000 0.15:1:2000 0.15:5:2000 \
    --config hsja surfree cgba rays+bayes surfree+bayes \
    --jobs 4 --deadline "$DEADLINE" --torch-device cuda > "$OUT/adaptive_gpu_b.log" 2>&1 &
while [ -n "$(jobs -r)" ]; do sleep 30; echo "$(( $(date +%s) - start )) s: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader) load $(cut -d' ' -f1 /proc/loadavg)"; done
cat "$OUT/adaptive_gpu_a.log" "$OUT/adaptive_gpu_b.log"
tar czf "$OUT/results.tgz" --exclude=adversarial --exclude=.probe.lock results/adaptive results/adaptive_images08-19
echo "== done in $(( $(date +%s) - start )) s"
