"""The data of the quality benchmarks: one training subset, validation split and test split,
chosen by the same options in every script that compares recipes on them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10-jpeg"


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """--train-size, --val-size, --split-seed, --data, --device, --threads."""
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--split-seed", type=int, default=0, help="the split, as search --seed")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def load_split(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(training subset, validation split, test split) as the options say; sets torch's threads."""
    import torch

    from training import load_cifar10, train_val_split

    torch.set_num_threads(args.threads)
    data = load_cifar10(args.data, "train")
    test_set = load_cifar10(args.data, "test")
    train_set, val_set = train_val_split(data, args.val_size, args.split_seed, args.train_size)
    return train_set, val_set, test_set
