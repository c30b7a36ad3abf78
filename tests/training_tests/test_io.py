"""training._io on real unwritable places: a read-only mount, a full disk, a disk without inodes
(small tmpfs mounts, which need root; skipped with the reason where mounting is not allowed) and
/proc, where root's permission check says yes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from training import (
    OutputError,
    atomic_write,
    atomic_write_json,
    check_output_dir,
    check_output_file,
    new_folder,
)


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


# --- the probe: a real file made and removed, not os.access -------------------------------------


@pytest.fixture
def no_inodes(small_disk, remount) -> Path:
    """A writable tmpfs with no inode left: its bits and os.access say yes to anyone, and no file
    can be created (as on a root-squashed NFS export, where only the server says no)."""
    (small_disk / "only").write_text("x")
    remount(small_disk, "nr_inodes=2")  # the root folder and that file
    return small_disk


@pytest.mark.parametrize(
    "where", ["/proc", "read-only mount", "no inodes"], ids=["proc", "read_only", "no_inodes"]
)
def test_probe_refuses_where_no_file_can_be_made(where, request):
    """/proc (os.access says yes to root there) and real unwritable mounts: refused, in one line
    naming the option, the folder asked for and the folder probed; nothing is made."""
    if where == "/proc":
        place = Path("/proc")
    else:
        place = request.getfixturevalue("read_only" if where == "read-only mount" else "no_inodes")
    before = sorted(place.iterdir()) if where != "/proc" else None
    if where == "no inodes":
        assert os.access(place, os.W_OK), "the case where permission bits alone would say yes"
    for folder in (place / "x" / "out", place):
        with pytest.raises(OutputError) as raised:
            check_output_dir(folder, "--save")
        assert str(raised.value) == (
            f"--save {folder} is not writable ({place}); expected a writable folder"
        )
    with pytest.raises(OutputError) as raised:
        check_output_file(place / "x" / "p.json", "-o")
    assert str(raised.value) == (
        f"-o {place / 'x' / 'p.json'} is not writable ({place}); expected a writable folder"
    )
    assert not (place / "x").exists()
    if before is not None:
        assert sorted(place.iterdir()) == before, "no probe file is left"


def test_probe_accepts_a_writable_folder_and_leaves_nothing(tmp_path):
    assert check_output_dir(tmp_path, "--out") == tmp_path
    nested = tmp_path / "new" / "deeper"
    assert check_output_dir(nested, "--save") == nested
    assert check_output_file(nested / "p.json", "-o") == nested / "p.json"
    assert list(tmp_path.iterdir()) == [], "no probe file, no folder made"


def test_check_output_file_refuses_a_folder_and_a_path_under_a_file(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError) as raised:
        check_output_file(tmp_path, "-o")
    assert str(raised.value) == f"-o {tmp_path} is a folder; expected a file path"
    with pytest.raises(OutputError, match=r"cannot be made: .*a_file is a file"):
        check_output_file(tmp_path / "a_file" / "p.json", "-o")
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


def test_new_folder_removes_what_it_made_when_the_write_fails(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(OSError), new_folder(tmp_path / "kept" / "a" / "b") as folder:
        assert folder.is_dir()
        raise OSError(errno.ENOSPC, "no space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and not any(
        (tmp_path / "kept").iterdir()
    )
    with new_folder(tmp_path / "kept" / "a") as folder:
        (folder / "file").write_text("x")
    assert (tmp_path / "kept" / "a" / "file").read_text() == "x"
