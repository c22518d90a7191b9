"""Sharp against smooth, paired: is a jump made by the metric, or do the models change too?

Within a task, every sharp metric's curve is compared with every smooth metric's curve of the same outputs on the
same models. The statistic is scale-free, so a 0–1 accuracy and a log-probability in nats compare directly: the
largest-step share c = (largest step in the direction of improvement) / (max − min) of `metrics.indices`, the part
of the whole change made in one step. Both curves come from the same resampled items in every replicate (the paired
bootstrap of `metrics.curves`), so the difference Δ = c_sharp − c_smooth has a paired percentile interval.

The yardstick for one curve is its steady threshold τ (`metrics.emergence.steady_threshold`): the share that a
curve linear in log-scale would reach on this very ladder, with this curve's own bootstrap noise, in 95% of
resamples. A curve is *concentrated* when its share c exceeds τ. (The noise-free steady share, the widest
log-scale gap over the span, is too low a yardstick: the largest of several noisy steps is biased upward.)

Verdict for one pair (the first rule that applies):

| verdict | rule |
| --- | --- |
| cannot tell at this resolution | τ_sharp ≥ NO_POWER (0.95): with so few models or so much noise, steady change itself can put (nearly) all of its change in one step, so no share could stand out |
| no jump to explain | c_sharp ≤ τ_sharp: the sharp metric is no more concentrated than steady change with its noise |
| the models change too | c_smooth > τ_smooth: the smooth metric of the same outputs is concentrated as well; the comment says whether Δ's interval is above 0 (the metric sharpens the jump further), includes 0 (as abrupt) or is below 0 |
| cannot tell at this resolution | the smooth metric does not rise with scale (the interval of its Spearman ρ with scale reaches 0 or below, `metrics.trends`): a curve that does not rise cannot witness steady progress |
| the jump is made by the metric | Δ's 95% interval lies above 0 and c_smooth ≤ τ_smooth: the same outputs change steadily under the smooth metric and abruptly under the sharp one (Schaeffer et al. 2023) |
| cannot tell at this resolution | otherwise: Δ's interval includes 0 while the smooth curve is not concentrated |

Progress before the jump (Schaeffer et al. 2023's observation that smooth metrics improve while exact match sits
at its floor): with k the last model before the sharp metric's largest step, `sharp_before_jump` and
`smooth_before_jump` are each metric's change from the smallest model to model k as a share of its whole change,
(y_k − y_1) / |I|, with paired intervals for the smooth one. A sharp metric flat at its floor while the smooth one
has already made a good part of its progress is the "hidden progress" a jump can hide.

Per sharp metric the *strictest* pair is the one against the smooth metric with the largest share (the smooth
curve most like a jump); a claim that the metric makes the jump is only as strong as that pair's verdict.

With aggregate input (means and standard errors, unpaired parametric replicates), the replicates of two metrics are
independent, so Δ's interval is wider than a paired one would be; the `method` column says which.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from metrics import indices
from metrics.bootstrap import percentile_interval
from metrics.curves import Curves
from metrics.emergence import steady_threshold
from metrics.registry import SHARP, SMOOTH
from metrics.trends import spearman

NO_JUMP = "no jump to explain"
MODELS = "the models change too"
METRIC = "the jump is made by the metric"
CANNOT_TELL = "cannot tell at this resolution"
VERDICTS = (METRIC, MODELS, CANNOT_TELL, NO_JUMP)

RULE_NO_JUMP = "sharp share not above its steady threshold"
RULE_MODELS = "smooth share above its steady threshold"
RULE_METRIC = "share difference CI above 0, smooth share not above its steady threshold"
RULE_CANNOT_TELL = "share difference CI includes 0, smooth share not above its steady threshold"
RULE_NOT_RISING = "the smooth metric does not rise with scale (Spearman CI reaches 0)"
RULE_NO_POWER = "steady change with this noise already reaches a share near 1 (too few models or too few items)"
#: A steady threshold at or above this leaves no room for a share to stand out: the comparison has no power.
NO_POWER = 0.95

#: comparisons.parquet: one row per (task, sharp metric, smooth metric).
COMPARISONS: dict[str, pl.DataType] = {
    "task": pl.String,
    "formulation": pl.String,
    "sharp_metric": pl.String,
    "smooth_metric": pl.String,
    "n_models": pl.Int64,
    "steady_share": pl.Float64,
    "sharp_threshold": pl.Float64,  # the sharp curve's steady threshold (metrics.emergence.steady_threshold)
    "smooth_threshold": pl.Float64,
    "sharp_share": pl.Float64,
    "sharp_share_ci_low": pl.Float64,
    "sharp_share_ci_high": pl.Float64,
    "smooth_share": pl.Float64,
    "smooth_share_ci_low": pl.Float64,
    "smooth_share_ci_high": pl.Float64,
    "share_difference": pl.Float64,
    "share_difference_ci_low": pl.Float64,
    "share_difference_ci_high": pl.Float64,
    "jump_from": pl.String,  # the last model before the sharp metric's largest step
    "jump_to": pl.String,
    "sharp_before_jump": pl.Float64,  # share of the sharp metric's change made before its largest step
    "smooth_before_jump": pl.Float64,  # … and the smooth metric's, over the same models
    "smooth_before_jump_ci_low": pl.Float64,
    "smooth_before_jump_ci_high": pl.Float64,
    "sharp_breakthroughness": pl.Float64,
    "smooth_breakthroughness": pl.Float64,
    "verdict": pl.String,
    "rule": pl.String,
    "comment": pl.String,
    "strictest": pl.Boolean,  # the pair against the most concentrated smooth metric of this sharp metric
    "method": pl.String,
    "signature": pl.String,
}


def verdict(sharp: float, sharp_threshold: float, smooth: float, smooth_threshold: float, diff_low: float,
            diff_high: float, smooth_rising: bool = True) -> tuple[str, str, str]:
    """(verdict, rule, comment) from the shares, their steady thresholds, Δ's interval and whether the smooth
    metric rises with scale; any NaN (no replicates, fewer than 3 models) gives "cannot tell".

    >>> verdict(0.7, 0.3, 0.25, 0.3, 0.3, 0.6)[0]
    'the jump is made by the metric'
    >>> verdict(0.7, 0.3, 0.5, 0.3, 0.1, 0.3)[:2]
    ('the models change too', 'smooth share above its steady threshold')
    >>> verdict(0.28, 0.3, 0.25, 0.3, 0.0, 0.3)[0]
    'no jump to explain'
    >>> verdict(0.7, 0.3, 0.25, 0.3, 0.3, 0.6, smooth_rising=False)[0]
    'cannot tell at this resolution'
    >>> verdict(1.0, 0.98, 1.0, 0.98, -0.4, 0.4)[1]  # three models: any curve makes half its change in one step
    'steady change with this noise already reaches a share near 1 (too few models or too few items)'
    """
    if any(np.isnan(v) for v in (sharp, sharp_threshold, smooth, smooth_threshold, diff_low, diff_high)):
        return CANNOT_TELL, "no interval (needs replicates, a positive scale axis and at least 3 models)", ""
    if sharp_threshold >= NO_POWER:
        return CANNOT_TELL, RULE_NO_POWER, ""
    if sharp <= sharp_threshold:
        return NO_JUMP, RULE_NO_JUMP, ""
    if smooth > smooth_threshold:
        if diff_low > 0:
            comment = "the sharp metric concentrates the change further: difference CI above 0"
        elif diff_high < 0:
            comment = "the smooth metric is the more abrupt of the two: difference CI below 0"
        else:
            comment = "both are about as abrupt: difference CI includes 0"
        return MODELS, RULE_MODELS, comment
    if not smooth_rising:
        return CANNOT_TELL, RULE_NOT_RISING, ""
    if diff_low > 0:
        return METRIC, RULE_METRIC, ""
    return CANNOT_TELL, RULE_CANNOT_TELL, ""


def _before_jump(point: np.ndarray, replicates: np.ndarray, confidence: float) -> dict:
    """Shares of change made before the sharp curve's largest step: point (2, n) oriented [sharp, smooth],
    replicates (2, B, n). The step's position is the point estimate's, held fixed across replicates."""
    nan = float("nan")
    if point.shape[1] < indices.MIN_MODELS:
        return {"at": None, "sharp": nan, "smooth": nan, "low": nan, "high": nan}
    total = indices.improvement(point)  # (2,)
    if not np.isfinite(total[0]) or total[0] == 0:
        return {"at": None, "sharp": nan, "smooth": nan, "low": nan, "high": nan}
    at = int(indices.largest_step_at(point[0]))  # the sharp metric's largest step: at → at + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (point[:, at] - point[:, 0]) / np.abs(total)  # (2,)
        reps = (replicates[1, :, at] - replicates[1, :, 0]) / np.abs(indices.improvement(replicates[1]))  # (B,)
    low, high = percentile_interval(reps[:, None], confidence)
    return {"at": at, "sharp": float(share[0]), "smooth": float(share[1]), "low": float(low[0]),
            "high": float(high[0])}


def _per_metric(oriented: np.ndarray, rep: np.ndarray, defined: np.ndarray, x: np.ndarray, keep: np.ndarray,
                confidence: float) -> dict:
    """The statistics of each metric defined on every model in `keep` (n,) that do not depend on its partner: the
    largest-step share (point (M,) and replicates (M, B)), its steady threshold (M,), breakthroughness (M,) and the
    lower end of Spearman's ρ interval (M,); NaN for the other metrics. oriented: (M, n); rep: (M, B, n)."""
    M, B = rep.shape[:2]
    rows = np.flatnonzero(defined[:, keep].all(axis=1))  # metrics with a value at every kept model
    o, r = oriented[rows][:, keep], rep[rows][:, :, keep]  # (M', n'), (M', B, n')
    t = indices.log_scale(x[keep])
    finite = bool(np.isfinite(t).all()) and keep.sum() >= indices.MIN_MODELS
    out = {"point": np.full(M, np.nan), "shares": np.full((M, B), np.nan), "threshold": np.full(M, np.nan),
           "breakthroughness": np.full(M, np.nan), "rho_low": np.full(M, np.nan),
           "steady": indices.steady_share(t) if finite else float("nan")}
    out["point"][rows] = indices.largest_step_share(o)
    out["shares"][rows] = indices.largest_step_share(r)
    if finite:
        out["threshold"][rows] = steady_threshold(o, r, t, confidence)
    out["breakthroughness"][rows] = indices.breakthroughness(o)
    out["rho_low"][rows] = percentile_interval(spearman(r, x[keep]).T, confidence)[0]  # spearman: (M', B)
    return out


