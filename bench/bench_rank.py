"""How well an early epoch ranks configurations: the measurement behind a space's ASHA defaults.

Draws `--configs` configurations from a space with Optuna's RandomSampler (unbiased coverage, no
pruning), trains every one for the full `--epochs` on the same split, and records its validation
accuracy after every epoch, one JSON line per configuration in `--log` (a re-run skips the ones
already there, so an interrupted measurement loses at most the configuration in progress).

Then it reports:
  Spearman rank correlation between the validation accuracy at epoch k (1, 2, 3, 5, ...) and at
  the last epoch, over all configurations;
  a replay of ASHA (asynchronous successive halving, Li et al. 2020) on the recorded curves for
  each grace period and reduction factor, averaged over 200 random arrival orders: each rung
  promotes a configuration when it is in the top 1/eta of those that reached the rung before;
  the columns say what that setting costs (epochs trained, as a share of training every
  configuration fully) and what it finds (the final accuracy of the best configuration that ran
  to the end, and that configuration's rank among all by final accuracy).

    .venv/bin/python bench/bench_rank.py --configs 24 --epochs 15 --train-size 10000 \\
        --log bench/out/rank-cnn_reg.jsonl
    .venv/bin/python bench/bench_rank.py --log bench/out/rank-cnn_reg.jsonl --analyze-only
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"

from _log import append, read_log  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from _machine import machine_name  # noqa: E402

EARLY_EPOCHS = (1, 2, 3, 5, 8)
GRACE_PERIODS = (1, 2, 3, 5)
REDUCTION_FACTORS = (2, 3, 4)
REPLAYS = 200  # random arrival orders replayed per ASHA setting


def draw_configurations(space_name: str, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` parameter sets of the space, drawn by Optuna's RandomSampler from `seed`."""
    import optuna

    from search import get_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(count):
        trial = study.ask()
        space.suggest(trial)
        drawn.append(dict(trial.params))
        study.tell(trial, 0.0)
    return drawn


def measure(args: argparse.Namespace) -> None:
    """Train every drawn configuration not yet in the log; append each as it finishes."""
    import torch

    from search import get_space
    from training import load_cifar10, train, train_val_split

    torch.set_num_threads(args.threads)
    space = get_space(args.space)
    done = {row["index"] for row in read_log(args.log)}
    todo = [(i, p) for i, p in enumerate(draw_configurations(args.space, args.configs, args.seed))]
    todo = [(i, p) for i, p in todo if i not in done]
    if not todo:
        return
    data = load_cifar10(args.data, "train")
    train_set, val_set = train_val_split(data, args.val_size, args.seed, args.train_size)
    print(
        f"training {len(todo)} of {args.configs} configurations for {args.epochs} epochs on "
        f"{len(train_set)} images (validation {len(val_set)}) on {machine_name()}",
        flush=True,
    )
    for index, params in todo:
        config = space.trial_config(params, epochs=args.epochs, seed=args.seed + index)
        config = config.replace(**_overrides(args))
        start = time.perf_counter()
        curve: list[float] = []
        error = None
        try:
            train(
                config,
                train_set,
                val_set,
                device=args.device,
                on_epoch_end=lambda stats, curve=curve: curve.append(stats.val_accuracy),
            )
        except Exception as exc:  # a diverging configuration is a data point, not a crash
            error = f"{type(exc).__name__}: {exc}"
        row = {
            "index": index,
            "params": params,
            "val_accuracy": curve,
            "error": error,
            "seconds": round(time.perf_counter() - start, 1),
            "epochs": args.epochs,
            "train_size": len(train_set),
            "machine": machine_name(),
        }
        append(args.log, row)
        last = f"{100 * curve[-1]:.2f}%" if curve else "-"
        print(
            f"config {index}: final val {last} after {len(curve)} epochs, "
            f"{row['seconds']:.0f} s{'  ' + error if error else ''}",
            flush=True,
        )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"precision": args.precision} if args.precision else {}


def curves_of(rows: list[dict[str, Any]], epochs: int) -> list[list[float]]:
    """Each configuration's accuracy per epoch; one that failed counts as chance (0.1) from the
    epoch it failed on, which is what a search would see of it."""
    curves = []
    for row in sorted(rows, key=lambda r: r["index"]):
        curve = list(row["val_accuracy"])[:epochs]
        curves.append(curve + [0.1] * (epochs - len(curve)))
    return curves


def spearman_table(curves: list[list[float]]) -> list[tuple[int, float]]:
    from scipy.stats import spearmanr

    epochs = len(curves[0])
    final = [c[-1] for c in curves]
    return [
        (k, float(spearmanr([c[k - 1] for c in curves], final).statistic))
        for k in EARLY_EPOCHS
        if k < epochs
    ]


