"""Metric, emergence, comparison, trend and fit tables → matplotlib Figures. Plots only: every number drawn is a
value of the tables (a fitted shape is drawn from its parameters in the fits table).

Figures are built on `matplotlib.figure.Figure` directly (no pyplot, so no global state and no display backend);
`save_figure` writes PNG. Sharp metrics are always drawn in SHARP_COLOR and smooth ones in SMOOTH_COLOR, each
curve as its per-model mean with markers and its bootstrap interval (ci_low..ci_high) as a band, against the
table's scale axis on a log axis: its `x` column, named by `x_axis` (non-embedding parameters for a table without
them). Every line and band carries a gid, "<metric>:mean" and "<metric>:ci", so
tests and callers can find them.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from metrics.compare import CANNOT_TELL, COMPARISONS, METRIC, MODELS, NO_JUMP
from metrics.curves import DEFAULT_X, axis_label
from metrics.fits import FITS, predict_shape
from metrics.numbers import format_breakthroughness, format_count, format_with_interval
from metrics.registry import HIGHER, SHARP
from metrics.schema import DEFAULT_FORMULATION, EMERGENCE, METRICS, curve_label, validate
from metrics.trends import ITEM_CORRELATIONS, TRENDS

#: Okabe & Ito (2008) colour-blind-safe pair: vermillion for sharp (all-or-nothing) metrics, blue for smooth ones.
SHARP_COLOR = "#D55E00"
SMOOTH_COLOR = "#0072B2"
#: The best distractor in the log-prob gap figure (Okabe & Ito grey-black).
DISTRACTOR_COLOR = "#555555"
SHARP_TITLE = "Sharp (discontinuous) metrics"
SMOOTH_TITLE = "Smooth (continuous) metrics"
X_LABEL = axis_label(DEFAULT_X)  # the default axis; `x_label(rows)` names the table's own
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
#: Predictions of exact match from teacher-forced scores (Schaeffer et al. 2023), overlaid on the measured one.
PREDICTIONS = ("prob_reference", "token_accuracy_pow_len")
GAP_METRICS = ("logprob_target", "logprob_best_distractor", "margin")
#: The best-fitting shape drawn over a metric's points, and its location interval.
FIT_COLOR = "#333333"
#: More pairs than this and the sharp-versus-smooth figure shows the discontinuous metrics' pairs only.
MAX_PAIRS = 40
#: Verdict colours of the sharp-versus-smooth figure (Okabe & Ito): the metric, the models, cannot tell, no jump.
VERDICT_COLORS = {METRIC: "#D55E00", MODELS: "#009E73", CANNOT_TELL: "#999999", NO_JUMP: "#56B4E9"}


def _suptitle(fig: Figure, text: str, fontsize: float) -> None:
    """The figure's title, each line wrapped at spaces to the figure's width (constrained layout does not wrap,
    and a title wider than the figure would be cropped when saved)."""
    per_line = max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))  # ~0.55 em per character
    lines = [textwrap.fill(line, per_line, break_long_words=False) for line in text.split("\n")]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


def y_label(metric: str, direction: str) -> str:
    """The metric name, its unit if it has one, and which way is better.

    >>> y_label("margin", "higher")
    'margin (nats)\\n↑ better'
    """
    unit = f" ({UNITS[metric]})" if metric in UNITS else ""
    return f"{metric}{unit}\n{'↑' if direction == HIGHER else '↓'} better"


def _x_column(rows: pl.DataFrame) -> str:
    """The column holding the scale axis: `x` when the table has it, else non_embedding_params."""
    return "x" if "x" in rows.columns else DEFAULT_X


def x_label(rows: pl.DataFrame) -> str:
    """The x-axis label of a metric table's rows: the name of its scale axis (with its unit where one is known).

    >>> x_label(pl.DataFrame({"x_axis": ["compute"]})), x_label(pl.DataFrame({"mean": [1.0]}))
    ('training compute 6·N·D (FLOPs)', 'non-embedding parameters')
    """
    if "x_axis" in rows.columns and rows.height:
        return axis_label(rows["x_axis"][0])
    return X_LABEL


def _pick(frame: pl.DataFrame, task: str | None, formulation: str | None, table: str
          ) -> tuple[pl.DataFrame, str, str]:
    """The rows of one (task, formulation); either may be None when the table holds exactly one."""
    frame = frame if "formulation" in frame.columns else frame.with_columns(
        pl.lit(DEFAULT_FORMULATION).alias("formulation"))
    task = _choose("task", task, frame["task"].unique(maintain_order=True).to_list(), f"the {table} table")
    rows = frame.filter(pl.col("task") == task)
    formulation = _choose("formulation", formulation, rows["formulation"].unique(maintain_order=True).to_list(),
                          f"task {task!r}")
    return rows.filter(pl.col("formulation") == formulation), task, formulation


def _choose(what: str, given: str | None, present: list[str], where: str) -> str:
    """`given` when `where` has it; the only value present when `given` is None; else one line naming both."""
    if given is None:
        if len(present) != 1:
            raise ValueError(f"{what}: {where} holds {present}; pass {what}= to choose one")
        return present[0]
    if given not in present:
        raise ValueError(f"{what}: {given!r} is not in {where}, which holds {present}")
    return given


def _select_task(metrics: pl.DataFrame, task: str | None, formulation: str | None = None
                 ) -> tuple[pl.DataFrame, str, str]:
    """The metric rows of one (task, formulation), ordered along the scale axis; see `_pick`."""
    metrics = validate(metrics, METRICS, "metrics")
    rows, task, formulation = _pick(metrics, task, formulation, "metrics")
    return rows.sort(_x_column(rows), "model", maintain_order=True), task, formulation


def _curve(ax: Axes, rows: pl.DataFrame, metric: str, color: str, label: str, linestyle: str = "-",
           gid: str | None = None) -> None:
    """One metric's means (line with a marker per model) and bootstrap band against scale, on a log x axis; the
    artists' gids are "<gid>:mean" and "<gid>:ci" (gid defaults to the metric)."""
    part = rows.filter(pl.col("metric") == metric)
    x = part[_x_column(part)].to_numpy()
    gid = gid or metric
    ax.fill_between(x, part["ci_low"].to_numpy(), part["ci_high"].to_numpy(), color=color, alpha=BAND_ALPHA,
                    linewidth=0, gid=f"{gid}:ci")
    ax.plot(x, part["mean"].to_numpy(), color=color, marker="o", markersize=4, linestyle=linestyle, label=label,
            gid=f"{gid}:mean")
    ax.set_xscale("log")
    positive = x[x > 0]
    if positive.size and positive.max() >= 10 * positive.min():
        # a decade or more: the labelled decades suffice, and minor log ticks are half of a large figure's drawing
        ax.xaxis.set_minor_locator(NullLocator())
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
           scores: dict[str, str], fits: dict[str, dict]) -> None:
    """A grid of panels, one per metric, sharing the x axis; unused cells are removed."""
    ncols = math.ceil(len(names) / nrows)
    axes = list(fig.subplots(nrows, ncols, sharex=True, squeeze=False).flat)
    for ax, name in zip(axes, names, strict=False):
        _panel(ax, rows, name, kind, scores.get(name))
        if name in fits:
            _fit_overlay(ax, rows, fits[name])
    _finish_grid(axes, len(names), ncols, x_label(rows), 9)


