"""The project's version, for the records a study and a retrain keep."""

from __future__ import annotations

import re
from pathlib import Path


def project_version() -> str:
    """The installed distribution's version, else the one in pyproject.toml."""
    try:
        from importlib.metadata import version

        return version("cifar-search")
    except Exception:
        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
        match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
        return match.group(1) if match else "unknown"
