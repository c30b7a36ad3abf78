"""One study shared by two search drivers through PostgreSQL.

Needs a server: `scripts/postgres.sh start` and
`export SEARCH_TEST_POSTGRES_URL=$(scripts/postgres.sh url)`; skipped when that is unset.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import REPO

from search._study import open_storage

POSTGRES_ENV = "SEARCH_TEST_POSTGRES_URL"
States = optuna.trial.TrialState
TARGET = 6
MAX_EPOCHS = 2


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server: set ${POSTGRES_ENV} (scripts/postgres.sh start)")
    return url


@pytest.fixture
def study_name(postgres_url):
    """A fresh study name; the study is deleted afterwards, whatever happened."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=open_storage(postgres_url))
    except KeyError:
        pass  # never created


def password_of(url: str) -> bytes:
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    assert password, f"${POSTGRES_ENV} should hold a password for this test to mean anything"
    return password.encode()


def files_holding(secret: bytes, *folders: Path) -> list[str]:
    """Every file under `folders` whose bytes contain `secret`."""
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    if secret in path.read_bytes():
                        found.append(str(path))
                except OSError:
                    pass
    return found


@pytest.mark.slow
def test_two_drivers_share_one_study(postgres_url, study_name, data_root, tmp_path):
    out = tmp_path / "out"
    base = [
        sys.executable,
        "-m",
        "search.run",
        "--space",
        "cnn_reg",
        "--study",
        study_name,
        "--data",
        str(data_root),
        "--trials",
        str(TARGET),
        "--max-epochs",
        str(MAX_EPOCHS),
        "--grace-period",
        "1",
        "--reduction-factor",
        "2",
        "--train-size",
        "200",
        "--val-size",
        "200",
        "--out",
        str(out),
        # One trial at a time per driver: two drivers on a 2-core runner fill it.
        "--cpus-per-trial",
        str(max(1, (os.cpu_count() or 2) // 2)),
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("SEARCH_STORAGE", None)
    # Both ways a URL reaches the driver: on the command line, and (as the README advises for
    # a password) in $SEARCH_STORAGE.
    commands = [
        (base + ["--storage", postgres_url], env),
        (base, {**env, "SEARCH_STORAGE": postgres_url}),
    ]
    logs = []
    drivers = []
    for i, (command, driver_env) in enumerate(commands):
        stdout, stderr = tmp_path / f"driver{i}.out", tmp_path / f"driver{i}.err"
        with stdout.open("w") as o, stderr.open("w") as e:
            drivers.append(subprocess.Popen(command, cwd=REPO, env=driver_env, stdout=o, stderr=e))
        logs.append((stdout, stderr))
    try:
        for driver in drivers:
            driver.wait(timeout=420)
    finally:
        for driver in drivers:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    printed = [(o.read_text(), e.read_text()) for o, e in logs]
    for driver, (stdout, stderr) in zip(drivers, printed, strict=True):
        assert driver.returncode == 0, stdout[-3000:] + stderr[-3000:]

    study = optuna.load_study(study_name=study_name, storage=open_storage(postgres_url))
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials))), numbers  # dense, none duplicated
    assert all(t.state != States.RUNNING for t in trials)

    # Which driver ran which trial: the run ids the drivers recorded, told apart by pid.
    runs = {
        value["pid"]: key.removeprefix("run:")
        for key, value in study.user_attrs.items()
        if key.startswith("run:")
    }
    run_ids = [runs[driver.pid] for driver in drivers]
    assert all(study.user_attrs[f"run:{r}"]["status"] == "finished" for r in run_ids)
    for run_id, (stdout, _) in zip(run_ids, printed, strict=True):
        started = {int(n) for n in re.findall(r"trial #(\d+) started", stdout)}
        mine = {t.number for t in trials if t.user_attrs.get("run_id") == run_id}
        assert started == mine, (run_id, started, mine)
        assert mine, f"driver {run_id} ran no trial: the study was not shared"
    # Every trial is some driver's: the counts add up to what the drivers reported running.
    assert {t.user_attrs.get("run_id") for t in trials} == set(run_ids)

    # The drivers stop together at --trials: each asks for a trial only while the study holds
    # fewer than --trials finished or running ones. Two asking at the same instant can both
    # pass that check, so one trial more is possible, never more than that.
    assert TARGET <= len(trials) <= TARGET + 1, len(trials)
    for trial in trials:
        epochs = trial.user_attrs.get("epochs_run")
        if trial.state == States.COMPLETE:
            assert sorted(trial.intermediate_values) == list(range(1, MAX_EPOCHS + 1))
            assert trial.value == trial.intermediate_values[MAX_EPOCHS]
        elif trial.state == States.PRUNED:
            assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        else:
            pytest.fail(f"trial #{trial.number} ended {trial.state.name}: {trial.user_attrs}")

    # The drivers drew different configurations: each seeds its sampler from its run id,
    # recorded on its trials; the split and the trials' training seeds stay the study's.
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params), params
    seeds = {t.user_attrs["run_id"]: t.user_attrs["sampler_seed"] for t in trials}
    assert len(set(seeds.values())) == len(run_ids), seeds
    # The printed commands work when pasted: the URL with its password comes from
    # $SEARCH_STORAGE, never as a redacted postgresql://user:***@...
    for stdout, _ in printed:
        assert ":***@" not in stdout.split("best trial:")[-1]
    assert '--storage "$SEARCH_STORAGE"' in printed[0][0]

    # The password is nowhere in what the runs printed or wrote: outputs, Ray's experiment
    # files (tuner.pkl, experiment_state*.json), Ray's session logs of both drivers.
    secret = password_of(postgres_url)
    for stdout, stderr in printed:
        assert secret.decode() not in stdout and secret.decode() not in stderr
    sessions = [p for driver in drivers for p in Path("/tmp/ray").glob(f"session_*_{driver.pid}")]
    assert list(out.rglob("tuner.pkl")) and list(out.rglob("experiment_state*.json"))
    assert files_holding(secret, out, *sessions) == []


