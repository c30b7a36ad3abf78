"""What a policy search is worth: its export against no policy and the free policies, same child.

Three steps, each logged to --log (JSON lines); a re-run skips what the log holds, so an
interrupted benchmark loses at most one run:
  search   `python -m search.run --space policy` (density matching, Fast AutoAugment, Lim et al.
           2019) on --search-train-size images of the training split: wall time, trials per
           minute, and what the fold models cost (their seconds, from the study's record). The
           search never sees the test split. An interrupted search is continued by the re-run
           (its fold models are reused); its time then counts from the re-run only. Its first
           trial is the do-nothing policy (every probability 0): its rank among the completed
           trials says whether the score escapes density matching's degenerate optimum.
  export   `python -m search.export_policy` of that study into WORK/policy.json.
  train    the child recipe of the policy space (studies.policy.child_recipe: cnn_reg, Adam 2e-3,
           cosine, weight decay 5e-4, crop + flip + Cutout 16) for --epochs on --train-size
           images, once per policy (none, cifar10, trivialaugment, randaugment, exported) and
           per --seeds, each tested on the CIFAR-10 test split.
Then one markdown table: test accuracy mean and sd per policy, the search's cost below it.

Scales (`--scale`, each value can still be given by its own option):
  cpu  a search of 200 trials on the space's 4,000 images (5 fold models of 20 epochs, 2 draws,
       5 slices) meant to fit 10 minutes of a 2-core machine, and a comparison on 5,000 images
       for 60 epochs: three times the 20 epochs at which, measured on this machine, no policy
       beat `cifar10` (issue 9), since policies pay on longer schedules. `--precision bf16`
       (search and runs) shortens both on a CPU with native bf16; the record says which
       precision ran.
  gpu  the search on 4,000 images (5 fold models of 40 epochs, 5 draws), the comparison on all
       45,000 training images (the split less 5,000 validation) for 100 epochs.

    .venv/bin/python bench/bench_policy.py --scale cpu --log bench/out/policy-cpu.jsonl
    .venv/bin/python bench/bench_policy.py --scale gpu --log bench/out/policy-gpu.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"

from _log import append, finished, print_diverged, read_log  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from _machine import machine_name  # noqa: E402

POLICIES = ("none", "cifar10", "trivialaugment", "randaugment", "exported")
SCALES: dict[str, dict[str, Any]] = {
    "cpu": {
        "trials": 200,
        "search_train_size": 4000,
        "folds": 5,
        "fold_epochs": 20,
        "draws": 2,
        "slices": 5,
        "train_size": 5000,
        "epochs": 60,
    },
    "gpu": {
        "trials": 200,
        "search_train_size": 4000,
        "folds": 5,
        "fold_epochs": 40,
        "draws": 5,
        "slices": 5,
        "train_size": None,  # all 45,000
        "epochs": 100,
    },
}
STUDY = "policy"


def run_search(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """The density-matching search and its export, unless the log has them."""
    if any(r["row"] == "search" for r in rows):
        return
    studies = args.work / "studies"
    command = [
        sys.executable,
        "-m",
        "search.run",
        "--space",
        "policy",
        "--study",
        STUDY,
        "--studies-dir",
        str(studies),
        "--data",
        str(args.data),
        "--trials",
        str(args.trials),
        "--train-size",
        str(args.search_train_size),
        "--val-size",
        str(args.val_size),
        "--seed",
        str(args.split_seed),
        "--folds",
        str(args.folds),
        "--fold-epochs",
        str(args.fold_epochs),
        "--draws",
        str(args.draws),
        "--max-epochs",
        str(args.slices),
        *(["--precision", args.precision] if args.precision else []),
        *args.search_args,
    ]
    import optuna

    storage = f"sqlite:///{studies / STUDY}.db"
    studies.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=STUDY, storage=storage, direction="maximize", load_if_exists=True
    )
    if not study.trials:
        # The "do nothing" policy (every probability 0) runs first: where it ranks among the
        # completed trials shows whether the score escapes density matching's degenerate optimum
        # (search/_density.py).
        study.enqueue_trial(_do_nothing())
    print("search: " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    seconds = time.perf_counter() - start
    policy_file = args.work / "policy.json"
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "search.export_policy",
            "--study",
            STUDY,
            "--studies-dir",
            str(studies),
            "-o",
            str(policy_file),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    print(export.stdout, end="", flush=True)

    study = optuna.load_study(study_name=STUDY, storage=storage)
    states = [t.state.name for t in study.trials]
    fold_seconds = study.user_attrs["density"]["seconds"]
    complete = sorted(
        (t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: -t.value
    )
    nothing = next((t for t in study.trials if t.params == _do_nothing()), None)
    nothing_rank = None
    if nothing is not None and nothing.state.name == "COMPLETE":
        nothing_rank = 1 + sum(t.value > nothing.value for t in complete)
    append(
        args.log,
        {
            "row": "search",
            "trials": len(states),
            "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"),
            "search_seconds": round(seconds, 1),
            "fold_seconds": fold_seconds,
            "trials_per_minute": round(len(states) / (seconds / 60), 1),
            "best_value": study.best_value,
            # 1 = the do-nothing policy scored best of the COMPLETE trials (None: not COMPLETE).
            "do_nothing_rank": nothing_rank,
            "do_nothing_value": nothing.value if nothing is not None else None,
            "policy_file": str(policy_file),
            "export": export.stdout.strip(),
            "search_train_size": args.search_train_size,
            "folds": args.folds,
            "fold_epochs": args.fold_epochs,
            "draws": args.draws,
            "slices": args.slices,
            "machine": machine_name(),
        },
    )


def _do_nothing() -> dict[str, Any]:
    """The policy space's parameters with every probability 0 (ops and magnitudes arbitrary)."""
    from studies.policy import STEPS, SUB_POLICIES

    return {
        f"sp{i}_s{j}_{key}": value
        for i in range(SUB_POLICIES)
        for j in range(STEPS)
        for key, value in (("op", "ShearX"), ("prob", 0), ("mag", 0))
    }


