"""CIFAR-10 model zoo; build models only through ``create_model(name, **kwargs)``."""

from __future__ import annotations

# Imported for their side effect: each module registers its builders.
from . import _cnn, _shake_shake  # noqa: F401
from ._registry import create_model, list_models

__all__ = ["create_model", "list_models"]
