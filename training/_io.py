"""Writing run outputs safely: every file through one atomic writer, every output folder checked
before the work that fills it starts."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A disk with less free space than this is taken as full when a write fails on it.
_FULL_BELOW = 1 << 20


class OutputError(OSError):
    """An output place that cannot be written; the message names it, why, and what is expected.

    `errno` is ENOSPC for a full disk."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write `path` by calling `write(temp)` on a temp file beside it, then renaming it over.

    Readers see the old file or the new one, never half of one. When writing fails (a full disk,
    a kill signal turned into an exception) the temp file is removed and the error propagates.
    """
    path = Path(path)
    # Per process: two processes writing the same file (two drivers caching the same data)
    # each rename a whole file of their own.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        # torch.save reports a full disk as a RuntimeError from its zip writer, not as ENOSPC:
        # look at the disk before the temp file is removed and space freed.
        full = isinstance(exc, Exception) and _disk_full(exc, path.parent)
        tmp.unlink(missing_ok=True)
        if full:
            raise OutputError(
                errno.ENOSPC, f"disk full: no space left on device writing {path}"
            ) from exc
        raise
    return path


def _disk_full(exc: Exception, folder: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(folder).free < _FULL_BELOW
    except OSError:
        return False


@contextmanager
def new_folder(folder: str | Path) -> Iterator[Path]:
    """Make `folder` (and its missing parents) for the block that fills it; when the block
    raises, remove again, if still empty, each folder made here: a write that failed (a full
    disk) leaves no new empty folder behind."""
    folder = Path(folder)
    made = []  # the deepest first
    probe = folder
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
    except BaseException:
        for path in made:
            try:
                path.rmdir()
            except FileNotFoundError:
                continue  # the mkdir failed before it
            except OSError:
                break  # not empty: it, and every folder above it, stay
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`text` into `path`, atomically (see `atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, value: Any) -> Path:
    """`value` as indented JSON into `path`, atomically (see `atomic_write`)."""
    return atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def check_output_dir(folder: str | Path, option: str) -> Path:
    """`folder` made absolute, after checking that it is, or can be made as, a writable folder.

    Creates nothing that stays: a command checks every place it will write before long work
    starts, and leaves nothing behind when one is wrong. `option` names the place in the error
    (`--save`).
    """
    folder = Path(folder).absolute()
    _check_place(folder, folder, option)
    return folder


def check_free_space(
    folder: str | Path, need_bytes: int, option: str, what: str = "weights and training state"
) -> None:
    """Raise OutputError (ENOSPC) unless the disk that `folder` is (or will be made) on has
    `need_bytes` free, so a run that could not save its result fails before it trains; `what`
    says in the error what the run writes there."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return  # nothing to tell from: the write itself will say
    if free < need_bytes:
        raise OutputError(
            errno.ENOSPC,
            f"{option} {folder}: {_mib(free)} free on its disk, and the run writes about "
            f"{_mib(need_bytes)} ({what}); expected at least that much free",
        )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def check_output_file(path: str | Path, option: str) -> Path:
    """`path` made absolute, after checking that a file can be written there through
    `atomic_write` (a temp file beside it, renamed over): not a folder, and its folder checked as
    `check_output_dir` checks one. The writer makes missing folders."""
    path = Path(path).absolute()
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; expected a file path")
    _check_place(path.parent, path, option)
    return path


def _check_place(folder: Path, named: Path, option: str) -> None:
    """Raise unless `folder` is, or can be made as, a writable folder; the error names `named`."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(
            f"{option} {named} cannot be made: {probe} is a file; expected a folder path"
        )
    if not _can_create_in(probe):
        raise OutputError(f"{option} {named} is not writable ({probe}); expected a writable folder")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can really be created in `folder`: one is created and removed.

    `os.access` is no answer: it says yes to root for almost any folder (/proc included), and
    root-squashed NFS can answer the same; only a real file shows what the file system, the
    mount and the server allow.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True
