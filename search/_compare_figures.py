"""search.compare's compare.html: each entry's runs seed by seed with the mean and its 95 %
interval, and the paired differences to the first entry; self-contained (plotly.js inline)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training import atomic_write_text

from ._compare_stats import EntrySummary, Interval, paired_difference

# plotly's default palette, one colour per seed (cycled), the same in both figures.
_SEED_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def write_compare_report(
    path: Path,
    summaries: Sequence[EntrySummary],
    *,
    title: str,
    facts: Sequence[tuple[str, str]],
    table: str,
    verdict: str,
) -> None:
    """One HTML file: the facts of the comparison, its verdict and table, then both figures."""
    figures = (_accuracy_figure(summaries), _difference_figure(summaries))
    rows = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>" for key, value in facts
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "table.runs td,table.runs th{border:1px solid #ccc;padding:.2em .5em}"
        "table.runs{border-collapse:collapse;margin:1em 0}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><table>{rows}</table>",
        f"<p><b>{html.escape(verdict)}</b></p>{_html_table(table)}",
        # plotly.js once, with the first figure.
        *(
            f.to_html(full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False})
            for i, f in enumerate(figures)
        ),
        "</body></html>",
    ]
    atomic_write_text(path, "\n".join(parts))


def _html_table(markdown: str) -> str:
    """The markdown table (`markdown_table`) as an HTML table."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if "---" not in line]
    cells = [[html.escape(cell.strip()) for cell in row] for row in rows]
    head = "".join(f"<th>{cell}</th>" for cell in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table class='runs'><tr>{head}</tr>{body}</table>"


def _accuracy_figure(summaries: Sequence[EntrySummary]) -> Any:
    """Test accuracy: one line per seed across the entries (the pairing), and each entry's mean
    with its 95 % interval."""
    import plotly.graph_objects as go

    names = [s.name for s in summaries]
    figure = go.Figure()
    for i, seed in enumerate(_seeds(summaries)):
        figure.add_trace(
            go.Scatter(
                x=names,
                y=[s.test.get(seed) for s in summaries],
                mode="lines+markers",
                name=f"seed {seed}",
                line={"width": 1, "color": _SEED_COLORS[i % len(_SEED_COLORS)]},
                opacity=0.7,
            )
        )
    intervals = [s.test_interval() for s in summaries]
    figure.add_trace(_mean_trace(names, intervals, "mean, 95 % CI"))
    figure.update_layout(
        title="Test accuracy (%) per seed, and the mean with its 95 % t interval",
        yaxis_title="test accuracy (%)",
        height=460,
    )
    return figure


def _difference_figure(summaries: Sequence[EntrySummary]) -> Any:
    """Each entry's paired difference to the first, seed by seed, and its mean with its 95 %
    interval; 0 marked."""
    import plotly.graph_objects as go

    base, others = summaries[0], list(summaries[1:])
    names = [s.name for s in others]
    figure = go.Figure()
    for i, seed in enumerate(_seeds(summaries)):
        diffs = [
            s.test[seed] - base.test[seed] if seed in s.test and seed in base.test else None
            for s in others
        ]
        figure.add_trace(
            go.Scatter(
                x=names,
                y=diffs,
                mode="markers",
                name=f"seed {seed}",
                marker={"color": _SEED_COLORS[i % len(_SEED_COLORS)], "size": 8},
                showlegend=False,
            )
        )
    intervals = [paired_difference(s.test, base.test) for s in others]
    figure.add_trace(_mean_trace(names, intervals, "mean difference, 95 % CI"))
    figure.add_hline(y=0, line={"dash": "dot", "color": "#555"})
    figure.update_layout(
        title=f"Paired difference to {base.name} (points of test accuracy), per seed and mean "
        "with its 95 % t interval",
        yaxis_title=f"minus {base.name} (points)",
        height=460,
    )
    return figure


def _mean_trace(names: Sequence[str], intervals: Sequence[Interval | None], label: str) -> Any:
    """Black diamonds at the means, error bars to the interval's ends (none for one seed)."""
    import plotly.graph_objects as go

    means = [iv.mean if iv else None for iv in intervals]
    above = [iv.high - iv.mean if iv and iv.high is not None else 0 for iv in intervals]
    below = [iv.mean - iv.low if iv and iv.low is not None else 0 for iv in intervals]
    return go.Scatter(
        x=list(names),
        y=means,
        mode="markers",
        name=label,
        marker={"symbol": "diamond", "size": 12, "color": "black"},
        error_y={"type": "data", "array": above, "arrayminus": below, "visible": True},
    )


def _seeds(summaries: Sequence[EntrySummary]) -> list[int]:
    return sorted({seed for s in summaries for seed in s.test})
