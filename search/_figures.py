"""The report's plotly figures of a study, each one allowed to fail on its own.

A figure that cannot be drawn (too few trials, a plotting error) becomes a `Section` with a
short note instead, so one bad figure never costs the whole report.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._converge import (
    MIN_TRIALS,
    best_found,
    estimates,
    maximizes,
    scored_images,
    terminator_missing,
)

# Trial states in the order and colours the learning curves use (plotly's default palette).
STATE_COLORS = {
    "COMPLETE": "#1f77b4",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#7f7f7f",
    "WAITING": "#bcbd22",
}


class Skip(Exception):
    """A figure that does not apply to this study yet; the message says why, for the page."""


@dataclass(frozen=True)
class Section:
    """One figure of the report: `figure` is a plotly Figure, or None with `note` saying why."""

    title: str
    figure: Any | None
    note: str | None = None


def _complete(study: Any) -> list[Any]:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _need_complete(study: Any, count: int) -> None:
    have = len(_complete(study))
    if have < count:
        raise Skip(
            f"needs at least {count} COMPLETE trial{'s' if count > 1 else ''}; the study has {have}"
        )


def optimization_history(study: Any) -> Any:
    """Each complete trial's objective and the best so far, by trial number; the best trial is
    marked, with where it was found among the finished trials."""
    import optuna.visualization as vis

    _need_complete(study, 1)
    fig = vis.plot_optimization_history(study)
    found = best_found(study.get_trials(deepcopy=False), maximizes(study))
    if found is not None:
        best = study.best_trial
        fig.add_vline(x=best.number, line={"dash": "dot", "color": "#2ca02c"})
        fig.add_annotation(
            x=best.number, y=best.value, text=found.line(), showarrow=True, arrowhead=2, ax=-40
        )
        fig.update_layout(title=f"Optimization History Plot: {found.line()}")
    return fig


def convergence(study: Any) -> Any:
    """Optuna's Terminator after each COMPLETE trial: its regret bound against the best trial's
    error on the split (search/_converge.py); below it, from MIN_TRIALS on, more trials are
    unlikely to help."""
    import plotly.graph_objects as go

    reason = terminator_missing()
    if reason:
        raise Skip(reason)
    _need_complete(study, 2)
    points = estimates(study.get_trials(deepcopy=False), scored_images(study), maximizes(study))
    fig = go.Figure()
    for judged, name, opacity in ((False, "before judging", 0.35), (True, "judged", 1.0)):
        shown = [p for p in points if p.judged == judged]
        fig.add_trace(
            go.Scatter(
                x=[p.number for p in shown],
                y=[p.regret_bound for p in shown],
                mode="lines+markers",
                name=f"regret bound ({name})",
                line={"color": f"rgba(99, 110, 250, {opacity})"},
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[p.number for p in points],
            y=[p.error for p in points],
            mode="lines",
            name="error of the best (split)",
            line={"color": "rgb(239, 85, 59)"},
        )
    )
    stop = next((p for p in points if p.converged), None)
    if stop is not None:
        fig.add_vline(x=stop.number, line={"dash": "dash", "color": "#2ca02c"})
    said = f"would stop after trial #{stop.number}" if stop else "not converged"
    fig.update_layout(
        title=f"Terminator: regret bound against error ({said}; judged from {MIN_TRIALS} "
        "COMPLETE trials)",
        xaxis_title="trial number",
        yaxis_title=f"{study.user_attrs.get('metric', 'objective')} (regret bound, error)",
    )
    return fig


def learning_curves(study: Any) -> Any:
    """Every trial's intermediate values (validation metric per epoch), coloured by state.

    Pruned trials end early with an x at the epoch where they were stopped.
    """
    import plotly.graph_objects as go

    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        raise Skip("no trial has reported an intermediate value yet")
    metric = study.user_attrs.get("metric", "intermediate value")
    fig = go.Figure()
    in_legend: set[str] = set()
    for trial in sorted(
        trials,
        key=lambda t: (
            list(STATE_COLORS).index(t.state.name)
            if t.state.name in STATE_COLORS
            else len(STATE_COLORS)
        ),
    ):
        state = trial.state.name
        steps = sorted(trial.intermediate_values)
        values = [trial.intermediate_values[s] for s in steps]
        stopped = state in ("PRUNED", "FAIL")
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=values,
                mode="lines+markers",
                name=state,
                legendgroup=state,
                showlegend=state not in in_legend,
                line={
                    "color": STATE_COLORS.get(state, "#333333"),
                    "dash": "dot" if stopped else "solid",
                    "width": 1.5,
                },
                # Only the last point of a stopped trial gets the x: that is where it ended.
                marker={
                    "symbol": ["circle"] * (len(steps) - 1) + ["x" if stopped else "circle"],
                    "size": [5] * (len(steps) - 1) + [10 if stopped else 5],
                },
                hovertemplate=f"trial #{trial.number} ({state})<br>step %{{x}}<br>"
                f"{metric} %{{y:.4f}}<extra></extra>",
            )
        )
        in_legend.add(state)
    fig.update_layout(
        title="Learning Curves (intermediate values by trial state)",
        xaxis_title="step (epoch)",
        yaxis_title=metric,
        legend_title="trial state",
    )
    return fig


def parallel_coordinates(study: Any) -> Any:
    """Complete trials' parameters against the objective."""
    import optuna.visualization as vis

    _need_complete(study, 1)
    return vis.plot_parallel_coordinate(study)


