"""Curves across model sizes → how linear or how sudden each (task, metric) curve is, with intervals and resolution.

The indices are BIG-bench's (Srivastava et al. 2022, arXiv:2206.04615, appendix "Definitions of linearity and
breakthroughness"), computed by `metrics.indices` on the curve y_i of model means ordered by the scale axis and
oriented so that higher is better (negated when the metric's direction is "lower"): the improvement I, linearity L
and breakthroughness B, plus the largest-step share (the part of the change made in the single largest step).
B is also the emergence score of Schaeffer et al. (2023). Conventions (fewer than three models → null; flat → 0;
zero median step → ±inf) are in `metrics.indices`.

**Intervals.** With item-level data each index is recomputed on every bootstrap replicate of the curve (the paired
item bootstrap of `metrics.curves`: one set of resampled items for every model) and the interval is the percentile
interval of those replicates (Efron & Tibshirani 1993, ch. 13), at the bootstrap's confidence.

**Resolution.** B divides by the median step, median_i |y_{i+1} − y_i|, and a step smaller than the noise of a step
cannot be told from zero. For each curve:

    SE_i  = bootstrap standard error of step i (std of y_{i+1} − y_i over the paired replicates)
    δ     = max(granularity, median_i SE_i)      the resolution: the typical step the data can resolve
    resolution_limited  ⇔  median_i |d_i| ≤ z · δ,   z = Φ⁻¹(1 − α/2) = 1.96 at 95%

where granularity is 1/n for a mean of n integer-valued items (a mean of 0/1 scores cannot move by less), else 0.
A resolution-limited B is set by the noise floor, not by the models: the data only say that B is at least about
`breakthroughness_bound` = I / (median_i |d_i| + z·δ), the improvement over an upper confidence limit of the median
step. Printed tables show it as "≥ bound", never as a bare number.

Worked case (the demo's exact match, 400 held-out items, eight models): means 0.003, 0.000, 0.003, 0.005, 0.745,
0.990, 1.000, 0.998, so |d| = 0.0025, 0.0025, 0.0025, 0.74, 0.245, 0.01, 0.0025 (rounded to the 1/400 lattice) and
the median step is 0.0025 = one item in 400; granularity 1/400 = 0.0025 and the step SEs are about 0.0025–0.005 for
one to four items changing, so δ ≈ 0.0025–0.003 and z·δ ≈ 0.005–0.006 > 0.0025: resolution-limited. B = 1/0.0025 =
400 is the item count, not a property of the models; the bound I / (0.0025 + z·δ) ≈ 120 is what the data support.
A per-token log-prob curve with a median step of 0.09 nats and step SEs near 0.01 is resolved.

**Concentration.** The largest-step share is compared with what steady change would show on the same ladder with
the same noise (`steady_threshold`): `concentrated` is true when the share exceeds that threshold, i.e. the change
is more concentrated in one step than a curve linear in log-scale plus this data's bootstrap noise would be in 95%
of resamples. `steady_share` is the noise-free value of the same yardstick (the widest log-scale gap over the span).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.stats import norm

from metrics import indices
from metrics.bootstrap import percentile_interval
from metrics.curves import Curves, axis_unit
from metrics.registry import LOWER
from metrics.schema import EMERGENCE, METRICS, validate

POINT_ONLY = "point estimate (no replicates)"
_INDEX_NAMES = ("improvement", "linearity", "breakthroughness", "largest_step_share")
_INDEX_FUNCS = (indices.improvement, indices.linearity, indices.breakthroughness, indices.largest_step_share)


def resolution_signature(confidence: float) -> str:
    """The resolution rule's settings, e.g. 'res:max(1/n,median step SE)|z:1.96'."""
    return f"res:max(granularity,median step SE)|z:{norm.ppf(0.5 + confidence / 2):.2f}"


def steady_threshold(point: np.ndarray, replicates: np.ndarray, t: np.ndarray, confidence: float) -> np.ndarray:
    """How large a largest-step share steady change would show with this curve's own noise: (m,) thresholds.

    Under the null hypothesis the curve is a straight line in t = log10(scale) (the least-squares line through the
    point means); adding each replicate's deviation from the point means (the paired bootstrap noise, with its
    correlations across models) gives null curves whose largest-step shares are what a steady trend would show in
    this data. The threshold is their `confidence` quantile: a share above it is more concentrated than steady
    change plus noise (a one-sided test at level 1 − confidence). The maximum over noisy steps is biased upward,
    which is why the noise-free `steady_share` alone is not the yardstick.

    point: (m, n) oriented means; replicates: (m, B, n); t: (n,) finite.
    """
    design = np.stack([np.ones_like(t), t], axis=1)  # (n, 2)
    line = point @ np.linalg.pinv(design).T @ design.T  # (m, n) least-squares line through each curve
    null = line[:, None, :] + (replicates - point[:, None, :])  # (m, B, n) steady curve + this data's noise
    shares = indices.largest_step_share(null)  # (m, B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a curve without finite replicates: NaN threshold
        return np.nanquantile(shares, confidence, axis=1)  # (m,)


