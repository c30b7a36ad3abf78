"""Shared fixtures: one real small search, made once per session, and a dashboard serving it.

The study comes from `python -m search.run` on the real CIFAR-10 JPEGs (8 trials, 3 epochs,
500 images), so reports and dashboards are tested on what a search really writes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUDY = "cnn_reg"
SEARCH_ARGS = [
    "--space",
    "cnn_reg",
    "--trials",
    "8",
    "--max-epochs",
    "3",
    "--grace-period",
    "1",
    "--reduction-factor",
    "2",
    "--train-size",
    "400",
    "--val-size",
    "500",
    "--precision",
    "fp32",
]


def kill_tree(pid: int, timeout: float = 60) -> None:
    """SIGKILL process `pid`, which leads its own process group (`start_new_session`), that
    group, and every process below it (the raylet it started, the raylet's workers), then wait
    until none of the tree is left. A worker is not in the driver's process group: killed with
    the group only, it notices its raylet gone at its next report, and may first write one more
    checkpoint, which a test that then edits checkpoints would race."""
    tree = [pid, *(descendants(pid) - {pid})]  # the driver first
    os.killpg(pid, signal.SIGKILL)
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    while any(_alive(member) for member in tree):
        if time.time() > deadline:
            raise AssertionError(f"processes {tree} still alive {timeout} s after SIGKILL")
        time.sleep(0.1)


def descendants(pid: int) -> set[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo += children.get(current, [])
    return found


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a killed child the test has not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def uninterrupted_value(command: list[str], trial) -> float:
    """The validation accuracy trial `trial` of the search `command` (`python -m search.run
    ...`) reaches when trained without interruption: its configuration and seed on the search's
    own split, trained here in one go with one thread, as a trial is."""
    import torch

    from search._job import resolve_job
    from search._trainable import rerun_config
    from search.run import build_parser
    from training import train

    job = resolve_job(build_parser().parse_args(command[command.index("search.run") + 1 :]))
    config = rerun_config(job.space.name, job.settings, trial)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(config, job.train_set, job.val_set, device="cpu").history[-1].val_accuracy
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class RealStudy:
    """A finished search: its --out folder, study name, SQLite file and storage URL."""

    out: Path
    name: str
    db: Path
    stdout: str = ""  # what the search printed

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def load(self):
        import optuna

        return optuna.load_study(study_name=self.name, storage=self.url)


@pytest.fixture(scope="session")
def real_study(data_root, tmp_path_factory) -> RealStudy:
    """A real search of 8 trials (about a minute on two CPU cores); skipped without the data.

    Its first trial is enqueued with a learning rate that diverges, so the study holds a FAIL
    trial beside the COMPLETE and PRUNED ones, as real studies do. Every trial uses the
    report's multistep schedule (the other parameters are sampled), so the retrain tests can
    check how its milestones scale whichever trial is best.
    """
    import optuna

    out = tmp_path_factory.mktemp("search_out")
    study = optuna.create_study(
        study_name=STUDY, storage=f"sqlite:///{out / STUDY}.db", direction="maximize"
    )
    # Out of the space's range on purpose: Optuna uses an enqueued value anyway (with a warning).
    study.enqueue_trial(
        {"optimizer": "sgd", "sgd_lr_per_128": 1e6, "batch_size": 32, "schedule": "multistep"}
    )
    for _ in range(int(SEARCH_ARGS[SEARCH_ARGS.index("--trials") + 1]) - 1):
        study.enqueue_trial({"schedule": "multistep"})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "search.run",
            *SEARCH_ARGS,
            "--data",
            str(data_root),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"the search for the test study failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    real = RealStudy(out=out, name=STUDY, db=out / f"{STUDY}.db", stdout=proc.stdout)
    assert real.db.exists(), proc.stdout
    return real


@pytest.fixture
def one_trial_study(tmp_path) -> str:
    """A study of the cnn_reg space holding one COMPLETE trial; its storage URL."""
    return make_one_trial_study(tmp_path / "study.db")


def make_one_trial_study(path: Path) -> str:
    import optuna

    from search import get_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{path}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("space", "cnn_reg")
    study.set_user_attr("val_size", 500)
    trial = study.ask()
    get_space("cnn_reg").suggest(trial)
    study.tell(trial, 0.5)
    storage.engine.dispose()  # no connection left open: the folder can be remounted
    return url


def substituted(argv: list[str], tmp: Path, request) -> list[str]:
    """A hostile-input table's command line with its placeholders replaced: TMP (the test's
    folder, also inside an argument: `none,TMP/p.json`), STUDY (a study of one COMPLETE cnn_reg
    trial, made when named) and DATA (the real CIFAR-10, found when named)."""
    values = {"TMP": str(tmp)}
    if "STUDY" in argv:
        values["STUDY"] = make_one_trial_study(tmp / "study.db")
    if "DATA" in argv:
        values["DATA"] = str(request.getfixturevalue("data_root"))
    return [values.get(arg, arg.replace("TMP/", f"{tmp}/")) for arg in argv]


def free_port() -> int:
    """A TCP port nobody on 127.0.0.1 listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


@dataclass
class Dashboard:
    """A running `python -m search.dashboard`: its port, the URL it printed, its log files."""

    proc: subprocess.Popen
    port: int
    stdout: Path
    stderr: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def printed(self) -> str:
        return self.stdout.read_text()


def start_dashboard(study: RealStudy, log_dir: Path, timeout: float = 60.0) -> Dashboard:
    """Start the dashboard on a free port and wait until its API answers."""
    port = free_port()
    stdout, stderr = log_dir / "dashboard.out", log_dir / "dashboard.err"
    # Files, not pipes: the server logs every request and would block on a full pipe.
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "search.dashboard",
                "--study",
                study.name,
                "--storage",
                study.url,
                "--port",
                str(port),
            ],
            cwd=REPO,
            stdout=out,
            stderr=err,
        )
    dashboard = Dashboard(proc, port, stdout, stderr)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited with {proc.returncode}:\n{stderr.read_text()}")
        try:
            get_json(f"{dashboard.base}/api/meta", timeout=2)
            return dashboard
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                stop_dashboard(dashboard)
                pytest.fail(
                    f"the dashboard did not answer within {timeout:.0f} s:\n{stderr.read_text()}"
                )
            time.sleep(0.3)


def stop_dashboard(dashboard: Dashboard) -> None:
    dashboard.proc.terminate()
    try:
        dashboard.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        dashboard.proc.kill()
        dashboard.proc.wait()


@pytest.fixture(scope="session")
def dashboard(real_study, tmp_path_factory) -> Iterator[Dashboard]:
    """The dashboard serving the real study, shared by the API and browser tests."""
    server = start_dashboard(real_study, tmp_path_factory.mktemp("dashboard"))
    try:
        yield server
    finally:
        stop_dashboard(server)
