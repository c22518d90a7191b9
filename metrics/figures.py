"""Metric and emergence tables → matplotlib Figures. Plots only: every number drawn is a value of the tables.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot, so no global state and no display backend);
`save_figure` writes PNG. Sharp metrics are always drawn in SHARP_COLOR and smooth ones in SMOOTH_COLOR, each
curve as its per-model mean with markers and its bootstrap interval (ci_low..ci_high) as a band, against
non-embedding parameters on a log axis. Every line and band carries a gid, "<metric>:mean" and "<metric>:ci", so
tests and callers can find them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from metrics.emergence import format_score
from metrics.registry import HIGHER, SHARP
from metrics.schema import EMERGENCE, METRICS, validate

#: Okabe & Ito (2008) colour-blind-safe pair: vermillion for sharp (all-or-nothing) metrics, blue for smooth ones.
SHARP_COLOR = "#D55E00"
SMOOTH_COLOR = "#0072B2"
#: The best distractor in the log-prob gap figure (Okabe & Ito grey-black).
DISTRACTOR_COLOR = "#555555"
SHARP_TITLE = "Sharp (discontinuous) metrics"
SMOOTH_TITLE = "Smooth (continuous) metrics"
X_LABEL = "non-embedding parameters"
BAND_LABEL = "bootstrap CI"
BAND_ALPHA = 0.25
#: Panel size in inches; figures grow by panels so text never has to shrink.
PANEL_W, PANEL_H = 3.3, 2.5
#: Units of metrics that have one; the rest are fractions or probabilities in [0, 1].
UNITS = {
    "logprob_target": "nats",
    "logprob_target_per_token": "nats/token",
    "logprob_best_distractor": "nats",
    "margin": "nats",
    "classification_loss": "nats",
    "bleu": "0–100",
    "chrf": "0–100",
    "corpus_bleu": "0–100",
    "corpus_chrf": "0–100",
    "token_edit_distance": "tokens",
    "token_edit_distance_norm": "edits/ref. token",
    "char_edit_distance": "chars",
    "target_rank": "rank",
}
#: Panels of `sharp_vs_smooth_generative`, in order; the last panel overlays the last two names.
GENERATIVE_METRICS = ("exact_match", "bleu", "chrf", "token_edit_distance", "token_edit_distance_norm")
PREDICTED = "prob_reference"
GAP_METRICS = ("logprob_target", "logprob_best_distractor", "margin")


def y_label(metric: str, direction: str) -> str:
    """The metric name, its unit if it has one, and which way is better.

    >>> y_label("margin", "higher")
    'margin (nats)\\n↑ better'
    """
    unit = f" ({UNITS[metric]})" if metric in UNITS else ""
    return f"{metric}{unit}\n{'↑' if direction == HIGHER else '↓'} better"


def _select_task(metrics: pl.DataFrame, task: str | None) -> tuple[pl.DataFrame, str]:
    """The rows of one task; `task=None` is allowed when the table holds exactly one."""
    metrics = validate(metrics, METRICS, "metrics")
    tasks = metrics["task"].unique(maintain_order=True).to_list()
    if task is None:
        if len(tasks) != 1:
            raise ValueError(f"task: the metrics table holds tasks {tasks}; pass task= to choose one")
        task = tasks[0]
    elif task not in tasks:
        raise ValueError(f"task: {task!r} is not in the metrics table, which holds {tasks}")
    # Stable sort: within a model, metrics keep the table's order, which orders the panels.
    return metrics.filter(pl.col("task") == task).sort("non_embedding_params", "model", maintain_order=True), task


def _curve(ax: Axes, rows: pl.DataFrame, metric: str, color: str, label: str, linestyle: str = "-") -> None:
    """One metric's means (line with a marker per model) and bootstrap band against scale, on a log x axis."""
    part = rows.filter(pl.col("metric") == metric)
    x = part["non_embedding_params"].to_numpy()
    ax.fill_between(x, part["ci_low"].to_numpy(), part["ci_high"].to_numpy(), color=color, alpha=BAND_ALPHA,
                    linewidth=0, gid=f"{metric}:ci")
    ax.plot(x, part["mean"].to_numpy(), color=color, marker="o", markersize=4, linestyle=linestyle, label=label,
            gid=f"{metric}:mean")
    ax.set_xscale("log")
    ax.grid(True, which="major", alpha=0.3)