def param_importances(study: Any) -> Any:
    """How much each parameter explains the objective over the complete trials."""
    import optuna.visualization as vis

    _need_complete(study, 2)
    try:
        # PED-ANOVA needs no scikit-learn (optuna 4's default, fANOVA, does).
        from optuna.importance import PedAnovaImportanceEvaluator

        evaluator = PedAnovaImportanceEvaluator()
    except ImportError:
        evaluator = None
    with warnings.catch_warnings():
        # With few trials PED-ANOVA warns per parameter; the title says how many trials it had.
        warnings.simplefilter("ignore", UserWarning)
        fig = vis.plot_param_importances(study, evaluator=evaluator)
    name = type(evaluator).__name__ if evaluator is not None else "optuna's default evaluator"
    fig.update_layout(
        title=f"Hyperparameter Importances ({name}, {len(_complete(study))} complete trials)"
    )
    return fig


def slices(study: Any) -> Any:
    """The objective against each parameter, one panel per parameter."""
    import optuna.visualization as vis

    _need_complete(study, 1)
    return vis.plot_slice(study)


def timeline(study: Any) -> Any:
    """When each trial ran, coloured by state (shows how busy the workers were)."""
    import optuna.visualization as vis

    if not study.get_trials(deepcopy=False):
        raise Skip("the study has no trials")
    return vis.plot_timeline(study)


FIGURES: list[tuple[str, Callable[[Any], Any]]] = [
    ("Optimization history", optimization_history),
    ("Convergence", convergence),
    ("Learning curves", learning_curves),
    ("Parallel coordinates", parallel_coordinates),
    ("Parameter importances", param_importances),
    ("Slices", slices),
    ("Timeline", timeline),
]


def study_figures(study: Any) -> list[Section]:
    """Every figure of FIGURES for `study`, in order; failures become notes."""
    sections = []
    for title, build in FIGURES:
        try:
            sections.append(Section(title, build(study)))
        except Skip as exc:
            sections.append(Section(title, None, f"not drawn: {exc}"))
        except Exception as exc:  # one broken figure must not cost the others
            reason = (str(exc).strip().splitlines() or [""])[0]
            sections.append(
                Section(
                    title, None, f"could not be drawn: {type(exc).__name__}: {reason}".rstrip(": ")
                )
            )
    return sections
