"""Score table (and generations) → item metrics → per-model metrics → emergence, in one call.

This is the `scalelens report` stage: it reads only the tables `logprob` wrote, so it runs anywhere polars does,
on results scored elsewhere too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from metrics.aggregate import aggregate
from metrics.bootstrap import BootstrapConfig
from metrics.choice import choice_metrics
from metrics.emergence import emergence
from metrics.registry import CONTINUOUS, MetricInfo
from metrics.schema import GENERATIONS, GENERATIONS_FILE, SCORES, SCORES_FILE, validate, write_parquet_atomic
from metrics.text import (
    BleuConfig,
    EvaluationModuleLike,
    ExactMatchConfig,
    corpus_text_metrics,
    extra_metric,
    text_metrics,
)

METRICS_FILE = "metrics.parquet"
EMERGENCE_FILE = "emergence.parquet"
ITEM_METRICS_FILE = "item_metrics.parquet"


@dataclass(frozen=True)
class Analysis:
    item_metrics: pl.DataFrame  # ITEM_METRICS: one row per (model, task, item, metric)
    metrics: pl.DataFrame  # METRICS (+ signature): one row per (model, task, metric)
    emergence: pl.DataFrame  # EMERGENCE: one row per (task, metric)
    written: tuple[Path, ...] = ()


def analyse(
    scores: pl.DataFrame,
    generations: pl.DataFrame | None = None,
    *,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    exact: ExactMatchConfig = ExactMatchConfig(),
    bleu: BleuConfig = BleuConfig(),
    extra_modules: Sequence[EvaluationModuleLike] = (),
    extra_directions: Mapping[str, tuple[str, str]] | None = None,
) -> Analysis:
    """Every built-in metric of the same outputs, sharp and smooth, then the emergence indices of each curve.

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
    metrics = aggregate(item_metrics, bootstrap, extra_info)
    if has_gens:
        metrics = pl.concat([metrics, corpus_text_metrics(generations, bootstrap, bleu).select(metrics.columns)])
    metrics = metrics.sort("task", "non_embedding_params", "model", "metric")
    return Analysis(item_metrics, metrics, emergence(metrics))


def analyse_folder(
    folder: Path,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    figures: bool = True,
    bleu: BleuConfig = BleuConfig(),
    extra_modules: Sequence[EvaluationModuleLike] = (),
    extra_directions: Mapping[str, tuple[str, str]] | None = None,
) -> Analysis:
    """`analyse` on a folder written by `scalelens score`; writes the metric, emergence and item tables (and PNG
    figures under `figures/`) beside the scores."""
    scores_path = folder / SCORES_FILE
    if not scores_path.exists():
        raise FileNotFoundError(f"{scores_path}: no score table here; run `scalelens score ... --out {folder}` first")
    scores = pl.read_parquet(scores_path)
    gens_path = folder / GENERATIONS_FILE
    generations = pl.read_parquet(gens_path) if gens_path.exists() else None
    result = analyse(
        scores,
        generations,
        bootstrap=BootstrapConfig(n_resamples=n_resamples, seed=seed),
        bleu=bleu,
        extra_modules=extra_modules,
        extra_directions=extra_directions,
    )
    written = []
    for frame, name in (
        (result.metrics, METRICS_FILE),
        (result.emergence, EMERGENCE_FILE),
        (result.item_metrics, ITEM_METRICS_FILE),
    ):
        write_parquet_atomic(frame, folder / name)
        written.append(folder / name)
    if figures:
        written.extend(write_figures(result, folder / "figures"))
    return Analysis(result.item_metrics, result.metrics, result.emergence, tuple(written))


def write_figures(result: Analysis, out_dir: Path) -> list[Path]:
    """One metric grid per task; the log-prob gap view for multiple-choice tasks; the sharp-versus-smooth view for
    generative tasks."""
    from metrics import figures  # matplotlib only when figures are asked for

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in result.metrics["task"].unique(maintain_order=True).to_list():
        task_metrics = set(result.metrics.filter(pl.col("task") == task)["metric"].unique().to_list())
        plots = [("metrics", lambda: figures.metric_grid(result.metrics, result.emergence, task=task))]
        if {"logprob_best_distractor", "margin"} <= task_metrics:
            plots.append(("logprob_gap", lambda: figures.logprob_gap(result.metrics, task=task)))
        if "exact_match" in task_metrics:
            plots.append(("generative", lambda: figures.sharp_vs_smooth_generative(result.metrics, task=task)))
        for kind, make in plots:
            path = out_dir / f"{_slug(task)}_{kind}.png"
            figures.save_figure(make(), path)
            paths.append(path)
    return paths


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