def _finish_grid(axes: Sequence[Axes], n_used: int, ncols: int, xlabel: str, fontsize: float) -> None:
    """Remove a grid's unused cells (`axes` row-major, the first `n_used` drawn) and label the x axis of the lowest
    drawn panel of each column."""
    for ax in axes[n_used:]:
        ax.remove()
    for k in range(n_used):
        if k + ncols >= n_used:
            axes[k].set_xlabel(xlabel, fontsize=fontsize)
            axes[k].xaxis.set_tick_params(labelbottom=True)


def _fit_overlay(ax: Axes, rows: pl.DataFrame, fit: dict) -> None:
    """The best shape as a thin dashed line over the data's range; its location interval as a grey span."""
    x = rows.filter(pl.col("metric") == fit["metric"])[_x_column(rows)].to_numpy().astype(float)
    x = x[x > 0]
    if x.size < 2 or fit["params"] is None:
        return
    t = np.linspace(np.log10(x.min()), np.log10(x.max()), 200)
    ax.plot(10.0**t, predict_shape(fit["shape"], json.loads(fit["params"]), t), color=FIT_COLOR, linewidth=0.9,
            linestyle="--", gid=f"{fit['metric']}:fit")
    if fit["location"] is not None and not fit["location_censored"]:
        ax.axvspan(fit["location_low"], fit["location_high"], color=FIT_COLOR, alpha=0.12, linewidth=0,
                   gid=f"{fit['metric']}:location")


