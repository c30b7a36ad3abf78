"""Trials a new study runs first: the spaces' general recipes (seeds) and a warm start from an
earlier study (search/_seeds.py). Real Optuna and SQLite; the end-to-end test runs real searches
with a local Ray on a slice of the real CIFAR-10."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import optuna
import pytest
from conftest import REPO, SEARCH_ARGS

from search import available_spaces, get_space
from search._seeds import (
    SeedOptions,
    configuration_problems,
    enqueue_seeds,
    resolve_seeds,
    space_seeds,
)
from search._study import SOURCE_ATTR, StudyRecord, locate_study, opened_study
from search.run import build_parser, main

States = optuna.trial.TrialState
SEEDED = sorted(name for name, space in available_spaces().items() if space.recipes)


def test_the_report_space_declares_the_report_recipe_and_literature_ones():
    recipes = {recipe.name: recipe for recipe in get_space("cnn_reg").recipes}
    assert list(recipes) == ["report", "sgd_cosine", "adamw_cosine"]
    assert all(recipe.source for recipe in recipes.values())
    # The report's final run (training.REPORT_RECIPE) as the space expresses it.
    from training import REPORT_RECIPE

    config = get_space("cnn_reg").trial_config(recipes["report"].params, epochs=125)
    for field in ("model_kwargs", "batch_size", "optimizer", "lr", "schedule", "milestones"):
        assert getattr(config, field) == getattr(REPORT_RECIPE, field), field
    assert (config.gamma, config.rotation, config.crop_padding) == (0.5, 15.0, 4)


@pytest.mark.parametrize("name", SEEDED)
def test_each_recipe_is_a_complete_in_range_configuration_of_its_space(name):
    """Enqueued as a search enqueues it, the trial takes every value of the recipe, samples none,
    and Optuna warns of no value out of range."""
    space = get_space(name)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for recipe in space.recipes:
        study.enqueue_trial(recipe.params)
        trial = study.ask()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            space.suggest(trial)
        assert trial.params == recipe.params, recipe.name
        assert not [w for w in caught if "out of range" in str(w.message)], recipe.name
        space.trial_config(trial.params, epochs=1, seed=0)  # a valid TrainConfig
        study.tell(trial, 0.0)
    assert [t.source for t in space_seeds(space)] == [f"seed:{r.name}" for r in space.recipes]


def test_a_configuration_that_is_not_one_of_the_space_is_told_why():
    space = get_space("cnn_reg")
    report = dict(space.recipes[0].params)
    assert configuration_problems(space, report) == []
    (out_of_range,) = configuration_problems(space, {**report, "adam_lr": 5.0})
    assert out_of_range.startswith("Fixed parameter adam_lr with value 5.0 is out of range")
    (choice,) = configuration_problems(space, {**report, "augment": "nope"})
    assert "not one of its choices" in choice and "'nope'" in choice
    del report["gamma"]
    assert configuration_problems(space, {**report, "lr": 0.1}) == [
        "no value for gamma",
        "not asked for by the space: lr",
    ]


def _other_study(path, space_name="cnn_reg", values=(0.3, 0.5, 0.4), suggest=None):
    """A study in the SQLite file `path` with one COMPLETE trial per value, drawn from the
    space (or `suggest`); its storage URL."""
    url = f"sqlite:///{path}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="small", storage=storage, direction="maximize")
    study.set_user_attr("space", space_name)
    sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for value in values:
        trial = sampler_study.ask()
        (suggest or get_space(space_name).suggest)(trial)
        study.add_trial(
            optuna.trial.create_trial(
                params=trial.params, distributions=trial.distributions, value=value
            )
        )
    storage.engine.dispose()
    return url


def _seeds(url, *, top=None, trials=64, seed_trials=True):
    return resolve_seeds(
        SeedOptions(seed_trials, f"small@{url}", top),
        get_space("cnn_reg"),
        study_name="new",
        study_is_new=True,
        trials=trials,
        storage_option=None,
        studies_dir=REPO,
    )


def test_a_warm_start_takes_the_best_trials_first_then_the_recipes(tmp_path):
    url = _other_study(tmp_path / "small.db", values=(0.3, 0.5, 0.4, 0.1))
    plan = _seeds(url, top=2)
    small = optuna.load_study(study_name="small", storage=url).get_trials()
    recipes = get_space("cnn_reg").recipes
    assert [t.source for t in plan.trials] == [
        "warm-start:small#1",  # 0.5
        "warm-start:small#2",  # 0.4
        *[f"seed:{r.name}" for r in recipes],
    ]
    assert [t.params for t in plan.trials[:2]] == [small[1].params, small[2].params]
    assert plan.warm_start == {"study": "small", "storage": url, "trials": [1, 2]}
    # The default top is 3; never more trials queued than --trials; --no-seed-trials: none.
    assert [t.source for t in _seeds(url, trials=4).trials] == [
        "warm-start:small#1",
        "warm-start:small#2",
        "warm-start:small#0",
        "seed:report",
    ]
    assert [t.source for t in _seeds(url, seed_trials=False).trials] == [
        "warm-start:small#1",
        "warm-start:small#2",
        "warm-start:small#0",
    ]


def test_a_recipe_already_queued_by_the_warm_start_is_not_queued_twice(tmp_path):
    space = get_space("cnn_reg")
    report = space.recipes[0].params
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = _other_study(tmp_path / "small.db", values=())
    study = optuna.load_study(study_name="small", storage=url)
    study.enqueue_trial(report)
    trial = study.ask()
    space.suggest(trial)
    study.tell(trial, 0.9)
    plan = _seeds(url)
    assert [t.source for t in plan.trials] == [
        "warm-start:small#0",
        "seed:sgd_cosine",
        "seed:adamw_cosine",
    ]


def test_no_seed_trials_option_and_a_continued_study():
    args = build_parser().parse_args(["--space", "cnn_reg", "--no-seed-trials"])
    assert args.seed_trials is False
    assert build_parser().parse_args(["--space", "cnn_reg"]).seed_trials is True
    space = get_space("cnn_reg")
    common = dict(study_name="s", trials=8, storage_option=None, studies_dir=REPO)
    assert (
        resolve_seeds(SeedOptions(False, None, None), space, study_is_new=True, **common).trials
        == ()
    )
    continued = resolve_seeds(SeedOptions(True, "x", None), space, study_is_new=False, **common)
    assert continued.trials == () and "is not applied" in continued.note


def test_a_new_study_is_seeded_once_and_an_unused_one_leaves_nothing(tmp_path):
    """The driver that creates the study seeds it; a command that fails before any trial ran
    leaves no study and no database, its queued trials included."""
    space = get_space("cnn_reg")
    plan = resolve_seeds(
        SeedOptions(True, None, None),
        space,
        study_name="s",
        study_is_new=True,
        trials=8,
        storage_option=None,
        studies_dir=tmp_path,
    )
    record = StudyRecord("cnn_reg", 3, None, 500, 0, "tpe", None, "fp32")
    location = locate_study("s", None, tmp_path / "out")
    with pytest.raises(RuntimeError, match="the command failed"):
        with opened_study(location, record, on_create=lambda s: enqueue_seeds(s, plan)) as study:
            waiting = study.get_trials(states=(States.WAITING,))
            assert [t.user_attrs[SOURCE_ATTR] for t in waiting] == [
                f"seed:{r.name}" for r in space.recipes
            ]
            raise RuntimeError("the command failed")
    assert not (tmp_path / "out").exists()

    calls = []
    for _ in range(2):  # the second opens the study the first made: it seeds nothing
        location = locate_study("s", None, tmp_path / "out")
        with opened_study(location, record, on_create=calls.append):
            pass
        location.storage.engine.dispose()
    assert len(calls) == 1 and (tmp_path / "out" / "s.db").exists()


# -- refusals: one line, exit 2, nothing written --------------------------------------------


def _refused(tmp_path, capsys, *args):
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exited:
        main(["--space", "cnn_reg", "--out", str(out), *args])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not out.exists()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    return lines[0]


def test_a_warm_start_from_another_space_is_refused(tmp_path, capsys):
    url = _other_study(tmp_path / "small.db", space_name="shake")
    line = _refused(tmp_path, capsys, "--warm-start", f"small@{url}")
    assert line == (
        f"error: invalid --warm-start='small@{url}': study 'small' was made with space "
        "'shake'; expected a study of space 'cnn_reg'"
    )


def test_a_warm_start_whose_parameters_differ_is_refused(tmp_path, capsys):
    def older(trial):  # an earlier cnn_reg: fewer optimizers
        trial.suggest_categorical("optimizer", ["adam", "sgd"])

    url = _other_study(tmp_path / "small.db", suggest=older)
    line = _refused(tmp_path, capsys, "--warm-start", f"small@{url}")
    assert line.startswith(f"error: invalid --warm-start='small@{url}': its parameter(s) optimizer")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("nope", "no study database at {out}/nope.db"),
        ("nope@{url}", "no study named 'nope' in this storage; studies there: small"),
        ("small@{empty}", "study 'small' holds no COMPLETE trial; expected one to start from"),
    ],
)
def test_a_warm_start_from_a_missing_or_empty_study_is_refused(
    reference, expected, tmp_path, capsys
):
    url = _other_study(tmp_path / "small.db")
    empty = _other_study(tmp_path / "empty.db", values=())
    reference = reference.format(url=url, empty=empty)
    line = _refused(tmp_path, capsys, "--warm-start", reference)
    assert line.startswith(f"error: invalid --warm-start={reference!r}: ")
    assert expected.format(out=tmp_path / "out") in line, line


def test_warm_start_options_alone_are_refused(tmp_path, capsys):
    line = _refused(tmp_path, capsys, "--warm-start-top", "2")
    assert line == (
        "error: invalid --warm-start-top=2 without --warm-start; expected --warm-start "
        "STUDY[@STORAGE] with it, or leave it out"
    )
    password = "s3cret-pw"
    url = f"postgresql://user:{password}@127.0.0.1:1/db"
    line = _refused(tmp_path, capsys, "--warm-start", f"small@{url}")
    assert password not in line and "user:***@127.0.0.1:1/db" in line


def test_help_lists_the_seed_options(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in ("--no-seed-trials", "--warm-start STUDY[@STORAGE]", "--warm-start-top"):
        assert option in text


# -- end to end -------------------------------------------------------------------------------


def _search(out, data_root, trials, *extra):
    args = list(SEARCH_ARGS)
    args[args.index("--trials") + 1] = str(trials)
    # ASHA stops nothing (grace = max epochs): the first study ends with COMPLETE trials.
    args[args.index("--grace-period") + 1] = "3"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "search.run", *args, "--data", str(data_root), "--out", str(out)]
        + list(extra),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_seeded_trials_run_first_and_a_warm_start_takes_the_best(tmp_path, data_root):
    recipes = get_space("cnn_reg").recipes
    stdout = _search(tmp_path, data_root, 4)
    url = f"sqlite:///{tmp_path}/cnn_reg.db"
    first = optuna.load_study(study_name="cnn_reg", storage=url).get_trials()
    assert [t.number for t in first] == [0, 1, 2, 3]
    for trial, recipe in zip(first, recipes, strict=False):
        assert trial.user_attrs[SOURCE_ATTR] == f"seed:{recipe.name}"
        assert trial.params == recipe.params
        assert f"trial #{trial.number} started (seed: {recipe.name})" in stdout
    assert SOURCE_ATTR not in first[3].user_attrs  # sampled
    assert "trial #3 started  |" in stdout
    assert all(t.state != States.WAITING for t in first)

    # A second study, warm-started from the first (same storage resolution: --out's cnn_reg.db).
    before = [(t.number, t.state, t.value) for t in first]
    stdout = _search(
        tmp_path, data_root, 3, "--study", "big", "--warm-start", "cnn_reg", "--warm-start-top", "2"
    )
    best = sorted(
        (t for t in first if t.state == States.COMPLETE), key=lambda t: (-t.value, t.number)
    )[:2]
    assert best, [t.state for t in first]
    big = optuna.load_study(study_name="big", storage=f"sqlite:///{tmp_path}/big.db")
    trials = big.get_trials()
    expected = [(f"warm-start:cnn_reg#{t.number}", t.params) for t in best]
    taken = [params for _, params in expected]
    expected += [(f"seed:{r.name}", r.params) for r in recipes if r.params not in taken]
    assert [(t.user_attrs[SOURCE_ATTR], t.params) for t in trials] == expected[:3]
    assert f"trial #0 started (warm-start: cnn_reg#{best[0].number})" in stdout
    assert big.user_attrs["warm_start"]["trials"] == [t.number for t in best]
    # The first study was only read.
    after = optuna.load_study(study_name="cnn_reg", storage=url).get_trials()
    assert [(t.number, t.state, t.value) for t in after] == before
