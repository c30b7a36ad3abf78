#!/usr/bin/env bash
# Issue 23's target, timed end to end as a user runs it: the policy search aimed where policies
# pay (the `bare` child, crop + flip only, on 2,000 images: bench/RESULTS.md), scored AutoAugment's
# way (`--space policy_child`, a child trained per trial, 20 epochs at most, ASHA), its export,
# and search.compare of the export against no policy and the free policies, 3 seeds, 60 epochs,
# the full test split. Each step's wall time goes to OUT/times.txt; the comparison's table is
# OUT/compare/compare.md. A re-run resumes (the study and the comparison log).
#
# The density-matching space (`--space policy`) fell short here (bench/RESULTS.md, 2026-12-03):
# DENSITY=1 also runs it (200 trials, `--draws 3`) and adds its export to the comparison.
#
#     bench/policy_pipeline.sh bench/out/policy-pipeline [DATA]
set -euo pipefail
OUT=${1:?usage: bench/policy_pipeline.sh OUT_DIR [DATA]}
DATA=${2:-../shared/data/cifar10-jpeg}
PY=${PYTHON:-.venv/bin/python}
STUDY=policy-child-bare2k
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
# 1,000 validation images (held out of the training split) score each trial's child.
step search "$PY" -m search.run --space policy_child --study "$STUDY" --child-recipe bare \
    --train-size 2000 --val-size 1000 --max-epochs 20 --trials 200 --precision bf16 \
    --data "$DATA" --studies-dir "$OUT"
step export "$PY" -m search.export_policy --study "$STUDY" --studies-dir "$OUT" \
    -o "$OUT/policy.json"
policies="none,cifar10,trivialaugment,randaugment,$OUT/policy.json"
if [[ ${DENSITY:-0} == 1 ]]; then
    step density-search "$PY" -m search.run --space policy --study policy-bare2k \
        --child-recipe bare --train-size 2000 --trials 200 --draws 3 --precision bf16 \
        --data "$DATA" --studies-dir "$OUT"
    step density-export "$PY" -m search.export_policy --study policy-bare2k \
        --studies-dir "$OUT" -o "$OUT/policy-density.json"
    policies+=",$OUT/policy-density.json"
fi
# No validation split: nothing reads it, and validating 5,000 images each epoch would cost more
# than training on 2,000.
step compare "$PY" -m search.compare --study "$STUDY" --studies-dir "$OUT" --data "$DATA" \
    --epochs 60 --seeds 3 --train-size 2000 --val-size 0 --out "$OUT/compare" \
    --policies "$policies"