def replay_asha(curves: list[list[float]], grace: int, eta: int) -> tuple[int, list[int]]:
    """ASHA on recorded curves, configurations arriving in order, one at a time.

    Returns the epochs trained in all and the indices of the configurations that ran to the end.
    Rungs and cutoffs as Ray's ASHAScheduler (ray/tune/schedulers/async_hyperband.py): rungs at
    grace * eta**k below the last epoch; at a rung a configuration stops when its accuracy is
    below the (1 - 1/eta) percentile of the accuracies recorded there before it.
    """
    import numpy as np

    epochs = len(curves[0])
    count = int(math.log(epochs / grace) / math.log(eta) + 1)
    rungs = [grace * eta**k for k in range(count) if grace * eta**k < epochs]
    seen: dict[int, list[float]] = {r: [] for r in rungs}
    cost, finished = 0, []
    for index, curve in enumerate(curves):
        stopped_at = epochs
        for rung in rungs:
            value = curve[rung - 1]
            before = seen[rung]
            cutoff = np.nanpercentile(before, (1 - 1 / eta) * 100) if before else None
            before.append(value)
            if cutoff is not None and value < cutoff:
                stopped_at = rung
                break
        cost += stopped_at
        if stopped_at == epochs:
            finished.append(index)
    return cost, finished


def analyze(rows: list[dict[str, Any]]) -> dict[str, Any]:
    epochs = min(row["epochs"] for row in rows)
    curves = curves_of(rows, epochs)
    final = [c[-1] for c in curves]
    order = sorted(range(len(final)), key=lambda i: -final[i])
    rank_of = {index: rank + 1 for rank, index in enumerate(order)}
    spearman = spearman_table(curves)
    # ASHA's outcome depends on the order configurations arrive in: replay many random orders
    # (fixed seed) and report means, so one lucky order does not decide the settings.
    orders = [random.Random(i).sample(range(len(curves)), len(curves)) for i in range(REPLAYS)]
    replays = []
    for grace in GRACE_PERIODS:
        for eta in REDUCTION_FACTORS:
            if grace >= epochs:
                continue
            costs, finished_counts, bests, ranks = [], [], [], []
            for order_ in orders:
                cost, finished = replay_asha([curves[i] for i in order_], grace, eta)
                best = max((order_[i] for i in finished), key=lambda i: final[i])
                costs.append(cost / (epochs * len(curves)))
                finished_counts.append(len(finished))
                bests.append(final[best])
                ranks.append(rank_of[best])
            replays.append(
                {
                    "grace": grace,
                    "eta": eta,
                    "cost_share": statistics.mean(costs),
                    "finished": statistics.mean(finished_counts),
                    "best_final": statistics.mean(bests),
                    "best_rank": statistics.mean(ranks),
                    "found_best": sum(r == 1 for r in ranks) / len(ranks),
                }
            )
    failed = sum(1 for row in rows if row.get("error"))
    return {
        "configs": len(rows),
        "failed": failed,
        "epochs": epochs,
        "train_size": rows[0].get("train_size"),
        "machine": rows[0].get("machine"),
        "best_final": final[order[0]],
        "spearman": spearman,
        "asha": replays,
    }


def print_report(summary: dict[str, Any]) -> None:
    print(
        f"\n{summary['configs']} configurations ({summary['failed']} failed), "
        f"{summary['epochs']} epochs, {summary['train_size']} training images, "
        f"{summary['machine']}; best final validation {100 * summary['best_final']:.2f}%"
    )
    print("\n| epoch k | Spearman(val acc at k, val acc at the end) |\n|---|---|")
    for k, rho in summary["spearman"]:
        print(f"| {k} | {rho:.3f} |")
    print(
        f"\nASHA replayed over {REPLAYS} random arrival orders (means):\n"
        "\n| grace | reduction | epochs trained (share of all full) | ran to the end "
        "| best of those: final val | its rank of all | best of all ran to the end |"
        "\n|---|---|---|---|---|---|---|"
    )
    for r in summary["asha"]:
        print(
            f"| {r['grace']} | {r['eta']} | {100 * r['cost_share']:.0f} % | {r['finished']:.1f} "
            f"| {100 * r['best_final']:.2f} % | {r['best_rank']:.2f} "
            f"| {100 * r['found_best']:.0f} % |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cnn_reg")
    parser.add_argument("--configs", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--precision", default=None, help="TrainConfig.precision for every run")
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per config")
    parser.add_argument("--analyze-only", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args()
    if not args.analyze_only:
        measure(args)
    rows = read_log(args.log)
    if len(rows) < 3:
        raise SystemExit(f"error: {args.log} holds {len(rows)} configurations; need 3 or more")
    summary = analyze(rows)
    print_report(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
