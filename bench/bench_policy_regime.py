"""Where do augmentation policies pay? No policy against the free ones over a grid of children.

Issue 23: on the policy space's child (studies.policy.child_recipe: cnn_reg, Adam 2e-3, cosine,
weight decay 5e-4, crop + flip + Cutout 16, cnn_reg's dropout 0.2/0.3/0.4) every policy cost
accuracy against none (bench/RESULTS.md, 2026-11-28). The literature's policies paid on children
with more capacity, longer schedules and fewer other regularisers (AutoAugment's reduced
CIFAR-10: 4,000 images, Wide-ResNet; TrivialAugment: WRN-40-2 and up, 200 epochs). Each cell
below changes one or two of those from the child; each trains none, `cifar10` and
`trivialaugment` (`--policies`) over `--seeds`, all on one split (search.compare's runner:
the runs of one seed share the initial weights, so the differences are paired), tested once.

Cells (`--cells`, default all, cheapest first):
  child          the child as the policy space trains it: 5,000 images, 60 epochs;
  no_dropout     the child without its dropout;
  no_cutout      the child without Cutout;
  bare           neither dropout nor Cutout (crop + flip only);
  bare_2k        bare on 2,000 images;
  bare_10k       bare on 10,000 images;
  bare_long      bare for 150 epochs;
  shake_2k       shake26_2x32d (Gastaldi 2017's smallest width) on 2,000 images, 60 epochs, no
                 Cutout (Shake-Shake has no dropout), the child's optimizer.
Per run one JSON line in --log (search.compare's record plus the cell); a re-run skips what the
log holds. The table: per cell, each policy's mean test accuracy, and for the best policy its
paired difference to none with the seeds' spread: "pays" when every seed's difference is
positive and the mean difference exceeds the larger of the two entries' seed sd.

    .venv/bin/python bench/bench_policy_regime.py --log bench/logs/policy-regime.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _log import append, finished, print_diverged, read_log  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from _split import DEFAULT_DATA  # noqa: E402

NO_DROPOUT = {"dropout": [0.0, 0.0, 0.0]}
# cell -> (training images, epochs, changes to the child's TrainConfig)
CELLS: dict[str, tuple[int, int, dict[str, Any]]] = {
    "child": (5000, 60, {}),
    "no_dropout": (5000, 60, {"model_kwargs": NO_DROPOUT}),
    "no_cutout": (5000, 60, {"cutout": 0}),
    "bare": (5000, 60, {"model_kwargs": NO_DROPOUT, "cutout": 0}),
    "bare_2k": (2000, 60, {"model_kwargs": NO_DROPOUT, "cutout": 0}),
    "bare_10k": (10000, 60, {"model_kwargs": NO_DROPOUT, "cutout": 0}),
    "bare_long": (5000, 150, {"model_kwargs": NO_DROPOUT, "cutout": 0}),
    "shake_2k": (2000, 60, {"model": "shake26_2x32d", "cutout": 0}),
}
POLICIES = ("none", "cifar10", "trivialaugment")


def cell_entries(cell: str, policies: list[str], precision: str | None) -> list[Any]:
    """The cell's child under each policy, as search.compare's entries."""
    from search import CompareEntry
    from studies.policy import child_recipe

    _, epochs, changes = CELLS[cell]
    base = child_recipe().replace(epochs=epochs, **changes)
    if precision:
        base = base.replace(precision=precision)
    return [CompareEntry(p, base.replace(policy=None if p == "none" else p)) for p in policies]


def run_cell(args: argparse.Namespace, cell: str) -> None:
    """The cell's runs the log lacks, each logged as it finishes."""
    import torch

    from search import RunHooks, read_compare_data, train_runs

    done = {(r["entry"], r["seed"]) for r in read_log(args.log) if r["cell"] == cell}
    entries = cell_entries(cell, args.policies, args.precision)
    if all((e.name, s) in done for e in entries for s in args.seeds):
        return
    torch.set_num_threads(args.threads)
    data, write_caches = read_compare_data(
        args.data,
        train_size=CELLS[cell][0],
        val_size=args.val_size,
        split_seed=args.split_seed,
        test_size=args.test_size,
    )
    write_caches()
    data = dataclasses.replace(data, val=None)  # nothing reads it; the test split is scored once

    def log(record: Any) -> None:
        append(args.log, {"cell": cell, **record.to_row(), "train_size": len(data.train)})
        print(
            f"{cell} {record.entry} seed {record.seed}: {record.outcome()} "
            f"({record.seconds / 60:.1f} min)",
            flush=True,
        )

    train_runs(entries, args.seeds, data, device=args.device, done=done, hooks=RunHooks(done=log))


