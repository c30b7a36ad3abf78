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

from ._console import HelpFormatter, add_study_options, fail, open_study_from_args
from ._space import get_space
from ._study import (
    StudyError,
)


def merge_sub_policies(study, count: int) -> tuple[list, list]:
    """Up to `count` distinct sub-policies from the best COMPLETE trials, and the trials used
    (optuna FrozenTrials, best first)."""
    import optuna

    space = get_space(study.user_attrs.get("space", study.study_name))
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m search.export_policy",
        description="Merge a policy study's best sub-policies into one policy JSON.",
        formatter_class=HelpFormatter,
    )
    add_study_options(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, help="policy JSON to write")
    parser.add_argument("--count", type=int, default=25, help="sub-policies in the export")
    args = parser.parse_args(argv)
    if args.count < 1:
        fail(f"--count {args.count} is invalid; expected a whole number >= 1")
    from training import OutputError, atomic_write, check_output_file

    try:
        output = check_output_file(args.output, "-o")  # before the study is read
    except OutputError as exc:
        fail(str(exc))
    study, _, _ = open_study_from_args(args)
    try:
        merged, used = merge_sub_policies(study, args.count)
    except (StudyError, ValueError) as exc:
        fail(str(exc))
    if not merged:
        fail(
            f"study {args.study!r} has no completed trial with a usable policy; run or "
            "continue the policy search first"
        )

    from augment import Policy, save_policy

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, lambda tmp: save_policy(Policy(tuple(merged)), tmp))
    except OSError as exc:
        fail(f"cannot write {args.output}: {exc.strerror or exc}")
    space = get_space(study.user_attrs.get("space", study.study_name))
    how = {"density": "density matching", "train": "a child trained per trial"}[space.method]
    print(
        f"wrote {len(merged)} sub-policies from {len(used)} trial(s) of study {args.study!r} "
        f"(space {space.name!r}, scored by {how}) to {args.output}"
    )
    print(
        "merged trials, best first: "
        + ", ".join(f"#{t.number} ({100 * t.value:.2f}%)" for t in used)
    )
    if len(merged) < args.count:
        print(
            f"note: only {len(merged)} distinct sub-policies were available (asked for "
            f"{args.count}); more trials give more"
        )


if __name__ == "__main__":
    main()
