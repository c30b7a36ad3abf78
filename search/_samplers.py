"""Optuna samplers by name: one table of factories, each taking the sampler's seed."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any


def _tpe(seed: int) -> Any:
    """TPE with the constant liar, since Ray runs trials in parallel and several may be pending
    at once; multivariate with `group`, which makes it work on conditional spaces."""
    import optuna

    with warnings.catch_warnings():  # `group` is marked experimental
        warnings.simplefilter("ignore")
        return optuna.samplers.TPESampler(
            seed=seed, constant_liar=True, multivariate=True, group=True
        )


def _random(seed: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(seed: int) -> Any:
    """Categorical and conditional parameters fall back to random sampling within CMA-ES."""
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _gp(seed: int) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)


def _qmc(seed: int) -> Any:
    import optuna

    return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)


SAMPLER_FACTORIES: dict[str, Callable[[int], Any]] = {
    "tpe": _tpe,
    "random": _random,
    "cmaes": _cmaes,
    "gp": _gp,
    "qmc": _qmc,
}
SAMPLERS = tuple(SAMPLER_FACTORIES)


def make_sampler(name: str, seed: int) -> Any:
    """The sampler called `name` (a key of SAMPLER_FACTORIES), seeded with `seed`."""
    try:
        factory = SAMPLER_FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}"
        ) from None
    return factory(seed)
