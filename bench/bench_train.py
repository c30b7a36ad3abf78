"""Epoch time of our trainer against the reference report's DataLoader pipeline, same machine.

Ours: `training.train` (whole training set resident on the device, crop + flip on whole batches;
channels_last; on CUDA its defaults: fused Adam, cudnn.benchmark), Adam 1e-3, batch 128, no
validation, in the precision `--precision auto` gives the device (`training.effective_precision`:
bf16 on GPUs from compute capability 8.0 and on CPUs with native bf16 (AVX512-BF16 or AMX), fp16
with loss scaling on 7.x GPUs, else fp32); `--precision fp32` times ours in fp32 anywhere. The
reference stays in fp32, as the report ran it.
Reference: what the course report ran: a torchvision `DataLoader` (shuffle, `--workers` worker
processes, pin_memory on CUDA) over a Dataset that turns each uint8 HWC row into a PIL image (as
`torchvision.datasets.CIFAR10.__getitem__` does), per-image RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5); the same model in plain fp32 (NCHW,
cudnn.benchmark off: PyTorch's defaults), Adam 1e-3, cross-entropy, and `loss.item()` every step,
as such training loops do.

The two run interleaved: after each of our epochs (the `on_epoch_end` callback) one reference
epoch runs, so a busy machine slows both alike. The first `--warmup` epochs of each are not
timed; reported: the median of the timed epochs, training only (validation is excluded for both;
a reference epoch includes starting its workers, as a non-persistent DataLoader does).

    .venv/bin/python bench/bench_train.py [--device cuda] [--images 50000] [--epochs 3]
        [--model cnn_reg|shake26_2x96d] [--compile] [--precision auto|fp32|bf16|fp16]
        [--skip-reference] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import cpu_model  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from models import create_model  # noqa: E402
from training import (  # noqa: E402
    PRECISIONS,
    EpochStats,
    LabeledImages,
    TrainConfig,
    effective_precision,
    load_cifar10,
    train,
)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"
FULL_EPOCH = 50_000
BATCH = 128
# The targets, for one H100 and a full 50,000-image epoch.
TARGETS: dict[str, dict[str, float]] = {
    "cnn_reg": {"max_epoch_s": 0.25, "min_speedup": 20.0},
    "shake26_2x96d": {"max_epoch_s": 4.0},
}


def machine(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    if hasattr(os, "getloadavg"):
        # Other people's jobs on a shared machine slow both pipelines; this says how busy it was.
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


class PILImages(Dataset):
    """uint8 HWC rows handed out as PIL images through `transform`, like torchvision's CIFAR10."""

    def __init__(self, data: np.ndarray, labels: list[int], transform: T.Compose) -> None:
        self.data, self.labels, self.transform = data, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(PIL.Image.fromarray(self.data[index])), self.labels[index]