def _direction(rows: pl.DataFrame, metric: str) -> str:
    return rows.filter(pl.col("metric") == metric)["direction"][0]


def _panel(ax: Axes, rows: pl.DataFrame, metric: str, kind: str, title: str | None = None) -> None:
    color = SHARP_COLOR if kind == SHARP else SMOOTH_COLOR
    _curve(ax, rows, metric, color, "mean over items")
    ax.set_ylabel(y_label(metric, _direction(rows, metric)), fontsize=9)
    if title:
        ax.set_title(title, fontsize=9, color="#333333")
    ax.tick_params(labelsize=8)


def _group(fig: Figure | SubFigure, rows: pl.DataFrame, names: Sequence[str], kind: str, nrows: int,
           scores: dict[str, str]) -> None:
    """A grid of panels, one per metric, sharing the x axis; unused cells are removed."""
    ncols = math.ceil(len(names) / nrows)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.remove()
            continue
        _panel(ax, rows, names[k], kind, scores.get(names[k]))
        if k + ncols >= len(names):  # the lowest panel of its column
            ax.set_xlabel(X_LABEL, fontsize=9)
            ax.xaxis.set_tick_params(labelbottom=True)


def metric_grid(metrics: pl.DataFrame, emergence: pl.DataFrame | None = None, task: str | None = None) -> Figure:
    """Every metric of one task against scale, one panel each, sharp metrics in one group and smooth in the other.

    With `emergence`, each panel's title gives the curve's BIG-bench linearity L and breakthroughness B.
    """
    rows, task = _select_task(metrics, task)
    kinds = rows.unique("metric", maintain_order=True).select("metric", "kind")
    sharp = kinds.filter(pl.col("kind") == SHARP)["metric"].to_list()
    smooth = kinds.filter(pl.col("kind") != SHARP)["metric"].to_list()
    scores: dict[str, str] = {}
    if emergence is not None:
        emergence = validate(emergence, EMERGENCE, "emergence")
        for metric, lin, brk in emergence.filter(pl.col("task") == task).select(
            "metric", "linearity", "breakthroughness"
        ).iter_rows():
            scores[metric] = f"L = {format_score(lin)}, B = {format_score(brk)}"

    groups = [(SHARP_TITLE, sharp, SHARP, SHARP_COLOR), (SMOOTH_TITLE, smooth, "smooth", SMOOTH_COLOR)]
    groups = [g for g in groups if g[1]]
    nrows = min(4, max(len(g[1]) for g in groups))
    ncols = [math.ceil(len(g[1]) / nrows) for g in groups]
    fig = Figure(figsize=(PANEL_W * sum(ncols) + 0.4 * len(groups), PANEL_H * nrows + 1.0), layout="constrained")
    subfigs = fig.subfigures(1, len(groups), width_ratios=ncols, squeeze=False)[0]
    for sub, (title, names, kind, color) in zip(subfigs, groups, strict=True):
        sub.suptitle(title, color=color, fontsize=11, fontweight="bold")
        _group(sub, rows, names, kind, nrows, scores)
    legend = f"line: mean over items, band: {BAND_LABEL}"
    if scores:
        legend += "; L = linearity, B = breakthroughness (BIG-bench)"
    fig.suptitle(f"Task: {task} — every metric against scale\n({legend})", fontsize=12)
    return fig


def _require(rows: pl.DataFrame, wanted: Sequence[str], task: str, figure: str) -> list[str]:
    present = set(rows["metric"].unique().to_list())
    found = [m for m in wanted if m in present]
    if not found:
        raise ValueError(f"metrics: {figure} needs at least one of {list(wanted)} for task {task!r}; "
                         f"the table has {sorted(present)}")
    return found


