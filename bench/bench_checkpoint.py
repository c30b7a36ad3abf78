"""What saving a run's checkpoint costs against its training: `training.CheckpointPolicy`.

`cnn_reg` (`TrainConfig(model="cnn_reg")`: Adam, batch 128, precision auto) trains `--epochs`
epochs on `--images` real training images with a `--val`-image validation set, through the real
`training.train`, twice: once with the policy a search uses by default (every epoch, at most
300 s apart, a 2 % budget, the last epoch unsaved) and once with every epoch saved and no budget
(the trainer's default). Every save `train` makes is timed (a wrapper around `_RunState.save`,
which is the whole save: the state gathered, `torch.save` to a temp file, the rename). Reported
per arm: each epoch's time (training and validation, `EpochStats.epoch_time`), each save's
time, and the overhead, total save time / total epoch time.

Shake-Shake-26 2x32d's state (the model and SGD's momentum, after one real step on a batch) is
saved `--saves` times through the same `_RunState.save`; only the save is timed: its epoch time
on the search's GPU is measured elsewhere (bench_train.py --model shake26_2x32d), not here.

    .venv/bin/python bench/bench_checkpoint.py [--images 5000] [--val 1000] [--epochs 3]
        [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"

from _machine import cpu_model  # noqa: E402  (bench/ is sys.path[0] when run as a script)

import training._trainer as trainer  # noqa: E402
from training import (  # noqa: E402
    CheckpointPolicy,
    TrainConfig,
    effective_precision,
    load_cifar10,
    train,
    train_val_split,
)

POLICIES = {
    "search default": CheckpointPolicy(every=1, max_interval=300.0, budget=0.02, at_end=False),
    "every epoch, no budget": CheckpointPolicy(),
}


class SaveTimer:
    """Times every `_RunState.save` while installed: (epochs done, seconds, bytes) each."""

    def __init__(self) -> None:
        self.saves: list[tuple[int, float, int]] = []
        self._save = trainer._RunState.save

    def __enter__(self) -> SaveTimer:
        original = self._save

        def timed(run: trainer._RunState, path: str | Path) -> None:
            start = time.perf_counter()
            original(run, path)
            self.saves.append(
                (run.epochs_done, time.perf_counter() - start, Path(path).stat().st_size)
            )

        trainer._RunState.save = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        trainer._RunState.save = self._save  # type: ignore[method-assign]


def cnn_reg_arm(name: str, args: argparse.Namespace, train_set: Any, val_set: Any) -> dict:
    """One training run of cnn_reg under the policy `name`, its epochs' and saves' seconds."""
    config = TrainConfig(model="cnn_reg", epochs=args.epochs)
    with tempfile.TemporaryDirectory() as folder, SaveTimer() as timer:
        result = train(
            config,
            train_set,
            val_set,
            device="cpu",
            checkpoint_path=Path(folder) / "state.pt",
            checkpoint_policy=POLICIES[name],
        )
    epochs = [s.epoch_time for s in result.history]
    saved = sum(seconds for _, seconds, _ in timer.saves)
    return {
        "policy": name,
        "epoch_s": [round(t, 3) for t in epochs],
        "saves": [
            {"epoch": e, "s": round(seconds, 4), "bytes": size} for e, seconds, size in timer.saves
        ],
        "save_total_s": round(saved, 4),
        "epoch_total_s": round(sum(epochs), 3),
        "overhead_pct": round(100 * saved / sum(epochs), 3),
    }


def shake_saves(args: argparse.Namespace, images: Any) -> dict:
    """Seconds and bytes of `args.saves` saves of Shake-Shake-26 2x32d's run state (SGD)."""
    config = TrainConfig(model="shake26_2x32d", optimizer="sgd", lr=0.05, precision="fp32")
    device = torch.device("cpu")
    model = trainer.build_model(config, device)
    run = trainer._new_run_state(config, model, device, "fp32")
    x, y = images.images[:32], images.labels[:32]  # one real step: SGD's momentum buffers exist
    torch.nn.functional.cross_entropy(model(trainer.normalize(x)), y).backward()
    run.optimizer.step()
    times, size = [], 0
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.saves):
            start = time.perf_counter()
            run.save(Path(folder) / "state.pt")
            times.append(time.perf_counter() - start)
        size = (Path(folder) / "state.pt").stat().st_size
    return {
        "model": config.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "save_s": [round(t, 4) for t in times],
        "median_save_s": round(statistics.median(times), 4),
        "bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="training images per epoch")
    parser.add_argument("--val", type=int, default=1000, help="validation images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--saves", type=int, default=5, help="timed saves of shake26_2x32d")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = load_cifar10(args.data, "train")
    train_set, val_set = train_val_split(data, args.val, 0, args.images)
    record: dict[str, Any] = {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "images": len(train_set),
        "val": len(val_set),
        "cnn_reg_precision": effective_precision("auto", torch.device("cpu")),
    }
    print(
        f"machine: {record['cpu']}, {record['threads']} torch threads, torch {record['torch']}, "
        f"{record['date']}; cnn_reg in {record['cnn_reg_precision']}, {len(train_set)} + "
        f"{len(val_set)} images, {args.epochs} epochs",
        flush=True,
    )
    record["cnn_reg"] = [cnn_reg_arm(name, args, train_set, val_set) for name in POLICIES]
    for arm in record["cnn_reg"]:
        saves = ", ".join(f"{s['s']:.3f} s (epoch {s['epoch']})" for s in arm["saves"])
        print(
            f"{arm['policy']:24s} epochs {arm['epoch_s']} s; saves {saves or 'none'}; "
            f"overhead {arm['save_total_s']:.3f} / {arm['epoch_total_s']:.1f} s = "
            f"{arm['overhead_pct']:.2f} %",
            flush=True,
        )
    record["shake"] = shake_saves(args, train_set)
    shake = record["shake"]
    print(
        f"{shake['model']} ({shake['parameters']:,} parameters, SGD): save {shake['save_s']} s, "
        f"median {shake['median_save_s']:.3f} s, {shake['bytes'] / 2**20:.1f} MiB; "
        "its GPU epoch time: not measured here"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
