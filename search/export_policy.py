"""Export a policy search: `python -m search.export_policy --study policy -o policy.json`.

Merges the sub-policies of the study's best completed trials, best first, de-duplicated, into one
CIFAR10Policy-style JSON (25 sub-policies by default, as in AutoAugment's CIFAR-10 policy, which
merged the best 5 policies of 5 sub-policies each; Fast AutoAugment merged its best policies
likewise). Works on both policy spaces: `policy` (density matching, trials scored by fold models)
and `policy_child` (a child trained per trial); it prints which trials it merged, with their
scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training import OutputError, atomic_write, check_output_file, new_folder

from ._console import (
    USAGE_ERRORS,
    HelpFormatter,
    add_study_options,
    as_usage_errors,
    error_exit,
    open_study_from_args,
    path_option,
    positive_int,
)
from ._errors import UsageError
from ._space import get_space
from ._study import StudyError, StudyRecord


def merge_sub_policies(study: Any, count: int) -> tuple[list, list]:
    """Up to `count` distinct sub-policies from the best COMPLETE trials, and the trials used
    (optuna FrozenTrials, best first)."""
    import optuna

    space = get_space(StudyRecord.of(study).space)
    complete = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
    ]
    complete.sort(key=lambda t: t.value, reverse=True)
    merged, seen, used = [], set(), []
    for trial in complete:
        policy = space.trial_config(trial.params).policy
        if not isinstance(policy, tuple):
            raise StudyError(
                f"study {study.study_name!r} (space {space.name!r}) does not search policies; "
                "expected a study made with --space policy"
            )
        took = False
        for sub in policy:
            if len(merged) == count:
                break
            # A sub-policy whose steps never apply is a no-op; it would only dilute the policy.
            if sub in seen or all(step[1] == 0 for step in sub):
                continue
            seen.add(sub)
            merged.append(sub)
            took = True
        if took:
            used.append(trial)
        if len(merged) == count:
            break
    return merged, used


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.export_policy",
        description="Merge a policy study's best sub-policies into one policy JSON.",
        formatter_class=HelpFormatter,
    )
    add_study_options(parser)
    parser.add_argument(
        "-o", "--output", type=path_option, required=True, help="policy JSON to write"
    )
    parser.add_argument("--count", type=positive_int, default=25, help="sub-policies in the export")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        output = check_output_file(args.output, "-o")  # before the study is read
        study, _, _ = open_study_from_args(args)
        with as_usage_errors(ValueError):
            merged, used = merge_sub_policies(study, args.count)
        if not merged:
            raise UsageError(
                f"study {args.study!r} has no completed trial with a usable policy; run or "
                "continue the policy search first"
            )
        write_policy(output, merged, shown=args.output)
        print_export(study, merged, used, args.count, args.output)
    except USAGE_ERRORS as exc:
        raise SystemExit(error_exit(exc)) from None


def write_policy(path: Path, sub_policies: list, shown: Path) -> None:
    """Write `sub_policies` as one policy JSON at `path`, atomically, making its folder (removed
    again when the write fails); a failure names the path as the user gave it (`shown`)."""
    from augment import Policy, save_policy

    try:
        with new_folder(path.parent):
            atomic_write(path, lambda tmp: save_policy(Policy(tuple(sub_policies)), tmp))
    except OutputError:
        raise  # a full disk: exit 1, as every command
    except OSError as exc:
        raise UsageError(f"cannot write {shown}: {exc.strerror or exc}") from None


def print_export(study: Any, merged: list, used: list, count: int, output_shown: Path) -> None:
    """What was written where, from which trials, and a note when fewer than `count` were found."""
    space = get_space(StudyRecord.of(study).space)
    how = {"density": "density matching", "train": "a child trained per trial"}[space.method]
    print(
        f"wrote {len(merged)} sub-policies from {len(used)} trial(s) of study "
        f"{study.study_name!r} (space {space.name!r}, scored by {how}) to {output_shown}"
    )
    print(
        "merged trials, best first: "
        + ", ".join(f"#{t.number} ({100 * t.value:.2f}%)" for t in used)
    )
    if len(merged) < count:
        print(
            f"note: only {len(merged)} distinct sub-policies were available (asked for "
            f"{count}); more trials give more"
        )


if __name__ == "__main__":
    main()