def run_training(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Each policy x seed on the same child, recipe and schedule, tested on the test split:
    search.compare's runner, logged into --log as this benchmark's rows."""
    import torch

    from search import CompareEntry, RunHooks, read_compare_data, train_runs
    from studies.policy import child_recipe

    done = {(r["row"], r["seed"]) for r in rows if r["row"] != "search"}
    exported = str(args.work / "policy.json")
    base = child_recipe().replace(epochs=args.epochs)
    if args.precision:
        base = base.replace(precision=args.precision)
    entries = [
        CompareEntry(
            name, base.replace(policy={"none": None, "exported": exported}.get(name, name))
        )
        for name in args.policies
    ]
    if all((e.name, s) in done for e in entries for s in args.seeds):
        return
    torch.set_num_threads(args.threads)
    data, write_caches = read_compare_data(
        args.data,
        train_size=args.train_size,
        val_size=args.val_size,
        split_seed=args.split_seed,
        test_size=args.test_size,  # smoke runs only: a stratified part of the test split
    )
    write_caches()
    # No validation pass per epoch: nothing here reads it, and it would cost a quarter of the
    # run; the test split is evaluated once, at the end.
    data = dataclasses.replace(data, val=None)

    def log(record: Any) -> None:
        append(
            args.log,
            {
                "row": record.entry,  # the name this benchmark's table (and older logs) use
                **record.to_row(),
                "train_size": len(data.train),
                "test_size": len(data.test),
                "epochs": args.epochs,
            },
        )
        print(f"{record.entry} seed {record.seed}: {record.outcome()}", flush=True)

    train_runs(entries, args.seeds, data, device=args.device, done=done, hooks=RunHooks(done=log))


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| policy | runs | test accuracy, mean ± sd | per run | train time per run |\n"
        "|---|---|---|---|---|"
    )
    trained = [r for r in rows if r["row"] != "search"]
    for name in POLICIES:
        mine = [r for r in finished(trained) if r["row"] == name]
        if not mine:
            continue
        accs = [100 * r["test_accuracy"] for r in mine]
        spread = f"{statistics.stdev(accs):.2f}" if len(accs) > 1 else "-"
        print(
            f"| {name} | {len(mine)} | {statistics.mean(accs):.2f} ± {spread} % "
            f"| {', '.join(f'{a:.2f}' for a in accs)} "
            f"| {statistics.mean(r['seconds'] for r in mine) / 60:.1f} min |"
        )
    if trained:
        first = trained[0]
        print(
            f"\nchild {first['config']['model']}, {first['epochs']} epochs, "
            f"{first['train_size']} training images, precision {first['config']['precision']}, "
            f"tested on {first['test_size']} test images, on {first['machine']}"
        )
    print_diverged(trained)
    for search in (r for r in rows if r["row"] == "search"):
        print(
            f"search: {search['trials']} trials ({search['complete']} COMPLETE, "
            f"{search['pruned']} PRUNED) in {search['search_seconds'] / 60:.1f} min, "
            f"{search['trials_per_minute']} trials/min, of which fold models "
            f"{search['fold_seconds'] / 60:.1f} min ({search['folds']} x {search['fold_epochs']} "
            f"epochs on {search['search_train_size']} images, {search['draws']} draws, "
            f"{search['slices']} slices), on {search['machine']}"
        )
        rank = search.get("do_nothing_rank")
        print(
            "the do-nothing policy (every probability 0): "
            + (
                f"rank {rank} of {search['complete']} COMPLETE trials"
                if rank
                else "not COMPLETE (pruned or failed)"
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    for key in SCALES["cpu"]:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--split-seed", type=int, default=0, help="the split, as search --seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--precision", default=None, help="TrainConfig.precision of the runs")
    parser.add_argument(
        "--test-size", type=int, default=None, help="smoke runs only: test on this many images"
    )
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per step")
    parser.add_argument(
        "--work", type=Path, default=None, help="study and export folder (default: beside --log)"
    )
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("search_args", nargs="*", help="after --: more search.run options")
    args = parser.parse_args()
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.work = args.work or args.log.with_suffix("")
    if not args.table_only:
        if "exported" in args.policies:
            run_search(args, read_log(args.log))
        run_training(args, read_log(args.log))
    print_table(read_log(args.log))


if __name__ == "__main__":
    main()
