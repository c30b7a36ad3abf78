"""`python -m search.report`: one self-contained HTML file of a real study's figures and summary."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from search import _figures, report
from search._converge import best_found
from training import _io

REPO = Path(__file__).resolve().parents[2]
# Section headings of the page and the titles inside the plotly figures, in page order.
HEADINGS = [
    "Optimization history",
    "Convergence",
    "Learning curves",
    "Parallel coordinates",
    "Parameter importances",
    "Slices",
    "Timeline",
]
FIGURE_TITLES = [
    "Optimization History Plot: best found at trial #",
    "Terminator: regret bound against error (",
    "Learning Curves",
    "Parallel Coordinate Plot",
    "Hyperparameter Importances",
    "Slice Plot",
    "Timeline Plot",
]


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.report", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def study_copy(real_study, tmp_path: Path) -> str:
    """A copy of the real study's database, for tests that add to it; its storage URL."""
    db = tmp_path / "copy.db"
    shutil.copy(real_study.db, db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="module")
def written(real_study):
    """The report of the real study written by the command line with its defaults."""
    proc = run_report("--study", real_study.name, "--out", str(real_study.out))
    assert proc.returncode == 0, proc.stderr
    path = real_study.out / real_study.name / "report.html"
    return proc, path, path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_report_written_where_printed(written, real_study):
    proc, path, _ = written
    assert proc.stdout.strip() == str(path)
    # Written through a temporary file: nothing else is left beside the report.
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith("report.html.")]
    assert leftovers == []


@pytest.mark.slow
def test_report_has_every_figure(real_study, tmp_path):
    """Every figure is drawn for a study with two COMPLETE trials: the shared study (which
    holds at least one) plus a copy of its best trial, added so the count never depends on
    how ASHA happened to stop the search's trials."""
    import optuna

    url = study_copy(real_study, tmp_path)
    study = optuna.load_study(study_name=real_study.name, storage=url)
    best = study.best_trial
    study.add_trial(
        optuna.trial.create_trial(
            value=best.value - 0.01,
            params=best.params,
            distributions=best.distributions,
            intermediate_values=best.intermediate_values,
        )
    )
    # What a --stop-when-converged search records when it stops (search/_searcher.py).
    stop = {"trial": 7, "complete": 20, "regret_bound": 0.0031, "error": 0.0059, "finished": 30}
    study.set_user_attr("converged", stop)
    out = tmp_path / "r.html"
    report.main(["--study", real_study.name, "--storage", url, "-o", str(out)])
    page = out.read_text(encoding="utf-8")
    assert page.count('class="plotly-graph-div"') == 7
    assert re.findall(r"<h2>([^<]*)</h2>", page) == HEADINGS
    for title in FIGURE_TITLES:
        assert title in page
    assert 'class="note"' not in page
    # The best so far is marked where it was found, and the header says it too.
    found = best_found(study.get_trials())
    assert found.line() in page
    assert f"<tr><th>best found</th><td>{html.escape(found.line())}</td></tr>" in page
    assert (
        "<tr><th>stopped converged</th><td>after trial #7 (30 finished, 20 COMPLETE): "
        "Optuna&#x27;s Terminator&#x27;s regret bound 0.31% &lt; error 0.59%</td></tr>"
    ) in page
    # The Terminator's curve: one regret bound and one error per COMPLETE trial from the 2nd.
    complete = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert '"name":"error of the best (split)"' in page
    assert '"name":"regret bound (before judging)"' in page
    assert complete >= 2


@pytest.mark.slow
def test_report_learning_curves_show_pruned_trials(written, real_study):
    _, _, page = written
    states = Counter(t.state.name for t in real_study.load().trials)
    # The shared study holds both (test_search checks it); one legend entry per state that
    # reported an epoch: pruned trials are drawn, not dropped.
    assert states["COMPLETE"] >= 1 and states["PRUNED"] >= 1, states
    for state in ("COMPLETE", "PRUNED"):
        assert f'"legendgroup":"{state}"' in page


