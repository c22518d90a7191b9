"""Metric values → one scaling curve per (task, formulation, metric), with bootstrap replicates: the one place
resampling happens.

Every statistic downstream (metric intervals, index intervals, resolution, sharp-against-smooth comparisons, trend
tests, difficulty slices) reads the arrays of a `Curves`, so all of them use the same resamples.

Item-level input (`item_curves`): per (task, formulation), the items are the union of item ids over models, sorted;
one count matrix of `metrics.bootstrap.resample_counts` (seeded by the bootstrap seed and the task name) resamples
them, and the same resample indices apply to every model and every metric of the task — and, the seed being the
task's, to every formulation of it that poses the same items. The bootstrap is therefore paired:
models scored on the same items move together in each replicate, so a step between two models carries only the
noise of their disagreement, not twice the noise of each mean. An item a model was not scored on (or whose value
is undefined) is left out of that model's mean in every replicate.

Aggregate input (`mean_curves`, for results that come as a mean and a standard error per model, e.g. published
lm-eval tables): replicates are drawn as mean + se·z with independent standard normal z per model (a parametric
bootstrap). Nothing pairs the models there, so steps carry the noise of both means; the `method` says so.

Granularity: when every defined item value of a metric is an integer (0/1 scores, ranks), a mean over n items can
only move in steps of 1/n, so `granularity` is 1/n (n the largest item count over models); otherwise 0.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from metrics.bootstrap import BootstrapConfig, bootstrap_corpus, bootstrap_means, resample_counts
from metrics.registry import HIGHER, MetricInfo, metric_info
from metrics.schema import DEFAULT_FORMULATION, ITEM_METRICS, MODEL_COLUMNS, validate

#: The default scale axis: non-embedding parameters (Kaplan et al. 2020; BIG-bench's x axis).
DEFAULT_X = "non_embedding_params"
#: Scale axes with a known meaning: name → (label for people, unit). Any other numeric per-model column can be the
#: axis too (e.g. a pre-training loss, Du et al. 2024); its unit is then unknown (""). Every statistic that reads
#: the axis uses log10(x), so an axis value must be > 0.
SCALE_AXES: dict[str, tuple[str, str]] = {
    "non_embedding_params": ("non-embedding parameters", "parameters"),
    "params": ("parameters", "parameters"),
    "compute": ("training compute 6·N·D (FLOPs)", "FLOPs"),
    "tokens": ("training tokens", "tokens"),
    "step": ("training step", "steps"),
}


def axis_label(x_name: str) -> str:
    """How tables and figures name a scale axis.

    >>> axis_label("non_embedding_params"), axis_label("pile_loss")
    ('non-embedding parameters', 'pile_loss')
    """
    return SCALE_AXES.get(x_name, (x_name, ""))[0]


def axis_unit(x_name: str) -> str:
    """The unit of a scale axis ("" when scalelens does not know it).

    >>> axis_unit("compute"), axis_unit("pile_loss")
    ('FLOPs', '')
    """
    return SCALE_AXES.get(x_name, ("", ""))[1]
PAIRED = "paired item bootstrap"
PARAMETRIC = "parametric bootstrap from stderr (unpaired)"


@dataclass(frozen=True)
class Curves:
    """Every metric of one task across the models that scored it, smallest scale first.

    Shapes: n models, M metrics, B bootstrap replicates, N items.
    """

    task: str
    formulation: str  # how the task's items were posed (DEFAULT_FORMULATION: as written)
    models: tuple[str, ...]  # (n,) ordered by (x, model)
    params: np.ndarray  # (n,) int64
    non_embedding_params: np.ndarray  # (n,) int64
    x_name: str
    x: np.ndarray  # (n,) float64, the scale axis
    metrics: tuple[str, ...]  # (M,)
    info: tuple[MetricInfo, ...]  # (M,) kind, direction, definition, source
    signatures: tuple[str, ...]  # (M,) settings behind each metric's numbers ("" when none)
    means: np.ndarray  # (M, n) point estimate, NaN when undefined
    replicates: np.ndarray  # (M, B, n) bootstrap replicates of the means
    n_items: np.ndarray  # (M, n) items with a defined value
    granularity: np.ndarray  # (M,) smallest possible step of a mean (1/n for integer item values, else 0)
    method: str  # PAIRED or PARAMETRIC
    bootstrap: BootstrapConfig
    item_ids: tuple[str, ...] = ()  # (N,) sorted; empty for aggregate input
    values: np.ndarray | None = None  # (M, n, N) item values, NaN = undefined or not scored
    counts: np.ndarray | None = None  # (B, N) resample counts shared by every model and metric
    slice: str = "all"  # "all" items, or a difficulty slice (metrics.slices)

    @property
    def sign(self) -> np.ndarray:
        """(M,) +1 where higher is better, −1 where lower is: multiply to orient curves."""
        return np.array([1.0 if i.direction == HIGHER else -1.0 for i in self.info])

    @property
    def x_unit(self) -> str:
        """The scale axis's unit ("" when unknown)."""
        return axis_unit(self.x_name)

    def index(self, metric: str) -> int:
        return self.metrics.index(metric)

    def defined_groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Metrics grouped by the set of models whose mean is defined: [(metric indices (m,), model mask (n,))].
        Usually one group: every metric defined for every model. Each group is then one vectorised computation."""
        defined = np.isfinite(self.means)  # (M, n)
        groups = {}
        for row, mask in enumerate(map(tuple, defined.tolist())):
            groups.setdefault(mask, []).append(row)
        return [(np.array(rows), np.array(mask, dtype=bool)) for mask, rows in groups.items()]

    def with_metric(self, metric: str, info: MetricInfo, signature: str, means: np.ndarray, replicates: np.ndarray,
                    n_items: np.ndarray) -> Curves:
        """A copy with one more metric (no item values: a corpus-level score)."""
        values = self.values
        if values is not None:
            values = np.concatenate([values, np.full((1, *values.shape[1:]), np.nan)])  # (M + 1, n, N)
        return replace(
            self, metrics=(*self.metrics, metric), info=(*self.info, info), signatures=(*self.signatures, signature),
            means=np.vstack([self.means, means[None]]), replicates=np.concatenate([self.replicates, replicates[None]]),
            n_items=np.vstack([self.n_items, n_items[None]]), granularity=np.append(self.granularity, 0.0),
            values=values,
        )


def _model_table(frame: pl.DataFrame, x: str, table: str) -> pl.DataFrame:
    """One row per model: model, params, non_embedding_params, x; ordered along the scale axis."""
    if x not in frame.columns:
        raise ValueError(f"{table}: no column {x!r} to use as the scale axis; found {frame.columns}")
    columns = list(dict.fromkeys([*MODEL_COLUMNS, x]))
    models = frame.select(columns).unique()
    clash = models.group_by("model").len().filter(pl.col("len") > 1)
    if clash.height:
        raise ValueError(f"{table}: model {clash['model'][0]!r} appears with different sizes or {x!r} values")
    if models[x].null_count():
        raise ValueError(f"{table}: the scale axis {x!r} is null for some model")
    return models.sort(x, "model")


def _index_map(names: Sequence[str], column: str) -> pl.DataFrame:
    return pl.DataFrame({column: list(names), f"{column}_index": np.arange(len(names), dtype=np.int64)})


def item_curves(
    item_metrics: pl.DataFrame,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    extra_info: Mapping[str, MetricInfo] | None = None,
    *,
    x: str = DEFAULT_X,
    signatures: Mapping[str, str] | None = None,
) -> list[Curves]:
    """One `Curves` per task from per-item metric values (ITEM_METRICS, long), with paired bootstrap replicates.

    Every row of one (task, metric) must carry the same `signature` (the settings behind the values); it becomes
    the metric's signature.

    >>> rows = pl.DataFrame({"model": ["s", "s", "l", "l"], "params": [2, 2, 4, 4], "non_embedding_params": [1, 1, 3, 3],
    ...     "task": ["t"] * 4, "item_id": ["a", "b", "a", "b"], "metric": ["margin"] * 4, "value": [0.0, 1.0, 2.0, 4.0],
    ...     "signature": [""] * 4})
    >>> (c,) = item_curves(rows, BootstrapConfig(n_resamples=20))
    >>> c.models, c.means.tolist(), c.replicates.shape
    (('s', 'l'), [[0.5, 3.0]], (1, 20, 2))
    """
    item_metrics = validate(item_metrics, ITEM_METRICS, "item_metrics")
    dup = item_metrics.group_by("model", "task", "formulation", "item_id", "metric").len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"item_metrics: {dup.height} duplicated key(s) over (model, task, formulation, item_id, metric), "
                         f"e.g. {dup.drop('len').row(0, named=True)}")
    signatures = dict(signatures or {})
    settings = item_metrics.group_by("task", "formulation", "metric").agg(pl.col("signature").unique().sort())
    mixed = settings.filter(pl.col("signature").list.len() > 1)
    if mixed.height:
        row = mixed.row(0, named=True)
        raise ValueError(f"item_metrics: metric {row['metric']!r} of task {row['task']!r} ({row['formulation']}) mixes settings "
                         f"{row['signature']}; numbers computed under different settings cannot share a curve")
    out = []
    for (task, formulation), group in item_metrics.group_by("task", "formulation", maintain_order=True):
        own = {m: sig[0] for m, sig in settings.filter((pl.col("task") == task) & (pl.col("formulation") == formulation)
                                                       ).select("metric", "signature").iter_rows()}
        models = _model_table(group, x, "item_metrics")
        items = group["item_id"].unique().sort().to_list()
        names = group["metric"].unique().sort().to_list()
        M, n, N = len(names), models.height, len(items)
        coded = (
            group.join(_index_map(models["model"].to_list(), "model"), on="model")
            .join(_index_map(items, "item_id"), on="item_id")
            .join(_index_map(names, "metric"), on="metric")
        )
        values = np.full((M, n, N), np.nan)
        values[coded["metric_index"].to_numpy(), coded["model_index"].to_numpy(), coded["item_id_index"].to_numpy()] = (
            coded["value"].fill_nan(None).to_numpy().astype(np.float64)
        )  # (M, n, N), NaN = undefined or not scored
        out.append(_from_values(task, formulation, models, x, items, names, values, bootstrap, extra_info,
                                {**own, **signatures}))
    return out


def _summaries(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means (M, n), paired replicates (M, B, n), defined items (M, n) and granularity (M,) of item values
    (M, n, N), NaN = undefined, resampled by counts (B, N)."""
    M, n, N = values.shape
    present = ~np.isnan(values)  # (M, n, N)
    filled = np.where(present, values, 0.0)
    n_items = present.sum(axis=-1)  # (M, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = filled.sum(axis=-1) / n_items  # (M, n)
    replicates = bootstrap_means(values.reshape(M * n, N).T, counts)  # (B, M·n)
    replicates = replicates.reshape(counts.shape[0], M, n).transpose(1, 0, 2)  # (M, B, n)
    integer = np.array([bool(np.all(values[m][present[m]] == np.round(values[m][present[m]]))) for m in range(M)],
                       dtype=bool)  # (M,) item values on the integer lattice
    largest = n_items.max(axis=1) if n else np.zeros(M, dtype=np.int64)  # (M,)
    granularity = np.where(integer & (largest > 0), 1.0 / np.maximum(largest, 1), 0.0)  # (M,)
    return means, replicates, n_items.astype(np.int64), granularity


