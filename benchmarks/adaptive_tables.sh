#!/usr/bin/env bash
# Every table (and the PNG) of README.md's "Attacks that know the defense is random", from the
# records: the run folders under results/ where they are on disk, else results/runs.jsonl.gz
# (pack_runs.py). A later root's record replaces an earlier one's (same configuration, cell
# and image). Needs probe importable (installed, or PYTHONPATH=the repository); the PNG needs
# matplotlib (SKIP_PNG=1 skips it).
#
#   benchmarks/adaptive_tables.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-python}
R=results
B=(--bare $R/strength_effnet.jsonl $R/strength_effnet_adaptive.jsonl)
W=(--whitebox $R/whitebox.jsonl)
Q1000=(0.05:1:1000 0.05:5:1000 0.05:10:1000 0.15:1:1000 0.15:5:1000 0.15:10:1000)
Q2000=(0.05:1:2000 0.05:5:2000 0.05:10:2000 0.15:1:2000 0.15:5:2000 0.15:10:2000)
FIRST=($R/adaptive $R/adaptive_images08-19)
HALVES=($R/adaptive_images08-13 $R/adaptive_images14-19)
FIX=($R/adaptive_fix_images00-09 $R/adaptive_fix_images10-19)
N5=($R/adaptive_n5_images08-13 $R/adaptive_n5_images14-19)
s() { echo "== $*" | cut -c1-160; "$PY" adaptive.py --summarize "$@" > /dev/null; }
PNG=(--png $R/adaptive.png)
[ -n "${SKIP_PNG:-}" ] && PNG=()
s $R/adaptive "${B[@]}" "${W[@]}" --table $R/adaptive.md "${PNG[@]}"
s "${FIRST[@]}" --cells "${Q1000[@]}" "${B[@]}" "${W[@]}" --table $R/adaptive20.md
s "${FIRST[@]}" --cells 0.05:1:2000 0.15:1:2000 "${B[@]}" "${W[@]}" --table $R/adaptive20_q2000.md
s "${FIRST[@]}" "${HALVES[@]}" "${FIX[@]}" --cells 0.05:10:2000 "${B[@]}" --versus psj rays \
    --table $R/adaptive20_q2000_n10.md
s "${FIRST[@]}" "${HALVES[@]}" "${FIX[@]}" "${N5[@]}" --cells "${Q2000[@]}" "${B[@]}" --versus psj rays \
    --table $R/adaptive20_q2000_best.md
s "${FIRST[@]}" "${N5[@]}" --cells 0.05:5:2000 0.15:5:2000 "${B[@]}" --versus rays+bayes rays \
    --table $R/adaptive20_q2000_n5.md
s "${FIRST[@]}" --cells "${Q1000[@]}" --versus cgba+bayes cgba --table $R/cgba_bayes_vs_cgba.md
s "${FIRST[@]}" "${HALVES[@]}" $R/adaptive_fix "${FIX[@]}" "${N5[@]}" --budgets 1000 2000 \
    --table $R/adaptive20_budgets.md
