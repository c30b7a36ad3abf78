"""bench/bench_converge.py's replay of the logged searches: the rows bench/RESULTS.md reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(REPO / "bench"))
import bench_converge  # noqa: E402


def test_a_continued_study_is_joined_to_the_run_it_continued():
    finished = bench_converge.read_search(["quality-cpu-search.log", "quality-cpu-48-search.log"])
    assert len(finished) == 48
    assert sorted(f.number for f in finished) == list(range(48))
    row = bench_converge.replay(finished)
    assert (row["finished"], row["complete"]) == (48, 12)
    assert (row["best"], row["best_trial"], row["best_at"]) == (0.7756, 33, 36)
    assert row["within_at"] == 26  # 76.98 % (#25), within 0.59 points of 77.56 %
    assert row["stagnation_stop"] is None  # 12 COMPLETE: below the Terminator's 20


def test_a_continuation_without_its_first_run_is_refused():
    with pytest.raises(ValueError, match="starts from 24 trials done, not the 0"):
        bench_converge.read_search(["quality-cpu-48-search.log"])
