"""A policy space's child (`search.run --child-recipe`): named children and config.json files,
recorded in the study, kept by a continued study, and the run every command builds from it: the
fold models, each trial, and the retrain and comparison of a trial (`search._recipe`).

The in-process tests end before any data is read; the search test is a real density search on a
data slice, on a local Ray.
"""

from __future__ import annotations

import json

import optuna
import pytest
from test_density_search import MILD, SEARCH, one_error_line, run

from search._job import SettingsConflict, resolve_settings
from search._recipe import child_recipe, trial_config
from search._space import get_space
from search._study import StudyRecord
from search.run import build_parser
from training import TrainConfig

POLICY = get_space("policy")
NO_DROPOUT = [0.0, 0.0, 0.0]


def settings_for(*argv: str, space: str = "policy", recorded=None):
    args = build_parser().parse_args(["--space", space, *argv])
    return resolve_settings(args, get_space(space), space, recorded or {})


def test_named_children_and_a_config_json(tmp_path):
    name, reg = child_recipe(POLICY, "reg")
    assert name == "reg" and reg["cutout"] == 16 and reg["model"] == "cnn_reg"
    _, bare = child_recipe(POLICY, "bare")
    assert bare["cutout"] == 0 and bare["model_kwargs"] == {"dropout": NO_DROPOUT}
    assert bare["crop_padding"] == reg["crop_padding"] and bare["flip"] and bare["lr"] == reg["lr"]
    # A saved run's config.json: its policy is dropped (each trial brings its own).
    saved = TrainConfig(model="cnn_basic", lr=0.01, cutout=8, policy="cifar10")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train_config": saved.to_dict()}))
    name, child = child_recipe(POLICY, str(path))
    assert name == str(path) and child == saved.replace(policy=None).to_dict()


@pytest.mark.parametrize(
    ("space", "text", "expected"),
    [
        ("policy", "wide", "unknown child recipe 'wide' for space 'policy'; expected reg, bare"),
        ("cnn_reg", "bare", "space 'cnn_reg' has no child recipe; --child-recipe is for"),
        ("policy", "missing/config.json", "no file missing/config.json"),
    ],
)
def test_a_child_that_is_not_one_is_refused(space, text, expected):
    with pytest.raises(ValueError, match=expected):
        child_recipe(get_space(space), text)


def test_a_trial_lays_its_policy_on_the_child():
    _, bare = child_recipe(POLICY, "bare")
    on_reg = POLICY.trial_config(MILD, epochs=3, seed=1)
    on_bare = POLICY.trial_config(MILD, epochs=3, seed=1, child=bare)
    assert on_bare.policy == on_reg.policy and isinstance(on_bare.policy, tuple)
    assert on_bare == on_reg.replace(model_kwargs={"dropout": NO_DROPOUT}, cutout=0)
    # A model override replaces the child's model and drops its arguments, as for the space's.
    on_basic = POLICY.trial_config(MILD, model="cnn_basic", child=bare)
    assert on_basic.model == "cnn_basic" and on_basic.model_kwargs == {}
    assert on_basic.cutout == 0
    with pytest.raises(ValueError, match="space 'cnn_reg' has no child to replace"):
        get_space("cnn_reg").trial_config({}, child=bare)


def test_a_new_study_records_its_child_a_continued_one_keeps_it():
    default = settings_for()
    assert default.child_name == "reg" and default.child == child_recipe(POLICY, "reg")[1]
    bare = settings_for("--child-recipe", "bare")
    assert bare.child_name == "bare" and bare.child["cutout"] == 0
    assert settings_for(space="cnn_reg").child is None
    recorded = {"space": "policy", "child_recipe": bare.child, "child_recipe_name": "bare"}
    assert settings_for(recorded=recorded).child == bare.child
    assert settings_for("--child-recipe", "bare", recorded=recorded).child_name == "bare"
    with pytest.raises(SettingsConflict, match="--child-recipe bare, not reg; leave"):
        settings_for("--child-recipe", "reg", recorded=recorded)
    # Made before children were recorded: it trained the space's to_config, and keeps it.
    older = {"space": "policy", "max_epochs": 5}
    assert settings_for(recorded=older).child is None
    with pytest.raises(SettingsConflict, match="the space's original child, not bare"):
        settings_for("--child-recipe", "bare", recorded=older)


def test_an_invalid_child_is_one_usage_line():
    with pytest.raises(ValueError, match="^invalid --child-recipe: unknown child recipe 'x'"):
        settings_for("--child-recipe", "x")


def test_search_on_the_bare_child_records_it_and_every_command_builds_it(tmp_path, data_root):
    out, data = tmp_path / "out", ["--data", str(data_root)]
    search = [*SEARCH, *data, "--out", str(out), "--child-recipe", "bare"]
    first = run("search.run", *search, "--trials", "2")
    assert "child recipe 'bare': cnn_basic, adam lr 0.002, cosine, crop padding 4, Cutout 0" in (
        first.stdout
    )
    url = f"sqlite:///{out / 'policy.db'}"
    study = optuna.load_study(study_name="policy", storage=url)
    record = StudyRecord.of(study)
    assert record.child_recipe_name == "bare" and record.child_recipe["cutout"] == 0
    # The fold models trained the child (with the --model override), without a policy.
    folds = study.user_attrs["density"]["recipe"]
    assert folds["cutout"] == 0 and folds["model"] == "cnn_basic" and folds["policy"] is None
    # What retrain and compare train of a trial: its policy on the recorded child.
    best = study.best_trial
    config = trial_config(record, best, epochs=4)
    assert config.cutout == 0 and config.model == "cnn_basic" and config.epochs == 4
    assert config.policy == POLICY.trial_config(best.params).policy

    # Another child for the same study: one line, exit 2, the study as it was.
    trials = len(study.trials)
    refused = run("search.run", *search[:-1], "reg", "--trials", "3", check=False)
    assert "--child-recipe bare, not reg" in one_error_line(refused)
    assert len(optuna.load_study(study_name="policy", storage=url).trials) == trials
