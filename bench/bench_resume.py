"""What a re-run costs for the trials a killed driver left half way: resumed against started over.

A real `cnn_reg` search (local Ray, SQLite, real images; ASHA stops nothing: grace = max
epochs) runs `--trials` trials of `--epochs` epochs; its driver is SIGKILLed once two trials have
reported at least half their epochs. The same command is run again: it marks them FAIL, runs
each again first from its checkpoint, then finishes the study. For each resumed trial, what its
retry cost (its `trial_time`: model, checkpoint load, replayed epochs, remaining epochs) is set
beside training the same configuration from scratch here, timed, with the trial's one thread (the
cost of starting it over), whose final validation accuracy must also equal the retry's.
Issue 20's target: resumed at most 60 % of started over.

    .venv/bin/python bench/bench_resume.py [--trials 8] [--epochs 6] [--images 1000]
        [--val 500] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"

from _machine import cpu_model  # noqa: E402  (bench/ is sys.path[0] when run as a script)

ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def search_command(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "search.run",
        *("--space", "cnn_reg", "--data", str(args.data), "--out", str(out)),
        *("--trials", str(args.trials), "--max-epochs", str(args.epochs)),
        *("--grace-period", str(args.epochs), "--checkpoint-every", "1"),
        *("--train-size", str(args.images), "--val-size", str(args.val), "--precision", "fp32"),
    ]


def load(out: Path) -> Any:
    import optuna

    return optuna.load_study(study_name="cnn_reg", storage=f"sqlite:///{out}/cnn_reg.db")


def kill_when_two_halfway(command: list[str], out: Path, epochs: int) -> set[int]:
    """Run the search until two trials reported at least half their epochs, then SIGKILL it and
    everything it started; the numbers of those two."""
    import optuna

    driver = subprocess.Popen(
        command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while driver.poll() is None:
            time.sleep(0.5)
            try:
                trials = load(out).get_trials()
            except Exception:  # not made yet
                continue
            halfway = {
                t.number
                for t in trials
                if t.state == optuna.trial.TrialState.RUNNING
                and epochs / 2 <= len(t.intermediate_values) < epochs
            }
            if len(halfway) >= 2:
                return halfway
        raise SystemExit("the search ended before two trials were half way")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()


def started_over(command: list[str], trial: Any) -> tuple[float, float]:
    """Seconds to train `trial`'s configuration from scratch on the search's split, with one
    thread as a trial has, and the validation accuracy it ends with."""
    import torch

    from search._job import resolve_job
    from search._trainable import rerun_config
    from search.run import build_parser
    from training import train

    job = resolve_job(build_parser().parse_args(command[3:]))
    config = rerun_config(job.space.name, job.settings, trial)
    torch.set_num_threads(1)
    start = time.perf_counter()
    result = train(config, job.train_set, job.val_set, device="cpu")
    return time.perf_counter() - start, result.history[-1].val_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "logs" / "resume-cpu.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        command = search_command(args, out)
        halfway = kill_when_two_halfway(command, out, args.epochs)
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=ENV, check=True, stdout=subprocess.DEVNULL)
        rerun = time.perf_counter() - start
        trials = load(out).get_trials()
        rows = [_row(command, trials, number) for number in sorted(halfway)]
        finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": cpu_model(),
        "torch": __import__("torch").__version__,
        "trials": args.trials,
        "epochs": args.epochs,
        "images": args.images,
        "rerun_seconds": round(rerun, 1),
        "finished_trials": finished,
        "resumed": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def _row(command: list[str], trials: list[Any], number: int) -> dict[str, Any]:
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == number)
    scratch_seconds, scratch_value = started_over(command, retry)
    resumed_seconds = float(retry.user_attrs["trial_time"])
    return {
        "trial": number,
        "retry": retry.number,
        "epochs_restored": retry.user_attrs.get("resumed_from_epoch", 0),
        "epochs_trained": retry.user_attrs.get("epochs_trained"),
        "resumed_seconds": round(resumed_seconds, 2),
        "started_over_seconds": round(scratch_seconds, 2),
        "ratio": round(resumed_seconds / scratch_seconds, 3),
        "same_value": retry.value == scratch_value,
    }


if __name__ == "__main__":
    main()