def logprob_gap(metrics: pl.DataFrame, task: str | None = None) -> Figure:
    """Left: mean log-prob of the correct choice and of the best distractor; right: their gap (`margin`), with a
    zero line above which the target wins outright. All three metrics must be in the table."""
    rows, task = _select_task(metrics, task)
    found = _require(rows, GAP_METRICS, task, "logprob_gap")
    if len(found) < len(GAP_METRICS):
        missing = [m for m in GAP_METRICS if m not in found]
        raise ValueError(f"metrics: logprob_gap needs {list(GAP_METRICS)} for task {task!r}; missing {missing}")
    fig = Figure(figsize=(2 * PANEL_W + 1.6, PANEL_H + 1.4), layout="constrained")
    left, right = fig.subplots(1, 2, sharex=True)
    _curve(left, rows, "logprob_target", SMOOTH_COLOR, "correct choice (logprob_target)")
    _curve(left, rows, "logprob_best_distractor", DISTRACTOR_COLOR, "best distractor (logprob_best_distractor)",
           linestyle="--")
    left.set_ylabel(f"mean log P(choice | context) ({UNITS['logprob_target']})\n↑ more likely", fontsize=9)
    left.set_title("Log-probability of each choice", fontsize=10)
    left.legend(fontsize=8, loc="best")
    _curve(right, rows, "margin", SMOOTH_COLOR, "margin = correct − best distractor")
    right.axhline(0.0, color="black", linewidth=0.8, linestyle=":", label="0: target wins above")
    right.set_ylabel(y_label("margin", _direction(rows, "margin")), fontsize=9)
    right.set_title("Gap between them (margin)", fontsize=10)
    right.legend(fontsize=8, loc="best")
    for ax in (left, right):
        ax.set_xlabel(X_LABEL, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"Task: {task} — does the gap between correct and best wrong choice widen with scale? "
                 f"(band: {BAND_LABEL})", fontsize=11)
    return fig


def sharp_vs_smooth_generative(metrics: pl.DataFrame, task: str | None = None) -> Figure:
    """Exact match (sharp) beside BLEU, chrF and token edit distance (smooth) against scale, and a last panel with
    measured exact match and the predicted Π_t p_t of the reference (`prob_reference`) on the same axes.
    Absent metrics are skipped; a table with none of them raises ValueError."""
    rows, task = _select_task(metrics, task)
    found = _require(rows, (*GENERATIVE_METRICS, PREDICTED), task, "sharp_vs_smooth_generative")
    singles = [m for m in found if m != PREDICTED]
    overlay = [m for m in ("exact_match", PREDICTED) if m in found]
    n_panels = len(singles) + bool(overlay)
    ncols = min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(PANEL_W * ncols + 0.6, PANEL_H * nrows + 1.2), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, sharex=True, squeeze=False).flat)
    kind_of = dict(rows.unique("metric").select("metric", "kind").iter_rows())
    for ax, metric in zip(axes, singles, strict=False):
        _panel(ax, rows, metric, kind_of[metric], f"{metric} ({kind_of[metric]})")
    if overlay:
        last = axes[len(singles)]
        styles = {"exact_match": (SHARP_COLOR, "measured exact match", "-"),
                  PREDICTED: (SMOOTH_COLOR, "predicted Π p(reference token)", "--")}
        for metric in overlay:
            color, label, linestyle = styles[metric]
            _curve(last, rows, metric, color, label, linestyle)
        last.set_ylabel("fraction of items / probability\n↑ better", fontsize=9)
        last.set_title("Measured vs predicted exact match", fontsize=9)
        last.legend(fontsize=8, loc="upper left")
        last.tick_params(labelsize=8)
    for ax in axes[n_panels:]:
        ax.remove()
    for k in range(n_panels):
        if k + ncols >= n_panels:  # lowest panel of its column
            axes[k].set_xlabel(X_LABEL, fontsize=9)
            axes[k].xaxis.set_tick_params(labelbottom=True)
    fig.suptitle(f"Task: {task} — sharp exact match vs smooth text metrics (band: {BAND_LABEL})", fontsize=11)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG at 150 dpi, cropped to its content; returns the path."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=150, bbox_inches="tight")
    return path
