"""Faults during a real search: Ctrl+C to the driver, a trial's Ray worker process killed, a
trial out of GPU memory, a full disk.

(A driver killed with SIGKILL is in test_search.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, uninterrupted_value

pytestmark = pytest.mark.slow
States = optuna.trial.TrialState
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
MAX_EPOCHS = 3
CONTINUE = "stopped (Ctrl+C); run the same command again to continue the study"


def search_command(out: Path, data_root: Path, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "search.run",
        "--space",
        "cnn_reg",
        "--data",
        str(data_root),
        "--trials",
        str(trials),
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
        *extra,
    ]


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="cnn_reg", storage=f"sqlite:///{out}/cnn_reg.db")


def start(command: list[str], log_dir: Path) -> subprocess.Popen:
    """The driver in its own session (so the test can signal it, and everything it started)."""
    # Files, not pipes: nobody reads the output until the driver ends.
    with (log_dir / "driver.out").open("w") as out, (log_dir / "driver.err").open("w") as err:
        return subprocess.Popen(
            command, cwd=REPO, env=ENV, stdout=out, stderr=err, start_new_session=True
        )


def wait_for(out: Path, driver: subprocess.Popen, ready, timeout: float = 240) -> list:
    """Poll the study until `ready(trials)`; fail if the driver ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        assert driver.poll() is None, "the search ended before the fault could be injected"
        if not (out / "cnn_reg.db").exists():
            continue
        try:
            trials = load(out).get_trials()
        except Exception:  # the study is still being created
            continue
        if ready(trials):
            return trials
    pytest.fail("the search never reached the state the fault needs")


def finish(driver: subprocess.Popen, log_dir: Path, timeout: float = 300) -> tuple[str, str]:
    try:
        driver.wait(timeout=timeout)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    return (log_dir / "driver.out").read_text(), (log_dir / "driver.err").read_text()


def trial_worker(driver_pid: int, ray_trial_id: str) -> int | None:
    """The Ray worker process running Tune trial `ray_trial_id` of this driver (not of any other
    search on the machine): its parent is the raylet the driver started, and Tune runs each
    trial in the trial's folder, whose name holds the trial id."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                continue
            raylet = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            raylet_stat = Path(f"/proc/{raylet}/stat").read_text()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if int(raylet_stat.rsplit(")", 1)[1].split()[1]) == driver_pid and (
            f"_{ray_trial_id}_" in Path(cwd).name
        ):
            return int(entry.name)
    return None


def busy_training(trials: list):
    """A RUNNING trial that reported some epochs and that ASHA let go on: at each epoch it
    reported, its accuracy is the best any trial reported there, so no rung cutoff (a
    percentile of those) stopped it. Its worker is training the next epoch now."""
    best: dict[int, float] = {}
    for trial in trials:
        for step, value in trial.intermediate_values.items():
            best[step] = max(best.get(step, value), value)
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        if (
            trial.state == States.RUNNING
            and steps
            and steps == list(range(1, len(steps) + 1))
            and len(steps) < MAX_EPOCHS
            and all(trial.intermediate_values[s] >= best[s] for s in steps)
        ):
            return trial
    return None


def kill_a_busy_worker(command: list[str], log_dir: Path) -> tuple:
    """Run the search, SIGKILL the worker of a trial that is training (`busy_training`), let the
    search end (it must exit 0); the trial as it was, the worker's pid, and what it printed."""
    driver = start(command, log_dir)
    try:
        trials = wait_for(log_dir, driver, lambda trials: busy_training(trials) is not None)
        victim = busy_training(trials)
        worker = trial_worker(driver.pid, victim.user_attrs["ray_trial_id"])
        assert worker is not None, "no Ray worker process found for the running trial"
        os.kill(worker, signal.SIGKILL)
    finally:
        stdout, stderr = finish(driver, log_dir)
    assert driver.returncode == 0, stdout[-2000:] + stderr[-2000:]
    return victim, worker, stdout


def assert_dense_and_settled(trials: list) -> None:
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state != States.RUNNING for t in trials), [t.state for t in trials]


