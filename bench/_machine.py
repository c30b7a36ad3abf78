"""What the benchmarks ran on, for the record each one prints."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name (with family/model numbers) from /proc/cpuinfo, else from platform."""
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            return (
                f"{fields['model name']} (family {fields.get('cpu family', '?')}, "
                f"model {fields.get('model', '?')})"
            )
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_name() -> str:
    """The GPU's name when CUDA is available, else the CPU model."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_model()
