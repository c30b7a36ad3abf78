"""The density-matching policy search (`--space policy`) end to end on a real data slice: fold
models trained once and reused, trials scored in slices (PRUNED, COMPLETE, an intermediate value
per slice), the export, and bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

from search import Space, get_space
from training import TrainConfig

# Small enough for two CPU cores: 2 fold models of the cnn_basic child (it learns fastest of the
# registry in a few hundred images), 3 epochs on 500 images each, one draw per image so that the
# destroying policy below is not rescued by a lucky draw.
SEARCH = [
    "--space",
    "policy",
    "--train-size",
    "1000",
    "--val-size",
    "300",
    "--folds",
    "2",
    "--fold-epochs",
    "3",
    "--draws",
    "1",
    "--model",
    "cnn_basic",
    "--max-epochs",
    "2",
    "--reduction-factor",
    "2",
    # One trial at a time on a 2-core machine: the enqueued trials run in order.
    "--cpus-per-trial",
    "2",
]


def run(*args, check=True):
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def policy_params(sub_policies) -> dict:
    """The space's parameters for five sub-policies given as [(op, prob bin, mag bin), x2]."""
    params = {}
    for i, sub in enumerate(sub_policies):
        for j, (op, prob, mag) in enumerate(sub):
            params.update({f"sp{i}_s{j}_op": op, f"sp{i}_s{j}_prob": prob, f"sp{i}_s{j}_mag": mag})
    return params


# Identity-like (a few mild steps) and destroying (solarize nearly every pixel, then collapse
# or blow up the contrast): the second must score below the first on the first slice.
MILD = policy_params([[("TranslateX", 2, 1), ("Rotate", 2, 1)]] * 5)
DESTROY = policy_params([[("Solarize", 10, 9), ("Contrast", 10, 9)]] * 5)


def one_error_line(done) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_density_search_folds_slices_reuse_export_and_bad_input(tmp_path, data_root):
    import optuna

    out, data = tmp_path / "out", ["--data", str(data_root)]
    out.mkdir()
    url = f"sqlite:///{out / 'policy.db'}"
    study = optuna.create_study(study_name="policy", storage=url, direction="maximize")
    study.enqueue_trial(MILD)
    study.enqueue_trial(DESTROY)
    first = run("search.run", *SEARCH, *data, "--trials", "4", "--out", str(out))

    # Fold models: trained once, one progress line each, saved where the study says.
    assert "training 2 fold models (cnn_basic, 3 epochs, 1000 search images)" in first.stdout
    assert "fold 1/2: trained on 500 images" in first.stdout and "held-out accuracy" in first.stdout
    assert "fold models:" in first.stdout and "part of the search's cost" in first.stdout
    study = optuna.load_study(study_name="policy", storage=url)
    record = study.user_attrs["density"]
    assert record["folds"] == 2 and record["draws"] == 1 and record["fold_epochs"] == 3
    assert record["recipe"]["model"] == "cnn_basic" and record["recipe"]["cutout"] == 16
    assert record["recipe"]["policy"] is None, "fold models train on the baseline augmentation"
    assert record["held_out_sizes"] == [500, 500] and record["seconds"] > 0
    weights = [out / "policy" / "folds" / f"fold-{f}" / "weights.pt" for f in range(2)]
    assert all(w.is_file() for w in weights)
    mtimes = [w.stat().st_mtime_ns for w in weights]

    # Trials: an intermediate value per slice; COMPLETE ones every slice, PRUNED ones fewer.
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4
    for t in trials:
        steps = sorted(t.intermediate_values)
        assert steps == list(range(1, len(steps) + 1)), (t.number, steps)
        if t.state.name == "COMPLETE":
            assert steps == [1, 2] and t.value == t.intermediate_values[2]
            assert t.user_attrs.get("epochs_run") == 2
        else:
            assert t.state.name == "PRUNED" and steps == [1], (t.number, t.state)
    mild, destroy = trials[0], trials[1]
    assert mild.params == MILD and destroy.params == DESTROY
    assert destroy.intermediate_values[1] < mild.intermediate_values[1]
    assert mild.state.name == "COMPLETE" and destroy.state.name == "PRUNED"
    # Progress and summary name a density trial's steps and value for what they are.
    assert "max 2 slices" in first.stdout and "COMPLETE after 2 slices, score " in first.stdout
    assert "PRUNED after 1 slices, score " in first.stdout
    assert not re.search(r"after \d+ epochs|val \d+\.\d+%", first.stdout)
    # The best is whichever COMPLETE trial scored highest: the sampled trials #2 and #3 may
    # beat the enqueued mild one.
    assert f"best trial: #{study.best_trial.number}, density score " in first.stdout

    # A re-run reuses the fold models (same files, no training) and adds trials.
    again = run("search.run", *SEARCH, *data, "--trials", "5", "--out", str(out))
    assert "reusing 2 fold models" in again.stdout and "training 2 fold" not in again.stdout
    assert [w.stat().st_mtime_ns for w in weights] == mtimes
    assert len(optuna.load_study(study_name="policy", storage=url).trials) == 5

    # The export says which trials it merged; the destroyed policy is not among them.
    policy_file = tmp_path / "policy.json"
    export = run(
        "search.export_policy", "--study", "policy", "--studies-dir", str(out), "-o", policy_file
    )
    assert "scored by density matching" in export.stdout
    merged = export.stdout.split("merged trials, best first: ")[1].splitlines()[0]
    assert f"#{mild.number} (" in merged and f"#{destroy.number} (" not in merged
    subs = json.loads(policy_file.read_text())["sub_policies"]
    assert ["TranslateX", 0.2, 1] in [step for sub in subs for step in sub]

    # Bad input on the study: each one line, exit 2, and the study gains no trial.
    def refused(*extra) -> str:
        done = run(
            "search.run", *SEARCH, *data, "--trials", "6", "--out", str(out), *extra, check=False
        )
        assert len(optuna.load_study(study_name="policy", storage=url).trials) == 5
        return one_error_line(done)

    assert "made with --folds 2, not 3" in refused("--folds", "3")
    assert "made with --draws 1, not 2" in refused("--draws", "2")
    moved = tmp_path / "moved.pt"
    shutil.move(weights[1], moved)
    assert "fold-1/weights.pt is missing" in refused()
    # Fold 0's model in fold 1's place: a foreign model.
    shutil.copy(weights[0], weights[1])
    shutil.copy(weights[0].parent / "config.json", weights[1].parent / "config.json")
    assert "holds a foreign model (fold 0 of 2" in refused()
    (weights[1].parent / "config.json").write_text("{}")
    assert "fold model 1 of study 'policy' cannot be used" in refused()