def _index_title(row: dict) -> str:
    """Panel title: L and B with their intervals (B as a bound when resolution-limited)."""
    b = format_breakthroughness(row)
    return f"L = {format_with_interval(row, 'linearity')}\nB {b if b.startswith('≥') else '= ' + b}"


def _fit_title(fit: dict) -> str:
    if fit["location"] is None:
        return f"best fit: {fit['shape']} (AIC weight {fit['aic_weight']:.2f})"
    where = "midpoint" if fit["shape"] == "logistic" else "change point"
    span = "not identified" if fit["location_censored"] else \
        f"[{format_count(fit['location_low'])}, {format_count(fit['location_high'])}]"
    return f"best fit: {fit['shape']} (AIC weight {fit['aic_weight']:.2f}),\n{where} {format_count(fit['location'])} " \
           f"{span}"


def metric_grid(metrics: pl.DataFrame, emergence: pl.DataFrame | None = None, task: str | None = None,
                fits: pl.DataFrame | None = None, formulation: str | None = None) -> Figure:
    """Every metric of one task against scale, one panel each, sharp metrics in one group and smooth in the other.

    With `emergence`, each panel's title gives the curve's BIG-bench linearity L and breakthroughness B with their
    bootstrap intervals (B as a lower bound when it is resolution-limited). With `fits`, the best-fitting shape is
    drawn as a dashed line and its location interval (midpoint or change point) as a grey span, and named in the
    title.
    """
    rows, task, formulation = _select_task(metrics, task, formulation)
    kinds = rows.unique("metric", maintain_order=True).select("metric", "kind")
    sharp = kinds.filter(pl.col("kind") == SHARP)["metric"].to_list()
    smooth = kinds.filter(pl.col("kind") != SHARP)["metric"].to_list()
    scores: dict[str, str] = {}
    best: dict[str, dict] = {}
    if fits is not None:
        fits = validate(fits, FITS, "fits")
        best = {r["metric"]: r for r in _pick(fits, task, formulation, "fits")[0].filter(pl.col("best")
                                                                                         ).iter_rows(named=True)}
    if emergence is not None:
        emergence = validate(emergence, EMERGENCE, "emergence")
        for row in _pick(emergence, task, formulation, "emergence")[0].iter_rows(named=True):
            scores[row["metric"]] = _index_title(row)
    for metric, fit in best.items():
        scores[metric] = (scores[metric] + "\n" if metric in scores else "") + _fit_title(fit)

    groups = [(SHARP_TITLE, sharp, SHARP, SHARP_COLOR), (SMOOTH_TITLE, smooth, "smooth", SMOOTH_COLOR)]
    groups = [g for g in groups if g[1]]
    nrows = min(4, max(len(g[1]) for g in groups))
    ncols = [math.ceil(len(g[1]) / nrows) for g in groups]
    title_lines = max((text.count("\n") + 1 for text in scores.values()), default=0)
    panel_h = PANEL_H + 0.17 * title_lines
    fig = Figure(figsize=(PANEL_W * sum(ncols) + 0.4 * len(groups), panel_h * nrows + 1.0), layout="constrained")
    subfigs = fig.subfigures(1, len(groups), width_ratios=ncols, squeeze=False)[0]
    for sub, (title, names, kind, color) in zip(subfigs, groups, strict=True):
        sub.suptitle(title, color=color, fontsize=11, fontweight="bold")
        _group(sub, rows, names, kind, nrows, scores, best)
    legend = f"line: mean over items, band: {BAND_LABEL}"
    if emergence is not None:
        legend += "; L = linearity, B = breakthroughness (BIG-bench) with 95% intervals"
    if best:
        legend += ";\ndashed: best-fitting shape (AIC), grey span: its midpoint or change point with 95% interval " \
                  "(conditional on that shape)"
    _suptitle(fig, f"Task: {curve_label(task, formulation)} — every metric against scale\n({legend})", fontsize=12)
    return fig


