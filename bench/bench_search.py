"""Overhead of a search: a real `python -m search.run`, timed, then its study read back.

For each --gpus-per-trial value it runs one search in a fresh study under --out and reports:
  wall        the command's wall time, start to exit (imports, data, Ray start and stop included);
  train       the trials' training time summed: a COMPLETE trial's `wall_time` user attribute
              (its whole `training.train` call plus saving the weights); a PRUNED trial has none
              in the study, so the sum of its epochs' `epoch_time` from Ray's result.json;
  overhead    per trial = (wall - train / concurrency) / trials: what a trial costs beyond its
              training when `concurrency` trials run at once;
and splits the wall time with the trials' start/complete times from the study: startup (command
start to the first trial), span (first trial start to last trial end), teardown (to exit), and
the in-search overhead per trial = (span - train / concurrency) / trials, which leaves out the
fixed start and stop costs. With a GPU, `nvidia-smi` samples utilisation every 200 ms in the
background; reported: the mean busy % over the span (and over the whole command).

    .venv/bin/python bench/bench_search.py [--trials 8] [--max-epochs 2] [--train-size 1000]
        [--val-size 500] [--gpus-per-trial 1 0.5 | --sweep] [--out DIR] [--json PATH]
        [-- EXTRA search.run ARGUMENTS, e.g. --grace-period 2; not --study, --storage or --out]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _machine import cpu_model  # noqa: E402  (bench/ is sys.path[0] when run as a script)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"
SWEEP = (1.0, 0.5, 0.25, 0.125)  # 1, 2, 4, 8 trials sharing one GPU
_CONCURRENCY = re.compile(r"up to (\d+) at once")


@dataclass
class TrialTimes:
    """One trial's times, seconds; `train` is None when nothing recorded it."""

    number: int
    state: str
    epochs: int
    train: float | None
    train_source: str  # "wall_time", "trial_time" or "epoch_time sum (ray)"
    lifetime: float | None  # study datetime_start (suggested) to datetime_complete (told)


@dataclass
class SearchRun:
    """What one `search.run` cost."""

    gpus_per_trial: float
    concurrency: int
    trials: int
    states: dict[str, int]
    wall_s: float
    startup_s: float | None
    span_s: float | None
    teardown_s: float | None
    train_sum_s: float
    trials_without_train_time: int
    overhead_per_trial_s: float
    in_search_overhead_per_trial_s: float | None
    mean_latency_outside_training_s: float | None
    # The first `concurrency` trials start Ray workers (imports, data transfer); later ones reuse
    # those actors, so their latency is the per-trial cost that grows with the trial count.
    first_wave_latency_s: float | None
    later_latency_s: float | None
    gpu_busy_percent_span: float | None = None
    gpu_busy_percent_wall: float | None = None
    gpu_samples: int = 0
    study_db: str = ""
    per_trial: list[dict[str, Any]] = field(default_factory=list)


def visible_gpus() -> list[str] | None:
    """nvidia-smi's `--id=...` for the GPUs CUDA (and so Ray) will use, as nvidia-smi ignores
    CUDA_VISIBLE_DEVICES: [] when it is unset (all GPUs), None when it is set but empty, which
    hides every GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return []
    return [f"--id={visible.strip()}"] if visible.strip() else None


def gpu_names() -> list[str]:
    """The GPUs nvidia-smi lists that CUDA may use; empty when there is none (or no driver)."""
    visible = visible_gpus()
    if visible is None or shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", *visible],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class GpuSampler:
    """`nvidia-smi ... -lms 200` in the background; each line stamped with the time it came."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (unix time, busy %), one per GPU per tick
        self._proc = subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-lms",
                "200",
                *(visible_gpus() or []),  # only made when gpu_names() found some
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append((time.time(), float(line.strip())))
            except ValueError:  # "[N/A]" or a blank line
                pass

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._thread.join(timeout=10)

    def mean(self, start: float | None = None, end: float | None = None) -> float | None:
        """Mean busy % over the samples in [start, end] (all of them by default)."""
        values = [
            v
            for t, v in self.samples
            if (start is None or t >= start) and (end is None or t <= end)
        ]
        return round(statistics.fmean(values), 1) if values else None


