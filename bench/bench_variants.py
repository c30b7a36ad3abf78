"""What each change to a recipe buys: the recipe and its variants, same data, split and seeds.

A recipe (a TrainConfig as JSON: a `config.json` that `search.retrain` wrote, whose
"train_config" is taken, or a bare TrainConfig dict) is trained as it is ("base") and once per
`--variant NAME=JSON` with those TrainConfig fields changed, each at every `--seeds`, on the same
training subset and validation split as `bench_quality.py`, then tested once on the test split.
It answers the question a search space is built from: which knobs move the result at this scale.

    .venv/bin/python bench/bench_variants.py \\
        --recipe bench/out/quality-cpu-48/retrain-seed0/config.json --seeds 0 1 \\
        --variant 'adamw_0.05={"optimizer": "adamw", "weight_decay": 0.05}' \\
        --variant 'batch16={"batch_size": 16, "lr": 0.00324}' \\
        --log bench/out/variants-cpu.jsonl

The recipe's own `epochs` and `seed` are replaced by `--epochs` and each of `--seeds`. Every
finished run is one JSON line of `--log`; a re-run skips what is there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _log import append, read_log  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from _machine import machine_name  # noqa: E402
from _split import add_split_options, load_split  # noqa: E402


def variant(text: str) -> tuple[str, dict[str, Any]]:
    """'NAME={"field": value}' -> (NAME, {"field": value})."""
    name, sep, changes = text.partition("=")
    try:
        parsed = json.loads(changes) if sep else None
    except json.JSONDecodeError:
        parsed = None
    if not name or not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            f"invalid variant {text!r}; expected NAME={{JSON object of TrainConfig fields}}"
        )
    return name, parsed


def load_recipe(path: Path) -> dict[str, Any]:
    values = json.loads(path.read_text())
    return values.get("train_config", values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, required=True, help="TrainConfig JSON")
    parser.add_argument("--variant", type=variant, action="append", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=15)
    add_split_options(parser)
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per run")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()

    from training import TrainConfig

    try:  # a bad recipe or field fails here, in one line, before any training
        base = TrainConfig.from_dict(load_recipe(args.recipe)).replace(epochs=args.epochs)
        variants = {"base": base}
        for name, changes in args.variant:
            variants[name] = base.replace(**changes)
    except (OSError, ValueError, TypeError) as error:
        parser.error(str(error))
    if not args.table_only:
        run(args, variants)
    print_table(read_log(args.log), list(variants))


def run(args: argparse.Namespace, variants: dict[str, Any]) -> None:
    from training import evaluate, train

    done = {(r["variant"], r["seed"]) for r in read_log(args.log)}
    todo = [(n, s) for n in variants for s in args.seeds if (n, s) not in done]
    if not todo:
        return
    train_set, val_set, test_set = load_split(args)
    for name, seed in todo:
        config = variants[name].replace(seed=seed)
        start = time.perf_counter()
        result = train(config, train_set, val_set, device=args.device)
        tested = evaluate(
            result.model, test_set, device=args.device, tta=config.tta, precision=result.precision
        )
        append(
            args.log,
            {
                "variant": name,
                "seed": seed,
                "test_accuracy": tested.accuracy,
                "val_accuracy": result.history[-1].val_accuracy,
                "seconds": round(time.perf_counter() - start, 1),
                "config": config.to_dict(),
                "precision": result.precision,  # what ran ("auto" resolved)
                "train_size": len(train_set),
                "val_size": len(val_set),
                "machine": machine_name(),
            },
        )
        print(f"{name} seed {seed}: test {100 * tested.accuracy:.2f}%", flush=True)


def print_table(rows: list[dict[str, Any]], names: list[str]) -> None:
    print("\n| variant | runs | test accuracy, mean | per run | train time per run |")
    print("|---|---|---|---|---|")
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        if not mine:
            continue
        accs = [100 * r["test_accuracy"] for r in mine]
        print(
            f"| {name} | {len(mine)} | {statistics.mean(accs):.2f} % "
            f"| {', '.join(f'{a:.2f}' for a in accs)} "
            f"| {statistics.mean(r['seconds'] for r in mine) / 60:.1f} min |"
        )


if __name__ == "__main__":
    main()
