#!/usr/bin/env bash
# The GPU checks as one script for a lent GPU host: at most 10 minutes on one H100 or H200 (the
# machine's start not included; a device call runs at most 10 minutes, and a session has 15 of
# device time, so one call with room to spare). Steps, each logged, timed and summarised:
#   pytest       the augment and trainer tests (the augment tests run on cuda too)
#   trainer      one cnn_reg epoch per optimizer (adam, adamw, fused sgd) under
#                torch.cuda.set_sync_debug_mode("warn"), host syncs counted; exact resume
#   compile      search.train --compile with TORCH_LOGS=recompiles: the recompiles counted
#   oom_search   a 4-trial search at 0.25 GPU a trial whose trial #1 runs out of memory
#                (SEARCH_INJECT_OOM_TRIAL: it allocates past its memory cap), then oom_study:
#                #1 FAIL "out of memory" from the allocator, the others COMPLETE or PRUNED
#   train_cnn_reg, train_shake, augment, search: the speed benchmarks (bench/README.md)
#
# Prepare here once, from the repository root (.gpu is about 55 MB; a call carries 64 MiB):
#   echo /.gpu/ >> .git/info/exclude
#   python bench/make_slice.py ../shared/data/cifar10-jpeg .gpu/data --train 25000 --test 2000
#   ../shared/gpu-host/bundle .gpu/bundle        # Ray, Optuna, SQLAlchemy: the host has none
# then, through the device tool:
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=600)
# Step names after the options run only those steps, e.g. to rerun what failed in the minutes
# left (oom_study reads oom_search's study: name both):
#   run(command="bash bench/gpu_check.sh oom_search oom_study", carry=[".gpu"], timeout_s=240)
# The host's python3 holds torch and pytest; PYTHON=... names another. What comes back in $OUT:
# summary.log (every step's command, status, seconds and last lines; `tail` shows it) and
# steps.tar.gz (every step's full log and JSON), refreshed after each step, so a run cut short
# still returns what it did.
#
#   bash bench/gpu_check.sh --dry-run [STEP ...]
# runs the same steps on CPU at a tiny scale (a 500-image slice of $CIFAR10_DATA, default
# ../shared/data/cifar10-jpeg, in a temporary folder; pytest only collects), in 2 to 5 minutes
# on two cores, and like the real run exits 1 when a step failed: tests/bench_tests/test_gpu_check.py
# runs it, so the script cannot rot between the rare GPU loans.
set -uo pipefail
cd "$(dirname "$0")/.."
ALL="pytest trainer compile oom_search oom_study train_cnn_reg train_shake augment search"
DRY=0
ONLY=()
for arg in "$@"; do
    case " --dry-run $ALL " in
        *" $arg "*) [ "$arg" = --dry-run ] && DRY=1 || ONLY+=("$arg") ;;
        *) echo "usage: bash bench/gpu_check.sh [--dry-run] [STEP ...]; steps: $ALL" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
OUT=${OUT:-$WORK/out}
STEPS=$WORK/steps
mkdir -p "$OUT" "$STEPS"
SUMMARY=$OUT/summary.log
: > "$SUMMARY"
# The temporary folder goes at the end, however the script ends; a default $OUT inside it stays.
trap 'find "$WORK" -mindepth 1 -maxdepth 1 ! -name out -exec rm -rf {} +; rmdir "$WORK" 2> /dev/null' EXIT
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
export CIFAR10_CACHE=$WORK/cache
say() { echo "$*" | tee -a "$SUMMARY"; }

if [ "$DRY" = 1 ]; then
    # CPU only, even on a machine with a GPU; bench_search.py must read "" as no GPU.
    export CUDA_VISIBLE_DEVICES=""
    # Dynamo traces and guards as on the GPU (so recompiles are still logged), without
    # Inductor's code generation, which alone would take minutes on two cores.
    export TORCH_COMPILE_OVERRIDE_BACKENDS=">=0:eager"
    SOURCE=${CIFAR10_DATA:-../shared/data/cifar10-jpeg}
    [ -f "$SOURCE/train.zip" ] && [ -f "$SOURCE/test.zip" ] || {
        echo "gpu_check.sh --dry-run: no train.zip and test.zip in $SOURCE; set CIFAR10_DATA" >&2
        exit 2
    }
    DATA=$WORK/data
    "$PY" bench/make_slice.py "$SOURCE" "$DATA" --train 500 --test 200 > "$STEPS/slice.log" 2>&1 ||
        { cat "$STEPS/slice.log" >&2; exit 2; }
    BUDGET=${GPU_CHECK_BUDGET:-600}
    GPUS=0                        # trials on CPU
    PYTEST=(--collect-only -q)    # the suite itself runs in CI
    TRAINER=(--images 128 --val 64)
    COMPILE=(--epochs 1 --train-size 200 --val-size 100)
    OOM=(--max-epochs 1 --train-size 200 --val-size 200)
    CNN=(--images 256 --epochs 1 --warmup 0 --workers 1)
    SHAKE=(--images 8 --epochs 1 --warmup 0)
    AUGMENT=(--batch 32 --repeats 1 --warmup 0)
    SEARCH=(--trials 2 --max-epochs 1 --train-size 200 --val-size 200)
    say "gpu_check.sh --dry-run: CPU, a $(du -sh "$DATA" | cut -f1) slice of $SOURCE"
