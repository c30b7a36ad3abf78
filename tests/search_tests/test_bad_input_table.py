"""Issue 25's hostile input to the commands other than `search.run` (whose cases are tables in
test_bad_input.py), one table: each case is a command line, the words its one error line holds,
its exit status, and the paths that must not exist afterwards. Each runs in-process through the
command's `main`, with every warning recorded: a warning printed beside the error line (torch's
several lines refusing a pickle) fails the case.

An option refused by its parser type gets argparse's usage lines, then its one "error:" line;
any other refusal is exactly one line, "error: ...". Placeholders in a command line: TMP (the
test's folder), STUDY (a study of one COMPLETE cnn_reg trial), DATA (the real CIFAR-10, only
for the one case that gets past its checks: a corrupt training state is found on loading it).
"""

from __future__ import annotations

import importlib
import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import substituted

from search._artifacts import save_run
from training import TrainConfig, build_model

NO_DATA = ["--data", "TMP/no-data"]  # missing: a case that read the data would say so instead
TRAIN = ["--epochs", "1", "--no-test", *NO_DATA, "--save", "TMP/run"]
RETRAIN = ["--study", "s", "--storage", "STUDY", "--epochs", "1"]


@dataclass(frozen=True)
class Case:
    command: str  # the module under search/
    argv: list[str]
    words: tuple[str, ...]  # all in the error line
    code: int = 2
    argparse: bool = False  # refused by a parser type: usage lines before the error line
    absent: tuple[str, ...] = ("TMP/run", "TMP/out")
    setup: str | None = None  # a hostile file to make first: a key of SETUPS


def _deep_policy(tmp: Path) -> None:
    (tmp / "policy.json").write_text("[" * 200_000 + "]" * 200_000)


def _utf16_policy(tmp: Path) -> None:
    (tmp / "policy.json").write_bytes(json.dumps([]).encode("utf-16"))


def _saved_run(tmp: Path) -> Path:
    config = TrainConfig(model="cnn_basic")
    save_run(tmp / "saved", build_model(config, torch.device("cpu")), config)
    return tmp / "saved"


def _unknown_model_keyword(tmp: Path) -> None:
    config_path = _saved_run(tmp) / "config.json"
    raw = json.loads(config_path.read_text())
    raw["train_config"]["model_kwargs"] = {"bogus": 1}
    config_path.write_text(json.dumps(raw))


class _Payload:
    def __reduce__(self):
        return (print, ("a weights file ran code",))


def _pickle_weights(tmp: Path) -> None:
    (_saved_run(tmp) / "weights.pt").write_bytes(pickle.dumps(_Payload()))


def _corrupt_state(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "state.pt").write_bytes(b"PK\x03\x04 not a checkpoint" * 50)


SETUPS = {
    "deep policy": _deep_policy,
    "utf-16 policy": _utf16_policy,
    "unknown model keyword": _unknown_model_keyword,
    "pickle weights": _pickle_weights,
    "corrupt state": _corrupt_state,
}
TPU = ("argument --device: invalid device 'tpu'", "expected auto, cpu, cuda or cuda:N")
UTF16 = ("argument --policy: ", "policy.json: not UTF-8 text", "expected a policy JSON in UTF-8")

