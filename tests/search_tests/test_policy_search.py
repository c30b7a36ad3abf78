"""A real policy search scored by child training (`policy_child`), its export, and the exported
policy used by a training run. The density-matching `policy` space: test_density_search.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

from augment import load_policy

pytestmark = pytest.mark.slow


def run(*args, check=True):
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def test_policy_search_exports_a_policy_the_trainer_uses(tmp_path, data_root):
    search = run(
        "search.run",
        "--space",
        "policy_child",
        *("--child-recipe", "bare"),  # as the README's workflow
        "--data",
        str(data_root),
        "--trials",
        "3",
        "--max-epochs",
        "1",
        "--train-size",
        "300",
        "--val-size",
        "300",
        "--out",
        str(tmp_path),
    )
    assert "search.export_policy --study policy_child" in search.stdout
    assert "fold" not in search.stdout, "a child-training search trains no fold models"
    assert "child recipe 'bare'" in search.stdout
    policy_file = tmp_path / "policy.json"
    export = run(
        "search.export_policy",
        "--study",
        "policy_child",
        "--studies-dir",
        str(tmp_path),
        "-o",
        str(policy_file),
        "--count",
        "25",
    )
    assert "wrote" in export.stdout and "scored by a child trained per trial" in export.stdout
    data = json.loads(policy_file.read_text())
    assert data["magnitude_table"] == "torchvision" and data["magnitude_bins"] == 10
    subs = data["sub_policies"]
    # 3 trials x 5 sub-policies, fewer only for duplicates or sub-policies that never apply.
    assert 1 <= len(subs) <= 15
    assert len({json.dumps(s) for s in subs}) == len(subs), "de-duplicated"
    assert all(len(sub) == 2 for sub in subs)
    assert len(load_policy(str(policy_file)).sub_policies) == len(subs)

    trained = run(
        "search.train",
        "--data",
        str(data_root),
        "--policy",
        str(policy_file),
        "--epochs",
        "1",
        "--train-size",
        "200",
        "--val-size",
        "200",
        "--no-test",
    )
    assert f'"policy": "{policy_file}"' in trained.stdout and "best epoch 1" in trained.stdout

    # The README's workflow ends with the study's child under no policy and the export, paired.
    compared = run(
        "search.compare",
        *("--study", "policy_child", "--studies-dir", str(tmp_path), "--data", str(data_root)),
        *("--policies", f"none,{policy_file}", "--seeds", "2", "--epochs", "1"),
        *("--train-size", "200", "--test-size", "200", "--out", str(tmp_path / "compare")),
    )
    assert "recipe: trial #" in compared.stdout and "of study 'policy_child'" in compared.stdout
    logged = (tmp_path / "compare" / "compare.jsonl").read_text().splitlines()
    assert len(logged) == 1 + 4  # the header, then 2 entries x 2 seeds
    configs = [json.loads(line)["config"] for line in logged[1:]]
    assert all(c["cutout"] == 0 for c in configs), "the bare child's, not the reg child's 16"
    assert all(c["model_kwargs"] == {"dropout": [0.0, 0.0, 0.0]} for c in configs)


def test_export_of_a_study_that_is_not_a_policy_search(real_study, tmp_path):
    done = run(
        "search.export_policy",
        "--study",
        real_study.name,
        "--storage",
        real_study.url,
        "-o",
        str(tmp_path / "p.json"),
        check=False,
    )
    assert done.returncode == 2 and "does not search policies" in done.stderr
    assert not (tmp_path / "p.json").exists()


def test_malformed_policy_stops_before_training(tmp_path, data_root):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "magnitude_table": "torchvision",
                "magnitude_bins": 10,
                "sub_policies": [
                    [["ShearX", 0.5, 3], ["Invert", 0.2, 0]],
                    [["ShearX", 1.5, 3], ["Invert", 0.2, 0]],
                ],
            }
        )
    )
    done = run(
        "search.train", "--data", str(data_root), "--policy", str(bad), "--epochs", "1", check=False
    )
    assert done.returncode == 2
    # Refused while parsing: argparse's usage lines, then one line naming the option and file.
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("usage: ") and "Traceback" not in done.stderr
    assert lines[-1].startswith("python -m search.train: error: argument --policy: "), lines
    assert "sub_policies[1][0]" in lines[-1] and "1.5" in lines[-1], lines
    assert "epoch" not in done.stdout
