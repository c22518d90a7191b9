"""Per-item metric tables → one row per (model, task, metric) with a bootstrap confidence interval.

Two aggregations share the bootstrap of `metrics.bootstrap`: the mean of an item metric (`aggregate`) and a corpus
score computed from summed per-item sufficient statistics (`corpus_aggregate`, used for corpus BLEU and chrF). Both
order items by item_id and draw resamples once per (model, task), so all metrics of a model share resamples.

The output has the METRICS columns plus `signature`, the reproducibility string of every setting that produced the
numbers: the item rows' own signature (e.g. sacrebleu's for sentence BLEU), then the bootstrap settings; sacrebleu's
signature for corpus scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from metrics.bootstrap import BootstrapConfig, bootstrap_corpus, bootstrap_means, percentile_interval, resample_counts
from metrics.registry import MetricInfo, metric_info
from metrics.schema import ITEM_METRICS, METRICS, MODEL_COLUMNS, validate

#: METRICS plus the settings string that travels with the numbers.
METRICS_TABLE: dict[str, pl.DataType] = {**METRICS, "signature": pl.String}

_GROUP = [*MODEL_COLUMNS, "task"]


def _check_unique(frame: pl.DataFrame, keys: list[str], table: str) -> None:
    dup = frame.group_by(keys).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"{table}: {dup.height} duplicated key(s) over {keys}, e.g. {dup.row(0, named=True)}")


def _describe(frame: pl.DataFrame, extra_info: Mapping[str, MetricInfo] | None) -> pl.DataFrame:
    """Add taxonomy, kind and direction from the registry (ValueError for an unknown metric)."""
    names = frame["metric"].unique().sort().to_list()
    infos = {name: metric_info(name, extra_info) for name in names}
    lookup = pl.DataFrame(
        {
            "metric": names,
            "taxonomy": [infos[n].taxonomy for n in names],
            "kind": [infos[n].kind for n in names],
            "direction": [infos[n].direction for n in names],
        },
        schema={"metric": pl.String, "taxonomy": pl.String, "kind": pl.String, "direction": pl.String},
    )
    return frame.join(lookup, on="metric", how="left")


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
    item_metrics = validate(item_metrics, ITEM_METRICS, "item_metrics")
    _check_unique(item_metrics, [*_GROUP, "item_id", "metric"], "item_metrics")
    item_signature = item_metrics.group_by([*_GROUP, "metric"]).agg(pl.col("signature").unique().alias("item_sig"))
    mixed = item_signature.filter(pl.col("item_sig").list.len() > 1)
    if mixed.height:
        row = mixed.row(0, named=True)
        raise ValueError(f"item_metrics: metric {row['metric']!r} of model {row['model']!r}, task {row['task']!r} "
                         f"mixes settings {row['item_sig']}; aggregate rows computed under one setting")
    item_signature = item_signature.with_columns(pl.col("item_sig").list.first())
    cleaned = item_metrics.with_columns(pl.col("value").fill_nan(None))
    parts = []
    for _, group in cleaned.sort([*_GROUP, "item_id"]).group_by(_GROUP, maintain_order=True):
        wide = group.pivot(on="metric", index="item_id", values="value", sort_columns=True)  # (n, 1 + M)
        names = wide.columns[1:]
        values = wide.select(names).to_numpy().astype(np.float64)  # (n, M), NaN = undefined
        counts = resample_counts(values.shape[0], bootstrap, group["task"][0])  # (B, n)
        low, high = percentile_interval(bootstrap_means(values, counts), bootstrap.confidence)  # (M,), (M,)
        key = group.select(_GROUP).row(0, named=True)
        parts.append(
            pl.DataFrame(
                {
                    **{col: [key[col]] * len(names) for col in _GROUP},
                    "metric": names,
                    "mean": wide.select(pl.col(names).mean()).row(0),
                    "ci_low": low,
                    "ci_high": high,
                    "n_items": wide.select(pl.col(names).count()).row(0),
                },
                schema_overrides={**MODEL_COLUMNS, "mean": pl.Float64, "n_items": pl.Int64},
            )
        )
    if not parts:
        return pl.DataFrame(schema=METRICS_TABLE)
    out = _describe(pl.concat(parts), extra_info).join(item_signature, on=[*_GROUP, "metric"], how="left")
    out = out.with_columns(
        pl.col("ci_low").fill_nan(None),
        pl.col("ci_high").fill_nan(None),
        pl.when(pl.col("item_sig") != "")
        .then(pl.concat_str(pl.col("item_sig"), pl.lit("|" + bootstrap.signature())))
        .otherwise(pl.lit(bootstrap.signature()))
        .alias("signature"),
    )
    return validate(out.select(list(METRICS_TABLE)), METRICS_TABLE, "metrics")


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
    _check_unique(stats, [*_GROUP, "item_id"], "corpus statistics")
    rows = []
    for _, group in stats.sort([*_GROUP, "item_id"]).group_by(_GROUP, maintain_order=True):
        matrix = group.select(stat_columns).to_numpy().astype(np.float64)  # (n, S)
        counts = resample_counts(matrix.shape[0], bootstrap, group["task"][0])  # (B, n)
        replicates = bootstrap_corpus(matrix, counts, score)[:, None]  # (B, 1)
        low, high = percentile_interval(replicates, bootstrap.confidence)  # (1,), (1,)
        rows.append(
            {
                **group.select(_GROUP).row(0, named=True),
                "metric": metric,
                "mean": float(score(matrix.sum(axis=0))),
                "ci_low": float(low[0]),
                "ci_high": float(high[0]),
                "n_items": group.height,
            }
        )
    if not rows:
        return pl.DataFrame(schema=METRICS_TABLE)
    full_signature = "|".join(s for s in (signature, bootstrap.signature()) if s)
    out = _describe(
        pl.DataFrame(
            rows,
            schema_overrides={**MODEL_COLUMNS, "mean": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                              "n_items": pl.Int64},
        ),
        extra_info,
    ).with_columns(pl.col("mean", "ci_low", "ci_high").fill_nan(None))
    out = out.with_columns(pl.lit(full_signature).alias("signature"))
    return validate(out.select(list(METRICS_TABLE)), METRICS_TABLE, "metrics")
