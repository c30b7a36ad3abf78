"""Do repeated searches land in the same place? R searches per arm, only the sampler's seed differs.

Each search is `python -m search.run --space cnn_reg` with the same data, split (`--seed`),
scale and budget, in its own study (`ARM-R`), so each driver draws its own sampler seed (the
study records it as `sampler_seed`). Arms (`--arms`, default all):
  tpe         TPE as before issue 22: multivariate, grouped, constant liar, no seed trials;
  tpe_seeded  the same TPE after the space's general recipes (`seed:NAME`, run first);
  random      random search, no seed trials;
  gp          Optuna's GP sampler, no seed trials.
Per search, one JSON line in --log: the best validation accuracy, the trial that reached it
(its place among the finished trials), what the seed trials alone reached, the sampler seed.
`--retrain-arms` retrains each of those arms' winners for the search's epochs on the same
training images, once per `--retrain-seeds`, and tests it once (`search.retrain`).
Searches run repeat by repeat, every arm in turn, so a benchmark stopped part way still has a
comparable table. A re-run with the same --log skips what it holds and continues a study it
left unfinished (its `seconds` then count only the continuation).

Scales (`--scale`; each value can still be given by its own option):
  cheap  5,000 training images, 8 epochs, 32 trials, 6 repeats;
  cpu    the quality benchmark's: 10,000 images, 15 epochs, 48 trials, 3 repeats.
Both validate on 5,000 images (split seed 0) and search in bf16 where the CPU has it (auto).

    .venv/bin/python bench/bench_repeat.py --scale cheap --log bench/logs/repeat-cheap.jsonl
    .venv/bin/python bench/bench_repeat.py --scale cpu --arms tpe tpe_seeded \\
        --retrain-arms tpe tpe_seeded --log bench/logs/repeat-cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _log import append, read_log  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from _machine import machine_name  # noqa: E402
from _split import DEFAULT_DATA  # noqa: E402

ARMS: dict[str, list[str]] = {
    "tpe": ["--sampler", "tpe", "--no-seed-trials"],
    "tpe_seeded": ["--sampler", "tpe"],
    "random": ["--sampler", "random", "--no-seed-trials"],
    "gp": ["--sampler", "gp", "--no-seed-trials"],
}
SCALES: dict[str, dict[str, int]] = {
    "cheap": {"train_size": 5000, "epochs": 8, "trials": 32, "repeats": 6},
    "cpu": {"train_size": 10000, "epochs": 15, "trials": 48, "repeats": 3},
}
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def study_name(arm: str, repeat: int) -> str:
    return f"{arm}-{repeat}"


def _common(args: argparse.Namespace) -> list[str]:
    return ["--studies-dir", str(args.work / "studies"), "--data", str(args.data)]


def search_command(args: argparse.Namespace, arm: str, repeat: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "search.run",
        *("--space", "cnn_reg", "--study", study_name(arm, repeat)),
        *("--trials", str(args.trials), "--max-epochs", str(args.epochs)),
        *("--train-size", str(args.train_size), "--val-size", str(args.val_size)),
        *("--seed", str(args.split_seed)),
        *_common(args),
        *ARMS[arm],
        *args.search_args,
    ]


def load_study(args: argparse.Namespace, arm: str, repeat: int) -> Any:
    import optuna

    name = study_name(arm, repeat)
    return optuna.load_study(
        study_name=name, storage=f"sqlite:///{args.work / 'studies' / name}.db"
    )


def search_row(study: Any) -> dict[str, Any]:
    """What one finished search reached: its best, where it was found, its seed trials' best."""
    import optuna

    from search._converge import best_found

    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    seeded = [t for t in complete if str(t.user_attrs.get("source", "")).startswith("seed:")]
    found = best_found(trials)
    best = study.best_trial
    return {
        "best_val": best.value,
        "best_trial": best.number,
        "best_position": found.position if found else None,
        "finished": found.finished if found else 0,
        "complete": len(complete),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "seed_best_val": max((t.value for t in seeded), default=None),
        "seed_vals": {t.user_attrs["source"]: t.value for t in seeded},
        "sampler_seeds": sorted(
            {t.user_attrs["sampler_seed"] for t in trials if "sampler_seed" in t.user_attrs}
        ),
        "best_params": best.params,
    }