def test_wrong_password_says_so_without_printing_it(postgres_url, study_name, data_root, tmp_path):
    from sqlalchemy.engine import make_url

    wrong = "not-the-password-42"
    url = make_url(postgres_url).set(password=wrong).render_as_string(hide_password=False)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "search.run",
            "--space",
            "cnn_reg",
            "--study",
            study_name,
            "--storage",
            url,
            "--data",
            str(data_root),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach storage "), lines
    assert "password authentication failed" in lines[0] and ":***@" in lines[0]
    assert wrong not in done.stdout + done.stderr
    assert not out.exists()
    assert study_name not in optuna.study.get_all_study_names(open_storage(postgres_url))


ORPHANS = 4


def _mark_and_take(url: str, name: str, start_at: float) -> list[int]:
    """One driver starting on the study: mark the dead driver's trials (queuing their
    retries), then take trials as a sampler does; the interrupted trials it took to resume."""
    import time

    from search._study import fail_interrupted_trials

    study = optuna.load_study(study_name=name, storage=open_storage(url))
    time.sleep(max(0.0, start_at - time.time()))  # both drivers at the same moment
    fail_interrupted_trials(study, resume=True)
    taken = []
    for _ in range(ORPHANS):
        trial = study.ask()
        if "retry_of" in trial.user_attrs:
            taken.append(int(trial.user_attrs["retry_of"]))
        study.tell(trial, state=States.FAIL)
    return taken


def test_an_interrupted_trial_is_resumed_by_one_driver_only(postgres_url, study_name):
    """Two drivers start at once on a study whose driver was killed: each interrupted trial is
    retried once, decided by the database (a WAITING trial is taken once; a trial told FAIL
    once), whichever driver marks it."""
    import multiprocessing
    import time

    from search._resume import waiting_retries

    study = optuna.create_study(study_name=study_name, storage=open_storage(postgres_url))
    lr = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    for _ in range(ORPHANS):
        trial = study.ask(lr)
        trial.set_user_attr("run_id", "gone")
        trial.report(0.1, 1)
    study.set_user_attr("run:gone", {"status": "running", "heartbeat": 0.0, "host": "elsewhere"})
    start_at = time.time() + 3
    with multiprocessing.get_context("fork").Pool(2) as pool:
        taken = pool.starmap(_mark_and_take, [(postgres_url, study_name, start_at)] * 2)
    resumed = sorted(taken[0] + taken[1])
    assert resumed == list(range(ORPHANS)), taken  # each once, by one driver or the other
    trials = study.get_trials()
    assert all(t.state == States.FAIL for t in trials) and not waiting_retries(study)
    for trial in trials[:ORPHANS]:
        assert trial.user_attrs["fail_reason"].startswith("interrupted")
        assert "retried_by" in trial.user_attrs
    withdrawn = [t for t in trials if t.user_attrs.get("fail_reason", "").startswith("not run")]
    retries = [t for t in trials if "retry_of" in t.user_attrs]
    assert len(retries) == ORPHANS + len(withdrawn)
