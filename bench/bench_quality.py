"""What a cnn_reg search is worth: its retrained best against two hand recipes, same data and split.

Rows, each tested once on the CIFAR-10 test split after training (the search never sees it):
  report    the reference report's final recipe (Adam 1e-3, batch 32, MultiStepLR at 60 % and
            80 %, crop + flip + rotation 15, dropout 0.2/0.3/0.4), shortened to --epochs;
  hand      a strong hand recipe for small CIFAR-10 networks: SGD-Nesterov 0.05, batch 128,
            weight decay 5e-4, linear warmup over the first 20 % then cosine to zero, label
            smoothing 0.1, crop + flip, flip test-time augmentation (the habits of airbench and
            of Goyal et al. 2017's warmup);
  search    `python -m search.run --space cnn_reg --trials N --max-epochs --epochs` on the same
            training subset and validation split, then `python -m search.retrain` of its best
            trial for --epochs, once per --retrain-seeds.
The single recipes run once per --seeds. Every finished run is appended to --log (JSON lines),
and a re-run skips what is there, so an interrupted benchmark loses at most one run.

    .venv/bin/python bench/bench_quality.py --epochs 15 --train-size 10000 --trials 24 \\
        --log bench/out/quality-cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _log import append, finished, print_diverged, read_log  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from _machine import machine_name  # noqa: E402
from _split import add_split_options, load_split  # noqa: E402


def hand_recipe() -> Any:
    from training import TrainConfig

    return TrainConfig(
        model="cnn_reg",
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        batch_size=128,
        schedule="cosine",
        warmup=0.2,
        label_smoothing=0.1,
        tta=True,
    )


def recipes() -> dict[str, Any]:
    from training import REPORT_RECIPE

    return {"report": REPORT_RECIPE, "hand": hand_recipe()}


def run_recipes(args: argparse.Namespace, done: set[tuple[str, int]]) -> None:
    """Each hand recipe x seed, through search.compare's runner, logged as this benchmark's rows."""
    from search import CompareData, CompareEntry, RunHooks, train_runs

    entries = [
        CompareEntry(name, recipes()[name].replace(epochs=args.epochs, **_overrides(args)))
        for name in args.recipes
    ]
    if all((e.name, s) in done for e in entries for s in args.seeds):
        return
    train_set, val_set, test_set = load_split(args)

    def log(record: Any) -> None:
        row = {
            "row": record.entry,  # the name this benchmark's table (and older logs) use
            **record.to_row(),
            **_scale(args, len(train_set)),
        }
        append(args.log, row)
        print(f"{record.entry} seed {record.seed}: {record.outcome()}", flush=True)

    train_runs(
        entries,
        args.seeds,
        CompareData(train_set, val_set, test_set),
        device=args.device,
        done=done,
        hooks=RunHooks(done=log),
    )


def run_search(args: argparse.Namespace, done: set[tuple[str, int]]) -> None:
    studies = args.work / "studies"
    base = ["--studies-dir", str(studies), "--data", str(args.data)]
    pending = [seed for seed in args.retrain_seeds if ("search", seed) not in done]
    if not pending:
        return
    if not (args.work / "search.done").exists():
        args.work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "search.run",
            "--space",
            "cnn_reg",
            "--trials",
            str(args.trials),
            "--max-epochs",
            str(args.epochs),
            "--train-size",
            str(args.train_size),
            "--val-size",
            str(args.val_size),
            "--seed",
            str(args.split_seed),
            *base,
            *args.search_args,
        ]
        print("running: " + " ".join(command), flush=True)
        # A re-run of the same command continues the study, so an interrupted search resumes.
        with (args.work / "search.log").open("a") as out:
            subprocess.run(command, cwd=REPO, check=True, stdout=out, stderr=subprocess.STDOUT)
        (args.work / "search.done").write_text(
            json.dumps({"seconds": round(time.perf_counter() - start, 1)})
        )
    search_seconds = json.loads((args.work / "search.done").read_text())["seconds"]
    for seed in pending:
        out = args.work / f"retrain-seed{seed}"
        command = [
            sys.executable,
            "-m",
            "search.retrain",
            "--study",
            "cnn_reg",
            "--epochs",
            str(args.epochs),
            "--train-size",
            str(args.train_size),
            "--seed",
            str(seed),
            "--out",
            str(out),
            *base,
        ]
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        metrics = json.loads((out / "metrics.json").read_text())
        row = {
            "row": "search",
            "seed": seed,
            "test_accuracy": metrics["test_accuracy"],
            "val_accuracy": metrics["final_val_accuracy"],
            "seconds": round(time.perf_counter() - start, 1),
            "search_seconds": search_seconds,
            "trials": args.trials,
            "trial": metrics["trial"],
            "search_val_accuracy": metrics["search_val_accuracy"],
            "config": json.loads((out / "config.json").read_text()),
            **_scale(args, args.train_size),
        }
        append(args.log, row)
        print(f"search + retrain seed {seed}: test {100 * row['test_accuracy']:.2f}%", flush=True)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"precision": args.precision} if args.precision else {}


def _scale(args: argparse.Namespace, train_size: int) -> dict[str, Any]:
    return {
        "epochs": args.epochs,
        "train_size": train_size,
        "val_size": args.val_size,
        "machine": machine_name(),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| row | runs | test accuracy, mean ± sd | per run | train time per run "
        "| search |\n|---|---|---|---|---|---|"
    )
    for name in ("report", "hand", "search"):
        mine = [r for r in finished(rows) if r["row"] == name]
        if not mine:
            continue
        accs = [100 * r["test_accuracy"] for r in mine]
        spread = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        search = "-"
        if name == "search":
            search = f"{mine[0]['trials']} trials, {mine[0]['search_seconds'] / 60:.0f} min"
        print(
            f"| {name} | {len(mine)} | {statistics.mean(accs):.2f} ± {spread:.2f} % "
            f"| {', '.join(f'{a:.2f}' for a in accs)} "
            f"| {statistics.mean(r['seconds'] for r in mine) / 60:.1f} min | {search} |"
        )
    if rows:
        first = rows[0]
        print(
            f"\n{first['epochs']} epochs, {first['train_size']} training images, validation "
            f"{first['val_size']}, on {first['machine']}"
        )
    print_diverged(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    add_split_options(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="*", default=["report", "hand"])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--retrain-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--precision", default=None, help="TrainConfig.precision for the recipes")
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per run")
    parser.add_argument(
        "--work", type=Path, default=None, help="search study folder (default: beside --log)"
    )
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("search_args", nargs="*", help="after --: more search.run options")
    args = parser.parse_args()
    args.work = args.work or args.log.with_suffix("")
    if not args.table_only:
        done = {(r["row"], r["seed"]) for r in read_log(args.log)}
        run_recipes(args, done)
        if not args.skip_search:
            run_search(args, done)
    print_table(read_log(args.log))


if __name__ == "__main__":
    main()