else
    DATA=.gpu/data
    [ -f .gpu/bundle/setup.sh ] && source .gpu/bundle/setup.sh
    BUDGET=${GPU_CHECK_BUDGET:-570}   # the device tool stops a command at 600 s
    GPUS=0.25
    PYTEST=(-q -m "not slow")   # the slow ones are real searches: the oom_search step's kind
    TRAINER=(--images 20000 --val 2000)
    # 10,000 images: a partial last batch (10,000 = 78 x 128 + 16); 2,000: a partial eval batch.
    COMPILE=(--epochs 2 --train-size 10000 --val-size 2000)
    OOM=(--max-epochs 2 --train-size 5000 --val-size 1000)
    CNN=(--images 25000 --epochs 3)
    SHAKE=(--images 25000 --epochs 2)
    AUGMENT=()
    SEARCH=(--trials 12 --max-epochs 5 --train-size 20000 --val-size 5000 --gpus-per-trial 0.25)
    say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
fi
say "$("$PY" -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}")' 2>&1)"
"$PY" -c "import ray, optuna" 2> /dev/null ||
    say "warning: $PY cannot import ray and optuna: the searches will fail (carry .gpu/bundle)"

END=$BUDGET   # seconds since the script started (bash's SECONDS), the preparation included
FAILED=()
RAN=0
pack() { tar -czf "$OUT/steps.tar.gz" -C "$WORK" steps 2> /dev/null; }

# step NAME GPU_LIMIT DRY_LIMIT COMMAND...: runs COMMAND within its limit (and the budget).
step() {
    local name=$1 limit=$2 code start left
    [ "$DRY" = 1 ] && limit=$3
    shift 3
    [ ${#ONLY[@]} -gt 0 ] && [[ " ${ONLY[*]} " != *" $name "* ]] && return
    left=$((END - SECONDS))
    [ "$left" -lt "$limit" ] && limit=$left
    say "== $name: $*"
    RAN=$((RAN + 1))
    if [ "$limit" -lt 10 ]; then
        say "   SKIPPED: the budget of ${BUDGET} s is spent"
        FAILED+=("$name")
        return
    fi
    start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$STEPS/$name.log" 2>&1
    code=$?
    case $code in
        0) say "   ok ($((SECONDS - start)) s)" ;;
        124 | 137) say "   TIMED OUT after ${limit} s"; FAILED+=("$name") ;;
        *) say "   FAILED: exit $code ($((SECONDS - start)) s)"; FAILED+=("$name") ;;
    esac
    tail -n 6 "$STEPS/$name.log" | sed 's/^/   | /' | tee -a "$SUMMARY"
    pack
}

if [ ${#ONLY[@]} -gt 0 ] && [[ " ${ONLY[*]} " != *" pytest "* ]]; then
    :
elif "$PY" -c "import pytest" 2> /dev/null; then
    # No CIFAR10_DATA: the data tests expect all 60,000 images, not the slice; without
    # data they skip.
    step pytest 150 60 env -u CIFAR10_DATA "$PY" -m pytest tests/augment_tests \
        tests/training_tests -p no:cacheprovider "${PYTEST[@]}"
else
    say "== pytest: SKIPPED: $PY has no pytest (the host image lists it; carry a wheel if not)"
fi
step trainer 60 120 "$PY" bench/gpu_check.py trainer --data "$DATA" "${TRAINER[@]}" \
    --json "$STEPS/trainer.json"
step compile 90 120 env TORCH_LOGS=recompiles "$PY" -m search.train --compile "${COMPILE[@]}" \
    --data "$DATA"
[ -f "$STEPS/compile.log" ] &&
    say "   recompiles: $(grep -c 'Recompiling function' "$STEPS/compile.log")"
DB="sqlite:///$WORK/oom/oom.db"
mkdir -p "$WORK/oom"
step oom_search 90 150 env SEARCH_INJECT_OOM_TRIAL=1 "$PY" -m search.run --space cnn_reg \
    --study oom --storage "$DB" --studies-dir "$WORK/oom" --trials 4 --grace-period 1 \
    --reduction-factor 2 --gpus-per-trial "$GPUS" --data "$DATA" "${OOM[@]}"
ALLOCATOR=()
[ "$DRY" = 0 ] && ALLOCATOR=(--allocator)
step oom_study 30 30 "$PY" bench/gpu_check.py oom-study --storage "$DB" --study oom --trial 1 \
    "${ALLOCATOR[@]}"
step train_cnn_reg 60 60 "$PY" bench/bench_train.py --data "$DATA" "${CNN[@]}" \
    --json "$STEPS/train_cnn_reg.json"
step train_shake 60 60 "$PY" bench/bench_train.py --data "$DATA" --model shake26_2x96d \
    "${SHAKE[@]}" --skip-reference --json "$STEPS/train_shake.json"
step augment 30 30 "$PY" bench/bench_augment.py --data "$DATA/train.zip" "${AUGMENT[@]}"
step search 120 150 "$PY" bench/bench_search.py --data "$DATA" "${SEARCH[@]}" \
    --out "$WORK/search" --json "$STEPS/search.json"

pack
if [ ${#FAILED[@]} -eq 0 ]; then
    say "all $RAN steps passed in $SECONDS s"
else
    say "FAILED: ${FAILED[*]} (after $SECONDS s; logs in $OUT/steps.tar.gz)"
fi
[ "$OUT" = "$WORK/out" ] && say "summary and logs: $OUT"
[ ${#FAILED[@]} -eq 0 ]
