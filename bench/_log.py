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


def finished(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of runs that were tested: a diverged run (search.RunRecord) has no accuracy."""
    return [r for r in rows if r.get("test_accuracy", 0) is not None]


def print_diverged(rows: list[dict[str, Any]]) -> None:
    """A line below a table naming the runs it leaves out because they diverged, if any."""
    diverged = [r for r in rows if r.get("test_accuracy", 0) is None]  # finished()'s others
    if diverged:
        print(
            "\ndiverged, not in the table: "
            + "; ".join(f"{r['entry']} seed {r['seed']} ({r.get('diverged')})" for r in diverged)
        )
