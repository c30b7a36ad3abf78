"""The benchmarks' run logs: one JSON line per finished run, so an interrupted benchmark resumes
where it stopped and loses at most the run in progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every row of the log at `path`; none when it does not exist yet."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append(path: Path, row: dict[str, Any]) -> None:
    """Add `row` as one line (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(json.dumps(row) + "\n")
