#!/usr/bin/env bash
# Run every benchmark and keep the figures under benchmarks/results/ (JSON) and the logs (text).
# About an hour on the 2-core reference CPU; set PY to the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
R=benchmarks/results
mkdir -p "$R"
run() { local name=$1; shift; echo "== $name: $*"; uptime; "$PY" "$@" 2>&1 | tee "$R/$name.txt"; }
run noise_speed        benchmarks/noise_speed.py
run oracle_overhead    benchmarks/oracle_overhead.py --json "$R/oracle_overhead.json"
run engine_cifar_n1    benchmarks/engine_batching.py --setting 0:1 --batch-size 64 --batch-size 32 --budget 500 --json "$R/engine_cifar_n1.json"
run engine_cifar_n10   benchmarks/engine_batching.py --setting 0.05:10 --budget 200 --repeats 2 --json "$R/engine_cifar_n10.json"
run engine_effnet      benchmarks/engine_batching.py --model efficientnet-lite0 --images 3 --setting 0:1 --setting 0.05:10 --budget 100 --repeats 1 --json "$R/engine_effnet.json"
run art_cifar          benchmarks/art_hsja.py --images 10 --json "$R/art_cifar.json"
run art_effnet         benchmarks/art_hsja.py --model efficientnet-lite0 --images 20 --max-iter 4 --setting 0:1 --json "$R/art_effnet.json"
run attack_quality     benchmarks/attack_quality.py
run certify_memory     benchmarks/certify_memory.py