def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(tmp_path, data_root):
    command = search_command(tmp_path, data_root, 4)
    driver = start(command, tmp_path)
    try:
        # Some trial done, and one that has not finished an epoch yet: it cannot end before
        # the signal lands, so it must end interrupted.
        trials = wait_for(
            tmp_path,
            driver,
            lambda trials: (
                any(t.state.is_finished() for t in trials)
                and any(t.state == States.RUNNING and not t.intermediate_values for t in trials)
            ),
        )
        fresh = {
            t.number for t in trials if t.state == States.RUNNING and not t.intermediate_values
        }
        # What Ctrl+C in a terminal does: SIGINT to the foreground process group.
        os.killpg(driver.pid, signal.SIGINT)
    finally:
        stdout, stderr = finish(driver, tmp_path, timeout=120)

    assert driver.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
    assert CONTINUE in stdout
    assert "Tuner.restore" not in stderr  # Tune's own advice does not apply to a study
    trials = load(tmp_path).get_trials()
    assert_dense_and_settled(trials)
    interrupted = {t.number for t in trials if t.state == States.FAIL}
    assert fresh <= interrupted, (fresh, interrupted)
    for trial in trials:
        if trial.state == States.FAIL:
            assert trial.user_attrs["fail_reason"].startswith("interrupted"), trial.user_attrs
        if trial.state in (States.COMPLETE, States.PRUNED):
            epochs = trial.user_attrs["epochs_run"]
            assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))

    # Each interrupted trial had its retry queued: the re-run runs them first.
    assert {t.user_attrs.get("retried_by") for t in trials if t.number in interrupted} == {
        t.number for t in trials if t.state == States.WAITING
    }
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(interrupted)} interrupted trial(s) run again first" in done.stdout
    trials = load(tmp_path).get_trials()
    assert_dense_and_settled(trials)
    assert {t.number for t in trials if t.state == States.FAIL} == interrupted
    finished = [t for t in trials if t.state in (States.COMPLETE, States.PRUNED)]
    assert len(finished) == 4
    retried = {t.user_attrs.get("retry_of") for t in finished}
    assert interrupted <= retried, (interrupted, retried)
    by_number = {t.number: t for t in trials}
    for trial in finished:
        if "retry_of" not in trial.user_attrs:
            continue
        # It continued from its last checkpoint: at most one epoch past those the interrupted
        # trial recorded (saved before the Ctrl+C, never reported), fewer when the default
        # policy's 2 % budget skipped a save; the epochs trained make up the rest.
        before = by_number[trial.user_attrs["retry_of"]].intermediate_values
        restored = trial.user_attrs.get("resumed_from_epoch", 0)
        assert restored <= len(before) + 1, (before, trial.user_attrs)
        if restored:
            run, trained = trial.user_attrs["epochs_run"], trial.user_attrs["epochs_trained"]
            # The re-run's ASHA judges the replayed epochs afresh: one it stops there ends with
            # fewer epochs than were restored and none trained (seen under a loaded CPU).
            replay_stopped = trial.state == States.PRUNED and trained == 0 and run <= restored
            assert restored + trained == run or replay_stopped, trial.user_attrs
    assert not list(tmp_path.glob("cnn_reg/trials/*/state.pt"))  # checkpoints are removed


def test_killed_trial_worker_is_restarted_from_its_checkpoint(tmp_path, data_root):
    # ASHA stops nothing (grace = max epochs), so the victim runs to its end.
    command = search_command(
        tmp_path,
        data_root,
        4,
        *("--grace-period", str(MAX_EPOCHS), "--checkpoint-every", "1", "--precision", "fp32"),
    )
    victim, _, stdout = kill_a_busy_worker(command, tmp_path)
    trials = load(tmp_path).get_trials()
    assert_dense_and_settled(trials)
    assert len(trials) == 4  # one row for the victim: the same trial went on
    restarted = trials[victim.number]
    assert restarted.state == States.COMPLETE, restarted.user_attrs
    # Every epoch's value once, those it reported before the kill unchanged.
    assert sorted(restarted.intermediate_values) == list(range(1, MAX_EPOCHS + 1))
    for step, value in victim.intermediate_values.items():
        assert restarted.intermediate_values[step] == value
    restored = restarted.user_attrs["resumed_from_epoch"]
    assert len(victim.intermediate_values) <= restored < MAX_EPOCHS
    assert f"restarted 1 trial(s) whose worker died: #{victim.number}" in stdout
    assert restarted.value == uninterrupted_value(command, restarted)
    assert not list(tmp_path.glob("cnn_reg/trials/*/state.pt"))


