"""What the benchmarks ran on, for the record each one prints: training's `machine_name`, the one
place that names a machine (search.compare's log names it the same way)."""

from __future__ import annotations

import sys
from pathlib import Path

# The repository's own packages, also for a script that imports this before it puts them on the
# path (bench_search.py).
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)


def cpu_model() -> str:
    """The CPU model name (with family/model numbers) from /proc/cpuinfo, else from platform."""
    from training import cpu_model as model

    return model()


def machine_name() -> str:
    """The GPU's name when CUDA is available, else the CPU model."""
    import torch

    from training import machine_name as name

    return name(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
