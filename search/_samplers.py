"""Optuna samplers by name."""

from __future__ import annotations

import warnings
from typing import Any

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")


def make_sampler(name: str, seed: int) -> Any:
    """The sampler called `name`, seeded. TPE uses the constant liar, since Ray runs trials in
    parallel and several may be pending at once."""
    import optuna

    samplers = optuna.samplers
    if name == "tpe":
        with warnings.catch_warnings():  # `group` is marked experimental; it is what makes
            warnings.simplefilter("ignore")  # multivariate TPE work on conditional spaces
            return samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True, group=True)
    if name == "random":
        return samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # Categorical and conditional parameters fall back to random sampling within CMA-ES.
        return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