def _require(rows: pl.DataFrame, wanted: Sequence[str], task: str, figure: str) -> list[str]:
    present = set(rows["metric"].unique().to_list())
    found = [m for m in wanted if m in present]
    if not found:
        raise ValueError(f"metrics: {figure} needs at least one of {list(wanted)} for task {task!r}; "
                         f"the table has {sorted(present)}")
    return found


def logprob_gap(metrics: pl.DataFrame, task: str | None = None, formulation: str | None = None) -> Figure:
    """Left: mean log-prob of the correct choice and of the best distractor; right: their gap (`margin`), with a
    zero line above which the target wins outright. All three metrics must be in the table."""
    rows, task, formulation = _select_task(metrics, task, formulation)
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
        ax.set_xlabel(x_label(rows), fontsize=9)
        ax.tick_params(labelsize=8)
    _suptitle(fig, f"Task: {curve_label(task, formulation)} — does the gap between correct and best wrong choice widen "
                   "with scale? "
                 f"(band: {BAND_LABEL})", fontsize=11)
    return fig


def sharp_vs_smooth_generative(metrics: pl.DataFrame, task: str | None = None, formulation: str | None = None
                               ) -> Figure:
    """Exact match beside BLEU, chrF and token edit distance against scale, and a last panel with measured exact
    match and its two predictions from teacher-forced scores on the same axes: Π_t p_t of the reference
    (`prob_reference`) and per-token accuracy^L (`token_accuracy_pow_len`). Absent metrics are skipped; a table
    with none of them raises ValueError."""
    rows, task, formulation = _select_task(metrics, task, formulation)
    found = _require(rows, (*GENERATIVE_METRICS, *PREDICTIONS), task, "sharp_vs_smooth_generative")
    singles = [m for m in found if m not in PREDICTIONS]
    overlay = [m for m in ("exact_match", *PREDICTIONS) if m in found]
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
                  "prob_reference": ("#222222", "Π p(reference token), teacher-forced", "--"),
                  "token_accuracy_pow_len": ("#777777", "per-token accuracy ^ length", ":")}
        for metric in overlay:
            color, label, linestyle = styles[metric]
            _curve(last, rows, metric, color, label, linestyle)
        last.set_ylabel("fraction of items / probability\n↑ better", fontsize=9)
        last.set_title("Measured vs predicted exact match", fontsize=9)
        last.legend(fontsize=8, loc="upper left")
        last.tick_params(labelsize=8)
    _finish_grid(axes, n_panels, ncols, x_label(rows), 9)
    _suptitle(fig, f"Task: {curve_label(task, formulation)} — exact match against graded text metrics and its predictions "
                   f"(band: {BAND_LABEL})",
                 fontsize=11)
    return fig


