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

from training import OutputError, atomic_write, check_output_file

from ._console import HelpFormatter, add_study_options, fail, open_study_from_args
from ._figures import Section, study_figures
from ._study import (
    redact,
)

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
        type=Path,
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
    esc = html.escape
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
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

    best = None
    try:
        best = study.best_trial
    except (ValueError, RuntimeError):  # no complete trial, or a multi-objective study
        pass
    if best is not None:
        rows.append(
            (
                "best trial",
                esc(
                    f"#{best.number}: {_objective(study, best.value)} after "
                    f"{best.user_attrs.get('epochs_run', '?')} epochs"
                ),
            )
        )
    else:
        rows.append(("best trial", '<span class="muted">no COMPLETE trial yet</span>'))

    # A retrain is optional: search.retrain records the latest as `retrain` and each one as
    # `retrain:<trial number>` on the study (Optuna refuses changes to a finished trial).
    retrain = attrs.get("retrain")
    if isinstance(retrain, dict):
        rows.append(
            (
                "retrain",
                esc(
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
                esc(
                    ", ".join(
                        f"#{value.get('trial', '?')}: "
                        f"test accuracy {_percent(value.get('test_accuracy'))} "
                        f"(search validation {_percent(value.get('search_val_accuracy'))})"
                        for value in retrained
                    )
                ),
            )
        )

    parts = [_rows(rows)]
    if best is not None:
        parts.append(f"<h3>Best trial #{best.number}: parameters</h3>")
        parts.append(_rows([(k, esc(_fmt(v))) for k, v in sorted(best.params.items())]))
    failed = [t for t in trials if t.state.name == "FAIL"]
    parts.append(f"<h3>Failed trials ({len(failed)})</h3>")
    if failed:
        parts.append(
            _rows(
                [
                    (
                        f"#{t.number}",
                        esc(str(t.user_attrs.get("fail_reason", "no reason recorded"))),
                    )
                    for t in failed
                ]
            )
        )
    else:
        parts.append('<p class="muted">none</p>')
    return "\n".join(parts)


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
    """Write `page` to `path` atomically (a reader never sees half a report), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:  # before the study is read
        path = check_output_file(
            args.output or args.studies_dir / args.study / REPORT_NAME,
            "-o" if args.output else "--studies-dir",
        ).resolve()
    except OutputError as exc:
        fail(str(exc))
    study, _, url = open_study_from_args(args)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    page = report_html(study, url)
    try:
        write_report(path, page)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    print(path)


if __name__ == "__main__":
    main()
