#!/usr/bin/env bash
# Re-measure the speed figures of benchmarks/README.md into the files its sections cite
# (JSON, and each run's printed table as NAME.txt), with the commands they give.
# About an hour on the 2-core reference CPU; set PY to the interpreter (default: python).
# Not here: the ART comparisons (ART is not a dependency), CERTIFY's memory on EfficientNet-Lite0
# (~30 minutes), serve_overhead.py (the serve extra), and the attack runs of adaptive.py (hours;
# their tables: adaptive_tables.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
R=benchmarks/results
mkdir -p "$R"
run() { local name=$1; shift; echo "== $name: $*"; uptime; "$PY" "$@" 2>&1 | tee "$R/$name.txt"; }
run noise_speed_quiet    benchmarks/noise_speed.py
run oracle_overhead_final benchmarks/oracle_overhead.py --model cifar10-cnn --model efficientnet-lite0 --seconds 40 \
    --json "$R/oracle_overhead_final.json"
run oracle_overhead_effnet_quiet benchmarks/oracle_overhead.py --model efficientnet-lite0 --seconds 60 \
    --json "$R/oracle_overhead_effnet_quiet.json"
run oracle_overhead_quiet benchmarks/oracle_overhead.py --model resnet50-random --model cifar10-cnn --seconds 90 \
    --json "$R/oracle_overhead_quiet.json"    # the ResNet50 export needs torch
run engine_cifar         benchmarks/engine_batching.py --setting 0:1 --setting 0.05:10 --budget 300 --repeats 2 \
    --json "$R/engine_cifar.json"
run engine_effnet        benchmarks/engine_batching.py --model efficientnet-lite0 --images 3 --setting 0:1 \
    --setting 0.05:10 --budget 100 --repeats 1 --json "$R/engine_effnet.json"
run engine_effnet20      benchmarks/engine_batching.py --model efficientnet-lite0 --images 20 --setting 0.05:10 \
    --budget 100 --no-sequential --json "$R/engine_effnet20.json"
OPENBLAS_NUM_THREADS=1 run attack_quality benchmarks/attack_quality.py
run certify_memory       benchmarks/certify_memory.py
run early_votes          benchmarks/early_votes.py --repeats 2 --case cifar10-cnn:10:4:150 --case cifar10-cnn:100:2:60 \
    --case efficientnet-lite0:10:1:60 --json "$R/early_votes.json"