def sharp_smooth_comparison(emergence: pl.DataFrame, comparisons: pl.DataFrame, task: str | None = None,
                            formulation: str | None = None) -> Figure:
    """Left: how concentrated each metric's change is (largest-step share with its interval; grey tick: the share
    steady change with the curve's own noise would reach; dashed line: the noise-free steady share). Right: the
    paired difference sharp − smooth for every pair, coloured by the verdict it leads to (metrics/compare.py)."""
    emergence = validate(emergence, EMERGENCE, "emergence")
    comparisons = validate(comparisons, COMPARISONS, "comparisons")
    rows, task, formulation = _pick(emergence, task, formulation, "emergence")
    rows = rows.filter(pl.col("largest_step_share").is_not_null()).sort(
        "kind", "largest_step_share")
    pairs = comparisons.filter((pl.col("task") == task) & (pl.col("formulation") == formulation)).sort(
        "sharp_metric", "share_difference")
    if rows.is_empty():
        raise ValueError(f"emergence: no curve of task {task!r} has a largest-step share (needs 3 models)")
    shown_pairs = "every pair"
    if pairs.height > MAX_PAIRS:  # the all-or-nothing metrics' pairs; every pair is in comparisons.parquet
        discontinuous = rows.filter(pl.col("taxonomy") == "discontinuous")["metric"].to_list()
        pairs = pairs.filter(pl.col("sharp_metric").is_in(discontinuous))
        shown_pairs = "the discontinuous metrics' pairs\n(every pair is in comparisons.parquet)"
    n_rows = max(rows.height, pairs.height, 4)
    longest = max((len(f"{m} ({k})") for m, k in rows.select("metric", "kind").iter_rows()), default=10) + \
        max((len(f"{a} − {b} ★") for a, b in pairs.select("sharp_metric", "smooth_metric").iter_rows()), default=10)
    fig = Figure(figsize=(8.5 + 0.075 * longest, 0.24 * n_rows + 2.2), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.15]})
    y = np.arange(rows.height)
    for j, r in enumerate(rows.iter_rows(named=True)):
        color = SHARP_COLOR if r["kind"] == SHARP else SMOOTH_COLOR
        low, high = r["largest_step_share_ci_low"], r["largest_step_share_ci_high"]
        if low is not None:
            left.plot([low, high], [j, j], color=color, linewidth=2, alpha=0.6)
        left.plot(r["largest_step_share"], j, "o", color=color, markersize=5, gid=f"{r['metric']}:share")
        if r["steady_share_threshold"] is not None:
            left.plot(r["steady_share_threshold"], j, "|", color="#777777", markersize=9, markeredgewidth=1.5)
    steady = rows["steady_share"].drop_nulls()
    if len(steady):
        left.axvline(steady[0], color="#777777", linestyle="--", linewidth=1,
                     label=f"steady change, no noise ({steady[0]:.2f})")
    left.plot([], [], "|", color="#777777", markersize=9, markeredgewidth=1.5,
              label="steady change with this curve's noise (95%)")
    left.set_yticks(y, [f"{m} ({k})" for m, k in rows.select("metric", "kind").iter_rows()], fontsize=8)
    left.set_xlim(0, 1.02)
    left.set_xlabel("share of the whole change made in the largest step", fontsize=9)
    left.set_title("How concentrated is each curve's change?", fontsize=10)
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.03 - 0.6 / max(n_rows, 4)), ncols=2)
    left.grid(True, axis="x", alpha=0.3)

    labels = []
    for j, r in enumerate(pairs.iter_rows(named=True)):
        color = VERDICT_COLORS.get(r["verdict"], "#999999")
        if r["share_difference_ci_low"] is not None:
            right.plot([r["share_difference_ci_low"], r["share_difference_ci_high"]], [j, j], color=color,
                       linewidth=2, alpha=0.7)
        if r["share_difference"] is not None:
            right.plot(r["share_difference"], j, "o", color=color, markersize=5,
                       gid=f"{r['sharp_metric']}-{r['smooth_metric']}:difference")
        labels.append(f"{r['sharp_metric']} − {r['smooth_metric']}" + (" ★" if r["strictest"] else ""))
    right.set_yticks(np.arange(pairs.height), labels, fontsize=8)
    right.axvline(0.0, color="black", linewidth=0.8)
    for name, color in VERDICT_COLORS.items():
        if name in set(pairs["verdict"].to_list()):
            right.plot([], [], "o", color=color, label=name)
    right.set_xlabel("difference in largest-step share, sharp − smooth (paired 95% interval)", fontsize=9)
    right.set_title(f"Sharp against smooth on the same items, {shown_pairs};\n★: each sharp metric's strictest pair",
                    fontsize=10)
    if pairs.height:
        right.legend(fontsize=7, loc="best", title="verdict", title_fontsize=7)
    right.grid(True, axis="x", alpha=0.3)
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=8)
        ax.invert_yaxis()
    _suptitle(fig, f"Task: {curve_label(task, formulation)} — is the jump made by the metric, or do the models change "
                   "too?", fontsize=11)
    return fig


