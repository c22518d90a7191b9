"""Score table (and generations) → item metrics → curves with paired replicates → every table, in one call.

This is the `scalelens report` stage: it reads only the tables `logprob` wrote, so it runs anywhere polars does,
on results scored elsewhere too. Data flow:

    scores (+ generations) → item_metrics → curves (metrics.curves: one paired item bootstrap per task)
        → metrics (means, intervals) · emergence (indices, intervals, resolution) · comparisons (sharp vs smooth)
        · trends (+ difficulty slices, per-item correlations) · fits (linear, logistic, change point)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from metrics.aggregate import metric_table
from metrics.bootstrap import BootstrapConfig
from metrics.choice import choice_metrics
from metrics.compare import compare
from metrics.curves import Curves, add_corpus_metric, item_curves
from metrics.emergence import emergence_from_curves
from metrics.fits import fit_table
from metrics.folder import read_run_folder
from metrics.registry import CONTINUOUS, MetricInfo
from metrics.schema import DEFAULT_FORMULATION, GENERATIONS, SCORES, validate, write_parquet_atomic
from metrics.slices import DEFAULT_SLICES, difficulty_slices, slice_table
from metrics.text import (
    BleuConfig,
    EvaluationModuleLike,
    ExactMatchConfig,
    corpus_metrics,
    extra_metric,
    text_metrics,
)
from metrics.trends import item_correlations, trend_table

METRICS_FILE = "metrics.parquet"
EMERGENCE_FILE = "emergence.parquet"
ITEM_METRICS_FILE = "item_metrics.parquet"
COMPARISONS_FILE = "comparisons.parquet"
TRENDS_FILE = "trends.parquet"
ITEM_CORRELATIONS_FILE = "item_correlations.parquet"
SLICES_FILE = "slices.parquet"
FITS_FILE = "fits.parquet"


@dataclass(frozen=True)
class Analysis:
    item_metrics: pl.DataFrame  # ITEM_METRICS: one row per (model, task, item, metric)
    metrics: pl.DataFrame  # METRICS (+ signature): one row per (model, task, metric)
    emergence: pl.DataFrame  # EMERGENCE: one row per (task, metric), indices with intervals and resolution
    comparisons: pl.DataFrame = field(default_factory=pl.DataFrame)  # compare.COMPARISONS: sharp vs smooth pairs
    trends: pl.DataFrame = field(default_factory=pl.DataFrame)  # trends.TRENDS: per (task, slice, metric)
    item_correlations: pl.DataFrame = field(default_factory=pl.DataFrame)  # trends.ITEM_CORRELATIONS
    slices: pl.DataFrame = field(default_factory=pl.DataFrame)  # slices.SLICES: metric table per difficulty slice
    fits: pl.DataFrame = field(default_factory=pl.DataFrame)  # fits.FITS: linear / logistic / change point
    curves: tuple[Curves, ...] = ()  # the arrays behind every table (not written)
    written: tuple[Path, ...] = ()


def analyse_curves(curves: Sequence[Curves], item_metrics: pl.DataFrame | None = None, *,
                   n_slices: int = DEFAULT_SLICES) -> Analysis:
    """Every table that follows from the curves: metric means and intervals, emergence, comparisons, trends,
    per-item correlations and difficulty slices (the last two need item-level curves)."""
    curves = list(curves)
    correlations = item_correlations(curves)
    slice_curves, difficulty = [], {}
    for c in curves:
        if c.values is None:
            continue
        metric, parts = difficulty_slices(c, n_slices)
        if parts:
            difficulty[(c.task, c.formulation)] = metric
            slice_curves.extend(parts)
    metrics = metric_table(curves).sort("task", "formulation", "x", "model", "metric")
    return Analysis(
        item_metrics=item_metrics if item_metrics is not None else pl.DataFrame(),
        metrics=metrics,
        emergence=emergence_from_curves(curves),
        comparisons=compare(curves),
        trends=trend_table([*curves, *slice_curves], correlations),
        item_correlations=correlations,
        slices=slice_table(slice_curves, difficulty),
        fits=fit_table(curves),
        curves=tuple(curves),
    )


def analyse(
    scores: pl.DataFrame,
    generations: pl.DataFrame | None = None,
    *,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    exact: ExactMatchConfig = ExactMatchConfig(),
    bleu: BleuConfig = BleuConfig(),
    extra_modules: Sequence[EvaluationModuleLike] = (),
    extra_directions: Mapping[str, tuple[str, str]] | None = None,
    n_slices: int = DEFAULT_SLICES,
    x: str = "auto",
) -> Analysis:
    """Every built-in metric of the same outputs, sharp and smooth, then every statistic of each curve.

    `x` is the scale axis: `non_embedding_params`, `params`, `step` or `tokens` (the provenance columns `step` and
    `tokens_seen` of a checkpoint ladder), or `auto`: `step` when every model has the same non-embedding count and a
    known step (a ladder along training), else non-embedding parameters (`scale_axis`).

    `extra_modules` are `evaluate` modules applied per generated item; each numeric output becomes a smooth metric
    `<module.name>_<output key>`, read with the direction given as `extra_directions[module.name] = (direction,
    source)` (default: higher is better).
    """
    scores = validate(scores, SCORES, "scores")
    parts = [choice_metrics(scores)]
    has_gens = generations is not None and generations.height > 0
    if has_gens:
        generations = validate(generations, GENERATIONS, "generations")
        parts.append(text_metrics(generations, exact, bleu))
    extra_info = {}
    for module in extra_modules if has_gens else ():
        rows = extra_metric(generations, module)
        direction, source = (extra_directions or {}).get(module.name, ("higher", f"evaluate module {module.name}"))
        for name in rows["metric"].unique().to_list():
            extra_info[name] = MetricInfo(CONTINUOUS, direction, f"Output '{name}' of the evaluate module.", source)
        parts.append(rows)
    columns = parts[0].columns
    item_metrics = pl.concat([p.select(columns) for p in parts])
    axis, per_model = scale_axis(scores, x)
    if per_model is not None:
        item_metrics = item_metrics.join(per_model, on="model", how="left")
    curves = item_curves(item_metrics, bootstrap, extra_info, x=axis)
    if has_gens:
        curves = with_corpus_metrics(curves, generations, bleu)
    return analyse_curves(curves, item_metrics, n_slices=n_slices)


def with_corpus_metrics(curves: Sequence[Curves], generations: pl.DataFrame, bleu: BleuConfig) -> list[Curves]:
    """The curves of generative tasks with the corpus-level metrics of `generations` (BLEU, chrF) added, resampled
    with the curves' own item replicates; other curves as they are."""
    stats, specs = corpus_metrics(generations, bleu)
    generative_tasks = set(stats["task"].unique().to_list())
    out = []
    for c in curves:
        for spec in specs if c.task in generative_tasks else ():
            c = add_corpus_metric(c, stats, spec.columns, spec.score, spec.metric, spec.signature)
        out.append(c)
    return out