def ray_results(ray_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every Ray trial's reported results (one dict per epoch), by Ray trial id."""
    results: dict[str, list[dict[str, Any]]] = {}
    for path in ray_dir.glob("*/*/result.json"):
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed run
                pass
        if rows and "trial_id" in rows[0]:
            results[rows[0]["trial_id"]] = rows
    return results


def trial_times(storage_url: str, study_name: str, ray_dir: Path) -> list[TrialTimes]:
    """Per-trial training time and lifetime, from the study and Ray's result files."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    ray = ray_results(ray_dir)
    times = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        rows = ray.get(attrs.get("ray_trial_id", ""), [])
        train, source = None, ""
        if "wall_time" in attrs:
            train, source = float(attrs["wall_time"]), "wall_time"
        elif "trial_time" in attrs:  # recorded for every end state, should the trainable say so
            train, source = float(attrs["trial_time"]), "trial_time"
        elif rows and all("epoch_time" in r for r in rows):
            train, source = sum(float(r["epoch_time"]) for r in rows), "epoch_time sum (ray)"
        lifetime = None
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            lifetime = (trial.datetime_complete - trial.datetime_start).total_seconds()
        times.append(
            TrialTimes(
                number=trial.number,
                state=trial.state.name,
                epochs=int(attrs.get("epochs_run", len(trial.intermediate_values))),
                train=_round(train),
                train_source=source,
                lifetime=_round(lifetime),
            )
        )
    return times


def run_search(
    args: argparse.Namespace, gpus_per_trial: float | None, study: str, out: Path, has_gpu: bool
) -> SearchRun:
    """Run one search as a subprocess, then read back what it recorded."""
    # Named outright, so a $SEARCH_STORAGE in the environment cannot send the study elsewhere.
    storage_url = f"sqlite:///{(out / f'{study}.db').resolve()}"
    command = [
        sys.executable,
        "-m",
        "search.run",
        "--space",
        args.space,
        "--study",
        study,
        "--storage",
        storage_url,
        "--trials",
        str(args.trials),
        "--max-epochs",
        str(args.max_epochs),
        "--train-size",
        str(args.train_size),
        "--val-size",
        str(args.val_size),
        "--data",
        str(args.data),
        "--out",
        str(out),
        "--seed",
        str(args.seed),
    ]
    if gpus_per_trial is not None:
        command += ["--gpus-per-trial", f"{gpus_per_trial:g}"]
    command += args.extra
    print("$ " + " ".join(command[1:]), flush=True)
    sampler = GpuSampler() if has_gpu else None
    lines: list[str] = []
    # Naive local times, as Optuna stamps trials, so the two clocks line up.
    started_at = datetime.datetime.now()
    start = time.perf_counter()
    with subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            print("  | " + line, end="", flush=True)
    wall = time.perf_counter() - start
    ended_at = datetime.datetime.now()
    if sampler is not None:
        sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"search.run exited with status {proc.returncode}; see its output above")

    found = [int(m.group(1)) for line in lines if (m := _CONCURRENCY.search(line))]
    concurrency = found[-1] if found else 1
    times = trial_times(storage_url, study, out / study / "ray")
    states: dict[str, int] = {}
    for t in times:
        states[t.state] = states.get(t.state, 0) + 1
    n = max(len(times), 1)
    train_sum = sum(t.train for t in times if t.train is not None)
    starts, ends = _study_window(storage_url, study)
    startup = span = teardown = in_search = None
    if starts is not None and ends is not None:
        startup = (starts - started_at).total_seconds()
        span = (ends - starts).total_seconds()
        teardown = (ended_at - ends).total_seconds()
        in_search = (span - train_sum / concurrency) / n
    latency = {
        t.number: t.lifetime - t.train
        for t in times
        if t.lifetime is not None and t.train is not None
    }
    first_wave = sorted(latency)[:concurrency]
    later = [v for k, v in latency.items() if k not in first_wave]
    result = SearchRun(
        gpus_per_trial=gpus_per_trial if gpus_per_trial is not None else 0.0,
        concurrency=concurrency,
        trials=len(times),
        states=states,
        wall_s=round(wall, 2),
        startup_s=_round(startup),
        span_s=_round(span),
        teardown_s=_round(teardown),
        train_sum_s=round(train_sum, 2),
        trials_without_train_time=sum(t.train is None for t in times),
        overhead_per_trial_s=round((wall - train_sum / concurrency) / n, 2),
        in_search_overhead_per_trial_s=_round(in_search),
        mean_latency_outside_training_s=_mean(list(latency.values())),
        first_wave_latency_s=_mean([latency[k] for k in first_wave]),
        later_latency_s=_mean(later),
        study_db=storage_url,
        per_trial=[asdict(t) for t in times],
    )
    if sampler is not None:
        result.gpu_samples = len(sampler.samples)
        result.gpu_busy_percent_wall = sampler.mean()
        if starts is not None and ends is not None:
            result.gpu_busy_percent_span = sampler.mean(starts.timestamp(), ends.timestamp())
    return result


def _study_window(
    storage_url: str, study: str
) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """The first trial's start and the last trial's end, as the study recorded them."""
    import optuna

    trials = optuna.load_study(study_name=study, storage=storage_url).get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    return (min(starts) if starts else None, max(ends) if ends else None)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def print_table(runs: list[SearchRun]) -> None:
    header = (
        f"{'gpu/trial':>9} {'conc':>4} {'trials':>6} {'wall s':>7} {'startup':>7} "
        f"{'span':>7} {'teardn':>6} {'train s':>8} {'ovh/trial':>9} {'in-search':>9} "
        f"{'lat 1st':>7} {'lat later':>9} {'GPU busy %':>10}"
    )
    print(header)
    for r in runs:
        busy = (
            "-"
            if r.gpu_busy_percent_span is None
            else (f"{r.gpu_busy_percent_span:.0f} ({r.gpu_busy_percent_wall:.0f})")
        )
        print(
            f"{r.gpus_per_trial:>9g} {r.concurrency:>4} {r.trials:>6} {r.wall_s:>7.1f} "
            f"{_fmt(r.startup_s):>7} {_fmt(r.span_s):>7} {_fmt(r.teardown_s):>6} "
            f"{r.train_sum_s:>8.1f} {r.overhead_per_trial_s:>9.2f} "
            f"{_fmt(r.in_search_overhead_per_trial_s, 2):>9} "
            f"{_fmt(r.first_wave_latency_s, 2):>7} {_fmt(r.later_latency_s, 2):>9} "
            f"{busy:>10}"
        )
    print(
        "ovh/trial = (wall - train/conc)/trials; in-search = (span - train/conc)/trials; "
        "lat = mean of (trial lifetime in the study - its training time) over the first wave "
        "of `conc` trials (Ray workers starting) and over the later ones (actors reused); "
        "GPU busy % over the span (over the whole command)"
    )
    for r in runs:
        if r.trials_without_train_time:
            print(
                f"note: {r.trials_without_train_time} trial(s) at {r.gpus_per_trial:g} GPU had "
                "no recorded training time and count as 0 s"
            )


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after `--` go to search.run as they are.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--space", default="cnn_reg", help="search space (studies/)")
    parser.add_argument("--trials", type=int, default=8, help="trials per search")
    parser.add_argument("--max-epochs", type=int, default=2, help="epochs of a full trial")
    parser.add_argument("--train-size", type=int, default=1000, help="training images a trial")
    parser.add_argument("--val-size", type=int, default=500, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="search.run --seed")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 location")
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        nargs="+",
        default=None,
        help="one search per value; none given: 0.25 with a GPU, else 0 (CPU)",
    )
    parser.add_argument(
        "--sweep", action="store_true", help=f"--gpus-per-trial {' '.join(f'{g:g}' for g in SWEEP)}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the study databases; none given: a new temporary one",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    args.extra = extra

    gpus = gpu_names()
    if args.sweep:
        values: list[float] = list(SWEEP)
    elif args.gpus_per_trial is not None:
        values = args.gpus_per_trial
    else:
        values = [0.25 if gpus else 0.0]
    if any(v > 0 for v in values) and not gpus:
        parser.error("--gpus-per-trial > 0 or --sweep needs a GPU; nvidia-smi found none")
    out = (args.out or Path(tempfile.mkdtemp(prefix="bench-search-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)

    machine = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "gpus": gpus,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    print(
        f"machine: CPU {machine['cpu']} ({machine['logical_cores']} logical cores)"
        + (f"; GPU {', '.join(gpus)}" if gpus else "; no GPU")
    )
    print(
        f"{args.space}: {args.trials} trials, max {args.max_epochs} epochs, train "
        f"{args.train_size}, val {args.val_size}; studies in {out}",
        flush=True,
    )

    runs = []
    for value in values:
        study = f"bench-gpu{value:g}"
        if (out / f"{study}.db").exists():
            raise SystemExit(
                f"{out / f'{study}.db'} exists (a re-run would continue that study "
                "instead of timing a new one); pass a new --out"
            )
        runs.append(run_search(args, value, study, out, bool(gpus)))
        print(flush=True)
    print_table(runs)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "space": args.space,
                    "trials": args.trials,
                    "max_epochs": args.max_epochs,
                    "train_size": args.train_size,
                    "val_size": args.val_size,
                    "extra_args": extra,
                    "runs": [asdict(r) for r in runs],
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
