"""Trend tests across scale: monotone trends, inverse scaling, U shapes, and what the averages hide per item.

All curves are oriented so that higher is better, against t = log10(scale). Intervals are percentile intervals of
the curves' bootstrap replicates (`metrics.curves`: items resampled, paired across models), at the bootstrap's
confidence. They describe item noise on this ladder; they cannot speak for models that were not trained.

- **Monotone trend.** Spearman's rank correlation ρ between the model means and the scale (Spearman 1904; ties get
  average ranks), recomputed on every replicate. Two uncertainties bear on it: the items (the bootstrap interval)
  and the few models (with six models a ρ of 0.3 is what a random order of six sizes gives often). So the trend
  also needs ρ's permutation p-value over the n models, `spearman_p` (two-sided; exact enumeration of the n!
  orders for n ≤ 8, scipy's t approximation above), below 1 − confidence. `trend` is "rising" when ρ's interval
  lies above 0 and p is below that level, "falling" when the interval lies below 0 and p is below it, "no clear
  trend" otherwise. **Inverse scaling** (McKenzie et al. 2023, "Inverse scaling: when bigger
  isn't better") is flagged when the trend is falling.
- **U shapes** (Wei et al. 2022, "Inverse scaling can become U-shaped", arXiv:2211.02011; Wu & Lo 2025, "U-shaped
  and inverted-U scaling behind emergent abilities of large language models", arXiv:2410.01692). The least-squares
  quadratic y ≈ a + b·u + c·u² in u = t − mean(t); its curvature c (per (log10 scale)²) gets a bootstrap interval,
  its vertex t* = mean(t) − b/(2c) (reported when inside the ladder's range). A curve is "U-shaped" (worse, then better) when c's interval lies above 0, the
  vertex is inside the ladder's range, and the data themselves dip: the worst model is neither the first nor the
  last, and both the first and the last model are better than it with intervals above 0. "inverted-U" (better,
  then worse) is the mirror image. The last condition keeps a late sigmoid jump (convex-looking, never falling)
  from being called a U. Needs at least 4 models.
- **Per-item correlations** (Schaeffer et al. 2024, "Why has predicting downstream capabilities of frontier AI
  models with scale remained elusive?", arXiv:2406.04391): for every item, Spearman's ρ between that item's score
  and scale across the models. An average can rise while most items do not; the distribution (mean, median, share
  above 0) says how many items carry a trend. An item with the same score for every model (ρ undefined) or not
  scored by every model is left out of the summaries.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.stats import rankdata
from scipy.stats import t as student_t

from metrics import indices
from metrics.bootstrap import percentile_interval
from metrics.curves import Curves

RISING = "rising"
FALLING = "falling"
NO_TREND = "no clear trend"
U_SHAPED = "U-shaped"
INVERTED_U = "inverted-U"
MIN_MODELS_QUADRATIC = 4

#: trends.parquet: one row per (task, slice, metric).
TRENDS: dict[str, pl.DataType] = {
    "task": pl.String,
    "formulation": pl.String,
    "slice": pl.String,  # "all" items, or a difficulty slice (metrics/slices.py)
    "metric": pl.String,
    "kind": pl.String,
    "direction": pl.String,
    "n_models": pl.Int64,
    "spearman": pl.Float64,
    "spearman_ci_low": pl.Float64,
    "spearman_ci_high": pl.Float64,
    "spearman_p": pl.Float64,  # permutation p-value of ρ over the models (two-sided)
    "trend": pl.String,
    "inverse_scaling": pl.Boolean,
    "curvature": pl.Float64,
    "curvature_ci_low": pl.Float64,
    "curvature_ci_high": pl.Float64,
    "vertex": pl.Float64,  # scale value at the quadratic's extremum; null when outside the ladder's range
    "shape": pl.String,  # U-shaped, inverted-U or null
    "item_rho_mean": pl.Float64,
    "item_rho_median": pl.Float64,
    "item_rho_share_positive": pl.Float64,
    "item_rho_n": pl.Int64,  # items with a defined correlation
    "method": pl.String,
    "signature": pl.String,
}

#: item_correlations.parquet: one row per (task, metric, item).
ITEM_CORRELATIONS: dict[str, pl.DataType] = {
    "task": pl.String,
    "formulation": pl.String,
    "metric": pl.String,
    "kind": pl.String,
    "item_id": pl.String,
    "spearman": pl.Float64,  # of the item's oriented score against scale across models; null when undefined
    "n_models": pl.Int64,
}


def spearman(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row of y (..., n) with x (n,) along the last axis (average ranks for ties); NaN when
    a row is constant or holds a NaN.

    >>> spearman(np.array([[1.0, 3.0, 2.0, 4.0], [4.0, 3.0, 2.0, 1.0]]), np.arange(4.0)).tolist()
    [0.8, -1.0]
    """
    ry = rankdata(y, axis=-1, nan_policy="propagate")  # (..., n)
    rx = rankdata(x)  # (n,)
    dy = ry - ry.mean(axis=-1, keepdims=True)
    dx = rx - rx.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (dy * dx).sum(axis=-1) / np.sqrt((dy**2).sum(axis=-1) * (dx**2).sum())