@pytest.mark.slow
def test_report_is_self_contained(written):
    _, path, page = written
    assert not re.search(r"<script[^>]*\bsrc=", page, flags=re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref=[\"']?https?:", page, flags=re.IGNORECASE)
    # plotly.js itself is inline, once.
    assert page.count("plotly.js v") >= 1
    assert page.count("window.PlotlyConfig = {MathJaxConfig: 'local'};") == 1
    assert path.stat().st_size > 1_000_000


@pytest.mark.slow
def test_report_header(written, real_study):
    _, _, page = written
    study = real_study.load()
    attrs = study.user_attrs
    for key in ("space", "data_source", "project_version"):
        assert f"<td>{attrs[key]}</td>" in page
    states = Counter(t.state.name for t in study.trials)
    for state, count in states.items():
        assert f"{count} {state}" in page
    best = study.best_trial
    assert f"#{best.number}: {best.value:.4f}" in page
    assert f"Best trial #{best.number}: parameters" in page
    for name in best.params:
        assert f"<th>{name}</th>" in page
    # The shared study's first trial diverged: it is listed with its reason.
    assert states["FAIL"] >= 1, states
    assert f"Failed trials ({states['FAIL']})" in page
    diverged = study.trials[0]
    assert diverged.state.name == "FAIL"
    reason = html.escape(diverged.user_attrs["fail_reason"])
    assert "NonFiniteLossError" in reason
    assert f"<tr><th>#0</th><td>{reason}</td></tr>" in page


@pytest.mark.slow
def test_report_shows_retrain_and_fail_reasons(real_study, tmp_path, capsys):
    import optuna

    url = study_copy(real_study, tmp_path)
    study = optuna.load_study(study_name=real_study.name, storage=url)
    best = study.best_trial
    summary = {
        "trial": best.number,
        "test_accuracy": 0.8123,
        "search_val_accuracy": 0.5,
        "dir": "studies/cnn_reg/retrain/00005",
    }
    # What search.retrain records: the latest retrain, and each retrain by trial number.
    study.set_user_attr("retrain", summary)
    study.set_user_attr(f"retrain:{best.number}", summary)
    failed_before = len(study.get_trials(states=(optuna.trial.TrialState.FAIL,)))
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "CUDA out of <memory>"}
        )
    )
    out = tmp_path / "r.html"
    report.main(["--study", real_study.name, "--storage", url, "-o", str(out)])
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    assert f"trial #{best.number}: test accuracy 81.23%, in studies/cnn_reg/retrain/00005" in page
    assert f"#{best.number}: test accuracy 81.23% (search validation 50.00%)" in page
    assert f"Failed trials ({failed_before + 1})" in page
    assert "CUDA out of &lt;memory&gt;" in page  # escaped, not markup


@pytest.mark.slow
def test_failing_figure_becomes_a_note(real_study, tmp_path, monkeypatch):
    def broken(study):
        raise RuntimeError("boom\nsecond line")

    figures = [(title, broken if title == "Slices" else build) for title, build in _figures.FIGURES]
    monkeypatch.setattr(_figures, "FIGURES", figures)
    out = tmp_path / "r.html"
    report.main(["--study", real_study.name, "--storage", real_study.url, "-o", str(out)])
    page = out.read_text(encoding="utf-8")
    assert 'Slices</h2><p class="note">could not be drawn: RuntimeError: boom</p>' in page
    assert "Timeline Plot" in page  # the figures after it are still drawn


@pytest.mark.slow
def test_missing_study_exits_2_and_writes_nothing(real_study, tmp_path):
    out = tmp_path / "nested" / "report.html"
    proc = run_report("--study", "no_such_study", "--storage", real_study.url, "-o", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: no study named 'no_such_study'")
    assert real_study.name in lines[0]  # it lists the studies that exist
    assert not (tmp_path / "nested").exists()


def test_missing_database_exits_2_and_creates_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        report.main(["--study", "cnn_reg", "--out", str(tmp_path / "studies")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no study database at ")
    assert list(tmp_path.iterdir()) == []


def test_storage_password_is_never_printed(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        report.main(
            [
                "--study",
                "cnn_reg",
                "--storage",
                "postgresql://u:s3cret@127.0.0.1:1/db",
                "-o",
                str(tmp_path / "r.html"),
            ]
        )
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "s3cret" not in captured.out + captured.err
    assert "u:***@127.0.0.1" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_too_few_trials_gives_notes(tmp_path):
    """A hand-made study with one complete trial and one without values (error path)."""
    import optuna
    from optuna.distributions import FloatDistribution

    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    study = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            value=0.5, params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 1.0)}
        )
    )
    sections = {s.title: s for s in _figures.study_figures(study)}
    assert sections["Parameter importances"].figure is None
    assert sections["Parameter importances"].note == (
        "not drawn: needs at least 2 COMPLETE trials; the study has 1"
    )
    assert sections["Learning curves"].note == (
        "not drawn: no trial has reported an intermediate value yet"
    )
    assert sections["Optimization history"].figure is not None
    assert sections["Convergence"].note == (
        "not drawn: needs at least 2 COMPLETE trials; the study has 1"
    )

    empty = optuna.create_study(study_name="empty", storage=url)
    notes = [s.note for s in _figures.study_figures(empty)]
    assert all(note and note.startswith("not drawn: ") for note in notes)
    page = report.report_html(empty, url)
    assert 'class="plotly-graph-div"' not in page and "no COMPLETE trial yet" in page


def test_interrupted_write_leaves_old_report(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old")

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_io.os, "replace", crash)
    with pytest.raises(OSError):
        report.write_report(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