def curve_indices(point: np.ndarray, replicates: np.ndarray | None, granularity: np.ndarray, x: np.ndarray,
                  confidence: float) -> dict[str, np.ndarray]:
    """Every index of m curves over the same n models, with intervals and resolution.

    point: (m, n) oriented means; replicates: (m, B, n) oriented replicates or None; granularity: (m,); x: (n,)
    scale values (ascending). Returns (m,) arrays keyed by EMERGENCE column names.
    """
    m, n = point.shape
    if n == 0:
        point = np.full((m, 1), np.nan)  # no defined model: every index undefined
    out: dict[str, np.ndarray] = {name: f(point) for name, f in zip(_INDEX_NAMES, _INDEX_FUNCS, strict=True)}
    out["median_step"] = indices.median_step(point) if n >= 2 else np.full(m, np.nan)
    t = indices.log_scale(x)
    out["steady_share"] = np.full(m, indices.steady_share(t) if np.isfinite(t).all() else np.nan)
    for name in _INDEX_NAMES:
        out[f"{name}_ci_low"] = np.full(m, np.nan)
        out[f"{name}_ci_high"] = np.full(m, np.nan)
    out["resolution"] = np.full(m, np.nan)
    out["breakthroughness_bound"] = np.full(m, np.nan)
    out["steady_share_threshold"] = np.full(m, np.nan)
    if replicates is not None and n >= indices.MIN_MODELS:
        B = replicates.shape[1]
        for name, f in zip(_INDEX_NAMES, _INDEX_FUNCS, strict=True):
            values = f(replicates)  # (m, B)
            low, high = percentile_interval(values.T, confidence)  # (m,), (m,)
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
        steps = np.diff(replicates, axis=-1)  # (m, B, n − 1) paired steps
        with np.errstate(invalid="ignore"):
            step_se = np.nanstd(steps, axis=1, ddof=1) if B > 1 else np.full((m, n - 1), np.nan)  # (m, n − 1)
        out["resolution"] = np.maximum(granularity, np.median(step_se, axis=-1))  # (m,)
        z = norm.ppf(0.5 + confidence / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["breakthroughness_bound"] = out["improvement"] / (out["median_step"] + z * out["resolution"])
        if np.isfinite(t).all():
            out["steady_share_threshold"] = steady_threshold(point, replicates, t, confidence)
    return out


def _flags(table: pl.DataFrame, confidence: float) -> pl.DataFrame:
    """resolution_limited (median step ≤ z·δ) and concentrated (largest-step share above the steady threshold)."""
    z = norm.ppf(0.5 + confidence / 2)
    defined = pl.col("breakthroughness").is_not_null() & (pl.col("improvement") != 0) & pl.col(
        "resolution").is_not_null()
    return table.with_columns(
        pl.when(defined).then(pl.col("median_step") <= z * pl.col("resolution")).alias("resolution_limited"),
        pl.when(pl.col("largest_step_share").is_not_null() & pl.col("steady_share_threshold").is_not_null())
        .then(pl.col("largest_step_share") > pl.col("steady_share_threshold")).alias("concentrated"),
    )


def _largest_step_models(point: np.ndarray, models: Sequence[str]) -> tuple[list[str | None], list[str | None]]:
    """The neighbouring models between which each curve's largest step (in the direction of I) happens."""
    at = indices.largest_step_at(point)  # (m,), −1 where undefined
    return [models[a] if a >= 0 else None for a in at], [models[a + 1] if a >= 0 else None for a in at]


def emergence_from_curves(curves: Sequence[Curves]) -> pl.DataFrame:
    """The EMERGENCE table with bootstrap intervals and resolution, one row per (task, metric) of `curves`.

    A metric's curve uses the models whose mean is defined; models are grouped by that set so each group of
    metrics is computed in one vectorised pass over metrics × replicates × models.
    """
    parts = []
    for c in curves:
        M = len(c.metrics)
        if M == 0:
            continue
        oriented = c.sign[:, None] * c.means  # (M, n)
        rep = c.sign[:, None, None] * c.replicates  # (M, B, n)
        for rows, keep in c.defined_groups():
            models = [mdl for mdl, k in zip(c.models, keep) if k]
            got = curve_indices(oriented[rows][:, keep], rep[rows][:, :, keep], c.granularity[rows], c.x[keep],
                                c.bootstrap.confidence)
            first, last = _largest_step_models(oriented[rows][:, keep], models)
            parts.append(pl.DataFrame({
                "task": [c.task] * len(rows),
                "formulation": [c.formulation] * len(rows),
                "metric": [c.metrics[r] for r in rows],
                "taxonomy": [c.info[r].taxonomy for r in rows],
                "kind": [c.info[r].kind for r in rows],
                "direction": [c.info[r].direction for r in rows],
                "n_models": [int(keep.sum())] * len(rows),
                "n_items": [int(c.n_items[r].max()) if c.n_items.size else 0 for r in rows],
                **{k: v for k, v in got.items()},
                "largest_step_from": first,
                "largest_step_to": last,
                "method": [c.method] * len(rows),
                "x_axis": [c.x_name] * len(rows),
                "x_unit": [c.x_unit] * len(rows),
                "signature": [f"{c.bootstrap.signature()}|{resolution_signature(c.bootstrap.confidence)}"] * len(rows),
            }, schema_overrides={"largest_step_from": pl.String, "largest_step_to": pl.String}))
    if not parts:
        return pl.DataFrame(schema=EMERGENCE)
    confidence = curves[0].bootstrap.confidence
    out = _finish(pl.concat(parts, how="diagonal_relaxed"), confidence)
    return validate(out, EMERGENCE, "emergence")


def _finish(table: pl.DataFrame, confidence: float) -> pl.DataFrame:
    """Nulls for undefined numbers (NaN → null), the resolution flag, schema order, sorted by (task, metric)."""
    floats = [name for name, dtype in EMERGENCE.items() if dtype == pl.Float64]
    table = table.with_columns(pl.col(floats).cast(pl.Float64).fill_nan(None))
    table = table.with_columns(
        pl.when(pl.col("n_models") < indices.MIN_MODELS).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("linearity", "breakthroughness", "largest_step_share")
    )
    return _flags(table, confidence).select(list(EMERGENCE)).sort("task", "formulation", "metric")


def emergence(metrics_table: pl.DataFrame) -> pl.DataFrame:
    """Point estimates of the indices from a metric table alone (no replicates, so no intervals or resolution).

    >>> table = pl.DataFrame({"model": ["s", "m", "l"], "params": [1, 2, 3], "non_embedding_params": [1, 2, 3],
    ...     "task": ["t"] * 3, "metric": ["margin"] * 3, "taxonomy": ["continuous"] * 3, "kind": ["smooth"] * 3,
    ...     "direction": ["higher"] * 3, "mean": [0.0, 1.0, 2.0], "ci_low": [0.0] * 3, "ci_high": [0.0] * 3,
    ...     "n_items": [1] * 3})
    >>> emergence(table).select("linearity", "breakthroughness").row(0)
    (2.0, 2.0)
    """
    metrics_table = validate(metrics_table, METRICS, "metrics")
    keys = ["task", "formulation", "metric"]
    conflicting = metrics_table.group_by(keys).agg(
        pl.col("taxonomy").n_unique(), pl.col("kind").n_unique(), pl.col("direction").n_unique()
    ).filter((pl.col("taxonomy") > 1) | (pl.col("kind") > 1) | (pl.col("direction") > 1))
    if conflicting.height:
        raise ValueError(f"metrics: (task, metric) with more than one taxonomy/kind/direction: {conflicting.row(0)}")
    dup = metrics_table.group_by([*keys, "model"]).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"metrics: duplicated (task, metric, model), e.g. {dup.row(0, named=True)}")
    rows = []
    x = "x" if "x" in metrics_table.columns else "non_embedding_params"  # the metric table's own scale axis
    x_axis = metrics_table["x_axis"][0] if "x_axis" in metrics_table.columns and metrics_table.height else x
    ordered = metrics_table.sort([*keys, x, "model"])
    for (task, formulation, metric), group in ordered.group_by(keys, maintain_order=True):
        taxonomy, kind, direction = group["taxonomy"][0], group["kind"][0], group["direction"][0]
        curve = group.filter(pl.col("mean").is_not_null() & pl.col("mean").is_not_nan())
        y = curve["mean"].to_numpy().astype(np.float64) * (-1.0 if direction == LOWER else 1.0)  # (n,)
        got = curve_indices(y[None], None, np.zeros(1), curve[x].to_numpy().astype(np.float64), 0.95)
        first, last = _largest_step_models(y[None], curve["model"].to_list())
        rows.append({"task": task, "formulation": formulation, "metric": metric, "taxonomy": taxonomy, "kind": kind,
                     "direction": direction,
                     "n_models": curve.height, "n_items": int(group["n_items"].max() or 0),
                     **{k: float(v[0]) for k, v in got.items()}, "largest_step_from": first[0],
                     "largest_step_to": last[0], "method": POINT_ONLY, "x_axis": x_axis,
                     "x_unit": axis_unit(x_axis), "signature": ""})
    if not rows:
        return pl.DataFrame(schema=EMERGENCE)
    table = pl.DataFrame(rows, schema_overrides={"largest_step_from": pl.String, "largest_step_to": pl.String})
    return validate(_finish(table, 0.95), EMERGENCE, "emergence")
