"""`python -m search.compare` on tiny slices of the real CIFAR-10 (cnn_basic, 1 epoch, 200
training, 100 validation and 200 test images, fp32 on the CPU): the table, the log and the page
it writes, resuming from the log, the statistics against values worked out by hand, and hostile
input refused in one line with nothing written.

The accuracies of such runs are near chance; what is tested is what the command does with them.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import make_one_trial_study, substituted

from search import compare
from search._artifacts import save_run
from search._compare import RunRecord, split_entries
from search._compare_stats import (
    EntrySummary,
    markdown_table,
    paired_difference,
    summarize,
    t_interval,
    verdict,
)
from training import TrainConfig, build_model

TINY = [
    "--model",
    "cnn_basic",
    "--epochs",
    "1",
    "--train-size",
    "200",
    "--val-size",
    "100",
    "--test-size",
    "200",
    "--precision",
    "fp32",
    "--device",
    "cpu",
]
TWO_POLICIES = ["--policies", "none,cifar10", "--seeds", "2", *TINY]
RUNS = {("none", 0), ("cifar10", 0), ("none", 1), ("cifar10", 1)}


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


def run_compare(argv: list[str]) -> Ran:
    """`search.compare`'s main in this process, its output captured."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            compare.main(argv)
        except SystemExit as exc:
            code = exc.code
    return Ran(code, out.getvalue(), err.getvalue())


def log_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "compare.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def compared(data_root, tmp_path_factory) -> tuple[Path, Ran]:
    """One 2-seed, 1-epoch comparison of two policies: its --out folder and what it printed."""
    out = tmp_path_factory.mktemp("compare") / "out"
    ran = run_compare([*TWO_POLICIES, "--data", str(data_root), "--out", str(out)])
    assert ran.code == 0, ran.err
    return out, ran


