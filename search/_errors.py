"""The one exception a command's `main` turns into a line on stderr and an exit status."""

from __future__ import annotations


class UsageError(ValueError):
    """What a command cannot do as asked, in one line; `code` is the exit status its `main`
    ends with (2: the input was wrong; 1: the command failed on the way, e.g. a full disk).

    Library code raises it (or a subclass: `StudyError`, `ArtifactError`); only a command's
    `main` turns it into a line and an exit, through `search._console.error_exit`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