def restrict(curves: Curves, items: np.ndarray, label: str) -> Curves:
    """The same curves over a subset of items (indices into `curves.item_ids`), resampled with the same counts
    restricted to those items, labelled `label` (a difficulty slice). Metrics without item values (corpus scores)
    are dropped."""
    if curves.values is None or curves.counts is None:
        raise ValueError(f"task {curves.task!r}: slices need item-level values")
    keep = ~np.all(np.isnan(curves.values), axis=(1, 2))  # (M,) metrics with item values
    values = curves.values[keep][:, :, items]  # (M', n, N')
    counts = curves.counts[:, items]  # (B, N')
    means, replicates, n_items, granularity = _summaries(values, counts)
    return replace(
        curves, metrics=tuple(np.array(curves.metrics, dtype=object)[keep]),
        info=tuple(i for i, k in zip(curves.info, keep) if k),
        signatures=tuple(s for s, k in zip(curves.signatures, keep) if k), means=means, replicates=replicates,
        n_items=n_items, granularity=granularity, item_ids=tuple(np.array(curves.item_ids, dtype=object)[items]),
        values=values, counts=counts, slice=label,
    )


def _from_values(
    task: str,
    formulation: str,
    models: pl.DataFrame,
    x: str,
    items: list[str],
    names: list[str],
    values: np.ndarray,
    bootstrap: BootstrapConfig,
    extra_info: Mapping[str, MetricInfo] | None,
    signatures: Mapping[str, str],
) -> Curves:
    """Point means, paired replicates and granularity from dense item values (M, n, N), NaN = undefined."""
    counts = resample_counts(values.shape[2], bootstrap, task).astype(np.float64)  # (B, N), one set per task
    means, replicates, n_items, granularity = _summaries(values, counts)
    return Curves(
        task=task, formulation=formulation, models=tuple(models["model"].to_list()), params=models["params"].to_numpy(),
        non_embedding_params=models["non_embedding_params"].to_numpy(), x_name=x,
        x=models[x].to_numpy().astype(np.float64), metrics=tuple(names),
        info=tuple(metric_info(name, extra_info) for name in names),
        signatures=tuple(signatures.get(name, "") for name in names), means=means,
        replicates=replicates, n_items=n_items,
        granularity=granularity, method=PAIRED, bootstrap=bootstrap, item_ids=tuple(items), values=values,
        counts=counts,
    )


