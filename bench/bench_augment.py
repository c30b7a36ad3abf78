"""Throughput of the batched augmentation pipeline against a per-image PIL pipeline.

Batched: random crop (padding 4), horizontal flip, AutoAugment's CIFAR-10 policy and Cutout 16 on
a uint8 batch on --device. Baseline: torchvision's RandomCrop(32, padding=4), RandomHorizontalFlip
and AutoAugment(CIFAR10) on PIL images, one image at a time on one CPU core (what a DataLoader
worker does per sample; it skips Cutout and the tensor conversion, so it is flattered slightly).
Each round times every variant once, so a busy machine slows them alike; reported: the median.

    .venv/bin/python bench/bench_augment.py [--device cuda] [--batch 512] [--repeats 15] [--stages]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torchvision
from torchvision import transforms as T

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import cpu_model  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from augment import build_batch_augment, load_policy  # noqa: E402
from augment import functional as AF  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg" / "train.zip"


def load_images(n: int, data: Path) -> tuple[torch.Tensor, str]:
    """n CIFAR-10 training images (spread over the classes) as uint8 (N, 3, 32, 32), or noise."""
    if data.exists():
        with zipfile.ZipFile(data) as archive:
            names = sorted(m for m in archive.namelist() if m.endswith(".jpg"))
            step = max(1, len(names) // n)
            arrays = []
            for name in names[::step][:n]:
                with archive.open(name) as f:
                    arrays.append(np.asarray(PIL.Image.open(f).convert("RGB")))
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return images, f"{len(arrays)} CIFAR-10 training images from {data.name}"
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), "random noise"


class BatchedTimer:
    """Times fn(images, generator) calls, synchronising on CUDA around each call."""

    def __init__(self, fn, images: torch.Tensor, device: torch.device) -> None:
        self.fn, self.images, self.device = fn, images, device
        self.generator = torch.Generator(device=device).manual_seed(0)

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self.fn(self.images, self.generator)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start


class PilTimer:
    """Times one pass of every image through the per-image PIL pipeline."""

    def __init__(self, pil_images: list[PIL.Image.Image]) -> None:
        self.pil_images = pil_images
        self.pipeline = T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.AutoAugment(T.AutoAugmentPolicy.CIFAR10),
            ]
        )

    def __call__(self) -> float:
        start = time.perf_counter()
        for image in self.pil_images:
            self.pipeline(image)
        return time.perf_counter() - start


def run_interleaved(timers: dict[str, tuple], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Time every (timer, threads) entry once per round, so all see the same machine load."""
    times: dict[str, list[float]] = {name: [] for name in timers}
    default_threads = torch.get_num_threads()
    for round_ in range(warmup + repeats):
        for name, (timer, threads) in timers.items():
            torch.set_num_threads(threads or default_threads)
            elapsed = timer()
            if round_ >= warmup:
                times[name].append(elapsed)
    torch.set_num_threads(default_threads)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--stages", action="store_true", help="also time each stage alone")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    device = torch.device(args.device)
    images, source = load_images(args.batch, args.data)
    pil_images = [PIL.Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    images = images.to(device)
    n = images.shape[0]

    print(f"machine: CPU {cpu_model()} ({os.cpu_count()} logical cores)")
    if device.type == "cuda":
        print(f"         GPU {torch.cuda.get_device_name(device)}")
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"Python {platform.python_version()}"
    )
    print(f"data: {source}; batch {n}; device {device}")
    if hasattr(os, "getloadavg"):
        print(f"load average before: {os.getloadavg()[0]:.2f} (other processes slow every variant)")
    print()

    policy = load_policy("cifar10")
    pipeline = build_batch_augment(crop_padding=4, flip=True, cutout=16, policy=policy)
    threads = torch.get_num_threads()
    timers: dict[str, tuple] = {}
    if device.type == "cpu":
        timers[f"batched pipeline on cpu ({threads} threads)"] = (
            BatchedTimer(pipeline, images, device),
            threads,
        )
        timers["batched pipeline on cpu (1 thread)"] = (BatchedTimer(pipeline, images, device), 1)
    else:
        timers[f"batched pipeline on {device}"] = (BatchedTimer(pipeline, images, device), None)
    if args.stages:
        stages = {
            "crop": lambda x, g: AF.random_crop(x, 4, g),
            "flip": lambda x, g: AF.random_horizontal_flip(x, g),
            "cifar10 policy": policy.apply,
            "cutout 16": lambda x, g: AF.cutout(x, 16, g),
        }
        for name, fn in stages.items():
            timers[f"  stage: {name}"] = (BatchedTimer(fn, images, device), None)
    timers["per-image PIL pipeline (1 thread)"] = (PilTimer(pil_images), 1)
    torch.manual_seed(0)  # the PIL pipeline draws from torch's global RNG
    times = run_interleaved(timers, args.warmup, args.repeats)

    rates = {}
    for label, samples in times.items():
        median = statistics.median(samples)
        rates[label] = n / median
        print(
            f"{label:44s} {n / median:10,.0f} images/s  (median of {len(samples)}: "
            f"{median * 1e3:7.2f} ms per {n})"
        )
    pil = rates["per-image PIL pipeline (1 thread)"]
    print()
    for label, rate in rates.items():
        if label.startswith("batched"):
            print(f"ratio {label} / PIL (1 thread): {rate / pil:.1f}x")


if __name__ == "__main__":
    main()