def cell_summary(rows: list[dict[str, Any]], cell: str) -> dict[str, Any] | None:
    """Per policy the test accuracies (%) by seed; the best policy's paired difference to none
    (mean, per seed) and whether it pays (module docstring). None: no run of the cell."""
    mine = [r for r in finished(rows) if r["cell"] == cell]
    if not mine:
        return None
    by_policy: dict[str, dict[int, float]] = {}
    for r in mine:
        by_policy.setdefault(r["entry"], {})[r["seed"]] = 100 * r["test_accuracy"]
    summary: dict[str, Any] = {"cell": cell, "tests": by_policy, "minutes": _minutes(mine)}
    none = by_policy.get("none", {})
    others = {p: t for p, t in by_policy.items() if p != "none" and set(t) & set(none)}
    if not none or not others:
        return summary
    best = max(others, key=lambda p: statistics.mean(others[p].values()))
    seeds = sorted(set(others[best]) & set(none))
    diffs = [others[best][s] - none[s] for s in seeds]
    spread = max(_sd(list(none.values())), _sd(list(others[best].values())))
    summary.update(
        best=best,
        diffs=diffs,
        diff=statistics.mean(diffs),
        spread=spread,
        pays=len(diffs) > 1 and min(diffs) > 0 and statistics.mean(diffs) > spread,
    )
    return summary


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def _minutes(rows: list[dict[str, Any]]) -> float:
    return statistics.mean(r["seconds"] for r in rows) / 60


def print_table(rows: list[dict[str, Any]], cells: list[str], policies: list[str]) -> None:
    heads = " | ".join(f"{p} %" for p in policies)
    print(
        f"\n| cell | images | epochs | {heads} | best policy - none (per seed) | larger seed sd "
        "| pays? | min per run |\n|" + "---|" * (len(policies) + 7)
    )
    for cell in cells:
        images, epochs, _ = CELLS[cell]
        s = cell_summary(rows, cell)
        if s is None:
            print(f"| {cell} | {images} | {epochs} | " + "owed | " * len(policies) + "| | | |")
            continue
        means = " | ".join(_mean_cell(s["tests"].get(p)) for p in policies)
        if "best" in s:
            per_seed = ", ".join(f"{d:+.2f}" for d in s["diffs"])
            verdict = "**yes**" if s["pays"] else "no"
            tail = f"{s['best']} {s['diff']:+.2f} ({per_seed}) | {s['spread']:.2f} | {verdict}"
        else:
            tail = "- | - | -"
        print(f"| {cell} | {images} | {epochs} | {means} | {tail} | {s['minutes']:.1f} |")
    if rows:
        first = rows[0]
        print(f"\nprecision {first['precision']}, on {first['machine']}, torch {first['torch']}")
    print_diverged(rows)


def _mean_cell(tests: dict[int, float] | None) -> str:
    if not tests:
        return "owed"
    values = list(tests.values())
    sd = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{sd} ({len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--val-size", type=int, default=5000, help="held out, as in a search")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--precision", default=None, help="TrainConfig.precision of the runs")
    parser.add_argument("--epochs", type=int, default=None, help="smoke runs: replaces each cell's")
    parser.add_argument("--test-size", type=int, default=None, help="smoke runs: test images")
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per run")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if args.epochs is not None:
        for cell, (images, _, changes) in CELLS.items():
            CELLS[cell] = (images, args.epochs, changes)
    if not args.table_only:
        for cell in args.cells:
            run_cell(args, cell)
    print_table(read_log(args.log), args.cells, args.policies)


if __name__ == "__main__":
    main()
