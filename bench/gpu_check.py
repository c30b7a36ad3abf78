"""The steps of bench/gpu_check.sh that no other script does.

    python bench/gpu_check.py trainer --data DIR [--images 25000] [--val 2000] [--json PATH]
    python bench/gpu_check.py oom-study --storage URL --study NAME --trial N [--allocator]

`trainer`: one epoch of cnn_reg per optimizer of `training.OPTIMIZERS` (adam, adamw, sgd; fused
on CUDA, as the trainer builds them), with validation, under
`torch.cuda.set_sync_debug_mode("warn")` on CUDA, so every host synchronisation is a warning,
counted by the line that made it (the trainer syncs on purpose once an epoch and every 50 steps
for the loss check, and evaluation reads its results back). Then exact resume: two SGD epochs in
one run against one epoch, a checkpoint and the second epoch resumed, compared weight by weight
(on CUDA cuDNN's benchmark mode and non-deterministic kernels may make them differ: that is
reported, not failed). Exit 1 when a run raised.

`oom-study`: the study of gpu_check.sh's search with an injected out-of-memory trial
(SEARCH_INJECT_OOM_TRIAL, search/_trainable.py), read back: exit 1 unless trial N is FAIL with
"out of memory" in its fail_reason and every other trial COMPLETE or PRUNED; with
`--allocator` (on CUDA) the error must also be the caching allocator's, raised because the trial
asked for more than its memory cap.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training import (  # noqa: E402
    OPTIMIZERS,
    LabeledImages,
    TrainConfig,
    build_model,
    build_optimizer,
    load_cifar10,
    train,
    train_val_split,
)

# A learning rate each optimizer trains cnn_reg with in one epoch (SGD's per 128 images, as the
# cnn_reg space's range).
LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.05}
SYNC_WARNING = "synchroniz"  # "called a synchronizing CUDA operation"


def count_syncs(device: torch.device, run: Callable[[], Any]) -> tuple[Any, Counter]:
    """`run()`'s result and its host synchronisations by `file:line` (none counted on CPU)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            result = run()
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    sites = Counter(
        f"{Path(w.filename).name}:{w.lineno}" for w in caught if SYNC_WARNING in str(w.message)
    )
    return result, sites


def optimizer_epoch(
    name: str, train_set: LabeledImages, val_set: LabeledImages, device: torch.device
) -> dict[str, Any]:
    """One epoch of cnn_reg with optimizer `name`: its time, accuracy and host syncs."""
    lr = LEARNING_RATES.get(name, 1e-3)
    config = TrainConfig(model="cnn_reg", optimizer=name, lr=lr, epochs=1, seed=0)
    fused = bool(build_optimizer(config, build_model(config, device)).defaults.get("fused"))
    row: dict[str, Any] = {"optimizer": name, "fused": fused}
    try:
        start = time.perf_counter()
        result, sites = count_syncs(
            device, lambda: train(config, train_set, val_set, device=device)
        )
    except Exception as exc:  # reported in the table; the step fails at the end
        return {**row, "error": f"{type(exc).__name__}: {exc}"}
    return {
        **row,
        "seconds": round(time.perf_counter() - start, 2),
        "val_accuracy": round(result.history[-1].val_accuracy, 4),
        "syncs": sum(sites.values()),
        "sync_sites": dict(sites.most_common()),
    }


class _Stop(Exception):
    """Ends a run after its first epoch, as an interruption would."""


def resume_check(
    train_set: LabeledImages, val_set: LabeledImages, device: torch.device
) -> dict[str, Any]:
    """Two SGD epochs straight against one epoch, a checkpoint and the second resumed."""
    config = TrainConfig(model="cnn_reg", optimizer="sgd", lr=0.05, epochs=2, warmup=0.1, seed=0)
    straight = train(config, train_set, val_set, device=device)

    def stop(stats: Any) -> None:
        if stats.epoch == 1:
            raise _Stop

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.pt"
        try:
            train(
                config, train_set, val_set, device=device, checkpoint_path=path, on_epoch_end=stop
            )
        except _Stop:
            pass
        resumed = train(
            config, train_set, val_set, device=device, checkpoint_path=path, resume=True
        )
    pairs = zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    )
    difference = max((a.double() - b.double()).abs().max().item() for a, b in pairs)
    return {
        "exact": difference == 0,
        "max_weight_difference": difference,
        "val_accuracy": [straight.history[-1].val_accuracy, resumed.history[-1].val_accuracy],
    }