#: Axes a scored folder can be analysed along: the sizes, or the checkpoint's training step or tokens seen.
FOLDER_AXES = ("auto", "non_embedding_params", "params", "step", "tokens")


def scale_axis(scores: pl.DataFrame, x: str = "auto") -> tuple[str, pl.DataFrame | None]:
    """(axis column, per-model frame of it to join to the item metrics, or None for a size column they carry).

    >>> scores = pl.DataFrame({"model": ["a@step1", "a@step9"], "non_embedding_params": [5, 5], "step": [1, 9]})
    >>> scale_axis(scores)[0], scale_axis(scores.with_columns(non_embedding_params=pl.Series([5, 6])))[0]
    ('step', 'non_embedding_params')
    """
    if x not in FOLDER_AXES:
        raise ValueError(f"--x {x}: expected one of {', '.join(FOLDER_AXES)}")
    if x in ("non_embedding_params", "params"):
        return x, None
    source = {"step": "step", "tokens": "tokens_seen"}
    per_model = scores.select("model", *(c for c in ("non_embedding_params", *source.values()) if c in scores.columns)
                              ).unique("model")
    if x == "auto":
        along_training = (per_model.height > 1 and per_model["non_embedding_params"].n_unique() == 1
                          and "step" in per_model.columns and per_model["step"].null_count() == 0)
        if not along_training:
            return "non_embedding_params", None
        x = "step"
    column = source[x]
    if column not in per_model.columns or per_model[column].null_count():
        missing = per_model.filter(pl.col(column).is_null())["model"].to_list() if column in per_model.columns else \
            per_model["model"].to_list()
        raise ValueError(f"--x {x}: unknown for model(s) {', '.join(sorted(missing)[:5])} (the {column} of a "
                         "checkpoint comes from its revision, e.g. @step3000, or a ladder file)")
    return x, per_model.select("model", pl.col(column).cast(pl.Float64).alias(x))