def search_precision(search_args: list[str]) -> str:
    """What the searches train in on this machine: search.run's --precision (after --), by
    default auto, as training resolves it here (auto is bf16 on some CPUs, fp32 on others)."""
    import torch

    from training import effective_precision

    given = argparse.ArgumentParser(add_help=False)
    given.add_argument("--precision", default="auto")
    precision = given.parse_known_args(search_args)[0].precision
    return effective_precision(
        precision, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )


def _scale(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "scale": args.scale,
        "trials": args.trials,
        "epochs": args.epochs,
        "train_size": args.train_size,
        "val_size": args.val_size,
        "machine": machine_name(),
        "precision": search_precision(args.search_args),
    }


def run_search(args: argparse.Namespace, arm: str, repeat: int) -> None:
    name = study_name(arm, repeat)
    command = search_command(args, arm, repeat)
    args.work.mkdir(parents=True, exist_ok=True)
    continued = (args.work / "studies" / f"{name}.db").exists()
    print(f"search {name}: " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    with (args.work / f"{name}.log").open("a") as out:
        subprocess.run(command, cwd=REPO, env=ENV, check=True, stdout=out, stderr=subprocess.STDOUT)
    seconds = round(time.perf_counter() - start, 1)
    row = {
        "row": "search",
        "arm": arm,
        "repeat": repeat,
        "study": name,
        "seconds": seconds,
        "continued": continued,
        **search_row(load_study(args, arm, repeat)),
        **_scale(args),
    }
    append(args.log, row)
    print(
        f"search {name}: best {100 * row['best_val']:.2f}% at trial #{row['best_trial']} "
        f"({row['best_position']} of {row['finished']} finished), {seconds / 60:.1f} min",
        flush=True,
    )


def run_retrain(args: argparse.Namespace, arm: str, repeat: int, seed: int) -> None:
    name = study_name(arm, repeat)
    out = args.work / f"{name}-retrain-seed{seed}"
    command = [
        sys.executable,
        "-m",
        "search.retrain",
        *("--study", name, "--epochs", str(args.epochs), "--seed", str(seed)),
        *("--train-size", str(args.train_size), "--out", str(out)),
        *_common(args),
    ]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=ENV, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    row = {
        "row": "retrain",
        "arm": arm,
        "repeat": repeat,
        "study": name,
        "seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "val_accuracy": metrics["final_val_accuracy"],
        "trial": metrics["trial"],
        "seconds": round(time.perf_counter() - start, 1),
        **_scale(args),
    }
    append(args.log, row)
    print(f"retrain {name} seed {seed}: test {100 * row['test_accuracy']:.2f}%", flush=True)


def run_all(args: argparse.Namespace) -> None:
    """Repeat by repeat, each arm's search, then its retrains where asked for."""
    for repeat in range(args.repeats):
        for arm in args.arms:
            rows = read_log(args.log)
            if not any(_is(r, "search", arm, repeat) for r in rows):
                run_search(args, arm, repeat)
            if arm not in args.retrain_arms:
                continue
            for seed in args.retrain_seeds:
                if not any(_is(r, "retrain", arm, repeat) and r["seed"] == seed for r in rows):
                    run_retrain(args, arm, repeat, seed)


def _is(row: dict[str, Any], kind: str, arm: str, repeat: int) -> bool:
    return row["row"] == kind and row["arm"] == arm and row["repeat"] == repeat


def _pct(values: list[float]) -> str:
    return ", ".join(f"{100 * v:.2f}" for v in values)


def arm_summary(rows: list[dict[str, Any]], arm: str) -> dict[str, Any] | None:
    """One arm's searches and retrains, summarised (accuracies in %); None without a search."""
    searches = sorted(
        (r for r in rows if r["row"] == "search" and r["arm"] == arm), key=lambda r: r["repeat"]
    )
    if not searches:
        return None
    best = [100 * r["best_val"] for r in searches]
    seeds = [100 * r["seed_best_val"] for r in searches if r.get("seed_best_val") is not None]
    retrains = [r for r in rows if r["row"] == "retrain" and r["arm"] == arm]
    tests = [100 * r["test_accuracy"] for r in retrains]
    return {
        "arm": arm,
        "searches": len(searches),
        "best_mean": statistics.mean(best),
        "best_min": min(best),
        "best_max": max(best),
        "spread": max(best) - min(best),
        "positions": [r["best_position"] for r in searches],
        "finished": [r["finished"] for r in searches],
        "seed_best": seeds,
        "test": tests,
        "winner_val_sd": winner_val_sd(retrains),
        "minutes": statistics.mean(r["seconds"] for r in searches) / 60,
    }


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def winner_val_sd(retrains: list[dict[str, Any]]) -> float | None:
    """How far one configuration's validation accuracy (%) moves with the training seed alone:
    the sd over each winner's retrains, pooled over the winners with two or more (None: none).
    A search's best is one such draw, so repeats of a search cannot agree much closer."""
    by_winner: dict[int, list[float]] = {}
    for r in retrains:
        by_winner.setdefault(r["repeat"], []).append(100 * r["val_accuracy"])
    variances = [statistics.variance(v) for v in by_winner.values() if len(v) > 1]
    return math.sqrt(statistics.mean(variances)) if variances else None


def print_table(rows: list[dict[str, Any]], arms: list[str]) -> None:
    print(
        "\n| arm | searches | best validation %, mean (min-max) | worst to best | best reached at "
        "(of finished) | seed trials' best % | retrained winners' test % | a winner's "
        "validation sd over training seeds | min per search |\n|" + "---|" * 9
    )
    for arm in arms:
        s = arm_summary(rows, arm)
        if s is None:
            print(f"| {arm} | 0 | owed | | | | | | |")
            continue
        positions = ", ".join(
            f"{p}/{f}" for p, f in zip(s["positions"], s["finished"], strict=True)
        )
        seed = f"{statistics.mean(s['seed_best']):.2f}" if s["seed_best"] else "-"
        test = "-"
        if s["test"]:
            sd = f" ± {statistics.stdev(s['test']):.2f}" if len(s["test"]) > 1 else ""
            test = f"{statistics.mean(s['test']):.2f}{sd} ({len(s['test'])} runs)"
        print(
            f"| {arm} | {s['searches']} | {s['best_mean']:.2f} ({s['best_min']:.2f}-"
            f"{s['best_max']:.2f}) | {s['spread']:.2f} | {positions} | {seed} | {test} "
            f"| {_points(s['winner_val_sd'])} | {s['minutes']:.1f} |"
        )
    searches = [r for r in rows if r["row"] == "search"]
    if searches:
        first = searches[0]
        print(
            f"\n{first['trials']} trials, {first['epochs']} epochs at most, "
            f"{first['train_size']} training images, validation {first['val_size']}; "
            + machines_line(searches)
        )


def machines_line(searches: list[dict[str, Any]]) -> str:
    """Where the searches ran, and in what precision: a log resumed across sessions spans
    machines, and its minutes per search mix them."""
    counts = Counter((r["machine"], r.get("precision", "precision not recorded")) for r in searches)
    return "searches on " + "; ".join(
        f"{machine}, {precision}: {n}" for (machine, precision), n in counts.items()
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cheap")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    for option in ("train-size", "epochs", "trials", "repeats"):
        parser.add_argument(f"--{option}", type=int, default=None, help="default: the scale's")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--split-seed", type=int, default=0, help="search.run --seed")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--retrain-arms", nargs="*", choices=list(ARMS), default=[])
    parser.add_argument("--retrain-seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per run")
    parser.add_argument(
        "--work", type=Path, default=None, help="studies (default: bench/out/LOG_NAME)"
    )
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("search_args", nargs="*", help="after --: more search.run options")
    args = parser.parse_args()
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # Studies and their trial folders are large: by default under bench/out/ (not kept in git).
    args.work = args.work or REPO / "bench" / "out" / args.log.stem
    return args


def main() -> None:
    args = parse_args()
    if not args.table_only:
        run_all(args)
    print_table(read_log(args.log), args.arms)


if __name__ == "__main__":
    main()
