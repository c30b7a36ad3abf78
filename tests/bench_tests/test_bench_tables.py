"""The summaries bench_repeat.py and bench_policy_regime.py print into bench/RESULTS.md, on
hand-made log rows: what each column is computed from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(REPO / "bench"))
import bench_policy_regime  # noqa: E402
import bench_repeat  # noqa: E402


def _run(cell: str, entry: str, seed: int, accuracy: float) -> dict:
    return {"cell": cell, "entry": entry, "seed": seed, "test_accuracy": accuracy, "seconds": 60}


def test_a_policy_pays_only_when_every_seed_gains_more_than_the_spread():
    rows = [
        _run("a", "none", 0, 0.60),
        _run("a", "none", 1, 0.61),
        _run("a", "cifar10", 0, 0.63),
        _run("a", "cifar10", 1, 0.64),
        _run("a", "trivialaugment", 0, 0.62),
        _run("a", "trivialaugment", 1, 0.60),
    ]
    summary = bench_policy_regime.cell_summary(rows, "a")
    assert summary["best"] == "cifar10"
    assert summary["diffs"] == pytest.approx([3.0, 3.0])
    assert summary["pays"]
    # One seed losing: no longer "pays", though the mean still gains.
    rows[3] = _run("a", "cifar10", 1, 0.605)
    assert not bench_policy_regime.cell_summary(rows, "a")["pays"]
    assert bench_policy_regime.cell_summary(rows, "b") is None


def test_a_diverged_run_is_left_out_of_the_cell_and_named_below_the_table(capsys):
    rows = [_run("a", "none", 0, 0.60), _run("a", "none", 1, 0.61), _run("a", "cifar10", 0, 0.6)]
    rows.append({**_run("a", "cifar10", 1, 0.0), "test_accuracy": None, "diverged": "nan"})
    assert bench_policy_regime.cell_summary(rows, "a")["tests"]["cifar10"] == {0: 60.0}
    bench_policy_regime.print_table(
        [{**r, "precision": "fp32", "machine": "m", "torch": "2"} for r in rows],
        ["bare_2k"],
        ["none"],
    )
    assert "diverged, not in the table: cifar10 seed 1 (nan)" in capsys.readouterr().out


def _search(arm: str, repeat: int, best: float, position: int, seed_best: float | None) -> dict:
    return {
        "row": "search",
        "arm": arm,
        "repeat": repeat,
        "best_val": best,
        "best_position": position,
        "finished": 32,
        "seed_best_val": seed_best,
        "seconds": 600,
    }


def test_an_arm_summary_spans_its_repeats():
    rows = [
        _search("tpe_seeded", 0, 0.70, 20, 0.66),
        _search("tpe_seeded", 1, 0.68, 31, 0.66),
        _search("tpe", 0, 0.50, 3, None),
        {
            "row": "retrain",
            "arm": "tpe_seeded",
            "repeat": 0,
            "seed": 0,
            "test_accuracy": 0.69,
            "val_accuracy": 0.7,
        },
    ]
    summary = bench_repeat.arm_summary(rows, "tpe_seeded")
    assert (summary["searches"], summary["best_min"], summary["best_max"]) == (2, 68.0, 70.0)
    assert summary["spread"] == pytest.approx(2.0)
    assert summary["positions"] == [20, 31]
    assert summary["seed_best"] == [66.0, 66.0]
    assert summary["test"] == [69.0]
    assert bench_repeat.arm_summary(rows, "gp") is None


def test_the_table_names_every_machine_and_precision_its_searches_ran_on():
    rows = [
        {**_search("tpe", 0, 0.6, 3, None), "machine": "Xeon", "precision": "bf16"},
        {**_search("tpe", 1, 0.6, 3, None), "machine": "EPYC", "precision": "fp32"},
        {**_search("gp", 1, 0.6, 3, None), "machine": "EPYC", "precision": "fp32"},
        {**_search("gp", 0, 0.6, 3, None), "machine": "Xeon"},
    ]
    assert bench_repeat.machines_line(rows) == (
        "searches on Xeon, bf16: 1; EPYC, fp32: 2; Xeon, precision not recorded: 1"
    )


def test_a_search_precision_is_what_search_run_resolves_it_to_here():
    import torch

    from training import effective_precision

    here = effective_precision("auto", torch.device("cpu"))
    assert bench_repeat.search_precision([]) == here
    assert bench_repeat.search_precision(["--cpus-per-trial", "2"]) == here
    assert bench_repeat.search_precision(["--precision", "fp32"]) == "fp32"
    assert bench_repeat.search_precision(["--precision=fp32"]) == "fp32"


def test_a_winners_validation_sd_is_pooled_over_the_winners_retrained_twice_or_more():
    def retrain(repeat: int, val: float) -> dict:
        return {"row": "retrain", "arm": "a", "repeat": repeat, "val_accuracy": val}

    # Winner 0: 60 and 62 (variance 2); winner 1: 70, 71, 72 (variance 1); winner 2: once.
    rows = [retrain(0, 0.60), retrain(0, 0.62), *(retrain(1, v) for v in (0.70, 0.71, 0.72))]
    assert bench_repeat.winner_val_sd([*rows, retrain(2, 0.5)]) == pytest.approx(1.5**0.5)
    assert bench_repeat.winner_val_sd([retrain(2, 0.5)]) is None