def trainer_step(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_cifar10(args.data, "train", download=False)
    train_set, val_set = train_val_split(data, args.val, seed=0, train_size=args.images)
    print(f"device {device}; {len(train_set)} training and {len(val_set)} validation images")
    rows = [optimizer_epoch(name, train_set, val_set, device) for name in OPTIMIZERS]
    for row in rows:
        if "error" in row:
            print(f"{row['optimizer']:6s} fused={row['fused']}  FAILED: {row['error']}")
            continue
        scope = "" if device.type == "cuda" else " (not counted on CPU)"
        print(
            f"{row['optimizer']:6s} fused={row['fused']}  {row['seconds']:6.2f} s  val "
            f"{100 * row['val_accuracy']:5.2f}%  host syncs {row['syncs']}{scope}: "
            + (", ".join(f"{site} x{n}" for site, n in row["sync_sites"].items()) or "-")
        )
    failed = any("error" in row for row in rows)
    try:
        resume = resume_check(train_set, val_set, device)
        print(
            f"resume: {'exact' if resume['exact'] else 'NOT exact'} (largest weight difference "
            f"{resume['max_weight_difference']:.3g})"
        )
    except Exception as exc:
        resume, failed = {"error": f"{type(exc).__name__}: {exc}"}, True
        print(f"resume: FAILED: {resume['error']}")
    if args.json is not None:
        report = {"device": str(device), "optimizers": rows, "resume": resume}
        if device.type == "cuda":
            report["gpu"] = torch.cuda.get_device_name(device)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


def oom_study_step(args: argparse.Namespace) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=args.study, storage=args.storage).get_trials()
    problems = []
    for trial in trials:
        reason = trial.user_attrs.get("fail_reason", "")
        print(f"#{trial.number} {trial.state.name} {reason}".rstrip())
        if trial.number == args.trial:
            if trial.state.name != "FAIL" or "out of memory" not in reason:
                problems.append(f"#{trial.number} is {trial.state.name}, not FAIL out of memory")
            elif args.allocator and "injected by" in reason:
                problems.append(f"#{trial.number}'s cap did not stop its allocation: {reason}")
        elif trial.state.name not in ("COMPLETE", "PRUNED"):
            problems.append(f"trial #{trial.number} is {trial.state.name}: {reason}")
    if args.trial not in [t.number for t in trials]:
        problems.append(f"the study has no trial #{args.trial}")
    for problem in problems:
        print(f"NOT as expected: {problem}")
    if not problems:
        print(f"as expected: #{args.trial} FAIL out of memory, the others COMPLETE or PRUNED")
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    trainer = steps.add_parser("trainer", help="one epoch per optimizer, host syncs, resume")
    trainer.add_argument("--data", type=Path, required=True, help="CIFAR-10 folder")
    trainer.add_argument("--images", type=int, default=25000, help="training images")
    trainer.add_argument("--val", type=int, default=2000, help="validation images")
    trainer.add_argument("--json", type=Path, default=None, help="also write the results here")
    oom = steps.add_parser("oom-study", help="check the injected out-of-memory search's study")
    oom.add_argument("--storage", required=True, help="the study's database URL")
    oom.add_argument("--study", required=True, help="the study's name")
    oom.add_argument("--trial", type=int, required=True, help="the trial that ran out of memory")
    oom.add_argument(
        "--allocator",
        action="store_true",
        help="on CUDA: the error must be the allocator's (the trial's memory cap held)",
    )
    args = parser.parse_args()
    sys.exit(trainer_step(args) if args.step == "trainer" else oom_study_step(args))


if __name__ == "__main__":
    main()
