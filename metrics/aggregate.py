"""Curves → one row per (model, task, metric): the mean over items and its bootstrap confidence interval.

Two aggregations: the mean of an item metric (`aggregate`) and a corpus score computed from summed per-item
sufficient statistics (`corpus_aggregate`, used for corpus BLEU and chrF). Both go through `metrics.curves`, which
draws one set of resamples per task over the task's items sorted by item_id, so every model and every metric of a
task share resamples (paired), and the intervals here come from the same replicates as the emergence intervals.

The output has the METRICS columns plus `signature`, the reproducibility string of every setting that produced the
numbers: the item rows' own signature (e.g. sacrebleu's for sentence BLEU), then the bootstrap settings; sacrebleu's
signature for corpus scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from metrics.bootstrap import BootstrapConfig, percentile_interval
from metrics.curves import Curves, add_corpus_metric, item_curves, item_skeleton
from metrics.registry import MetricInfo
from metrics.schema import DEFAULT_FORMULATION, METRICS, MODEL_COLUMNS, validate

#: METRICS plus the model's place on the scale axis (`x`, in the axis `x_axis` whose unit is `x_unit`, "" when
#: unknown) and the settings string that travels with the numbers.
METRICS_TABLE: dict[str, pl.DataType] = {**METRICS, "x": pl.Float64, "x_axis": pl.String, "x_unit": pl.String,
                                         "signature": pl.String}

_GROUP = [*MODEL_COLUMNS, "task"]


def _signature(metric_signature: str, bootstrap: BootstrapConfig) -> str:
    return "|".join(s for s in (metric_signature, bootstrap.signature()) if s)


def _counts(values: np.ndarray) -> pl.Series:
    """Parameter counts as Int64, null where unknown (a count missing in the input is NaN in a Curves array)."""
    return pl.Series(values.astype(np.float64), dtype=pl.Float64, nan_to_null=True).cast(pl.Int64)


def metric_table(curves: Sequence[Curves]) -> pl.DataFrame:
    """METRICS_TABLE rows of every (model, metric) of every `Curves`: point mean, percentile interval of the
    replicates, defined items. A model whose metric is undefined on every item gets null mean and interval."""
    parts = []
    for c in curves:
        M, B, n = c.replicates.shape
        if M == 0 or n == 0:
            continue
        flat = c.replicates.transpose(1, 0, 2).reshape(B, M * n)  # (B, M·n)
        low, high = percentile_interval(flat, c.bootstrap.confidence)  # (M·n,), (M·n,)
        parts.append(pl.DataFrame({
            "model": np.tile(np.array(c.models, dtype=object), M).tolist(),
            "params": _counts(np.tile(c.params, M)),
            "non_embedding_params": _counts(np.tile(c.non_embedding_params, M)),
            "task": [c.task] * (M * n),
            "formulation": [c.formulation] * (M * n),
            "metric": np.repeat(np.array(c.metrics, dtype=object), n).tolist(),
            "taxonomy": [i.taxonomy for i in c.info for _ in range(n)],
            "kind": [i.kind for i in c.info for _ in range(n)],
            "direction": [i.direction for i in c.info for _ in range(n)],
            "mean": c.means.reshape(-1),
            "ci_low": low,
            "ci_high": high,
            "n_items": c.n_items.reshape(-1),
            "x": np.tile(c.x, M),
            "x_axis": [c.x_name] * (M * n),
            "x_unit": [c.x_unit] * (M * n),
            "signature": [_signature(sig, c.bootstrap) for sig in c.signatures for _ in range(n)],
        }, schema_overrides={**MODEL_COLUMNS, "mean": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                             "n_items": pl.Int64, "x": pl.Float64}))
    if not parts:
        return pl.DataFrame(schema=METRICS_TABLE)
    out = pl.concat(parts).with_columns(pl.col("mean", "ci_low", "ci_high").fill_nan(None))
    return validate(out.select(list(METRICS_TABLE)), METRICS_TABLE, "metrics")


def aggregate(
    item_metrics: pl.DataFrame,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    extra_info: Mapping[str, MetricInfo] | None = None,
) -> pl.DataFrame:
    """Mean over items per (model, task, metric), with a percentile-bootstrap interval (METRICS_TABLE).

    Null (or NaN) item values are undefined for that item and left out of the mean; `n_items` counts the defined
    ones. A metric undefined on every item gets null mean and interval and n_items 0. Metrics not in the registry
    must be described in `extra_info`.

    >>> rows = pl.DataFrame({"model": ["m"] * 3, "params": [2] * 3, "non_embedding_params": [1] * 3,
    ...     "task": ["t"] * 3, "item_id": ["a", "b", "c"], "metric": ["margin"] * 3, "value": [1.0, 2.0, 6.0],
    ...     "signature": [""] * 3})
    >>> aggregate(rows, BootstrapConfig(n_resamples=50))["mean"].to_list()
    [3.0]
    """
    return metric_table(item_curves(item_metrics, bootstrap, extra_info))


def corpus_aggregate(
    stats: pl.DataFrame,
    stat_columns: Sequence[str],
    score: Callable[[np.ndarray], float],
    metric: str,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    signature: str = "",
    extra_info: Mapping[str, MetricInfo] | None = None,
) -> pl.DataFrame:
    """Corpus score per (model, task): `score` of the summed `stat_columns`, with a bootstrap that resamples items
    and recomputes `score` from the resampled sums (sacrebleu's habit: a corpus score is not a mean of item scores).

    `stats` has the model columns, task, item_id and `stat_columns`; the output is METRICS_TABLE rows for `metric`,
    with `signature` (e.g. sacrebleu's) joined to the bootstrap's.

    >>> stats = pl.DataFrame({"model": ["m"] * 2, "params": [2] * 2, "non_embedding_params": [1] * 2,
    ...     "task": ["t"] * 2, "item_id": ["a", "b"], "hit": [1, 3], "total": [4, 4]})
    >>> ratio = lambda s: float(s[0] / s[1])
    >>> corpus_aggregate(stats, ["hit", "total"], ratio, "corpus_bleu", BootstrapConfig(n_resamples=20))["mean"][0]
    0.5
    """
    stats = validate(stats, {**MODEL_COLUMNS, "task": pl.String, "item_id": pl.String}, "corpus statistics")
    missing = [c for c in stat_columns if c not in stats.columns]
    if missing:
        raise ValueError(f"corpus statistics: missing statistic column(s) {missing}; found {stats.columns}")
    if "formulation" not in stats.columns:
        stats = stats.with_columns(pl.lit(DEFAULT_FORMULATION).alias("formulation"))
    keys = [*_GROUP, "formulation", "item_id"]
    dup = stats.group_by(keys).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"corpus statistics: {dup.height} duplicated key(s) over {keys}, e.g. {dup.row(0, named=True)}")
    curves = [
        add_corpus_metric(item_skeleton(stats, task, bootstrap, formulation=formulation), stats, stat_columns, score,
                          metric, signature, extra_info)
        for task, formulation in stats.select("task", "formulation").unique(maintain_order=True).iter_rows()
    ]
    return metric_table(curves)
