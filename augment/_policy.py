"""AutoAugment policies as data, applied to whole uint8 batches without per-image loops.

A policy is a list of sub-policies; a sub-policy is two steps `(op, probability, magnitude_index)`.
Each image draws one sub-policy uniformly, and each of its steps applies with its probability
(Cubuk et al. 2018, "AutoAugment: Learning Augmentation Strategies from Data", Section 3).

This module also names the built-in policies (`cifar10`, and RandAugment / TrivialAugmentWide
from `_randaugment.py`: `trivialaugment`, `randaugment`, `randaugment:N,M`) and reads and writes
every policy kind as JSON.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import torch

from ._autoaugment import (
    FILL,
    MAGNITUDE_BINS,
    MAGNITUDE_TABLE,
    OP_NAMES,
    OPS,
    apply_by_op,
    canonical_op_name,
)
from ._autoaugment import magnitude_tensor as _magnitude_tensor
from ._checks import (
    PolicyError,
    check_batch,
    check_color_batch,
    check_generator,
    check_interpolation,
)
from ._randaugment import MAGNITUDE_BINS as RANDOM_OPS_BINS
from ._randaugment import RandAugment, TrivialAugmentWide

STEPS_PER_SUB_POLICY = 2
_JSON_KEYS = ("magnitude_table", "magnitude_bins", "sub_policies")
_RANDOM_OPS_KEYS = {
    "randaugment": ("num_ops", "magnitude", "magnitude_bins"),
    "trivialaugment": ("magnitude_bins",),
}
_SKIP = len(OP_NAMES)  # group key of images whose step does not apply


class Step(NamedTuple):
    """One step of a sub-policy: apply `op` with `probability` at magnitude bin `magnitude`."""

    op: str
    probability: float
    magnitude: int


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _parse_step(raw: object, where: str) -> Step:
    if not _is_sequence(raw) or len(raw) != 3:
        raise PolicyError(
            f"{where}: expected a step [op, probability, magnitude_index], got {reprlib.repr(raw)}"
        )
    op, probability, magnitude = raw
    name = canonical_op_name(op)
    if name is None:
        raise PolicyError(
            f"{where}: unknown op {reprlib.repr(op)}; expected one of {', '.join(OP_NAMES)}"
        )
    if (
        isinstance(probability, bool)
        or not isinstance(probability, numbers.Real)
        or not 0.0 <= probability <= 1.0  # also rejects NaN
    ):
        raise PolicyError(
            f"{where}: probability must be a number in [0, 1], got {reprlib.repr(probability)}"
        )
    if magnitude is None and OPS[name].magnitudes is None:
        magnitude = 0  # torchvision's policy lists write None for ops without a magnitude
    if (
        isinstance(magnitude, bool)
        or not isinstance(magnitude, numbers.Integral)
        or not 0 <= magnitude < MAGNITUDE_BINS
    ):
        raise PolicyError(
            f"{where}: magnitude_index must be an int in 0..{MAGNITUDE_BINS - 1}, "
            f"got {reprlib.repr(magnitude)}"
        )
    return Step(name, float(probability), int(magnitude))


def _parse_sub_policies(raw: object) -> tuple[tuple[Step, ...], ...]:
    """Validate nested [[op, probability, magnitude_index] x 2] lists into tuples of Steps."""
    if not _is_sequence(raw):
        raise PolicyError(
            f"sub_policies: expected a list of sub-policies, got {type(raw).__name__}"
        )
    if len(raw) == 0:
        raise PolicyError("sub_policies: expected at least one sub-policy, got an empty list")
    parsed = []
    for i, sub in enumerate(raw):
        if not _is_sequence(sub) or len(sub) != STEPS_PER_SUB_POLICY:
            raise PolicyError(
                f"sub_policies[{i}]: expected a list of {STEPS_PER_SUB_POLICY} steps "
                f"[op, probability, magnitude_index], got {reprlib.repr(sub)}"
            )
        parsed.append(
            tuple(_parse_step(step, f"sub_policies[{i}][{j}]") for j, step in enumerate(sub))
        )
    return tuple(parsed)


@dataclass(frozen=True)
class PolicyParams:
    """The per-image draws of one policy application (what `Policy.sample_params` returns)."""

    choice: torch.Tensor  # (N,) long: the sub-policy of each image
    applied: torch.Tensor  # (2, N) bool: whether step k applies to image n
    signs: torch.Tensor  # (2, N) float32, +1 or -1: the sign of step k's magnitude (signed ops)


@functools.lru_cache(maxsize=32)
def _tables(
    sub_policies: tuple[tuple[Step, ...], ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, 2) op indices, probabilities and magnitude bins of the sub-policies, on `device`."""
    ops = [[OP_NAMES.index(step.op) for step in sub] for sub in sub_policies]
    probs = [[step.probability for step in sub] for sub in sub_policies]
    mags = [[step.magnitude for step in sub] for sub in sub_policies]
    return (
        torch.tensor(ops, dtype=torch.long, device=device),
        torch.tensor(probs, dtype=torch.float32, device=device),
        torch.tensor(mags, dtype=torch.long, device=device),
    )


