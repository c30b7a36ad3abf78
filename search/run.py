"""A hyperparameter search: `python -m search.run --space cnn_reg`.

Ray Tune runs the trials (a local Ray unless --address names a cluster), an Optuna sampler
suggests each configuration, ASHA stops weak trials, and the study database records everything.
Re-running the same command continues the same study; several drivers may share one study
(e.g. on a PostgreSQL server) and stop together at --trials. Ctrl+C stops a search cleanly (exit
130): its unfinished trials are recorded as FAIL (interrupted) and a re-run continues.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from training import DATA_ENV, DataError, load_cifar10, train_val_split

from ._console import HelpFormatter, fail
from ._samplers import SAMPLERS
from ._space import available_spaces, get_space
from ._study import (
    STORAGE_ENV,
    STUDIES_DIR,
    StudyError,
    count_claimed,
    count_finished,
    default_storage_url,
    fail_interrupted_trials,
    new_run_id,
    open_storage,
    redact,
)
from ._version import project_version

# The exit status of a search stopped with Ctrl+C, as shells report a process ended by SIGINT.
INTERRUPTED_EXIT = 130
CONTINUE_HINT = "run the same command again to continue the study"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.run",
        description="Search a space with Ray Tune + Optuna + ASHA; results go to an Optuna study.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--space", required=True, help="search space: " + ", ".join(available_spaces())
    )
    parser.add_argument("--study", default=None, help="study name (default: the space name)")
    parser.add_argument(
        "--storage",
        default=None,
        help=f"SQLAlchemy URL of the study database (default: ${STORAGE_ENV}, "
        "else sqlite:///studies/STUDY.db); for a password use "
        f"${STORAGE_ENV} or PGPASSWORD rather than the command line",
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=64,
        help="trials the study should hold when done (a re-run continues)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=None,
        help="epochs of a trial that ASHA never stops (default: the space's)",
    )
    parser.add_argument(
        "--grace-period",
        type=positive_int,
        default=1,
        help="epochs every trial gets before ASHA may stop it",
    )
    parser.add_argument(
        "--reduction-factor",
        type=positive_int,
        default=3,
        help="ASHA keeps 1/this of the trials at each rung",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="replace the space's model, e.g. the child model of a policy "
        "search (default: the space's)",
    )
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler")
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPU share of a trial, e.g. 0.25 = four trials per GPU "
        "(default: 0.25 when a GPU is present, else 0 = CPU)",
    )
    parser.add_argument(
        "--cpus-per-trial",
        type=positive_int,
        default=None,
        help="CPU cores per trial (default: 1 on CPU; cores/trials per GPU on GPU)",
    )
    parser.add_argument(
        "--data", default=None, help=f"CIFAR-10 location (default: ${DATA_ENV}, else ./data)"
    )
    parser.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        help="stratified subset of the training images for each trial "
        "(default: the space's, else all but the validation split)",
    )
    parser.add_argument(
        "--val-size",
        type=positive_int,
        default=5000,
        help="stratified validation images held out of the training split",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="fixes the split, the sampler and each trial's seed (seed+number)",
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster address to join (default: start a local Ray)"
    )
    parser.add_argument(
        "--studies-dir",
        "--out",
        dest="out",
        type=Path,
        default=STUDIES_DIR,
        help="folder for study databases and outputs",
    )
    parser.add_argument("--verbose", action="store_true", help="one line per trial epoch")
    return parser


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except KeyboardInterrupt:  # Ctrl+C outside Tune's own handling (or a second one)
        print(f"\nstopped (Ctrl+C); {CONTINUE_HINT}", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    try:
        space = get_space(args.space)
    except ValueError as exc:
        fail(str(exc))
    study_name = args.study or space.name
    max_epochs = args.max_epochs or space.max_epochs
    train_size = args.train_size or space.train_size
    if args.grace_period > max_epochs:
        fail(
            f"--grace-period {args.grace_period} exceeds --max-epochs {max_epochs}; "
            "expected grace period <= max epochs"
        )
    if args.reduction_factor < 2:
        fail(f"--reduction-factor {args.reduction_factor} is too small; expected >= 2")
    if args.gpus_per_trial is not None and not (
        0 <= args.gpus_per_trial and math.isfinite(args.gpus_per_trial)
    ):
        fail(f"--gpus-per-trial {args.gpus_per_trial} is invalid; expected a number >= 0")
    if args.model is not None:
        from models import list_models

        if args.model not in list_models():
            fail(f"unknown model {args.model!r}; expected one of: {', '.join(list_models())}")
    if args.address:
        _check_ray_address(args.address)
    out_dir = args.out.resolve()
    url = args.storage or os.environ.get(STORAGE_ENV) or default_storage_url(study_name, out_dir)

    # Everything that can be wrong with the input is checked before the study is touched, the
    # data first: opening a SQLite storage creates its file.
    try:
        data = load_cifar10(args.data, "train")
        train_set, val_set = train_val_split(data, args.val_size, args.seed, train_size)
    except (DataError, ValueError) as exc:
        fail(str(exc))
    new_paths = _new_sqlite_paths(url)
    try:
        storage = open_storage(url)
    except StudyError as exc:
        _remove_paths(new_paths)
        fail(str(exc))

    import optuna

    from ._study import study_exists

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_is_new = not study_exists(storage, study_name)
    try:
        study = _open_study(
            storage, study_name, space.name, data.source, args, max_epochs, train_size
        )
        interrupted = fail_interrupted_trials(study)
        if interrupted:
            print(
                f"marked {len(interrupted)} trial(s) left RUNNING by an interrupted run as "
                "FAIL: " + ", ".join(f"#{n}" for n in interrupted)
            )
        already = count_finished(study)
        remaining = args.trials - already
        print(
            f"study {study_name!r} in {redact(url)}: {already} trial(s) done, "
            f"{max(remaining, 0)} to run (target {args.trials}); train {len(train_set)}, val "
            f"{len(val_set)} images from {data.source}",
            flush=True,
        )
        stopped = False
        if remaining > 0:
            stopped = _run_search(
                args,
                space,
                study,
                storage,
                study_name,
                url,
                out_dir,
                max_epochs,
                train_set,
                val_set,
                already,
                remaining,
            )
    except (SystemExit, KeyboardInterrupt):
        # A command that ends before its first trial leaves no empty study or file behind.
        if study_is_new:
            _discard_unused_study(storage, study_name, new_paths)
        raise
    _print_summary(study_name, url, args, stopped)
    if stopped:
        raise SystemExit(INTERRUPTED_EXIT)


def _check_ray_address(address: str) -> None:
    """Fail at once on a host:port nobody listens on: ray.init would retry it for minutes."""
    import socket

    if address in ("auto", "local") or "://" in address:
        return  # Ray resolves these itself (a running local cluster, Ray Client)
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        fail(
            f"--address {address!r} is malformed; expected HOST:PORT of a Ray head node "
            "(as `ray start --head` prints it) or 'auto'"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        fail(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; expected the "
            "address `ray start --head` printed, with that port open to this machine"
        )


def _new_sqlite_paths(url: str) -> list[Path]:
    """The SQLite file `url` names and the folders above it that do not exist yet, deepest
    first: what opening the storage would create."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return []
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return []
    path = Path(parsed.database).absolute()
    new = []
    while not path.exists() and path != path.parent:
        new.append(path)
        path = path.parent
    return new