def item_skeleton(frame: pl.DataFrame, task: str, bootstrap: BootstrapConfig = BootstrapConfig(), *,
                  x: str = DEFAULT_X, formulation: str = DEFAULT_FORMULATION) -> Curves:
    """Curves with no metric yet over the (model, item_id) rows of `frame` for (`task`, `formulation`): the models
    and items a corpus metric is then added to with `add_corpus_metric`."""
    rows = frame.filter(pl.col("task") == task)
    if "formulation" in rows.columns:
        rows = rows.filter(pl.col("formulation") == formulation)
    models = _model_table(rows, x, "statistics")
    items = rows["item_id"].unique().sort().to_list()
    return _from_values(task, formulation, models, x, items, [], np.zeros((0, models.height, len(items))), bootstrap,
                        None, {})


def add_corpus_metric(
    curves: Curves,
    stats: pl.DataFrame,
    stat_columns: Sequence[str],
    score: Callable[[np.ndarray], float],
    metric: str,
    signature: str = "",
    extra_info: Mapping[str, MetricInfo] | None = None,
) -> Curves:
    """Append a corpus-level metric (e.g. corpus BLEU) computed from summed per-item statistics, resampled with the
    task's own counts: each replicate re-sums the resampled items' statistics and rescores (sacrebleu's habit).

    `stats` has model, task, item_id and `stat_columns` for items of `curves.task`; a model without rows gets NaN.
    """
    if curves.counts is None:
        raise ValueError(f"{metric}: corpus metrics need item-level curves")
    rows = stats.filter(pl.col("task") == curves.task)
    if "formulation" in rows.columns:
        rows = rows.filter(pl.col("formulation") == curves.formulation)
    unknown = set(rows["item_id"].to_list()) - set(curves.item_ids)
    if unknown:
        raise ValueError(f"{metric}: item(s) {sorted(unknown)[:3]} of task {curves.task!r} have no item metrics")
    coded = rows.join(_index_map(curves.models, "model"), on="model").join(_index_map(curves.item_ids, "item_id"),
                                                                          on="item_id")
    n, N, S = len(curves.models), len(curves.item_ids), len(stat_columns)
    matrix = np.zeros((n, N, S))  # (n, N, S) an unscored item adds nothing to the sums
    matrix[coded["model_index"].to_numpy(), coded["item_id_index"].to_numpy()] = coded.select(stat_columns).to_numpy()
    scored = np.zeros((n, N), dtype=bool)
    scored[coded["model_index"].to_numpy(), coded["item_id_index"].to_numpy()] = True
    n_items = scored.sum(axis=1)  # (n,)
    means = np.array([score(matrix[j].sum(axis=0)) if n_items[j] else np.nan for j in range(n)])  # (n,)
    B = curves.counts.shape[0]
    replicates = np.stack([bootstrap_corpus(matrix[j], curves.counts, score) if n_items[j] else np.full(B, np.nan)
                           for j in range(n)], axis=1)  # (B, n)
    return curves.with_metric(metric, metric_info(metric, extra_info), signature, means, replicates, n_items)


