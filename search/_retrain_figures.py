"""The retrain's report.html: learning curves, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from training import atomic_write


def write_retrain_report(path: Path, metrics: dict[str, Any], title: str) -> None:
    """One self-contained HTML file (plotly.js inline), written atomically."""
    names = list(metrics["per_class_accuracy"])
    figures = (
        _learning_curves(metrics["history"]),
        _per_class_figure(names, list(metrics["per_class_accuracy"].values())),
        _confusion_figure(names, metrics["confusion_matrix"]),
    )
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in _facts(metrics)
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1><table>{rows}</table>",
        # plotly.js once, with the first figure.
        *(f.to_html(full_html=False, include_plotlyjs=i == 0) for i, f in enumerate(figures)),
        "</body></html>",
    ]
    page = "\n".join(parts)
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


def _learning_curves(history: list[dict[str, Any]]) -> Any:
    """Loss and accuracy (%) per epoch, training and validation, side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    epochs = [h["epoch"] for h in history]
    curves = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy (%)"))
    for key, name, col in (
        ("train_loss", "train loss", 1),
        ("val_loss", "validation loss", 1),
        ("train_accuracy", "train accuracy", 2),
        ("val_accuracy", "validation accuracy", 2),
    ):
        values = [h[key] for h in history]
        if all(v is None for v in values):
            continue
        if col == 2:
            values = [100 * v if v is not None else None for v in values]
        curves.add_trace(go.Scatter(x=epochs, y=values, name=name, mode="lines"), row=1, col=col)
    curves.update_xaxes(title_text="epoch")
    curves.update_layout(title="Training and validation per epoch", height=420)
    return curves


def _per_class_figure(names: list[str], accuracies: list[float]) -> Any:
    import plotly.graph_objects as go

    per_class = go.Figure(go.Bar(x=names, y=[100 * v for v in accuracies]))
    per_class.update_layout(title="Test accuracy per class (%)", yaxis_range=[0, 100], height=380)
    return per_class


def _confusion_figure(names: list[str], matrix: list[list[int]]) -> Any:
    import plotly.graph_objects as go

    confusion = go.Figure(
        go.Heatmap(
            z=matrix, x=names, y=names, colorscale="Blues", text=matrix, texttemplate="%{text}"
        )
    )
    confusion.update_layout(
        title="Confusion matrix (rows: true class, columns: predicted)",
        yaxis_autorange="reversed",
        height=560,
        width=640,
    )
    return confusion


def _facts(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The table above the figures: the test result and what the run was."""
    search_val = metrics.get("search_val_accuracy")
    return [
        ("test accuracy", f"{100 * metrics['test_accuracy']:.2f} %"),
        (
            "search validation accuracy",
            f"{100 * search_val:.2f} %" if search_val is not None else "-",
        ),
        ("epochs", metrics["epochs"]),
        ("validation", metrics["validation"]),
        ("wall time", f"{metrics['wall_time']:.0f} s"),
        ("device", metrics["device"]),
        ("seed", metrics["seed"]),
        ("project version", metrics["project_version"]),
    ]
