"""bench/bench_search.py's reading of CUDA_VISIBLE_DEVICES, which nvidia-smi ignores."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(REPO / "bench"))
import bench_search  # noqa: E402


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        (None, []),  # unset: every GPU
        ("", None),  # set but empty: none, as CUDA and Ray read it
        ("  ", None),
        ("1", ["--id=1"]),
        ("0,2", ["--id=0,2"]),
    ],
)
def test_visible_gpus_follows_cuda(monkeypatch, value, ids):
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert bench_search.visible_gpus() == ids
