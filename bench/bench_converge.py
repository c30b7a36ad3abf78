"""Would Optuna's Terminator have stopped the logged `cnn_reg` searches early or late?

A replay, no training. Each search's progress log (`bench/logs/quality-cpu*-search.log`, one line
per finished trial, in the order they finished: number, state, epochs, last validation accuracy)
is read back, continued studies joined to the runs they continued (the 48-trial study of
2026-11-28 is the 24-trial one continued; v2's 72 and 96 continue its 48), and replayed one
finished trial at a time into an in-memory Optuna study. After each one:

- Optuna's `Terminator` with `BestValueStagnationEvaluator` at its defaults (stop once 30 COMPLETE
  trials in a row did not improve the best, judged from 20 COMPLETE trials): the logs hold no
  trial's parameters (only the best's configuration), and the default `RegretBoundEvaluator`
  fits a Gaussian process to parameters and values, so the stagnation rule is what the logs can
  replay;
- where the best so far stands: the trial that found the final best, and the first trial whose
  best so far was within one standard error of the final best on the 5,000-image split
  (sqrt(p (1 - p) / n), search/_converge.py): a stop there loses nothing the split can measure.
  A stop before it is early; a stop long after it is late.

The regret bound itself (what `--stop-when-converged` uses) is replayed on the one log that holds
parameters and values: `bench/logs/rank-cnn_reg-cpu.jsonl`, 24 random `cnn_reg` configurations
trained to 15 epochs each (bench_rank.py; no pruning, an earlier version of the space without
the crop padding), judged at 20 to 24 trials.

    .venv/bin/python bench/bench_converge.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _machine import cpu_model  # noqa: E402

from search._converge import MIN_TRIALS, estimate, split_error  # noqa: E402

LOGS = REPO / "bench" / "logs"
VAL_IMAGES = 5000  # every logged search's validation split
# (name, the logs of the runs that made the study, in order)
SEARCHES = [
    ("2026-11-28, 24 continued to 48", ["quality-cpu-search.log", "quality-cpu-48-search.log"]),
    ("2026-11-28 v2, 48", ["quality-cpu-v2-search.log"]),
    (
        "2026-11-28 v2, 48 continued to 96",
        [
            "quality-cpu-v2-search.log",
            "quality-cpu-v2-72-search.log",
            "quality-cpu-v2-96-search.log",
        ],
    ),
    ("2026-12-01 v3, 48", ["quality-cpu-v3-search.log"]),
    ("2026-12-01 v3b, 48", ["quality-cpu-v3b-search.log"]),
]
RANK_LOG = "rank-cnn_reg-cpu.jsonl"
_FINISHED = re.compile(r"trial #(\d+) (COMPLETE|PRUNED) after (\d+) epochs, val ([\d.]+)%")
_DONE = re.compile(r": (\d+) trial\(s\) done, ")


@dataclass(frozen=True)
class Finished:
    number: int
    state: str
    value: float


def read_search(names: list[str]) -> list[Finished]:
    """The finished trials of the runs in `names`, in the order they finished; each run's
    opening line must count the trials the runs before it finished."""
    finished: list[Finished] = []
    for name in names:
        for line in (LOGS / name).read_text().splitlines():
            done = _DONE.search(line)
            if done and int(done.group(1)) != len(finished):
                raise ValueError(
                    f"{name}: starts from {done.group(1)} trials done, not the "
                    f"{len(finished)} of the logs before it"
                )
            match = _FINISHED.search(line)
            if match:
                number, state, _, value = match.groups()
                finished.append(Finished(int(number), state, round(float(value) / 100, 6)))
    return finished


def replay(finished: list[Finished]) -> dict[str, Any]:
    """Where the best was found, the oracle's stop, and the stagnation Terminator's stop."""
    import optuna
    from optuna.terminator import BestValueStagnationEvaluator, Terminator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        terminator = Terminator(BestValueStagnationEvaluator(), min_n_trials=MIN_TRIALS)
    study = optuna.create_study(direction="maximize")
    complete = [f for f in finished if f.state == "COMPLETE"]
    final = max(f.value for f in complete)
    within = final - split_error(final, VAL_IMAGES)
    row: dict[str, Any] = {
        "finished": len(finished),
        "complete": len(complete),
        "best": final,
        "best_trial": next(f.number for f in complete if f.value == final),
        "stagnation_stop": None,
    }
    best = None
    for count, trial in enumerate(finished, start=1):
        state = getattr(optuna.trial.TrialState, trial.state)
        value = trial.value if trial.state == "COMPLETE" else None
        study.add_trial(optuna.trial.create_trial(state=state, value=value))
        if value is not None and (best is None or value > best):
            best = value
            if value == final:
                row["best_at"] = count
        if best is not None and best >= within and "within_at" not in row:
            row["within_at"] = count
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if row["stagnation_stop"] is None and terminator.should_terminate(study):
                row["stagnation_stop"] = count
    return row


def replay_rank() -> list[dict[str, Any]]:
    """The regret bound after each of the rank log's configurations, from the 2nd on."""
    import optuna

    from studies.cnn_reg import suggest

    rows = [json.loads(line) for line in (LOGS / RANK_LOG).read_text().splitlines() if line]
    study = optuna.create_study(direction="maximize")
    for row in rows:
        # The space's distributions for the logged parameters (the crop padding came later).
        probe = optuna.create_study()
        probe.enqueue_trial(row["params"])
        asked = probe.ask()
        suggest(asked)
        dists = {k: asked.distributions[k] for k in row["params"]}
        study.add_trial(
            optuna.trial.create_trial(
                value=row["val_accuracy"][-1], params=row["params"], distributions=dists
            )
        )
    out = []
    for count in range(2, len(study.trials) + 1):
        judged = estimate(study.trials[:count], VAL_IMAGES)
        best = max(t.value for t in study.trials[:count])
        out.append({"trials": count, "best": best, **judged.to_attrs(), "stop": judged.converged})
    return out