class ReferencePipeline:
    """The course report's training loop; `epoch()` trains one epoch and returns its seconds."""

    def __init__(
        self, data: LabeledImages, model_name: str, device: torch.device, workers: int, seed: int
    ) -> None:
        transform = T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        )
        dataset = PILImages(
            data.images.permute(0, 2, 3, 1).contiguous().numpy(), data.labels.tolist(), transform
        )
        self.loader = DataLoader(
            dataset,
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
        )
        torch.manual_seed(seed)
        self.model = create_model(model_name).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.criterion = nn.CrossEntropyLoss()
        self.device = device

    def epoch(self) -> float:
        # Our trainer turns cudnn.benchmark on for the whole process; the report ran with
        # PyTorch's default (off), so the reference gets that back for its epoch.
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        try:
            start = time.perf_counter()
            self.model.train()
            running_loss = 0.0
            for inputs, labels in self.loader:
                inputs, labels = inputs.to(self.device), labels.to(self.device)
                self.optimizer.zero_grad()
                loss = self.criterion(self.model(inputs), labels)
                loss.backward()
                self.optimizer.step()
                running_loss += loss.item()  # the report's loop logs the running loss each step
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            return time.perf_counter() - start
        finally:
            torch.backends.cudnn.benchmark = benchmark


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (a finished epoch's DataLoader workers).

    Less sensitive than wall time to other people's jobs on a shared machine, so it is reported
    beside it.
    """
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def subset(data: LabeledImages, n: int, seed: int) -> LabeledImages:
    """`n` images drawn at random (the files are sorted by class, so a prefix would not do)."""
    if not 0 < n <= len(data):
        raise SystemExit(f"--images {n} is out of range; expected 1..{len(data)}")
    if n == len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n])


def summarise(times: list[float], cpu: list[float], images: int) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "epoch_times_s": [round(t, 4) for t in times],
        "median_epoch_s": round(median, 4),
        "median_epoch_cpu_s": round(statistics.median(cpu), 3),
        "images_per_second": round(images / median, 1),
        # Scaled linearly to a full epoch, so runs on fewer images compare with the targets.
        "full_epoch_estimate_s": round(median * FULL_EPOCH / images, 4),
    }


def check_targets(model: str, device: torch.device, result: dict[str, Any]) -> list[str]:
    """One line per target of the issue (they are for one H100), with met / not met."""
    target = TARGETS.get(model)
    if target is None:
        return []
    lines = []
    scope = "" if device.type == "cuda" else " (the targets are for one H100; this ran on CPU)"
    estimate = result["ours"]["full_epoch_estimate_s"]
    scaled = "" if result["images"] == FULL_EPOCH else ", scaled from --images"
    verdict = "met" if estimate <= target["max_epoch_s"] else "NOT met"
    lines.append(
        f"target: {model} epoch <= {target['max_epoch_s']} s: {verdict} "
        f"({estimate:.3f} s per 50,000 images{scaled}){scope}"
    )
    if "min_speedup" in target and "speedup" in result:
        verdict = "met" if result["speedup"] >= target["min_speedup"] else "NOT met"
        lines.append(
            f"target: >= {target['min_speedup']:g}x the reference: {verdict} "
            f"({result['speedup']:.1f}x){scope}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--images",
        type=int,
        default=FULL_EPOCH,
        help="training images per epoch (fewer on slow machines)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each pipeline")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs before them")
    parser.add_argument("--model", default="cnn_reg", help="a name models.create_model knows")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="our trainer's autocast (TrainConfig.precision): auto = by the hardware "
        "(training.effective_precision); bf16 needs native bf16, fp16 a CUDA GPU",
    )
    parser.add_argument("--skip-reference", action="store_true", help="time only our trainer")
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="reference DataLoader worker processes (a typical user's 4)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="CIFAR-10 location (as training.load_cifar10 takes it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.epochs < 1 or args.warmup < 0:
        parser.error("expected --epochs >= 1 and --warmup >= 0")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device} asked for, but CUDA is not available")
    try:
        precision = effective_precision(args.precision, device)
    except ValueError as exc:
        parser.error(str(exc))
    data = subset(load_cifar10(args.data, "train"), args.images, args.seed)
    info = machine(device)
    print(
        f"machine: CPU {info['cpu']} ({info['logical_cores']} logical cores, "
        f"{info['torch_threads']} torch threads)"
    )
    if device.type == "cuda":
        print(f"         GPU {info['gpu']} (CUDA {info['cuda']})")
    print(
        f"torch {info['torch']}, torchvision {info['torchvision']}, Python {info['python']}; "
        f"load average {info.get('load_average_1min', '?')}"
    )
    print(
        f"{args.model}: {len(data)} images, batch {BATCH}, {args.warmup} warm-up + "
        f"{args.epochs} timed epoch(s) each, device {device}, ours in {precision}"
        + ("" if args.skip_reference else f", reference with {args.workers} workers")
    )

    reference = None
    # More workers than cores (4 on a 2-core machine) is what a typical user runs; the warning
    # would only repeat what the header says.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    if not args.skip_reference:
        reference = ReferencePipeline(data, args.model, device, args.workers, args.seed)
    ours: list[float] = []
    theirs: list[float] = []
    ours_cpu: list[float] = []
    theirs_cpu: list[float] = []
    mark = [cpu_seconds()]  # where our next epoch's CPU time starts (the first has setup in it)

    def on_epoch_end(stats: EpochStats) -> None:
        # Training time alone: the trainer measures it before validation (there is none here).
        ours.append(len(data) / stats.images_per_second)
        ours_cpu.append(cpu_seconds() - mark[0])
        line = f"epoch {stats.epoch}: ours {ours[-1]:8.3f} s ({ours_cpu[-1]:7.2f} CPU s)"
        if reference is not None:
            before = cpu_seconds()
            theirs.append(reference.epoch())
            theirs_cpu.append(cpu_seconds() - before)
            line += f"   reference {theirs[-1]:8.3f} s ({theirs_cpu[-1]:7.2f} CPU s)"
        print(line + ("   (warm-up)" if stats.epoch <= args.warmup else ""), flush=True)
        mark[0] = cpu_seconds()

    config = TrainConfig(
        model=args.model,
        epochs=args.warmup + args.epochs,
        batch_size=BATCH,
        optimizer="adam",
        lr=1e-3,
        schedule="constant",
        crop_padding=4,
        flip=True,
        seed=args.seed,
        compile=args.compile,
        precision=args.precision,
    )
    train(config, data, None, device=device, on_epoch_end=on_epoch_end)

    if hasattr(os, "getloadavg"):
        info["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    result: dict[str, Any] = {
        "model": args.model,
        "device": str(device),
        "images": len(data),
        "batch": BATCH,
        "warmup_epochs": args.warmup,
        "timed_epochs": args.epochs,
        "compile": args.compile,
        "precision": precision,  # ours; the reference is fp32
        "machine": info,
        "ours": summarise(ours[args.warmup :], ours_cpu[args.warmup :], len(data)),
    }
    print()
    rows = [("ours", result["ours"])]
    if reference is not None:
        result["reference"] = {
            **summarise(theirs[args.warmup :], theirs_cpu[args.warmup :], len(data)),
            "workers": args.workers,
        }
        result["speedup"] = round(
            result["reference"]["median_epoch_s"] / result["ours"]["median_epoch_s"], 2
        )
        rows.append(("reference", result["reference"]))
    for name, row in rows:
        print(
            f"{name:10s} median epoch {row['median_epoch_s']:8.3f} s  "
            f"{row['images_per_second']:10,.0f} images/s  "
            f"{row['median_epoch_cpu_s']:8.2f} CPU s  "
            f"(50,000-image epoch ~ {row['full_epoch_estimate_s']:.2f} s)"
        )
    if "load_average_1min_end" in info:
        print(
            f"load average {info['load_average_1min']} at the start, "
            f"{info['load_average_1min_end']} at the end ({info['logical_cores']} cores)"
        )
    if "speedup" in result:
        result["cpu_ratio"] = round(
            result["reference"]["median_epoch_cpu_s"] / result["ours"]["median_epoch_cpu_s"], 2
        )
        print(
            f"ratio: ours is {result['speedup']:.2f}x the reference's speed "
            f"(CPU time: the reference uses {result['cpu_ratio']:.2f}x ours)"
        )
    if device.type == "cuda":
        # What a search trial of this model needs of its GPU share (studies/*.py gpu_share);
        # with the reference in the same process, the larger of the two pipelines' peaks.
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        print(f"peak GPU memory allocated: {result['peak_memory_gib']:.2f} GiB")
    result["targets"] = check_targets(args.model, device, result)
    for line in result["targets"]:
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
