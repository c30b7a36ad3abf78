"""bench/gpu_check.sh, the script a lent GPU host runs: its dry run, the same steps on CPU at a
tiny scale, must pass here, so that the script still works when a GPU comes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STEPS = (
    "pytest",
    "trainer",
    "compile",
    "oom_search",
    "oom_study",
    "train_cnn_reg",
    "train_shake",
    "augment",
    "search",
)


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_step(data_root, tmp_path):
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "OUT": str(tmp_path),
        "CIFAR10_DATA": str(data_root),
    }
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = (tmp_path / "summary.log").read_text()
    assert done.returncode == 0, summary[-4000:] + done.stderr[-2000:]
    assert f"all {len(STEPS)} steps passed" in summary
    for name in STEPS:
        assert f"== {name}: " in summary, name
    assert summary.count("   ok (") == len(STEPS), summary
    assert "   recompiles: " in summary
    assert "as expected: #1 FAIL out of memory" in summary
    assert (tmp_path / "steps.tar.gz").is_file()
    # What a device call brings back: at most 8 files, here two.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["steps.tar.gz", "summary.log"]


def test_gpu_check_refuses_an_unknown_option():
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--fast"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: bash bench/gpu_check.sh [--dry-run] [STEP ...]")
