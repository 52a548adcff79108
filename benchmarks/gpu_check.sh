#!/usr/bin/env bash
# The GPU path, measured (under 8 minutes on one GPU): a fresh venv with onnxruntime-gpu,
# then benchmarks/gpu_check.py: CUDAExecutionProvider really in use (session.get_providers()),
# in-graph vote frequencies against the CPU path (chi-square), and inferences/s of a
# random-weight ResNet50 through the oracle against a bare CUDA session and against CPU.
# Output: benchmarks/results/gpu_check.{json,txt}. Exit status 1 when a check fails.
#
#   benchmarks/gpu_check.sh              # on a machine with an NVIDIA GPU
#   benchmarks/gpu_check.sh --dry-run    # no venv, current python, CPU only: checks the script
#
# PY: the python that makes the venv (default python3); VENV: where (default /tmp/probe-gpu-venv).
# torch is not needed: the ResNet50 is built with onnx.helper (benchmarks/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
VENV=${VENV:-/tmp/probe-gpu-venv}
R=benchmarks/results
mkdir -p "$R"
start=$(date +%s)
if [ "${1:-}" = "--dry-run" ]; then
    RUN=$PY
    NAME=gpu_check_dry
else
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e .                 # probe and its dependencies (pulls onnxruntime, CPU)
    "$VENV/bin/pip" uninstall -y -q onnxruntime     # both ship the module onnxruntime: keep only the GPU one
    "$VENV/bin/pip" install -q "onnxruntime-gpu[cuda,cudnn]" || "$VENV/bin/pip" install -q onnxruntime-gpu
    RUN=$VENV/bin/python
    NAME=gpu_check
fi
echo "== setup: $(( $(date +%s) - start )) s"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
status=0
PROBE_CACHE_DIR=${PROBE_CACHE_DIR:-$(mktemp -d)} timeout 420 "$RUN" benchmarks/gpu_check.py "$@" --json "$R/$NAME.json" \
    2>&1 | tee "$R/$NAME.txt" || status=$?
echo "== total: $(( $(date +%s) - start )) s, status $status" | tee -a "$R/$NAME.txt"
exit "$status"