def verdict(row: dict[str, Any]) -> str:
    stop = row["stagnation_stop"]
    if stop is None:
        return "never: the study ended first"
    if stop < row["within_at"]:
        return f"early: {100 * (row['best'] - row['best_at_stop']):.2f} points short"
    return f"late by {stop - row['within_at']} finished trials"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the rows here too")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    results = []
    print(f"machine: {cpu_model()}; optuna {optuna.__version__}")
    print(
        "| search | finished (COMPLETE) | final best (trial) | best found at | within 1 SE "
        "from | stagnation Terminator stops at | early or late |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, logs in SEARCHES:
        finished = read_search(logs)
        row = {"search": name, "logs": logs, **replay(finished)}
        stop = row["stagnation_stop"]
        if stop is not None:
            row["best_at_stop"] = max(
                (f.value for f in finished[:stop] if f.state == "COMPLETE"), default=0.0
            )
        results.append(row)
        print(
            f"| {name} | {row['finished']} ({row['complete']}) | {100 * row['best']:.2f} % "
            f"(#{row['best_trial']}) | {row['best_at']} | {row['within_at']} | "
            f"{stop if stop is not None else 'never'} | {verdict(row)} |"
        )
    print("\nregret bound on the rank log (24 random configurations, params + values):")
    print("| trials | best so far | regret bound | error | Terminator |")
    print("|---|---|---|---|---|")
    rank = replay_rank()
    for point in rank:
        judged = "stop" if point["stop"] else ("go on" if point["trials"] >= MIN_TRIALS else "-")
        print(
            f"| {point['trials']} | {100 * point['best']:.2f} % | "
            f"{100 * point['regret_bound']:.2f} % | {100 * point['error']:.2f} % | {judged} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"searches": results, "rank": rank}, indent=1) + "\n")


if __name__ == "__main__":
    main()