@pytest.mark.slow
def test_bad_fold_count_writes_nothing(tmp_path, data_root):
    out = tmp_path / "out"
    out.mkdir()
    done = run(
        "search.run",
        *SEARCH[:-8],
        "--folds",
        "1",
        "--data",
        str(data_root),
        "--out",
        str(out),
        check=False,
    )
    assert "invalid --folds 1; expected a whole number >= 2" in one_error_line(done)
    assert list(out.iterdir()) == [], "nothing written"
    done = run(
        "search.run",
        "--space",
        "cnn_reg",
        "--folds",
        "3",
        "--data",
        str(data_root),
        "--train-size",
        "300",
        "--val-size",
        "300",
        "--out",
        str(out),
        check=False,
    )
    assert "--folds applies only to spaces scored by density matching" in one_error_line(done)
    assert list(out.iterdir()) == []


def test_study_scored_the_old_way_is_not_continued(tmp_path, data_root):
    import optuna

    out = tmp_path / "out"
    out.mkdir()
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'policy.db'}")
    study = optuna.create_study(study_name="policy", storage=storage, direction="maximize")
    study.set_user_attr("space", "policy")
    # The record a density study made before scoring took the policy alone: no "scoring" key.
    study.set_user_attr("density", {"folds": 2, "draws": 1, "fold_epochs": 3, "seconds": 1.0})
    storage.engine.dispose()
    done = run("search.run", *SEARCH, "--data", str(data_root), "--out", str(out), check=False)
    line = one_error_line(done)
    assert "study 'policy' was scored by an earlier version of the density search" in line
    assert "--study NEW_NAME" in line
    assert sorted(p.name for p in out.iterdir()) == ["policy.db"], "no fold models, no trials"
    assert (
        optuna.load_study(study_name="policy", storage=f"sqlite:///{out / 'policy.db'}").trials
        == []
    )


def test_space_method_is_checked():
    def recipe() -> TrainConfig:
        return TrainConfig()

    common = dict(description="", suggest=lambda t: None, to_config=lambda p: TrainConfig())
    with pytest.raises(ValueError, match="invalid method='nope'.*expected one of: train, density"):
        Space(name="x", full_epochs=1, method="nope", **common)
    with pytest.raises(ValueError, match="fold_recipe goes with method 'density'"):
        Space(name="x", full_epochs=1, method="density", **common)
    with pytest.raises(ValueError, match="fold_recipe goes with method 'density'"):
        Space(name="x", full_epochs=1, fold_recipe=recipe, **common)
    assert Space(name="x", full_epochs=1, method="density", fold_recipe=recipe, **common)


def test_policy_spaces_share_the_space_and_differ_in_method():
    density, child = get_space("policy"), get_space("policy_child")
    assert density.method == "density" and child.method == "train"
    assert density.suggest is child.suggest
    assert density.trial_config(DESTROY) == child.trial_config(DESTROY)
    fold = density.fold_recipe()
    assert fold.policy is None and fold.cutout == 16 and fold.flip and fold.crop_padding == 4
    assert density.trial_config(DESTROY).replace(policy=None) == fold


def test_scoring_augment_is_the_policy_alone():
    """A policy that never applies leaves every draw unchanged, so it earns no "any draw" bonus;
    the same policy inside the baseline crop, flip and Cutout would vary every draw."""
    import torch

    from search._density import scoring_augment
    from training import config_augment

    space = get_space("policy")
    nothing = space.trial_config(policy_params([[("Rotate", 0, 5), ("ShearX", 0, 5)]] * 5))
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        assert torch.equal(scoring_augment(nothing)(images, generator), images)
    assert not torch.equal(config_augment(nothing)(images, generator), images)
    # A policy that always rotates changes the images, and differently from draw to draw.
    rotate = space.trial_config(policy_params([[("Rotate", 10, 9), ("Rotate", 0, 0)]] * 5))
    first, second = (scoring_augment(rotate)(images, generator) for _ in range(2))
    assert not torch.equal(first, images) and not torch.equal(first, second)