def mean_curves(
    table: pl.DataFrame,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    extra_info: Mapping[str, MetricInfo] | None = None,
    *,
    x: str = DEFAULT_X,
) -> list[Curves]:
    """One `Curves` per task from per-model means and standard errors (columns: the model columns, task, metric,
    mean, stderr, n_items, optional signature): a parametric bootstrap, mean + stderr·z, independent per model and
    metric, seeded by (seed, task, metric). A null stderr gives NaN replicates: that mean has no interval."""
    needed = {**MODEL_COLUMNS, "task": pl.String, "metric": pl.String, "mean": pl.Float64, "stderr": pl.Float64,
              "n_items": pl.Int64}
    table = validate(table, needed, "metric table")
    out = []
    if "formulation" not in table.columns:
        table = table.with_columns(pl.lit(DEFAULT_FORMULATION).alias("formulation"))
    for (task, formulation), group in table.group_by("task", "formulation", maintain_order=True):
        models = _model_table(group, x, "metric table")
        names = group["metric"].unique().sort().to_list()
        M, n, B = len(names), models.height, bootstrap.n_resamples
        coded = group.join(_index_map(models["model"].to_list(), "model"), on="model").join(
            _index_map(names, "metric"), on="metric")
        means = np.full((M, n), np.nan)
        stderr = np.full((M, n), np.nan)
        n_items = np.zeros((M, n), dtype=np.int64)
        at = (coded["metric_index"].to_numpy(), coded["model_index"].to_numpy())
        means[at] = coded["mean"].fill_nan(None).to_numpy().astype(np.float64)
        stderr[at] = coded["stderr"].fill_nan(None).to_numpy().astype(np.float64)  # null → NaN replicates
        n_items[at] = coded["n_items"].fill_null(0).to_numpy()
        replicates = np.empty((M, B, n))
        for m, name in enumerate(names):  # one seeded stream per metric, as resample_counts has one per task
            rng = np.random.default_rng([bootstrap.seed, zlib.crc32(task.encode()), zlib.crc32(name.encode())])
            replicates[m] = means[m] + stderr[m] * rng.standard_normal((B, n))  # (B, n)
        sig = dict(group.select("metric", "signature").unique("metric").iter_rows()) if "signature" in group.columns \
            else {}
        out.append(Curves(
            task=task, formulation=formulation, models=tuple(models["model"].to_list()),
            params=models["params"].to_numpy(),
            non_embedding_params=models["non_embedding_params"].to_numpy(), x_name=x,
            x=models[x].to_numpy().astype(np.float64), metrics=tuple(names),
            info=tuple(metric_info(name, extra_info) for name in names),
            signatures=tuple(sig.get(name) or "" for name in names), means=means, replicates=replicates,
            n_items=n_items, granularity=np.zeros(M), method=PARAMETRIC, bootstrap=bootstrap,
        ))
    return out
