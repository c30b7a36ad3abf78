"""`python -m search.dashboard`: optuna-dashboard on the real study, local-only by default.

optuna-dashboard 0.21 serves JSON at /api/studies ({"study_summaries": [{study_id, study_name,
...}]}) and /api/studies/<id> ({"name", "trials": [{number, state: "Complete"|"Pruned"|...}]}).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from conftest import free_port

from search import dashboard as dashboard_cli

REPO = Path(__file__).resolve().parents[2]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as the kernel writes them) of TCP sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


@pytest.mark.slow
def test_api_lists_the_study_and_all_its_trials(dashboard, real_study):
    study = real_study.load()
    summaries = get_json(f"{dashboard.base}/api/studies")["study_summaries"]
    assert [(s["study_id"], s["study_name"]) for s in summaries] == [
        (study._study_id, real_study.name)
    ]

    detail = get_json(f"{dashboard.base}/api/studies/{study._study_id}")
    assert detail["name"] == real_study.name
    assert len(detail["trials"]) == len(study.trials)
    assert Counter(t["state"].upper() for t in detail["trials"]) == Counter(
        t.state.name for t in study.trials
    )
    best = study.best_trial
    assert [t["number"] for t in detail["best_trials"]] == [best.number]


@pytest.mark.slow
def test_prints_the_study_url_and_serves_it(dashboard, real_study):
    study_id = real_study.load()._study_id
    url = f"http://127.0.0.1:{dashboard.port}/dashboard/studies/{study_id}"
    assert f"open {url}" in dashboard.printed()
    assert f"in sqlite:///{real_study.db}" in dashboard.printed()
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert "text/html" in response.headers["Content-Type"]
    assert "warning" not in dashboard.stderr.read_text()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
def test_listens_on_loopback_only(dashboard):
    # 0100007F is 127.0.0.1 in the kernel's little-endian hex; 00000000 would be every interface.
    assert listening_addresses(dashboard.port) == ["0100007F"]


@pytest.mark.slow
def test_missing_study_exits_2(real_study):
    proc = subprocess.run(
        [sys.executable, "-m", "search.dashboard", "--study", "nope", "--storage", real_study.url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: no study named 'nope' in this storage; studies there: {real_study.name}"
    ]
    assert proc.stdout == ""


def test_missing_database_exits_2_and_creates_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        dashboard_cli.main(["--study", "cnn_reg", "--out", str(tmp_path / "studies")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no study database at ")
    assert list(tmp_path.iterdir()) == []


class _NoServer:
    """Stands in for the bound server: serving returns at once."""

    def serve_forever(self) -> None:
        pass

    def server_close(self) -> None:
        pass


@pytest.fixture
def served(monkeypatch):
    """Replaces the dashboard's `bind`; the dict records what it was asked to serve."""
    calls: dict = {}

    def bind(storage, host, port):
        calls.update(storage=storage, host=host, port=port)
        return _NoServer()

    monkeypatch.setattr(dashboard_cli, "bind", bind)
    return calls


def test_taken_port_fails_before_printing_anything(tmp_path, capsys):
    """A port already in use: one error line, and no line claiming the dashboard is up."""
    import socket

    import optuna

    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    optuna.create_study(study_name="tiny", storage=url)
    capsys.readouterr()  # Optuna's own log line
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            dashboard_cli.main(["--study", "tiny", "--storage", url, "--port", str(port)])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_serves_the_study_once_bound(tmp_path):
    """The real server that `bind` returns answers the dashboard's API for the study."""
    import threading

    import optuna

    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    study = optuna.create_study(study_name="tiny", storage=url)
    server = dashboard_cli.bind(optuna.storages.RDBStorage(url), "127.0.0.1", free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        summaries = get_json(f"http://127.0.0.1:{server.server_port}/api/studies")
        assert [s["study_name"] for s in summaries["study_summaries"]] == [study.study_name]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_non_loopback_host_warns(real_study, served, capsys):
    dashboard_cli.main(
        [
            "--study",
            real_study.name,
            "--storage",
            real_study.url,
            "--host",
            "0.0.0.0",
            "--port",
            "8123",
        ]
    )
    captured = capsys.readouterr()
    assert served["host"] == "0.0.0.0" and served["port"] == 8123
    assert "no authentication" in captured.err and captured.err.startswith("warning: ")
    study_id = real_study.load()._study_id
    assert f"open http://127.0.0.1:8123/dashboard/studies/{study_id}" in captured.out


@pytest.mark.slow
def test_default_host_is_loopback_without_warning(real_study, served, capsys):
    dashboard_cli.main(["--study", real_study.name, "--storage", real_study.url])
    assert served["host"] == "127.0.0.1" and served["port"] == 8080
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_password_in_storage_url_is_never_printed(real_study, served, monkeypatch, capsys):
    """A PostgreSQL URL with a password, opened (here) onto the real SQLite study."""
    from search import _study

    real_open = _study.open_storage  # the commands open studies through search._study
    monkeypatch.setattr(
        _study, "open_storage", lambda url, must_exist=False: real_open(real_study.url)
    )
    secret_url = "postgresql://searcher:s3cret@db.example:5432/studies"
    dashboard_cli.main(["--study", real_study.name, "--storage", secret_url])
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert "postgresql://searcher:***@db.example:5432/studies" in out
    assert served["storage"] is not None


def test_unreachable_storage_password_not_printed(capsys):
    with pytest.raises(SystemExit) as exited:
        dashboard_cli.main(["--study", "x", "--storage", "postgresql://u:s3cret@127.0.0.1:1/db"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "s3cret" not in captured.out + captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("no-such-host.invalid", False),
    ],
)
def test_is_loopback(host, loopback):
    assert dashboard_cli.is_loopback(host) is loopback


def test_dashboard_url():
    assert dashboard_cli.dashboard_url("0.0.0.0", 8080, 3) == (
        "http://127.0.0.1:8080/dashboard/studies/3"
    )
    assert dashboard_cli.dashboard_url("::1", 9000) == "http://[::1]:9000/dashboard"