def item_correlation_histograms(item_correlations: pl.DataFrame, trends: pl.DataFrame | None = None,
                                task: str | None = None, formulation: str | None = None) -> Figure:
    """Per metric, the histogram of per-item Spearman correlations of the item's score with scale (Schaeffer et al.
    2024): an average can rise while few items do. Solid line: mean; dashed: median."""
    item_correlations = validate(item_correlations, ITEM_CORRELATIONS, "item_correlations")
    rows, task, formulation = _pick(item_correlations, task, formulation, "item_correlations")
    rows = rows.filter(pl.col("spearman").is_not_null())
    names = rows.select("metric", "kind").unique().sort("kind", "metric").rows()
    if not names:
        raise ValueError(f"item_correlations: no defined per-item correlation in task {task!r}")
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(PANEL_W * ncols, (PANEL_H - 0.2) * nrows + 1.0), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, sharex=True, squeeze=False).flat)
    bins = np.linspace(-1.0, 1.0, 41)
    for ax, (metric, kind) in zip(axes, names, strict=False):
        rho = rows.filter(pl.col("metric") == metric)["spearman"].to_numpy()
        color = SHARP_COLOR if kind == SHARP else SMOOTH_COLOR
        ax.hist(rho, bins=bins, color=color, alpha=0.7, gid=f"{metric}:hist")
        ax.axvline(float(np.mean(rho)), color="black", linewidth=1)
        ax.axvline(float(np.median(rho)), color="black", linewidth=1, linestyle="--")
        ax.set_title(f"{metric} ({kind})\nmean {np.mean(rho):.2f}, median {np.median(rho):.2f}, "
                     f"{np.mean(rho > 0):.0%} > 0 (n = {rho.size})", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[len(names):]:
        ax.remove()
    fig.supxlabel("Spearman ρ of an item's score with scale, across models (oriented: > 0 = improves)", fontsize=9)
    fig.supylabel("items", fontsize=9)
    _suptitle(fig, f"Task: {curve_label(task, formulation)} — per-item correlations with scale (solid: mean, dashed: median; items with the "
                 "same score for every model are left out)", fontsize=10)
    return fig


def difficulty_slice_curves(slices: pl.DataFrame, trends: pl.DataFrame | None = None, task: str | None = None,
                            metrics: Sequence[str] | None = None, formulation: str | None = None) -> Figure:
    """Every metric's curve drawn separately for each difficulty slice (Wu & Lo 2025), easiest to hardest, with
    bootstrap bands; panel titles name the slices flagged U-shaped, inverted-U or inverse-scaling in `trends`."""
    slices = validate(slices, {**METRICS, "slice": pl.String, "difficulty_metric": pl.String}, "slices")
    rows, task, formulation = _select_task(slices, task, formulation)
    names = metrics or rows.unique("metric", maintain_order=True).sort("kind", maintain_order=True)["metric"].to_list()
    labels = rows["slice"].unique(maintain_order=True).to_list()
    labels.sort(key=lambda label: int(label[1:].split()[0]))
    flags: dict[str, list[str]] = {}
    if trends is not None:
        trends = validate(trends, TRENDS, "trends")
        for r in _pick(trends, task, formulation, "trends")[0].filter(pl.col("slice") != "all").iter_rows(named=True):
            flag = r["shape"] or ("inverse scaling" if r["inverse_scaling"] else None)
            if flag:
                flags.setdefault(r["metric"], []).append(f"{r['slice'].split()[0]}: {flag}")
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(PANEL_W * ncols + 0.6, (PANEL_H + 0.2) * nrows + 1.3), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, sharex=True, squeeze=False).flat)
    palette = colormaps["viridis"](np.linspace(0.85, 0.05, len(labels)))  # light = easy, dark = hard
    for ax, metric in zip(axes, names, strict=False):
        for label, color in zip(labels, palette, strict=True):
            part = rows.filter(pl.col("slice") == label)
            _curve(ax, part, metric, color, label, gid=f"{metric}:{label}")
        kind = rows.filter(pl.col("metric") == metric)["kind"][0]
        ax.set_ylabel(y_label(metric, _direction(rows, metric)), fontsize=8)
        ax.set_title(f"{metric} ({kind})" + ("\n" + "; ".join(flags[metric]) if metric in flags else ""), fontsize=8,
                     color=SHARP_COLOR if kind == SHARP else SMOOTH_COLOR)
        ax.tick_params(labelsize=7)
    _finish_grid(axes, len(names), ncols, x_label(rows), 8)
    handles, legend_labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, legend_labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    difficulty = rows["difficulty_metric"][0]
    _suptitle(fig, f"Task: {curve_label(task, formulation)} — curves by item difficulty (items cut into {len(labels)} equal groups by their "
                 f"{difficulty} on the smaller half of the ladder; band: {BAND_LABEL})", fontsize=10)
    return fig


