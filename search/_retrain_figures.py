"""The retrain's report.html: learning curves, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from training import atomic_write


def write_retrain_report(path: Path, metrics: dict[str, Any], title: str) -> None:
    """One self-contained HTML file (plotly.js inline), written atomically."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    history = metrics["history"]
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

    names = list(metrics["per_class_accuracy"])
    per_class = go.Figure(
        go.Bar(x=names, y=[100 * v for v in metrics["per_class_accuracy"].values()])
    )
    per_class.update_layout(title="Test accuracy per class (%)", yaxis_range=[0, 100], height=380)

    confusion = go.Figure(
        go.Heatmap(
            z=metrics["confusion_matrix"],
            x=names,
            y=names,
            colorscale="Blues",
            text=metrics["confusion_matrix"],
            texttemplate="%{text}",
        )
    )
    confusion.update_layout(
        title="Confusion matrix (rows: true class, columns: predicted)",
        yaxis_autorange="reversed",
        height=560,
        width=640,
    )

    facts = [
        ("test accuracy", f"{100 * metrics['test_accuracy']:.2f} %"),
        (
            "search validation accuracy",
            f"{100 * metrics['search_val_accuracy']:.2f} %"
            if metrics.get("search_val_accuracy") is not None
            else "-",
        ),
        ("epochs", metrics["epochs"]),
        ("validation", metrics["validation"]),
        ("wall time", f"{metrics['wall_time']:.0f} s"),
        ("device", metrics["device"]),
        ("seed", metrics["seed"]),
        ("project version", metrics["project_version"]),
    ]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1><table>{rows}</table>",
        curves.to_html(full_html=False, include_plotlyjs=True),
        per_class.to_html(full_html=False, include_plotlyjs=False),
        confusion.to_html(full_html=False, include_plotlyjs=False),
        "</body></html>",
    ]
    page = "\n".join(parts)
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