def analyse_folder(
    folder: Path,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    figures: bool = True,
    bleu: BleuConfig = BleuConfig(),
    extra_modules: Sequence[EvaluationModuleLike] = (),
    extra_directions: Mapping[str, tuple[str, str]] | None = None,
    n_slices: int = DEFAULT_SLICES,
    x: str = "auto",
) -> Analysis:
    """`analyse` on a folder written by `scalelens score`; writes every table (and PNG figures under `figures/`)
    beside the scores."""
    scores, generations = read_run_folder(folder)  # one-line errors for missing, corrupt or mixed tables
    result = analyse(
        scores,
        generations,
        bootstrap=BootstrapConfig(n_resamples=n_resamples, seed=seed),
        bleu=bleu,
        extra_modules=extra_modules,
        extra_directions=extra_directions,
        n_slices=n_slices,
        x=x,
    )
    return write_analysis(result, folder, figures=figures)


def write_analysis(result: Analysis, folder: Path, *, figures: bool = True) -> Analysis:
    """Write every table of `result` (atomically) and, if asked, the figures; returns it with `written` set."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for frame, name in (
        (result.metrics, METRICS_FILE),
        (result.emergence, EMERGENCE_FILE),
        (result.comparisons, COMPARISONS_FILE),
        (result.trends, TRENDS_FILE),
        (result.item_correlations, ITEM_CORRELATIONS_FILE),
        (result.slices, SLICES_FILE),
        (result.fits, FITS_FILE),
        (result.item_metrics, ITEM_METRICS_FILE),
    ):
        write_parquet_atomic(frame, folder / name)
        written.append(folder / name)
    if figures:
        written.extend(write_figures(result, folder / "figures"))
    return replace(result, written=tuple(written))


def write_figures(result: Analysis, out_dir: Path) -> list[Path]:
    """Per (task, formulation): the metric grid (indices with intervals, best fits), the sharp-versus-smooth
    comparison, per-item correlations and difficulty slices where the tables have them; the log-prob gap view for
    multiple-choice tasks and the sharp-versus-smooth view of generations for generative tasks. Per task posed in
    several formulations: one curve per formulation. A metric with no mean for any model (unavailable in the input)
    keeps its rows in the tables but gets no empty panel."""
    from metrics import figures  # matplotlib only when figures are asked for

    drawn = result.metrics.filter(pl.col("mean").is_not_null().any().over("task", "formulation", "metric"))

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    def has(table: pl.DataFrame, task: str, formulation: str, extra: pl.Expr | None = None) -> bool:
        if not table.height:
            return False
        rows = table.filter((pl.col("task") == task) & (pl.col("formulation") == formulation))
        return (rows.filter(extra) if extra is not None else rows).height > 0

    fits = result.fits if result.fits.height else None
    for task, formulation in drawn.select("task", "formulation").unique(maintain_order=True).iter_rows():
        task_metrics = set(drawn.filter((pl.col("task") == task) & (pl.col("formulation") == formulation)
                                                 )["metric"].unique().to_list())
        at = {"task": task, "formulation": formulation}
        plots = [("metrics", lambda: figures.metric_grid(drawn, result.emergence, fits=fits, **at))]
        if has(result.comparisons, task, formulation):
            plots.append(("sharp_vs_smooth", lambda: figures.sharp_smooth_comparison(result.emergence,
                                                                                     result.comparisons, **at)))
        if {"logprob_best_distractor", "margin"} <= task_metrics:
            plots.append(("logprob_gap", lambda: figures.logprob_gap(drawn, **at)))
        if "exact_match" in task_metrics:
            plots.append(("generative", lambda: figures.sharp_vs_smooth_generative(drawn, **at)))
        if has(result.item_correlations, task, formulation, pl.col("spearman").is_not_null()):
            plots.append(("item_correlations",
                          lambda: figures.item_correlation_histograms(result.item_correlations, result.trends, **at)))
        if has(result.slices, task, formulation):
            plots.append(("slices", lambda: figures.difficulty_slice_curves(result.slices, result.trends, **at)))
        stem = _slug(task) if formulation == DEFAULT_FORMULATION else f"{_slug(task)}_{_slug(formulation)}"
        for kind, make in plots:
            path = out_dir / f"{stem}_{kind}.png"
            figures.save_figure(make(), path)
            paths.append(path)
    several = drawn.group_by("task").agg(pl.col("formulation").n_unique()).filter(pl.col("formulation") > 1)
    for task in several["task"].sort().to_list():
        path = out_dir / f"{_slug(task)}_formulations.png"
        figures.save_figure(figures.formulation_curves(drawn, task), path)
        paths.append(path)
    return paths


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
