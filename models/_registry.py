"""Name -> builder registry behind ``create_model`` (timm-style, but deliberately tiny)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

Builder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=Builder)

_MODELS: dict[str, Builder] = {}


def register_model(fn: _B) -> _B:
    """Register ``fn`` under its ``__name__``; a second builder with the same name raises."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Sorted names accepted by ``create_model``."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model ``name``; kwargs go to its builder (all accept num_classes)."""
    try:
        builder = _MODELS[name]
    except KeyError:
        known = ", ".join(list_models())
        raise ValueError(f"unknown model {name!r}; expected one of: {known}") from None
    # Builders have explicit keyword-only signatures, so a misspelt kwarg raises a TypeError
    # that names it instead of being silently swallowed.
    return builder(**kwargs)


def check_num_classes(num_classes: int) -> int:
    """Return ``num_classes`` (the logit width) after checking it is a positive int."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return num_classes