@functools.lru_cache(maxsize=8)
def _magnitudes(device: torch.device) -> torch.Tensor:
    """(num_ops, 10) unsigned magnitudes of every op, on `device`."""
    return torch.stack([_magnitude_tensor(op, device) for op in OP_NAMES])


@functools.lru_cache(maxsize=8)
def _signed(device: torch.device) -> torch.Tensor:
    """(num_ops,) bool: whether each op takes a random sign, on `device`."""
    return torch.tensor([OPS[op].signed for op in OP_NAMES], device=device)


@dataclass(frozen=True)
class Policy:
    """An AutoAugment policy: sub-policies of two `Step`s each, applied batch-wise by `apply`."""

    sub_policies: tuple[tuple[Step, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sub_policies", _parse_sub_policies(self.sub_policies))

    def __repr__(self) -> str:
        subs = ", ".join(
            "[" + ", ".join(f"({s.op!r}, {s.probability!r}, {s.magnitude})" for s in sub) + "]"
            for sub in self.sub_policies
        )
        return f"Policy([{subs}])"

    def sample_params(
        self, n: int, generator: torch.Generator, device: torch.device | str
    ) -> PolicyParams:
        """Draw each image's sub-policy, step coins and signs (in this order) from `generator`."""
        device = torch.device(device)
        _, probs, _ = _tables(self.sub_policies, device)
        choice = torch.randint(len(self.sub_policies), (n,), generator=generator, device=device)
        coins = torch.rand(STEPS_PER_SUB_POLICY, n, generator=generator, device=device)
        signs = torch.rand(STEPS_PER_SUB_POLICY, n, generator=generator, device=device)
        return PolicyParams(
            choice=choice,
            applied=coins < probs[choice].T,
            signs=torch.where(signs < 0.5, -1.0, 1.0),
        )

    def apply_params(
        self,
        images: torch.Tensor,
        params: PolicyParams,
        *,
        interpolation: str = "nearest",
        fill: float = FILL,
    ) -> torch.Tensor:
        """Apply the policy with given draws; images are grouped by op, never looped over."""
        check_color_batch(images)
        check_interpolation(interpolation)
        n = images.shape[0]
        if params.choice.shape != (n,) or params.applied.shape != (STEPS_PER_SUB_POLICY, n):
            raise ValueError(
                f"params were drawn for {params.choice.shape[0]} images, the batch has {n}"
            )
        out = images.clone()
        if n == 0:
            return out
        ops, _, mags = _tables(self.sub_policies, images.device)
        magnitudes = _magnitudes(images.device)
        signed = _signed(images.device)
        # Looked up on every call, so that the kernels are whatever OPS holds now.
        kernels = [OPS[name].apply for name in OP_NAMES]
        for k in range(STEPS_PER_SUB_POLICY):
            op_index = ops[params.choice, k]
            values = magnitudes[op_index, mags[params.choice, k]]
            values = torch.where(signed[op_index], values * params.signs[k], values)
            keys = torch.where(params.applied[k], op_index, _SKIP)
            apply_by_op(out, keys, values, kernels, interpolation, fill)
        return out

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Apply the policy to a uint8 (N, C, H, W) batch, drawing from `generator`."""
        check_batch(images)
        check_generator(generator, images.device)
        params = self.sample_params(images.shape[0], generator, images.device)
        return self.apply_params(images, params)


# Anything `load_policy` returns and `build_batch_augment` applies: apply(images, generator).
AugmentPolicy: TypeAlias = Policy | RandAugment | TrivialAugmentWide
POLICY_TYPES = (Policy, RandAugment, TrivialAugmentWide)  # for isinstance


def describe_policy(policy: AugmentPolicy) -> str:
    """A short description for reprs: "25 sub-policies", "randaugment:2,9", "trivialaugment"."""
    if isinstance(policy, Policy):
        return f"{len(policy.sub_policies)} sub-policies"
    return str(policy)


def policy_to_json(policy: AugmentPolicy) -> dict[str, Any]:
    """Return the policy as a JSON-ready dict (CamelCase op names for sub-policies)."""
    if isinstance(policy, RandAugment):
        return {
            "randaugment": {
                "num_ops": policy.num_ops,
                "magnitude": policy.magnitude,
                "magnitude_bins": RANDOM_OPS_BINS,
            }
        }
    if isinstance(policy, TrivialAugmentWide):
        return {"trivialaugment": {"magnitude_bins": RANDOM_OPS_BINS}}
    return {
        "magnitude_table": MAGNITUDE_TABLE,
        "magnitude_bins": MAGNITUDE_BINS,
        "sub_policies": [[list(step) for step in sub] for sub in policy.sub_policies],
    }


def _random_ops_from_json(name: str, params: object) -> AugmentPolicy:
    """{"randaugment": {"num_ops": N, "magnitude": M}} or {"trivialaugment": {}} -> policy."""
    keys = _RANDOM_OPS_KEYS[name]
    if not isinstance(params, Mapping):
        raise PolicyError(
            f"{name}: expected an object with keys {', '.join(keys)}, got {type(params).__name__}"
        )
    unknown = sorted(set(params) - set(keys), key=str)
    if unknown:
        raise PolicyError(f"{name}: unknown key {unknown[0]!r}; expected only {', '.join(keys)}")
    bins = params.get("magnitude_bins", RANDOM_OPS_BINS)
    if type(bins) is not int or bins != RANDOM_OPS_BINS:
        raise PolicyError(
            f"{name}: magnitude_bins: expected {RANDOM_OPS_BINS}, got {reprlib.repr(bins)}"
        )
    if name == "trivialaugment":
        return TrivialAugmentWide()
    return RandAugment(**{k: v for k, v in params.items() if k != "magnitude_bins"})


def policy_from_json(data: Mapping[str, Any] | Sequence[Any]) -> AugmentPolicy:
    """Build a policy from its JSON value; raise PolicyError naming what is wrong and where.

    Reads the three forms we write (`policy_to_json`): {"magnitude_table": "torchvision",
    "magnitude_bins": 10, "sub_policies": [...]}, {"randaugment": {"num_ops": 2, "magnitude": 9}}
    and {"trivialaugment": {}} (`magnitude_bins`: 31 optional in both), and also a bare list of
    sub-policies, [[["Invert", 0.1, 7], ["Contrast", 0.2, 6]], ...], the form other AutoAugment
    tools write: its magnitude indices are read with the torchvision table (10 bins, the table the
    headed form names; see augment/_autoaugment.py), and null stands for 0 on ops without a
    magnitude, as in torchvision's own policy lists.
    """
    if _is_sequence(data):
        return Policy(data)
    if not isinstance(data, Mapping):
        raise PolicyError(
            f"expected a JSON object with keys {', '.join(_JSON_KEYS)} (or one key "
            f"randaugment or trivialaugment), or a list of sub-policies, got {type(data).__name__}"
        )
    if len(data) == 1 and next(iter(data)) in _RANDOM_OPS_KEYS:
        name = next(iter(data))
        return _random_ops_from_json(name, data[name])
    unknown = sorted(set(data) - set(_JSON_KEYS), key=str)
    if unknown:
        raise PolicyError(
            f"unknown key {unknown[0]!r}; expected only {', '.join(_JSON_KEYS)} "
            "(or one key randaugment or trivialaugment)"
        )
    for key, expected in (("magnitude_table", MAGNITUDE_TABLE), ("magnitude_bins", MAGNITUDE_BINS)):
        if key not in data:
            raise PolicyError(f"{key}: missing; expected {expected!r}")
        value = data[key]
        if type(value) is not type(expected) or value != expected:
            raise PolicyError(f"{key}: expected {expected!r}, got {reprlib.repr(value)}")
    if "sub_policies" not in data:
        raise PolicyError("sub_policies: missing; expected a list of sub-policies")
    return Policy(data["sub_policies"])


def save_policy(policy: AugmentPolicy, path: str | os.PathLike[str]) -> None:
    """Write the policy to `path` as JSON (sub-policies one per line)."""
    data = policy_to_json(policy)
    if not isinstance(policy, Policy):
        Path(path).write_text(json.dumps(data) + "\n", encoding="utf-8")
        return
    lines = [json.dumps(sub) for sub in data["sub_policies"]]
    text = (
        "{\n"
        f'  "magnitude_table": {json.dumps(data["magnitude_table"])},\n'
        f'  "magnitude_bins": {json.dumps(data["magnitude_bins"])},\n'
        '  "sub_policies": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n"
    )
    Path(path).write_text(text, encoding="utf-8")


# The AutoAugment paper's CIFAR-10 policy (Cubuk et al. 2018, Appendix, Table "Policy found on
# reduced CIFAR-10"), as in torchvision's AutoAugmentPolicy.CIFAR10 and CIFAR10Policy; the
# magnitude bins of AutoContrast/Equalize/Invert are the paper's, and unused.
CIFAR10 = Policy(
    (
        (("Invert", 0.1, 7), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, 3)),
        (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
        (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)),
        (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
        (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)),
    )
)

BUILTIN_POLICIES: dict[str, AugmentPolicy] = {
    "cifar10": CIFAR10,
    "trivialaugment": TrivialAugmentWide(),
    "randaugment": RandAugment(),  # torchvision's defaults, N=2, M=9
}


def _builtin_policy(name: str) -> AugmentPolicy | None:
    """The built-in policy `name` names ("cifar10", "randaugment:N,M", ...), None if none.

    Raise PolicyError for a built-in name with bad parameters, e.g. "randaugment:0,9".
    """
    if name in BUILTIN_POLICIES:
        return BUILTIN_POLICIES[name]
    base, sep, args = name.partition(":")
    if not sep or base not in BUILTIN_POLICIES:
        return None
    if base != "randaugment":
        raise PolicyError(f"invalid policy {name!r}; {base} takes no parameters")
    parts = args.split(",")
    if len(parts) != 2:
        raise PolicyError(
            f"invalid policy {name!r}; expected randaugment:N,M, e.g. randaugment:2,9"
        )
    values: list[int | str] = []
    for text in parts:
        try:
            values.append(int(text.strip()))
        except ValueError:
            values.append(text)  # RandAugment's check names it (N or M) and the range
    return RandAugment(*values)


_KNOWN = "built-in policies: " + ", ".join(BUILTIN_POLICIES) + " (or randaugment:N,M)"


# A policy of hundreds of sub-policies is a few tens of kilobytes; anything far larger is not one.
_MAX_POLICY_BYTES = 1 << 20


def load_policy(name_or_path: str | os.PathLike[str]) -> AugmentPolicy:
    """Return a built-in policy by name or read one from a JSON file.

    Names: "cifar10" (AutoAugment's CIFAR-10 policy), "trivialaugment" (TrivialAugmentWide),
    "randaugment" (N=2, M=9) or "randaugment:N,M". Files: any form `policy_from_json` reads,
    including a bare list of sub-policies (read with the torchvision magnitude table).
    """
    if isinstance(name_or_path, str):
        builtin = _builtin_policy(name_or_path)
        if builtin is not None:
            return builtin
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no built-in policy and no file named {str(name_or_path)!r}; {_KNOWN}"
        )
    if path.stat().st_size > _MAX_POLICY_BYTES:
        raise PolicyError(
            f"{path}: {path.stat().st_size} bytes; expected a policy JSON of at most "
            f"{_MAX_POLICY_BYTES} bytes"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise PolicyError(
            f"{path}: not UTF-8 text (byte {error.start}); expected a policy JSON in UTF-8"
        ) from None
    except json.JSONDecodeError as error:
        raise PolicyError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:  # a hostile file nested thousands deep
        raise PolicyError(f"{path}: JSON nested too deep; expected a policy JSON") from None
    try:
        return policy_from_json(data)
    except PolicyError as error:
        raise PolicyError(f"{path}: {error}") from None
