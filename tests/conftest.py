"""Shared fixtures: the real CIFAR-10 JPEGs in ../shared/data and small slices of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"


def real_data_root() -> Path:
    """The real CIFAR-10 folder: $CIFAR10_DATA when set, else ../shared/data/cifar10-jpeg."""
    root = Path(os.environ.get("CIFAR10_DATA", SHARED_DATA))
    if not ((root / "train.zip").exists() or (root / "cifar-10-batches-py").exists()):
        pytest.skip(f"real CIFAR-10 data not found at {root}")
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return real_data_root()


@pytest.fixture(scope="session")
def cifar_train(data_root):
    from training import load_cifar10

    return load_cifar10(data_root, "train", download=False)
