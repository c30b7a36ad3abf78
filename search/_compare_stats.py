"""The statistics of a comparison: each entry's test accuracy over seeds, and its paired
difference to the first entry, each a mean with a 95 % Student-t interval; the table and the
one-line verdict made of them.

The interval of a mean of n runs is mean +- t(0.975, n - 1) * sd / sqrt(n), sd the sample
standard deviation (n - 1 in the denominator), t Student's quantile (scipy.stats.t.ppf): the
seeds are taken as a sample of the seeds one could have run, so the interval says where the mean
over all seeds lies, not where one more run would land. Paired: the runs of one seed share the
split and the initial weights, so the difference d_s = a_s - b_s of two entries at seed s leaves
out what the seed does to both; its interval is the t interval of the d_s (the paired t test's:
it excludes 0 exactly when that test rejects "no difference" at the 5 % level). With one seed
(one pair) there is no spread to estimate, so no interval.

A diverged run has no accuracy: it is left out of its entry's mean and shown as diverged, and an
entry with one is not ranked by the verdict (its mean over the seeds that finished would flatter
it) but named, with its seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._compare import RunRecord

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean over `n` values with its sample sd and 95 % t interval (None for n = 1)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of `values`, its sample sd and its `level` Student-t interval."""
    if not values:
        raise ValueError("expected at least one value")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Interval(1, mean, None, None, None)
    from scipy.stats import t

    sd = statistics.stdev(values)
    half = float(t.ppf(0.5 + level / 2, len(values) - 1)) * sd / math.sqrt(len(values))
    return Interval(len(values), mean, sd, mean - half, mean + half)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Interval | None:
    """a - b over the seeds both have (seed -> value), with its t interval; None if none."""
    seeds = sorted(set(a) & set(b))
    return t_interval([a[s] - b[s] for s in seeds]) if seeds else None


@dataclass(frozen=True)
class EntrySummary:
    """One row of the table: an entry's runs in percent, by seed, and what they add up to."""

    name: str
    test: dict[int, float]  # seed -> test accuracy, % (runs that finished)
    val: dict[int, float]  # seed -> validation accuracy, % (runs without validation left out)
    seconds: float | None  # the mean of a run's seconds
    diverged: tuple[int, ...] = ()  # the seeds whose run diverged

    def test_interval(self) -> Interval | None:
        return t_interval(list(self.test.values())) if self.test else None

    def val_interval(self) -> Interval | None:
        return t_interval(list(self.val.values())) if self.val else None


def summarize(names: Sequence[str], records: Sequence[RunRecord]) -> list[EntrySummary]:
    """One summary per name, in order (the first the baseline), of its `records`."""
    summaries = []
    for name in names:
        mine = sorted((r for r in records if r.entry == name), key=lambda r: r.seed)
        summaries.append(
            EntrySummary(
                name=name,
                test={r.seed: 100 * r.test_accuracy for r in mine if r.test_accuracy is not None},
                val={r.seed: 100 * r.val_accuracy for r in mine if r.val_accuracy is not None},
                seconds=statistics.fmean(r.seconds for r in mine) if mine else None,
                diverged=tuple(r.seed for r in mine if r.test_accuracy is None),
            )
        )
    return summaries


def markdown_table(summaries: Sequence[EntrySummary]) -> str:
    """The comparison as a markdown table: test accuracy (mean, sd, 95 % CI), the paired
    difference to the first entry with its interval, validation accuracy, each run, time."""
    base = summaries[0]
    lines = [
        f"| entry | runs | test acc. mean | sd | 95 % CI | vs {base.name} (paired) | 95 % CI "
        "| val acc. mean | per seed | s per run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summaries:
        test, val = row.test_interval(), row.val_interval()
        if row is base:
            diff_cells = ["baseline", ""]
        else:
            diff = paired_difference(row.test, base.test)
            diff_cells = ["-", ""] if diff is None else [f"{diff.mean:+.2f}", _bounds(diff, "+")]
        cells = [
            row.name,
            str(len(row.test)) + (f" (+{len(row.diverged)} diverged)" if row.diverged else ""),
            f"{test.mean:.2f} %" if test else "-",
            f"{test.sd:.2f}" if test and test.sd is not None else "-",
            _bounds(test) if test else "-",
            *diff_cells,
            f"{val.mean:.2f} %" if val else "-",
            _per_seed(row),
            f"{row.seconds:.1f}" if row.seconds is not None else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _per_seed(row: EntrySummary) -> str:
    """The runs' test accuracies in seed order, a diverged one as 'diverged'."""
    seeds = sorted({*row.test, *row.diverged})
    return ", ".join(f"{row.test[s]:.2f}" if s in row.test else "diverged" for s in seeds) or "-"


def _bounds(interval: Interval, sign: str = "") -> str:
    if interval.low is None or interval.high is None:
        return "- (1 seed)"
    return f"[{interval.low:{sign}.2f}, {interval.high:{sign}.2f}]"


def verdict(summaries: Sequence[EntrySummary]) -> str:
    """One line: the entry of the highest mean test accuracy, and whether its paired difference
    to the baseline (the first entry) and to the runner-up is larger than its 95 % interval;
    entries with a diverged run are not ranked but named after it."""
    diverged = [s for s in summaries if s.diverged]
    unranked = "".join(
        f"; {s.name} diverged at seed{'s' if len(s.diverged) > 1 else ''} "
        f"{', '.join(map(str, s.diverged))}: not ranked"
        for s in diverged
    )
    return _ranking([s for s in summaries if not s.diverged], summaries[0], bool(diverged)) + (
        unranked
    )


def _ranking(summaries: Sequence[EntrySummary], base: EntrySummary, any_diverged: bool) -> str:
    """The verdict's ranking of the entries without a diverged run (`base`: the first entry)."""
    ran = [s for s in summaries if s.test]
    if len(ran) < 2:
        without = " without a diverged one" if any_diverged else ""
        return f"verdict: fewer than two entries have runs{without}; nothing to compare yet"
    ranked = sorted(ran, key=lambda s: -statistics.fmean(s.test.values()))  # ties: given order
    best, runner_up = ranked[0], ranked[1]
    line = (
        f"verdict: {best.name} has the highest mean test accuracy "
        f"({statistics.fmean(best.test.values()):.2f} %)"
    )
    if best is base:
        return f"{line} and is the baseline; {_against(best, runner_up, 'the runner-up')}"
    if runner_up is base or not base.test:
        role = "the baseline and runner-up" if runner_up is base else "the runner-up"
        return f"{line}; {_against(best, runner_up, role)}"
    return (
        f"{line}; {_against(best, base, 'the baseline')}; "
        f"{_against(best, runner_up, 'the runner-up')}"
    )


def _against(best: EntrySummary, other: EntrySummary, role: str) -> str:
    """'+1.20 points over cifar10 (the runner-up), 95 % CI [+0.31, +2.09]: larger than ...'."""
    diff = paired_difference(best.test, other.test)
    if diff is None:
        return f"no seed in common with {other.name} ({role})"
    text = f"{diff.mean:+.2f} points over {other.name} ({role})"
    if diff.low is None or diff.high is None:
        return f"{text}, one paired seed: no interval (run more --seeds)"
    if diff.excludes_zero:
        judged = "larger than its interval (the CI excludes 0)"
    else:
        judged = "not larger than its interval (the CI includes 0: not a clear difference)"
    return f"{text}, 95 % CI [{diff.low:+.2f}, {diff.high:+.2f}] over {diff.n} seeds: {judged}"
