"""Shared fixtures: the real CIFAR-10 JPEGs in ../shared/data and small slices of them, small
or read-only disks (tmpfs mounts) for the tests of what commands do when they cannot write, and
for precision tests a CPU with or without native bf16 and a record of what autocast ran."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
import sys
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


def mount_tmpfs(folder: Path, *options: str) -> None:
    """A 1 MiB tmpfs at `folder` (with `options`, e.g. "ro"); skips the test where it cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["size=1m", *options]), "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


def unmount(folder: Path) -> None:
    """Unmount `folder`, after closing files a failed writer may still hold open there."""
    gc.collect()
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def _remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


@pytest.fixture
def remount():
    """`remount(folder, options)` changes a mounted tmpfs's options, e.g. "ro" or "size=64m"."""
    return _remount


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A writable 1 MiB tmpfs: too small for a trial's weights (`remount` grows it or makes it
    read-only: root can still write to a chmod-ed folder, not to a read-only mount)."""
    folder = tmp_path / "disk"
    mount_tmpfs(folder)
    try:
        yield folder
    finally:
        unmount(folder)


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A read-only folder (a read-only mount: unwritable even for root)."""
    folder = tmp_path / "ro"
    mount_tmpfs(folder, "ro")
    try:
        yield folder
    finally:
        unmount(folder)


@pytest.fixture
def full_disk(small_disk) -> Path:
    """A folder on a disk with no space left: the small disk filled by one file, `filler`."""
    with open(small_disk / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return small_disk


# --- precision: the CPU's answer faked, and what autocast was asked to run ------------------------


@pytest.fixture
def cpu(monkeypatch):
    """`cpu(native)` makes the CPU have native bf16 or not (the /proc/cpuinfo flag reader's
    answer), so that no test depends on the CPU it runs on."""
    import training._trainer

    def fake(native: bool) -> None:
        monkeypatch.setattr(training._trainer, "cpu_has_native_bf16", lambda: native)

    return fake


class AutocastSpy:
    """Stands in for `torch.autocast`: records each region's dtype (None: autocast off) and the
    function that opened it, then enters the real one."""

    def __init__(self, real) -> None:
        self.real, self.seen, self.where = real, [], []

    def __call__(self, device_type, dtype=None, enabled=True, **kwargs):
        self.seen.append(dtype if enabled else None)
        self.where.append(sys._getframe(1).f_code.co_name)
        return self.real(device_type, dtype=dtype, enabled=enabled, **kwargs)

    def of(self, function: str) -> set:
        """The dtypes of the regions `function` opened."""
        pairs = zip(self.seen, self.where, strict=True)
        return {dtype for dtype, name in pairs if name == function}


@pytest.fixture
def autocasts(monkeypatch) -> AutocastSpy:
    import torch

    spy = AutocastSpy(torch.autocast)
    monkeypatch.setattr(torch, "autocast", spy)
    return spy
