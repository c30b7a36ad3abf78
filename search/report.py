"""A study's report as one HTML file: `python -m search.report --study cnn_reg`.

The file is self-contained (plotly.js is embedded), so it opens offline and can be mailed or
archived with the study. It is written to a temporary file and renamed into place, so a reader
never sees half a report.
"""

from __future__ import annotations

import argparse
import html
import time
from collections import Counter
from pathlib import Path
from typing import Any

from training import OutputError, atomic_write, check_output_file, new_folder

from ._console import (
    USAGE_ERRORS,
    HelpFormatter,
    add_study_options,
    error_exit,
    open_study_from_args,
    path_option,
)
from ._converge import best_found, maximizes
from ._errors import UsageError
from ._figures import Section, study_figures
from ._study import converged_record, redact

REPORT_NAME = "report.html"
STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
# Study user attrs shown in the header when present, with their labels.
STUDY_ATTRS = (
    ("space", "space"),
    ("data_source", "data source"),
    ("project_version", "project version"),
    ("metric", "metric"),
    ("sampler", "sampler"),
    ("max_epochs", "max epochs"),
    ("train_size", "train images"),
    ("val_size", "validation images"),
    ("seed", "seed"),
    ("created", "created"),
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
.figure { overflow-x: auto; }
.note { color: #8a5a00; background: #fff8e6; padding: 0.5em 0.8em; border-left: 3px solid #e0a800; }
.muted { color: #777; }
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.report",
        description="Write a study's figures and summary to one self-contained HTML file.",
        formatter_class=HelpFormatter,
    )
    add_study_options(parser, out_alias=True)
    parser.add_argument(
        "-o",
        "--output",
        type=path_option,
        default=None,
        help=f"HTML file to write (default: STUDIES_DIR/STUDY/{REPORT_NAME})",
    )
    return parser


def _fmt(value: Any) -> str:
    """A parameter or attribute value, floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _percent(value: Any) -> str:
    """An accuracy in 0..1 as a percentage; anything else as it is."""
    try:
        return f"{100 * float(value):.2f}%"
    except (TypeError, ValueError):
        return str(value)


def _objective(study: Any, value: float) -> str:
    if "accuracy" in str(study.user_attrs.get("metric", "")):
        return f"{value:.4f} ({_percent(value)})"
    return f"{value:.6g}"


def _rows(rows: list[tuple[str, str]]) -> str:
    """A two-column table; the values are already HTML."""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def summary_html(study: Any, storage_url: str) -> str:
    """The header: what the study is, its trial counts, best trial, retrain result, failures."""
    trials = study.get_trials(deepcopy=False)
    best = _best_trial(study)
    rows = _study_rows(study, storage_url, trials) + [_best_row(study, best)]
    rows += _convergence_rows(study, trials)
    rows += _retrain_rows(study.user_attrs)
    parts = [_rows(rows)]
    if best is not None:
        parts.append(f"<h3>Best trial #{best.number}: parameters</h3>")
        parts.append(_rows([(k, html.escape(_fmt(v))) for k, v in sorted(best.params.items())]))
    parts += _failed_trials_html(trials)
    return "\n".join(parts)


def _best_trial(study: Any) -> Any:
    """The best COMPLETE trial, or None."""
    try:
        return study.best_trial
    except (ValueError, RuntimeError):  # no complete trial, or a multi-objective study
        return None


def _study_rows(study: Any, storage_url: str, trials: list) -> list[tuple[str, str]]:
    """Name, storage, the recorded attributes, and the trial counts by state."""
    esc = html.escape
    attrs = study.user_attrs
    counts = Counter(t.state.name for t in trials)
    states = sorted(counts, key=lambda s: STATE_ORDER.index(s) if s in STATE_ORDER else 99)
    rows = [("study", esc(study.study_name)), ("storage", esc(redact(storage_url)))]
    rows += [(label, esc(_fmt(attrs[key]))) for key, label in STUDY_ATTRS if key in attrs]
    rows.append(
        (
            "trials",
            esc(f"{len(trials)}: " + ", ".join(f"{counts[s]} {s}" for s in states))
            if trials
            else "none yet",
        )
    )
    return rows


def _best_row(study: Any, best: Any) -> tuple[str, str]:
    if best is None:
        return ("best trial", '<span class="muted">no COMPLETE trial yet</span>')
    return (
        "best trial",
        html.escape(
            f"#{best.number}: {_objective(study, best.value)} after "
            f"{best.user_attrs.get('epochs_run', '?')} epochs"
        ),
    )


def _convergence_rows(study: Any, trials: list) -> list[tuple[str, str]]:
    """Where the best trial was found, and a --stop-when-converged stop when one happened."""
    rows = []
    found = best_found(trials, maximizes(study))
    if found is not None:
        rows.append(("best found", html.escape(found.line())))
    stop = converged_record(study)
    if isinstance(stop, dict):
        rows.append(
            (
                "stopped converged",
                html.escape(
                    f"after trial #{stop.get('trial', '?')} ({stop.get('finished', '?')} "
                    f"finished, {stop.get('complete', '?')} COMPLETE): Optuna's Terminator's "
                    f"regret bound {_percent(stop.get('regret_bound'))} < error "
                    f"{_percent(stop.get('error'))}"
                ),
            )
        )
    return rows


def _retrain_rows(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    """The latest retrain and every retrained trial, when there are any."""
    # A retrain is optional: search.retrain records the latest as `retrain` and each one as
    # `retrain:<trial number>` on the study (Optuna refuses changes to a finished trial).
    rows = []
    retrain = attrs.get("retrain")
    if isinstance(retrain, dict):
        rows.append(
            (
                "retrain",
                html.escape(
                    f"trial #{retrain.get('trial', '?')}: test accuracy "
                    f"{_percent(retrain.get('test_accuracy'))}, in {retrain.get('dir', '?')}"
                ),
            )
        )
    retrained = sorted(
        (
            value
            for key, value in attrs.items()
            if key.startswith("retrain:") and isinstance(value, dict)
        ),
        key=lambda value: value.get("trial", -1),
    )
    if retrained:
        rows.append(
            (
                "retrained trials",
                html.escape(
                    ", ".join(
                        f"#{value.get('trial', '?')}: "
                        f"test accuracy {_percent(value.get('test_accuracy'))} "
                        f"(search validation {_percent(value.get('search_val_accuracy'))})"
                        for value in retrained
                    )
                ),
            )
        )
    return rows


def _failed_trials_html(trials: list) -> list[str]:
    """The failed trials' heading and each one's recorded reason."""
    failed = [t for t in trials if t.state.name == "FAIL"]
    parts = [f"<h3>Failed trials ({len(failed)})</h3>"]
    if not failed:
        return parts + ['<p class="muted">none</p>']
    reasons = [
        (f"#{t.number}", html.escape(str(t.user_attrs.get("fail_reason", "no reason recorded"))))
        for t in failed
    ]
    return parts + [_rows(reasons)]


def section_html(section: Section, include_plotlyjs: bool) -> str:
    """One figure (or its note) under its heading."""
    head = f"<h2>{html.escape(section.title)}</h2>"
    if section.figure is None:
        return f'<section>{head}<p class="note">{html.escape(section.note or "")}</p></section>'
    div = section.figure.to_html(
        full_html=False, include_plotlyjs=include_plotlyjs, config={"displaylogo": False}
    )
    return f'<section>{head}<div class="figure">{div}</div></section>'


def report_html(study: Any, storage_url: str) -> str:
    """The whole page for `study`; plotly.js is embedded once, with the first figure."""
    sections = study_figures(study)
    body = []
    js_included = False
    for section in sections:
        body.append(section_html(section, include_plotlyjs=not js_included))
        js_included = js_included or section.figure is not None
    title = f"Study {study.study_name}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f'<p class="muted">report written {time.strftime("%Y-%m-%d %H:%M:%S")}</p>\n'
        f"{summary_html(study, storage_url)}\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_report(path: Path, page: str) -> None:
    """Write `page` to `path` atomically (a reader never sees half a report), making its folder
    (removed again when the write fails)."""
    with new_folder(path.parent):
        atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        path = check_output_file(  # before the study is read
            args.output or args.studies_dir / args.study / REPORT_NAME,
            "-o" if args.output else "--studies-dir",
        ).resolve()
        study, _, url = open_study_from_args(args)

        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        page = report_html(study, url)
        try:
            write_report(path, page)
        except OutputError:
            raise  # a full disk: exit 1, as every command
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        print(path)
    except USAGE_ERRORS as exc:
        raise SystemExit(error_exit(exc)) from None


if __name__ == "__main__":
    main()