def test_killed_trial_worker_fails_that_trial_without_restarts(tmp_path, data_root):
    command = search_command(tmp_path, data_root, 4, "--max-failures", "0")
    victim, worker, stdout = kill_a_busy_worker(command, tmp_path)
    trials = load(tmp_path).get_trials()
    assert_dense_and_settled(trials)
    failed = [t for t in trials if t.state == States.FAIL]
    assert [t.number for t in failed] == [victim.number]
    reason = failed[0].user_attrs["fail_reason"]
    assert reason.startswith("worker died") and f"pid {worker}" in reason, reason
    assert 1 in failed[0].intermediate_values  # what it reported before it died is kept
    assert f"trial #{victim.number} FAIL: worker died" in stdout
    # The search went on to --trials (a failed trial counts: its configuration was tried).
    assert len(trials) == 4
    assert sum(t.state in (States.COMPLETE, States.PRUNED) for t in trials) == 3


def test_out_of_gpu_memory_fails_that_trial_alone(tmp_path, data_root):
    """Trial #1 runs out of memory at its first epoch (the SEARCH_INJECT_OOM_TRIAL test hook
    raises torch.cuda.OutOfMemoryError inside training.train, as a trial past its GPU share
    would): it alone is FAIL "out of memory", the others finish and the search exits 0."""
    command = [*search_command(tmp_path, data_root, 4)]
    command[command.index("--max-epochs") + 1] = "2"
    env = {**ENV, "SEARCH_INJECT_OOM_TRIAL": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trials = load(tmp_path).get_trials()
    assert_dense_and_settled(trials)
    assert len(trials) == 4
    oom = trials[1]
    assert oom.state == States.FAIL
    reason = oom.user_attrs["fail_reason"]
    assert reason.startswith("out of memory: torch.OutOfMemoryError: CUDA out of memory"), reason
    assert oom.user_attrs["epochs_run"] == 0 and not oom.intermediate_values
    assert "trial #1 FAIL: out of memory" in done.stdout
    others = [t.state for t in trials if t.number != 1]
    assert all(state in (States.COMPLETE, States.PRUNED) for state in others), others


def full_disk_command(data_root: Path, studies_dir: Path, *extra: str) -> list[str]:
    return [
        *search_command(studies_dir, data_root, 2)[:-2],
        "--max-epochs",
        "1",
        "--studies-dir",
        str(studies_dir),
        *extra,
    ]


def test_full_disk_trials_keep_their_values_and_run_again(small_disk, remount, tmp_path, data_root):
    """Weights that do not fit: the trial is FAIL "not saved", its values kept; it does not
    count towards --trials, the driver ends with one line, and a re-run runs it again."""
    db = tmp_path / "db" / "cnn_reg.db"
    db.parent.mkdir()
    command = full_disk_command(data_root, small_disk, "--storage", f"sqlite:///{db}")
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: trial #"), lines
    assert "disk full: no space left on device" in lines[0]
    assert f"Free space under {small_disk / 'cnn_reg'} and run the same command again" in lines[0]
    study = optuna.load_study(study_name="cnn_reg", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    assert trials and all(t.state != States.RUNNING for t in trials)
    not_saved = [t for t in trials if t.state == States.FAIL]
    assert not_saved, [t.state for t in trials]
    for trial in not_saved:
        assert trial.user_attrs["fail_reason"].startswith("not saved: disk full"), trial.user_attrs
        assert trial.user_attrs["epochs_run"] == 1 and 1 in trial.intermediate_values
    assert not [p for p in small_disk.rglob("*") if p.name.endswith(".tmp")]

    remount(small_disk, "size=64m")
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = 2 - sum(t.state in (States.COMPLETE, States.PRUNED) for t in trials)
    assert f"{2 - ran} trial(s) done, {ran} to run" in done.stdout
    study = optuna.load_study(study_name="cnn_reg", storage=f"sqlite:///{db}")
    finished = [t for t in study.get_trials() if t.state in (States.COMPLETE, States.PRUNED)]
    assert len(finished) == 2


def test_full_disk_with_the_database_on_it(small_disk, data_root):
    """The database fills up too: no tracebacks, exit 1, and nothing claimed that the study
    does not hold."""
    filler = small_disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
    os.truncate(filler, filler.stat().st_size - 200 * 1024)  # room for the database, not more
    command = full_disk_command(data_root, small_disk)
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert len(done.stderr.strip().splitlines()) <= 4, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: "), done.stderr
    if (small_disk / "cnn_reg.db").exists():
        trials = load(small_disk).get_trials()
        claimed = [line for line in done.stdout.splitlines() if "FAIL (interrupted):" in line]
        for line in claimed:
            numbers = {int(n) for n in line.split(":", 1)[1].replace("#", "").split(",")}
            assert {t.number for t in trials if t.state == States.FAIL} >= numbers, line
