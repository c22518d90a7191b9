"""Metric table across model sizes → how linear or how sudden each (task, metric) curve is.

Definitions from BIG-bench (Srivastava et al. 2022, arXiv:2206.04615, appendix "Definitions of linearity and
breakthroughness"). Models are ordered by non-embedding parameters, ascending, and y_i is model i's mean score
oriented so that higher is better (negated when the metric's direction is "lower"). Then

    I(y) = sign(argmax_i y_i − argmin_i y_i) · (max_i y_i − min_i y_i)           overall improvement
    L(y) = I(y) / RootMeanSquare_i(y_{i+1} − y_i)                                 linearity
    B(y) = I(y) / RootMedianSquare_i(y_{i+1} − y_i)                               breakthroughness

B is the emergence score Schaeffer et al. (2023) compute. For unit steps over n models, I = n − 1 and both
denominators are 1, so L = B = n − 1. Decisions where the formulas are undefined:

- fewer than three models: both null (one or two differences say nothing about shape); n_models is recorded;
- a flat curve (I = 0, every difference 0): both 0.0 — no improvement at all, neither linear nor sudden;
- I ≠ 0 but the median squared difference is 0 (more than half the steps flat, e.g. one jump among flat steps):
  B = ±inf with the sign of I — the limit of a single jump as the other steps flatten; L stays finite;
- ties in argmax/argmin: the first model (smallest) wins, so a curve that reaches its maximum early counts as
  rising;
- models whose mean is null (metric undefined on every item) are left out of the curve.
"""

from __future__ import annotations

import math

import polars as pl

from metrics.registry import LOWER
from metrics.schema import EMERGENCE, METRICS, validate

#: Curves with fewer models get null linearity and breakthroughness.
MIN_MODELS = 3


def emergence(metrics_table: pl.DataFrame) -> pl.DataFrame:
    """Linearity and breakthroughness per (task, metric) (EMERGENCE table); see the module docstring.

    >>> table = pl.DataFrame({"model": ["s", "m", "l"], "params": [1, 2, 3], "non_embedding_params": [1, 2, 3],
    ...     "task": ["t"] * 3, "metric": ["margin"] * 3, "taxonomy": ["continuous"] * 3, "kind": ["smooth"] * 3,
    ...     "direction": ["higher"] * 3,
    ...     "mean": [0.0, 1.0, 2.0], "ci_low": [0.0] * 3, "ci_high": [0.0] * 3, "n_items": [1] * 3})
    >>> emergence(table).select("linearity", "breakthroughness").row(0)
    (2.0, 2.0)
    """
    metrics_table = validate(metrics_table, METRICS, "metrics")
    keys = ["task", "metric"]
    conflicting = metrics_table.group_by(keys).agg(
        pl.col("taxonomy").n_unique(), pl.col("kind").n_unique(), pl.col("direction").n_unique()
    ).filter((pl.col("taxonomy") > 1) | (pl.col("kind") > 1) | (pl.col("direction") > 1))
    if conflicting.height:
        raise ValueError(f"metrics: (task, metric) with more than one taxonomy/kind/direction: {conflicting.row(0)}")
    dup = metrics_table.group_by([*keys, "model"]).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"metrics: duplicated (task, metric, model), e.g. {dup.row(0, named=True)}")

    y = pl.when(pl.col("direction") == LOWER).then(-pl.col("mean")).otherwise(pl.col("mean"))
    curve = (
        metrics_table.filter(pl.col("mean").is_not_null() & pl.col("mean").is_not_nan())
        .with_columns(y.alias("y"))
        .sort([*keys, "non_embedding_params", "model"])
    )
    ordered = pl.col("y")  # rows are sorted by size within each (task, metric)
    step_sq = ordered.diff().drop_nulls() ** 2  # (n − 1,) squared differences between neighbouring sizes
    improvement = (ordered.arg_max().cast(pl.Int64) - ordered.arg_min().cast(pl.Int64)).sign().cast(pl.Float64) * (
        ordered.max() - ordered.min()
    )
    per_curve = curve.group_by(keys, maintain_order=True).agg(
        pl.col("taxonomy").first(),
        pl.col("kind").first(),
        pl.col("direction").first(),
        improvement.alias("I"),
        step_sq.mean().sqrt().alias("rms"),
        step_sq.median().sqrt().alias("rmeds"),
        pl.len().cast(pl.Int64).alias("n_models"),
    )
    enough = pl.col("n_models") >= MIN_MODELS
    flat = pl.col("I") == 0
    out = per_curve.with_columns(
        pl.when(~enough).then(None).when(flat).then(0.0).otherwise(pl.col("I") / pl.col("rms")).alias("linearity"),
        pl.when(~enough)
        .then(None)
        .when(flat)
        .then(0.0)
        .otherwise(pl.col("I") / pl.col("rmeds"))
        .alias("breakthroughness"),
    )
    # Curves with every mean null still appear, with n_models 0.
    all_keys = metrics_table.group_by(keys, maintain_order=True).agg(
        pl.col("taxonomy").first(), pl.col("kind").first(), pl.col("direction").first()
    )
    out = all_keys.join(out.drop("taxonomy", "kind", "direction"), on=keys, how="left").with_columns(
        pl.col("n_models").fill_null(0)
    )
    return validate(out.select(list(EMERGENCE)).sort(keys), EMERGENCE, "emergence")


def format_score(value: float | None, digits: int = 2) -> str:
    """A number for people: `digits` decimals, ∞ for infinities (a breakthroughness can be one), n/a for null.

    >>> [format_score(v) for v in (2.0, float("inf"), -float("inf"), None, float("nan"))]
    ['2.00', '∞', '−∞', 'n/a', 'n/a']
    """
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}"