CASES = {
    "train --device tpu": Case("train", [*TRAIN, "--device", "tpu"], TPU, argparse=True),
    "retrain --device tpu": Case(
        "retrain", [*RETRAIN, *NO_DATA, "--out", "TMP/out", "--device", "tpu"], TPU, argparse=True
    ),
    "evaluate --device tpu": Case(
        "evaluate", ["TMP/saved", *NO_DATA, "--device", "tpu"], TPU, argparse=True
    ),
    "train --policy nested 200,000 deep": Case(
        "train",
        [*TRAIN, "--policy", "TMP/policy.json"],
        ("argument --policy: ", "policy.json: JSON nested too deep"),
        argparse=True,
        setup="deep policy",
    ),
    "train --policy in UTF-16": Case(
        "train",
        [*TRAIN, "--policy", "TMP/policy.json"],
        UTF16,
        argparse=True,
        setup="utf-16 policy",
    ),
    "retrain --policy in UTF-16": Case(
        "retrain",
        [*RETRAIN, *NO_DATA, "--out", "TMP/out", "--policy", "TMP/policy.json"],
        UTF16,
        argparse=True,
        setup="utf-16 policy",
    ),
    "retrain --resume of a corrupt state.pt": Case(
        "retrain",
        [*RETRAIN, "--data", "DATA", "--train-size", "100", "--out", "TMP/out", "--resume"],
        ("cannot resume from", "state.pt", "expected the checkpoint an interrupted run"),
        absent=("TMP/out/weights.pt", "TMP/out/metrics.json", "TMP/out/report.html"),
        setup="corrupt state",
    ),
    "evaluate of a config.json with an unknown model keyword": Case(
        "evaluate",
        ["TMP/saved", *NO_DATA],
        ("config.json names a model we cannot build", "'bogus'"),
        setup="unknown model keyword",
    ),
    "evaluate of a pickle as weights": Case(
        "evaluate",
        ["TMP/saved", *NO_DATA],
        ("cannot load", "weights.pt as a state dict", "expected weights saved by this project"),
        setup="pickle weights",
    ),
    "export_policy -o ''": Case(
        "export_policy",
        ["--study", "s", "--storage", "STUDY", "-o", ""],
        ("argument -o/--output: expected a path, got ''",),
        argparse=True,
    ),
    "retrain --out under /proc": Case(
        "retrain",
        [*RETRAIN, *NO_DATA, "--out", "/proc/x"],
        ("--out /proc/x is not writable (/proc); expected a writable folder",),
        absent=("/proc/x",),
    ),
    "retrain --studies-dir under /proc": Case(
        "retrain",
        [*RETRAIN, *NO_DATA, "--studies-dir", "/proc/x"],
        ("--studies-dir /proc/x/s is not writable (/proc); expected a writable folder",),
        absent=("/proc/x",),
    ),
    "train --lr inf": Case(
        "train",
        [*TRAIN, "--lr", "inf"],
        ("argument --lr: expected a finite number, got 'inf'",),
        argparse=True,
    ),
    "train --epochs 10**30": Case(
        "train",
        [*TRAIN, "--epochs", str(10**30)],
        (f"invalid epochs={10**30}", "expected an integer in [1, 100000]"),
    ),
    "retrain --epochs 10**30": Case(
        "retrain",
        [*RETRAIN, *NO_DATA, "--out", "TMP/out", "--epochs", str(10**30)],
        (f"argument --epochs: expected at most 100000 epochs, got {10**30}",),
        argparse=True,
    ),
    "train --seed 2**70": Case(
        "train",
        [*TRAIN, "--seed", str(2**70)],
        (f"argument --seed: expected a whole number below 2**63, got {2**70}",),
        argparse=True,
    ),
}


def _error_line(stderr: str, argparse: bool) -> str:
    """The one error line; before it, argparse's usage lines when `argparse`, else nothing."""
    lines = stderr.strip().splitlines()
    if not argparse:
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        return lines[0]
    assert lines[0].startswith("usage: ") and all(line.startswith(" ") for line in lines[1:-1])
    assert ": error: " in lines[-1] and "Traceback" not in stderr, stderr
    return lines[-1]


@pytest.mark.parametrize("name", CASES)
def test_hostile_input_is_one_line_and_writes_nothing(name, tmp_path, request, capsys):
    case = CASES[name]
    if case.setup:
        SETUPS[case.setup](tmp_path)
    argv = substituted(case.argv, tmp_path, request)
    command = importlib.import_module(f"search.{case.command}").main
    with warnings.catch_warnings(record=True) as warned, pytest.raises(SystemExit) as exited:
        warnings.simplefilter("always")
        command(argv)
    captured = capsys.readouterr()
    assert exited.value.code == case.code, captured.err
    line = _error_line(captured.err, case.argparse)
    assert all(word in line for word in case.words), line
    assert [str(w.message) for w in warned] == []
    assert "ran code" not in captured.out
    for path in case.absent:
        assert not Path(path.replace("TMP/", f"{tmp_path}/")).exists(), path
