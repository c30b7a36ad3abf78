"""training._io on real unwritable places: a read-only mount and a full disk (small tmpfs mounts,
which need root; skipped with the reason where mounting is not allowed)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from training import OutputError, atomic_write, atomic_write_json, check_output_dir


def test_full_disk_is_named_and_leaves_the_old_file(full_disk):
    target = full_disk / "config.json"
    with pytest.raises(OutputError) as raised:
        atomic_write_json(target, {"a": "x" * 100_000})
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value) == f"disk full: no space left on device writing {target}"
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"], "no temp file is left"


def test_torch_save_on_a_full_disk_is_named_too(full_disk):
    """torch.save hides ENOSPC in a RuntimeError of its zip writer; the disk is looked at."""
    target = full_disk / "weights.pt"
    with pytest.raises(OutputError) as raised:
        atomic_write(target, lambda tmp: torch.save({"w": torch.zeros(300_000)}, tmp))
    assert raised.value.errno == errno.ENOSPC
    assert "disk full" in str(raised.value)
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")

    def crash(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt  # a kill signal turned into an exception, mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_check_output_dir_on_a_read_only_mount(read_only):
    with pytest.raises(OutputError, match=r"--save .* is not writable"):
        check_output_dir(read_only / "run", "--save")
    with pytest.raises(OutputError, match=r"--out .* is not writable"):
        check_output_dir(read_only, "--out")


def test_check_output_dir_under_a_file_and_creates_nothing(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match=r"cannot be made: .*a_file is a file"):
        check_output_dir(tmp_path / "a_file" / "run", "--save")
    assert check_output_dir(tmp_path / "new" / "deeper", "--save") == tmp_path / "new" / "deeper"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