def copy_of(compared: tuple[Path, Ran], tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    shutil.copytree(compared[0], folder)
    return folder


def test_a_comparison_prints_the_table_and_writes_the_log_the_table_and_the_page(compared):
    out, ran = compared
    header, *runs = log_rows(out)
    assert header["format"] == 1 and header["comparison"]["axis"] == "policies"
    assert header["comparison"]["data"]["train"][0] == 200
    assert {(r["entry"], r["seed"]) for r in runs} == RUNS
    for run in runs:
        assert 0 <= run["test_accuracy"] <= 1 and 0 <= run["val_accuracy"] <= 1
        assert run["config"]["seed"] == run["seed"] and run["config"]["epochs"] == 1
        assert run["precision"] == "fp32" and run["machine"] and run["seconds"] > 0
    # The same seed means the same run but for its policy.
    assert [r["config"]["policy"] for r in runs if r["entry"] == "cifar10"] == ["cifar10"] * 2
    assert runs[0]["policy"] is None and runs[1]["policy"]["sub_policies"]
    lines = ran.out.splitlines()
    table = [line for line in lines if line.startswith("| none |") or line.startswith("| cifar")]
    assert len(table) == 2 and "baseline" in table[0] and "| 2 |" in table[1]
    verdicts = [line for line in lines if line.startswith("verdict: ")]
    assert len(verdicts) == 1 and "has the highest mean test accuracy" in verdicts[0]
    assert "95 % CI" in verdicts[0] and "over 2 seeds" in verdicts[0]
    assert sum(line.startswith("run ") for line in lines) == 4
    assert "| vs none (paired) |" in (out / "compare.md").read_text()
    page = (out / "compare.html").read_text()
    assert "Paired difference to none" in page and "seed 1" in page
    assert "plotly" in page and "<script src=" not in page  # plotly.js inline: offline


def test_a_rerun_resumes_from_the_log_and_trains_nothing(compared, data_root, tmp_path):
    out = copy_of(compared, tmp_path)
    before = (out / "compare.jsonl").read_bytes()
    ran = run_compare([*TWO_POLICIES, "--data", str(data_root), "--out", str(out)])
    assert ran.code == 0, ran.err
    assert "resuming: 4 of 4 runs" in ran.out and "nothing to train" in ran.out
    assert not any(line.startswith("run ") for line in ran.out.splitlines())
    assert (out / "compare.jsonl").read_bytes() == before
    assert [line for line in ran.out.splitlines() if line.startswith("| cifar10 |")] == [
        line for line in compared[1].out.splitlines() if line.startswith("| cifar10 |")
    ]


def test_a_partial_log_trains_only_the_missing_run(compared, data_root, tmp_path):
    out = copy_of(compared, tmp_path)
    lines = (out / "compare.jsonl").read_text().splitlines()
    missing = json.loads(lines[2])  # one run of seed 0
    (out / "compare.jsonl").write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    ran = run_compare([*TWO_POLICIES, "--data", str(data_root), "--out", str(out)])
    assert ran.code == 0, ran.err
    assert "resuming: 3 of 4 runs" in ran.out
    started = [line for line in ran.out.splitlines() if line.startswith("run ")]
    assert started == [f"run 1/1: {missing['entry']}, seed {missing['seed']}"]
    after = (out / "compare.jsonl").read_text().splitlines()
    assert after[:2] + after[2:4] == lines[:2] + lines[3:]  # the logged runs kept as they were
    assert {(r["entry"], r["seed"]) for r in log_rows(out)[1:]} == RUNS


def test_a_new_entry_joins_the_logged_comparison(compared, data_root, tmp_path):
    """Another policy for the same base and data: the logged runs count, only its own train."""
    out = copy_of(compared, tmp_path)
    argv = ["--policies", "none,cifar10,randaugment:2,9", "--seeds", "1", *TINY]
    ran = run_compare([*argv, "--data", str(data_root), "--out", str(out)])
    assert ran.code == 0, ran.err
    started = [line for line in ran.out.splitlines() if line.startswith("run ")]
    assert started == ["run 1/1: randaugment:2,9, seed 0"]
    assert "| randaugment:2,9 | 1 |" in ran.out and "no interval" in ran.out  # one seed


def test_a_run_that_diverges_is_logged_as_such_and_the_comparison_goes_on(data_root, tmp_path):
    hot = TrainConfig(model="cnn_basic", optimizer="sgd", lr=1e6, batch_size=16)
    save_run(tmp_path / "hot", build_model(hot, torch.device("cpu")), hot)
    recipes = ["--recipes", f"default,{tmp_path / 'hot' / 'config.json'}", "--seeds", "2"]
    out = tmp_path / "out"
    argv = [*recipes, *TINY, "--data", str(data_root), "--out", str(out)]
    ran = run_compare(argv)
    assert ran.code == 0, ran.err
    runs = log_rows(out)[1:]
    assert len(runs) == 4  # every run trained: the one after a diverged run too
    diverged = [r for r in runs if r["entry"].endswith("config.json")]
    assert all(r["test_accuracy"] is None and "loss became" in r["diverged"] for r in diverged)
    assert all(r["test_accuracy"] is not None for r in runs if r["entry"] == "default")
    assert "(+2 diverged)" in (out / "compare.md").read_text()
    assert "diverged at seeds 0, 1: not ranked" in ran.out
    assert "runs: 4 of 4 (2 diverged" in ran.out
    again = run_compare(argv)  # the diverged runs count as done: not trained again
    assert again.code == 0 and "nothing to train" in again.out


def test_a_study_trial_is_compared_on_the_studys_own_split(data_root, tmp_path):
    url = make_one_trial_study(tmp_path / "study.db")  # val_size 500, split seed 0
    # No --val-size: the study's own validation split; the options given replace the trial's.
    tiny = [*TINY[:4], "--train-size", "200", "--test-size", "100", *TINY[10:]]
    argv = ["--study", "s", "--storage", url, "--policies", "none", "--seeds", "1", *tiny]
    ran = run_compare([*argv, "--data", str(data_root), "--out", str(tmp_path / "out")])
    assert ran.code == 0, ran.err
    header, run = log_rows(tmp_path / "out")
    assert header["comparison"]["data"]["val"][0] == 500
    assert run["config"]["epochs"] == 1 and run["config"]["model"] == "cnn_basic"
    assert "trial #0 of study 's'" in ran.out
    assert "fewer than two entries" in ran.out


def test_entries_split_at_commas_but_a_number_continues_randaugment():
    assert split_entries("none,cifar10,trivialaugment,randaugment:2,9,policy.json") == [
        "none",
        "cifar10",
        "trivialaugment",
        "randaugment:2,9",
        "policy.json",
    ]
    with pytest.raises(ValueError, match="named twice"):
        split_entries("none,cifar10,none")


# --- the statistics, against values worked out by hand ------------------------------------------
# Student t quantiles t(0.975, df) from the printed tables (e.g. NIST/SEMATECH e-Handbook of
# Statistical Methods, 1.3.6.7.2): df 2: 4.303, df 3: 3.182.


def test_the_t_interval_of_a_mean():
    interval = t_interval([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sd sqrt(5/3) = 1.29099, half-width 3.18245 * 1.29099 / 2 = 2.05426
    assert interval.n == 4 and interval.mean == pytest.approx(2.5)
    assert interval.sd == pytest.approx(1.290994, abs=1e-6)
    assert interval.low == pytest.approx(0.445738, abs=1e-5)
    assert interval.high == pytest.approx(4.554262, abs=1e-5)
    one = t_interval([71.5])
    assert (one.mean, one.sd, one.low, one.high) == (71.5, None, None, None)


def test_the_paired_difference_sees_what_the_spread_over_seeds_hides():
    # Seeds move both entries alike (60, 70, 80): unpaired, their intervals overlap widely; the
    # differences 1, 1, 0.5 (mean 0.8333, sd 0.288675, half-width 4.30265 * 0.288675 / sqrt(3)
    # = 0.717109) exclude 0.
    a = {0: 60.0, 1: 70.0, 2: 80.0, 3: 90.0}
    b = {0: 59.0, 1: 69.0, 2: 79.5}  # no seed 3: only the seeds both have are paired
    diff = paired_difference(a, b)
    assert diff.n == 3 and diff.mean == pytest.approx(0.833333, abs=1e-6)
    assert diff.low == pytest.approx(0.116224, abs=1e-5)
    assert diff.high == pytest.approx(1.550443, abs=1e-5)
    assert diff.excludes_zero
    # diffs 1, 2, 0.5: mean 1.16667, sd 0.763763, half-width 1.897298: [-0.73063, 3.06397]
    noisy = paired_difference({0: 70.0, 1: 72.0, 2: 71.0}, {0: 69.0, 1: 70.0, 2: 70.5})
    assert noisy.low == pytest.approx(-0.730631, abs=1e-5)
    assert noisy.high == pytest.approx(3.063964, abs=1e-5)
    assert not noisy.excludes_zero
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


def test_the_verdict_names_the_best_and_says_whether_its_lead_is_larger_than_its_interval():
    none = EntrySummary("none", {0: 59.0, 1: 69.0, 2: 79.5}, {}, 1.0)
    best = EntrySummary("cifar10", {0: 60.0, 1: 70.0, 2: 80.0}, {}, 1.0)
    close = EntrySummary("trivialaugment", {0: 61.0, 1: 68.0, 2: 80.5}, {}, 1.0)
    line = verdict([none, best, close])
    assert line.startswith("verdict: cifar10 has the highest mean test accuracy (70.00 %)")
    assert "+0.83 points over none (the baseline), 95 % CI [+0.12, +1.55]" in line
    assert "larger than its interval (the CI excludes 0)" in line
    assert "+0.17 points over trivialaugment (the runner-up)" in line
    assert "the CI includes 0" in line
    one_seed = [EntrySummary("none", {0: 50.0}, {}, 1.0), EntrySummary("x", {0: 52.0}, {}, 1.0)]
    assert "one paired seed: no interval" in verdict(one_seed)
    table = markdown_table(one_seed)
    assert "| x | 1 | 52.00 % | - | - (1 seed) | +2.00 | - (1 seed) |" in table


def _record(entry: str, seed: int, accuracy: float | None) -> RunRecord:
    return RunRecord(
        entry=entry,
        seed=seed,
        test_accuracy=accuracy,
        val_accuracy=accuracy,
        seconds=1.0,
        epochs_trained=1,
        config={},
        policy=None,
        precision="fp32",
        machine="cpu",
        torch="2",
        diverged=None if accuracy is not None else "train loss became nan at epoch 1",
    )


def test_a_diverged_run_is_shown_and_its_entry_named_not_ranked():
    records = [
        *(_record("none", s, a) for s, a in enumerate([0.60, 0.61, 0.62])),
        *(_record("hot", s, a) for s, a in enumerate([0.70, None, 0.72])),  # best where it ran
        *(_record("cifar10", s, a) for s, a in enumerate([0.63, 0.64, 0.65])),
    ]
    summaries = summarize(["none", "hot", "cifar10"], records)
    hot = summaries[1]
    assert hot.test == {0: 70.0, 2: 72.0} and hot.diverged == (1,)
    table = markdown_table(summaries)
    assert "| hot | 2 (+1 diverged) | 71.00 % |" in table and "70.00, diverged, 72.00" in table
    line = verdict(summaries)
    assert line.startswith("verdict: cifar10 has the highest mean test accuracy (64.00 %)")
    assert line.endswith("; hot diverged at seed 1: not ranked")
    alone = verdict(summarize(["none", "hot"], records))
    assert alone.startswith("verdict: fewer than two entries have runs without a diverged one")
    assert RunRecord.from_row({k: v for k, v in records[0].to_row().items() if k != "diverged"})


def test_train_help_names_every_built_in_policy():
    from augment import BUILTIN_POLICIES
    from search.train import build_parser

    text = " ".join(build_parser().format_help().split())
    policy_help = text[text.index("--policy POLICY ") :][:400]
    assert (
        all(name in policy_help for name in BUILTIN_POLICIES) and "randaugment:N,M" in policy_help
    )
    assert "policy JSON file" in policy_help


# --- hostile input: one line, exit 2, nothing written ---------------------------------------------

OUT = ["--out", "TMP/out"]
NO_DATA = ["--data", "TMP/no-data"]  # missing: a case that read the data would say so instead


@dataclass(frozen=True)
class Case:
    argv: list[str]
    words: tuple[str, ...]
    argparse: bool = False  # refused by a parser type: usage lines before the error line
    setup: str | None = None


def _saved_config(tmp: Path) -> None:
    config = TrainConfig(model="cnn_basic")
    save_run(tmp / "saved", build_model(config, torch.device("cpu")), config)


def _policy_file(tmp: Path) -> None:
    (tmp / "policy.json").write_text(json.dumps({"randaugment": {"num_ops": 2, "magnitude": 9}}))


def _foreign_log(tmp: Path) -> None:
    """The log of another comparison: the same recipe but for 2 epochs."""
    (tmp / "out").mkdir()
    config = TrainConfig(model="cnn_basic", epochs=2, precision="fp32").to_dict()
    header = {"format": 1, "comparison": {"axis": "policies", "base": {"config": config}}}
    (tmp / "out" / "compare.jsonl").write_text(json.dumps(header) + "\n")


def _not_a_log(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "compare.jsonl").write_text('{"entry": "none"}\n')


def _busy_folder(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("mine")


SETUPS = {
    "saved config": _saved_config,
    "policy file": _policy_file,
    "foreign log": _foreign_log,
    "not a log": _not_a_log,
    "busy folder": _busy_folder,
}
POLICIES = ["--policies", "none,cifar10", *TINY[:2], *OUT]

CASES = {
    "unknown policy": Case(
        ["--policies", "none,bogus", *NO_DATA, *OUT],
        ("argument --policies:", "no built-in policy and no file named 'bogus'", "cifar10"),
        argparse=True,
    ),
    "missing policy JSON": Case(
        ["--policies", "none,TMP/missing.json", *NO_DATA, *OUT],
        ("argument --policies:", "missing.json", "built-in policies"),
        argparse=True,
    ),
    "a config.json given as a policy": Case(
        ["--policies", "none,TMP/saved/config.json", *NO_DATA, *OUT],
        ("argument --policies:", "config.json: ", "expected"),
        argparse=True,
        setup="saved config",
    ),
    "a policy given as --config": Case(
        ["--config", "TMP/policy.json", *POLICIES, *NO_DATA],
        ("policy.json is not a configuration of ours", "no 'train_config' object"),
        setup="policy file",
    ),
    "missing --config": Case(
        ["--config", "TMP/missing.json", *POLICIES, *NO_DATA],
        ("no file", "missing.json", "expected a config.json written by search.train --save"),
    ),
    "a policy given as a recipe": Case(
        ["--recipes", "default,TMP/policy.json", *TINY[:2], *OUT, *NO_DATA],
        ("policy.json is not a configuration of ours",),
        setup="policy file",
    ),
    "unknown recipe": Case(
        ["--recipes", "default,bogus", *OUT, *NO_DATA],
        ("unknown recipe 'bogus'", "expected default, report, SPACE:RECIPE"),
    ),
    "--seeds 0": Case(
        ["--seeds", "0", *POLICIES, *NO_DATA],
        (
            "argument --seeds: expected a number of seeds >= 1, or seeds separated by commas, "
            "got '0'",
        ),
        argparse=True,
    ),
    "a policy named twice": Case(
        ["--policies", "none,cifar10,none", *NO_DATA, *OUT],
        ("argument --policies: none named twice",),
        argparse=True,
    ),
    "--study and --config": Case(
        ["--study", "s", "--config", "TMP/saved/config.json", *POLICIES, *NO_DATA],
        ("--study and --config each name the recipe", "expected one of"),
        setup="saved config",
    ),
    "--recipes with --study": Case(
        ["--study", "s", "--recipes", "default,report", *OUT, *NO_DATA],
        ("--recipes compares whole recipes", "--study"),
    ),
    "unknown study": Case(
        ["--study", "nope", "--storage", "STUDY", *POLICIES, *NO_DATA],
        ("no study named 'nope'", "studies there: s"),
    ),
    "unknown trial": Case(
        ["--study", "s", "--storage", "STUDY", "--trial", "7", *POLICIES, *NO_DATA],
        ("study 's' has no trial #7", "expected 0..0"),
    ),
    "--out not empty, no log": Case(
        [*POLICIES, *NO_DATA],
        ("is not empty and holds no compare.jsonl to resume",),
        setup="busy folder",
    ),
    "--test-size beyond the test split": Case(
        [*POLICIES, *TINY[4:8], "--test-size", "20000", "--data", "DATA"],
        ("invalid test_size=20000", "expected 1..10000"),
    ),
    "the log of another comparison": Case(
        [*POLICIES, *TINY[2:], "--data", "DATA"],
        (
            "compare.jsonl is the log of another comparison (base.config.epochs: 2 in the log, "
            "1 here)",
            "expected the same base recipe",
        ),
        setup="foreign log",
    ),
    "a compare.jsonl that is not a comparison log": Case(
        [*POLICIES, *TINY[2:], "--data", "DATA"],
        ("has no comparison header on its first line", "expected a compare.jsonl written by"),
        setup="not a log",
    ),
}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", CASES)
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, request):
    case = CASES[name]
    if case.setup:
        SETUPS[case.setup](tmp_path)
    argv = substituted(case.argv, tmp_path, request)
    before = _files(tmp_path)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        ran = run_compare(argv)
    assert ran.code == 2, ran.err
    lines = ran.err.strip().splitlines()
    if case.argparse:
        assert lines[0].startswith("usage: ") and ": error: " in lines[-1], ran.err
        assert all(line.startswith(" ") for line in lines[1:-1]), ran.err
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), ran.err
    assert all(word in lines[-1] for word in case.words), lines[-1]
    assert "Traceback" not in ran.err and [str(w.message) for w in warned] == []
    assert _files(tmp_path) == before  # nothing written, nothing changed
    assert (tmp_path / "out").exists() == (
        case.setup in ("foreign log", "not a log", "busy folder")
    )