def formulation_curves(metrics: pl.DataFrame, task: str, names: Sequence[str] | None = None) -> Figure:
    """One task posed several ways: per metric (sharp beside smooth), one curve per formulation with its bootstrap
    band, and the spread across formulations at each scale (min to max of their means) as a grey band. Metrics
    shown are those every formulation has (or `names`)."""
    metrics = validate(metrics, METRICS, "metrics")
    rows = metrics.filter(pl.col("task") == task)
    formulations = rows["formulation"].unique(maintain_order=True).to_list()
    if len(formulations) < 2:
        raise ValueError(f"formulation: task {task!r} has {len(formulations)} formulation(s); this figure needs two")
    shared = set.intersection(*(set(rows.filter(pl.col("formulation") == f)["metric"].to_list())
                                for f in formulations))
    kinds = rows.unique("metric", maintain_order=True).select("metric", "kind").sort("kind", "metric")
    chosen = [m for m, _ in kinds.iter_rows() if m in shared and (names is None or m in names)]
    if not chosen:
        raise ValueError(f"metrics: task {task!r} has no metric common to its formulations {formulations}")
    x = _x_column(rows)
    sharp = [m for m in chosen if kinds.filter(pl.col("metric") == m)["kind"][0] == SHARP]
    smooth = [m for m in chosen if m not in sharp]
    groups = [(SHARP_TITLE, sharp, SHARP_COLOR), (SMOOTH_TITLE, smooth, SMOOTH_COLOR)]
    groups = [g for g in groups if g[1]]
    nrows = min(3, max(len(g[1]) for g in groups))
    ncols = [math.ceil(len(g[1]) / nrows) for g in groups]
    fig = Figure(figsize=(PANEL_W * sum(ncols) + 0.4 * len(groups), PANEL_H * nrows + 1.6), layout="constrained")
    subfigs = fig.subfigures(1, len(groups), width_ratios=ncols, squeeze=False)[0]
    palette = colormaps["tab10"](np.arange(len(formulations)) % 10)
    for sub, (title, group, color) in zip(subfigs, groups, strict=True):
        sub.suptitle(title, color=color, fontsize=11, fontweight="bold")
        group_cols = math.ceil(len(group) / nrows)
        axes = list(sub.subplots(nrows, group_cols, sharex=True, squeeze=False).flat)
        for ax, metric in zip(axes, group, strict=False):
            part = rows.filter(pl.col("metric") == metric)
            spread = part.group_by(x).agg(pl.col("mean").min().alias("low"), pl.col("mean").max().alias("high"),
                                          pl.col("formulation").n_unique().alias("n")).filter(
                pl.col("n") == len(formulations)).sort(x)
            if spread.height > 1:
                ax.fill_between(spread[x].to_numpy(), spread["low"].to_numpy(), spread["high"].to_numpy(),
                                color="#999999", alpha=0.25, linewidth=0, gid=f"{metric}:spread")
            for f, fcolor in zip(formulations, palette, strict=True):
                _curve(ax, part.filter(pl.col("formulation") == f).sort(x), metric, fcolor, f, gid=f"{metric}:{f}")
            ax.set_ylabel(y_label(metric, _direction(part, metric)), fontsize=8)
            ax.set_title(metric, fontsize=9)
            ax.tick_params(labelsize=8)
        _finish_grid(axes, len(group), group_cols, x_label(rows), 8)
    handles = [Line2D([], [], color=c, marker="o", label=f) for f, c in zip(formulations, palette, strict=True)]
    handles.append(Patch(color="#999999", alpha=0.25, label="spread across formulations"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    _suptitle(fig, f"Task: {task} — the same items posed {len(formulations)} ways (coloured bands: bootstrap CI of "
                   "each formulation)", fontsize=11)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG at 150 dpi, cropped to its content; returns the path."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=150)
    return path