def _remove_paths(paths: list[Path]) -> None:
    """Remove files and (empty) folders this command created, deepest first."""
    for path in paths:
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
                Path(f"{path}-journal").unlink(missing_ok=True)
        except OSError:
            pass  # something else was put there meanwhile: not ours to delete


def _discard_unused_study(storage, study_name: str, new_paths: list[Path]) -> None:
    """Delete the study this command created if it holds no trial, and a SQLite file (with its
    folders) this command created if it then holds no study."""
    import optuna

    try:
        names = optuna.study.get_all_study_names(storage)
        if study_name in names:
            study = optuna.load_study(study_name=study_name, storage=storage)
            # Trials, or a driver's heartbeat: someone uses it (another driver may have made
            # it at the same moment as this one).
            if study.get_trials(deepcopy=False) or any(
                key.startswith("run:") for key in study.user_attrs
            ):
                return
            optuna.delete_study(study_name=study_name, storage=storage)
            names.remove(study_name)
        if new_paths and not names:
            storage.engine.dispose()
            _remove_paths(new_paths)
    except Exception:  # best effort: the error being reported matters more
        pass


def _open_study(storage, study_name, space_name, source, args, max_epochs, train_size):
    """Load the study, or create it; record how it was made; refuse a different space."""
    import optuna

    from ._study import study_exists

    if study_exists(storage, study_name):
        study = optuna.load_study(study_name=study_name, storage=storage)
        recorded = study.user_attrs.get("space")
        if recorded and recorded != space_name:
            fail(
                f"study {study_name!r} was created with space {recorded!r}, not "
                f"{space_name!r}; pass --study NEW_NAME for a new study"
            )
        model = study.user_attrs.get("model_override")
        if args.model and model != args.model:
            was = model or "the space's own model"
            fail(
                f"study {study_name!r} was created with {was}, not --model {args.model}; "
                "pass --study NEW_NAME for a new study"
            )
    else:
        # Another driver sharing the storage may create it at the same moment.
        study = optuna.create_study(
            study_name=study_name, storage=storage, direction="maximize", load_if_exists=True
        )
    # What a continued study was first made with stays recorded; only missing keys are filled.
    for key, value in {
        "space": space_name,
        "data_source": str(source),
        "project_version": project_version(),
        "metric": "val_accuracy",
        "max_epochs": max_epochs,
        "val_size": args.val_size,
        "train_size": train_size,
        "seed": args.seed,
        "sampler": args.sampler,
        "model_override": args.model,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    return study


class _HideTuneResumeAdvice(logging.Filter):
    """Drops Tune's interrupt messages: they advise `Tuner.restore`, but a search continues by
    re-running it, which the summary says."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(
            ("Experiment has been interrupted", "Trials did not complete")
        )


def _run_search(
    args,
    space,
    study,
    storage,
    study_name,
    url,
    out_dir,
    max_epochs,
    train_set,
    val_set,
    already,
    remaining,
) -> bool:
    """Run up to `remaining` trials; True when Ctrl+C stopped the search."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune

    from ._progress import SearchProgress
    from ._samplers import make_sampler
    from ._searcher import METRIC, PruningASHA, TruthfulOptunaSearch
    from ._study import record_heartbeat
    from ._trainable import TrialSettings, run_trial

    if args.address:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=args.verbose)
    else:
        ray.init(include_dashboard=False, log_to_driver=args.verbose, logging_level="WARNING")
    gpus = float(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus_per_trial = (
        args.gpus_per_trial if args.gpus_per_trial is not None else (0.25 if gpus else 0.0)
    )
    if gpus_per_trial > 0 and gpus == 0:
        fail(
            f"--gpus-per-trial {gpus_per_trial} asks for a GPU but the Ray cluster has none; "
            "use --gpus-per-trial 0"
        )
    if gpus_per_trial > 0:
        concurrent = max(1, int(gpus / gpus_per_trial + 1e-9))
        cpus_per_trial = args.cpus_per_trial or max(1, cpus // concurrent)
    else:
        cpus_per_trial = args.cpus_per_trial or 1
        concurrent = max(1, cpus // cpus_per_trial)
    concurrent = min(concurrent, remaining)
    run_id = new_run_id()
    output_dir = out_dir / study_name
    scheduler = PruningASHA(
        metric=METRIC,
        mode="max",
        time_attr="training_iteration",
        max_t=max_epochs,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
    )
    searcher = TruthfulOptunaSearch(
        space=space.suggest,
        metric=METRIC,
        mode="max",
        study_name=study_name,
        storage=storage,
        sampler=make_sampler(args.sampler, args.seed + already),
        scheduler=scheduler,
        trial_attrs={"run_id": run_id},
        target=args.trials,
    )
    progress = SearchProgress(searcher, args.trials, already, max_epochs, verbose=args.verbose)
    settings = TrialSettings(
        space=space.name,
        max_epochs=max_epochs,
        seed=args.seed,
        output_dir=str(output_dir),
        cpus_per_trial=cpus_per_trial,
        model=args.model or study.user_attrs.get("model_override"),
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, settings=settings, train_set=train_set, val_set=val_set),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
    )
    print(
        f"running {remaining} trial(s), up to {concurrent} at once, each with "
        f"{cpus_per_trial} CPU and {gpus_per_trial:g} GPU; ASHA grace {args.grace_period}, "
        f"reduction {args.reduction_factor}, max {max_epochs} epochs",
        flush=True,
    )

    record_heartbeat(searcher.study, run_id)
    stop_beating = threading.Event()

    def beat() -> None:
        from ._study import HEARTBEAT_INTERVAL

        while not stop_beating.wait(HEARTBEAT_INTERVAL):
            try:
                record_heartbeat(searcher.study, run_id)
            except Exception:  # a missed beat only risks another driver's caution
                pass

    threading.Thread(target=beat, daemon=True).start()
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=remaining,
            max_concurrent_trials=concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=run_id,
            storage_path=str(output_dir / "ray"),
            verbose=0,
            callbacks=[progress],
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    )
    logging.getLogger("ray.tune.tune").addFilter(_HideTuneResumeAdvice())
    # Tune handles Ctrl+C itself: its handler stops the trials, ends `fit` normally and puts back
    # the handler it found. Ours is that handler, so finding it in place after `fit` means a
    # Ctrl+C came; a second Ctrl+C (or one Tune does not catch) reaches it and raises.
    sigint_seen = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        sigint_seen.set()
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    tune_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0")
    try:
        tuner.fit()
    finally:
        stopped = sigint_seen.is_set() or (
            tune_catches and signal.getsignal(signal.SIGINT) is on_sigint
        )
        signal.signal(signal.SIGINT, previous_handler)
        stop_beating.set()
        searcher.stopping = stopped
        searcher.flush_errors()
        # Tune stops live trials of an interrupted run without telling the searcher.
        failed = searcher.fail_unfinished()
        if failed:
            print(
                "marked unfinished trial(s) FAIL (interrupted): "
                + ", ".join(f"#{n}" for n in sorted(failed)),
                flush=True,
            )
        record_heartbeat(searcher.study, run_id, status="finished")
        ray.shutdown()
    return stopped


def _print_summary(
    study_name: str, url: str, args: argparse.Namespace, stopped: bool = False
) -> None:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(
        f"{states.count(s)} {s}"
        for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
        if states.count(s)
    )
    print(f"\nstudy {study_name!r}: {len(states)} trials ({counts})")
    if stopped:
        print(f"stopped (Ctrl+C); {CONTINUE_HINT}")
    elif count_finished(study) < args.trials:
        if count_claimed(study) >= args.trials:
            print(
                "other drivers sharing this study are running its last trials; it reaches "
                "--trials when they finish"
            )
        else:
            print(f"the search stopped before reaching --trials; {CONTINUE_HINT}")
    try:
        best = study.best_trial
    except ValueError:
        print("no trial completed: nothing to retrain yet")
        return
    print(
        f"best trial: #{best.number}, validation accuracy {100 * best.value:.2f}% after "
        f"{best.user_attrs.get('epochs_run', '?')} epochs"
    )
    print("configuration: " + json.dumps(best.params, sort_keys=True))
    print(f"checkpoint: {best.user_attrs.get('checkpoint_path', '-')}")
    where = []  # how the other commands find this study
    if args.storage:
        where += ["--storage", redact(args.storage)]
    if args.out != STUDIES_DIR:
        where += ["--studies-dir", str(args.out)]
    if isinstance(
        get_space(study.user_attrs.get("space", args.space)).to_config(best.params).policy, tuple
    ):
        export = [
            "python",
            "-m",
            "search.export_policy",
            "--study",
            study_name,
            "-o",
            "policy.json",
            *where,
        ]
        print("export the best policies: " + shlex.join(export))
    else:
        retrain = [
            "python",
            "-m",
            "search.retrain",
            "--study",
            study_name,
            "--trial",
            str(best.number),
            *where,
            *(["--data", args.data] if args.data else []),
        ]
        print("retrain it to full length: " + shlex.join(retrain))
    report = ["python", "-m", "search.report", "--study", study_name, *where]
    print(f"look at the study: {shlex.join(report)}  (or search.dashboard)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