#: Up to this many models the permutation null of ρ is enumerated exactly (8! = 40,320 orders).
EXACT_PERMUTATIONS = 8


@functools.lru_cache(maxsize=None)
def _null_rho(n: int) -> np.ndarray:
    """|ρ| of every order of n untied ranks against 1..n, sorted: Spearman's exact permutation null."""
    ranks = np.array(list(itertools.permutations(range(n))), dtype=np.float64)  # (n!, n)
    d2 = ((ranks - np.arange(n)) ** 2).sum(axis=1)  # (n!,)
    return np.sort(np.abs(1 - 6 * d2 / (n * (n * n - 1))))


def spearman_pvalue(rho: np.ndarray, n: int) -> np.ndarray:
    """Two-sided permutation p-value of Spearman's ρ over n models: the share of the n! orders with |ρ| at least
    as large (exact for n ≤ EXACT_PERMUTATIONS; Student's t approximation with n − 2 df above, as scipy's spearmanr).

    >>> float(spearman_pvalue(np.array([1.0]), 4)[0])  # 2 of the 24 orders are perfectly monotone
    0.08333333333333333
    """
    rho = np.asarray(rho, dtype=np.float64)
    if n < 3:
        return np.full(rho.shape, np.nan)
    if n <= EXACT_PERMUTATIONS:
        null = _null_rho(n)
        at_least = null.size - np.searchsorted(null, np.abs(rho) - 1e-12, side="left")
        return np.where(np.isnan(rho), np.nan, at_least / null.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = rho * np.sqrt((n - 2) / np.maximum(1 - rho**2, 1e-300))
    return 2 * student_t.sf(np.abs(t), n - 2)


def quadratic(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Least-squares (a, b, c) of y ≈ a + b·u + c·u², u = t − mean(t), for each row of y (..., n) → (..., 3).

    >>> np.round(quadratic(np.array([1.0, 0.0, 1.0, 4.0, 9.0]), np.arange(5.0)), 9).tolist()  # 1 + 2u + u²
    [1.0, 2.0, 1.0]
    """
    u = t - t.mean()
    design = np.stack([np.ones_like(u), u, u**2], axis=1)  # (n, 3)
    return np.asarray(y) @ np.linalg.pinv(design).T  # (..., 3)


def _rows_for(c: Curves, item_summary: pl.DataFrame) -> list[dict]:
    oriented = c.sign[:, None] * c.means  # (M, n)
    rep = c.sign[:, None, None] * c.replicates  # (M, B, n)
    confidence = c.bootstrap.confidence
    summaries = {r.pop("metric"): r for r in item_summary.iter_rows(named=True)}
    rows = []
    for group, keep in c.defined_groups():
        n = int(keep.sum())
        t = indices.log_scale(c.x[keep])
        y, yr = oriented[group][:, keep], rep[group][:, :, keep]  # (m, n), (m, B, n)
        m = len(group)
        nan = np.full(m, np.nan)
        rho, rho_low, rho_high, rho_p = nan, nan, nan, nan
        if n >= indices.MIN_MODELS:  # one step cannot show a trend
            rho = spearman(y, c.x[keep])  # (m,)
            rho_low, rho_high = percentile_interval(spearman(yr, c.x[keep]).T, confidence)
            rho_p = spearman_pvalue(rho, n)
        curv, curv_low, curv_high, vertex = nan, nan, nan, nan
        shapes: list[str | None] = [None] * m
        if n >= MIN_MODELS_QUADRATIC and np.isfinite(t).all():
            coef = quadratic(y, t)  # (m, 3)
            curv = coef[:, 2]
            curv_low, curv_high = percentile_interval(quadratic(yr, t)[..., 2].T, confidence)
            with np.errstate(divide="ignore", invalid="ignore"):
                t_star = t.mean() - coef[:, 1] / (2 * coef[:, 2])  # (m,)
            inside = (t_star > t[0]) & (t_star < t[-1])  # (m,) extremum within the ladder's range
            vertex = np.where(inside, 10.0 ** np.where(inside, t_star, 0.0), np.nan)
            for j in range(m):
                shapes[j] = _shape(y[j], yr[j], curv_low[j], curv_high[j], bool(inside[j]), confidence)
        for j, r in enumerate(group):
            few_models_ok = rho_p[j] < 1 - confidence
            trend = RISING if rho_low[j] > 0 and few_models_ok else FALLING if rho_high[j] < 0 and few_models_ok \
                else NO_TREND
            rows.append({
                "task": c.task, "formulation": c.formulation, "slice": c.slice, "metric": c.metrics[r],
                "kind": c.info[r].kind,
                "direction": c.info[r].direction, "n_models": n, "spearman": rho[j], "spearman_ci_low": rho_low[j],
                "spearman_ci_high": rho_high[j], "spearman_p": rho_p[j], "trend": trend if np.isfinite(rho[j]) else None,
                "inverse_scaling": bool(trend == FALLING) if np.isfinite(rho[j]) else None,
                "curvature": curv[j], "curvature_ci_low": curv_low[j], "curvature_ci_high": curv_high[j],
                "vertex": vertex[j], "shape": shapes[j],
                **summaries.get(c.metrics[r], {}),
                "method": c.method, "signature": c.bootstrap.signature(),
            })
    return rows


def _shape(y: np.ndarray, yr: np.ndarray, curv_low: float, curv_high: float, inside: bool, confidence: float
           ) -> str | None:
    """U-shaped / inverted-U / None for one oriented curve y (n,) with replicates yr (B, n); see module docstring."""
    if not inside or np.isnan(curv_low):
        return None
    n = len(y)
    if curv_low > 0:
        k = int(np.argmin(y))
        if 0 < k < n - 1:
            gaps = np.stack([yr[:, 0] - yr[:, k], yr[:, -1] - yr[:, k]], axis=1)  # (B, 2) first/last above worst
            if (percentile_interval(gaps, confidence)[0] > 0).all():
                return U_SHAPED
    if curv_high < 0:
        k = int(np.argmax(y))
        if 0 < k < n - 1:
            gaps = np.stack([yr[:, k] - yr[:, 0], yr[:, k] - yr[:, -1]], axis=1)  # (B, 2) best above first/last
            if (percentile_interval(gaps, confidence)[0] > 0).all():
                return INVERTED_U
    return None


def item_correlations(curves: Sequence[Curves]) -> pl.DataFrame:
    """ITEM_CORRELATIONS rows: per (task, metric, item), Spearman's ρ of the item's oriented score against scale
    across every model (null when the item is not scored by every model or its score is constant)."""
    parts = []
    for c in curves:
        if c.values is None or not c.metrics:
            continue
        has_values = ~np.all(np.isnan(c.values), axis=(1, 2))  # (M,) corpus scores have none
        oriented = c.sign[has_values, None, None] * c.values[has_values]  # (M', n, N)
        rho = spearman(np.moveaxis(oriented, 1, -1), c.x)  # (M', N)
        names = [mtr for mtr, h in zip(c.metrics, has_values) if h]
        kinds = [i.kind for i, h in zip(c.info, has_values) if h]
        N = len(c.item_ids)
        parts.append(pl.DataFrame({
            "task": [c.task] * (len(names) * N),
            "formulation": [c.formulation] * (len(names) * N),
            "metric": np.repeat(np.array(names, dtype=object), N).tolist(),
            "kind": np.repeat(np.array(kinds, dtype=object), N).tolist(),
            "item_id": list(c.item_ids) * len(names),
            "spearman": rho.reshape(-1),
            "n_models": np.isfinite(oriented).sum(axis=1).reshape(-1),
        }, schema_overrides={"spearman": pl.Float64, "n_models": pl.Int64}))
    if not parts:
        return pl.DataFrame(schema=ITEM_CORRELATIONS)
    out = pl.concat(parts).with_columns(pl.col("spearman").fill_nan(None))
    return out.select(list(ITEM_CORRELATIONS))


def _item_summary(correlations: pl.DataFrame, c: Curves) -> pl.DataFrame:
    """Per metric: the distribution of the per-item correlations of `c`'s items (a slice holds a subset);
    `correlations` holds `c`'s (task, formulation) only."""
    rho = pl.col("spearman").drop_nulls()
    mine = correlations.filter(pl.col("item_id").is_in(list(c.item_ids)))
    return mine.group_by("metric").agg(
        rho.mean().alias("item_rho_mean"),
        rho.median().alias("item_rho_median"),
        (rho > 0).mean().alias("item_rho_share_positive"),
        rho.len().cast(pl.Int64).alias("item_rho_n"),
    )


def trend_table(curves: Sequence[Curves], correlations: pl.DataFrame | None = None) -> pl.DataFrame:
    """TRENDS rows for every metric of every `Curves` (whole task and difficulty slices alike). `correlations` is
    `item_correlations` of the whole-task curves (computed here when not given); a slice summarises its items."""
    if correlations is None:
        correlations = item_correlations([c for c in curves if c.slice == "all"])
    by_curve = correlations.partition_by("task", "formulation", as_dict=True)  # once, not per curve and slice
    none = correlations.clear()
    rows = []
    for c in curves:
        rows.extend(_rows_for(c, _item_summary(by_curve.get((c.task, c.formulation), none), c)))
    if not rows:
        return pl.DataFrame(schema=TRENDS)
    table = pl.DataFrame(rows, schema=TRENDS).with_columns(pl.col(pl.Float64).fill_nan(None))
    return table.sort("task", "formulation", "slice", "metric")
