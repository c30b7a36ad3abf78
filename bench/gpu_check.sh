#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU host (see the developers' guide: 15 minutes of
# device time a session). Prepare here first:
#   python bench/make_slice.py ../shared/data/cifar10-jpeg .gpu/data --train 30000
#   ../shared/gpu-host/bundle .gpu/bundle          # Ray, Optuna, SQLAlchemy for the host
#   echo /.gpu/ >> .git/info/exclude
# then run it through the device tool with carry [".gpu"] and this command:
#   bash bench/gpu_check.sh
# Results go to $OUT (one JSON and one log per check).
set -uo pipefail
OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
DATA=.gpu/data
export CIFAR10_CACHE=/tmp/cifar-cache
[ -f .gpu/bundle/setup.sh ] && source .gpu/bundle/setup.sh
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
run() {  # name, seconds, command...
    local name=$1 limit=$2; shift 2
    echo "== $name" | tee -a "$OUT/summary.log"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "exit $?" | tee -a "$OUT/summary.log"
    tail -5 "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
run train_cnn_reg 150 python bench/bench_train.py --data "$DATA" --images 30000 --epochs 3 \
    --json "$OUT/train_cnn_reg.json"
run train_shake 120 python bench/bench_train.py --data "$DATA" --model shake26_2x96d \
    --images 30000 --epochs 2 --skip-reference --json "$OUT/train_shake.json"
run augment 60 python bench/bench_augment.py --data "$DATA"
run search 240 python bench/bench_search.py --data "$DATA" --trials 16 --max-epochs 10 \
    --train-size 25000 --val-size 5000 --gpus-per-trial 0.25 --json "$OUT/search.json"
