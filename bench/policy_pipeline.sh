#!/usr/bin/env bash
# Issue 23's target, timed end to end as a user runs it: the density policy search aimed where
# policies pay (bench_policy_regime.py: the `bare` child, crop + flip only, on 2,000 images),
# its export, and search.compare of the export against no policy and the free policies, 3 seeds,
# 60 epochs, the full test split. Each step's wall time goes to OUT/times.txt; the comparison's
# table is OUT/compare/compare.md. A re-run resumes (the study and the comparison log).
#
#     bench/policy_pipeline.sh bench/out/policy-pipeline [DATA]
set -euo pipefail
OUT=${1:?usage: bench/policy_pipeline.sh OUT_DIR [DATA]}
DATA=${2:-../shared/data/cifar10-jpeg}
PY=${PYTHON:-.venv/bin/python}
STUDY=policy-bare2k
mkdir -p "$OUT"

step() {
    local name=$1 start
    shift
    start=$(date +%s)
    "$@"
    echo "$name: $(($(date +%s) - start)) s" | tee -a "$OUT/times.txt"
}

echo "$(date -u '+%F %T') on $("$PY" -c 'import training; print(training.cpu_model())')" \
    | tee -a "$OUT/times.txt"
step search "$PY" -m search.run --space policy --study "$STUDY" --child-recipe bare \
    --train-size 2000 --trials 200 --draws 2 --precision bf16 --data "$DATA" --studies-dir "$OUT"
step export "$PY" -m search.export_policy --study "$STUDY" --studies-dir "$OUT" \
    -o "$OUT/policy.json"
# No validation split: nothing reads it, and validating 5,000 images each epoch would cost more
# than training on 2,000.
step compare "$PY" -m search.compare --study "$STUDY" --studies-dir "$OUT" --data "$DATA" \
    --epochs 60 --seeds 3 --train-size 2000 --val-size 0 --out "$OUT/compare" \
    --policies "none,cifar10,trivialaugment,randaugment,$OUT/policy.json"