def compare(curves: Sequence[Curves]) -> pl.DataFrame:
    """COMPARISONS rows for every (sharp, smooth) pair of metrics within each task of `curves`."""
    rows = []
    for c in curves:
        sharp = [m for m, i in enumerate(c.info) if i.kind == SHARP]
        smooth = [m for m, i in enumerate(c.info) if i.kind == SMOOTH]
        if not sharp or not smooth:
            continue
        oriented = c.sign[:, None] * c.means  # (M, n)
        rep = c.sign[:, None, None] * c.replicates  # (M, B, n)
        defined = np.isfinite(oriented)  # (M, n)
        confidence = c.bootstrap.confidence
        over: dict[bytes, dict] = {}  # per set of models: each metric's own statistics, shared by all its pairs
        for s in sharp:
            for m in smooth:
                keep = defined[s] & defined[m]  # (n,) models where both metrics are defined
                if not keep.any():
                    continue  # a metric undefined for every model (no per-token data, say) has no curve to compare
                if keep.tobytes() not in over:
                    over[keep.tobytes()] = _per_metric(oriented, rep, defined, c.x, keep, confidence)
                own = over[keep.tobytes()]
                point, shares = own["point"][[s, m]], own["shares"][[s, m]]  # (2,), (2, B)
                diff = shares[0] - shares[1]  # (B,) paired differences
                low, high = percentile_interval(np.vstack([shares, diff[None]]).T, confidence)  # (3,), (3,)
                steady, threshold, brk = own["steady"], own["threshold"][[s, m]], own["breakthroughness"][[s, m]]
                rho_low = own["rho_low"][m]
                pair = [s, m]
                before = _before_jump(oriented[pair][:, keep], rep[pair][:, :, keep], confidence)
                models = [mdl for mdl, k in zip(c.models, keep) if k]
                name, rule, comment = verdict(point[0], threshold[0], point[1], threshold[1], low[2], high[2],
                                              bool(rho_low > 0))
                rows.append({
                    "task": c.task, "formulation": c.formulation, "sharp_metric": c.metrics[s],
                    "smooth_metric": c.metrics[m],
                    "n_models": int(keep.sum()), "steady_share": steady, "sharp_threshold": threshold[0],
                    "smooth_threshold": threshold[1],
                    "sharp_share": point[0], "sharp_share_ci_low": low[0], "sharp_share_ci_high": high[0],
                    "smooth_share": point[1], "smooth_share_ci_low": low[1], "smooth_share_ci_high": high[1],
                    "share_difference": point[0] - point[1], "share_difference_ci_low": low[2],
                    "share_difference_ci_high": high[2],
                    "jump_from": models[before["at"]] if before["at"] is not None else None,
                    "jump_to": models[before["at"] + 1] if before["at"] is not None else None,
                    "sharp_before_jump": before["sharp"], "smooth_before_jump": before["smooth"],
                    "smooth_before_jump_ci_low": before["low"], "smooth_before_jump_ci_high": before["high"],
                    "sharp_breakthroughness": brk[0],
                    "smooth_breakthroughness": brk[1], "verdict": name, "rule": rule, "comment": comment,
                    "strictest": False, "method": c.method, "signature": c.bootstrap.signature(),
                })
    if not rows:
        return pl.DataFrame(schema=COMPARISONS)
    table = pl.DataFrame(rows, schema=COMPARISONS).with_columns(pl.col(pl.Float64).fill_nan(None))
    strictest = pl.col("smooth_share").fill_null(-1.0)  # ties → the first smooth metric in table order
    table = table.with_columns(
        (strictest.rank("ordinal", descending=True).over("task", "formulation", "sharp_metric") == 1).alias("strictest")
    )
    return table.sort("task", "formulation", "sharp_metric", "smooth_metric")
