"""How sudden is a scaling curve? BIG-bench's indices and the largest-step share, vectorised over any leading axes.

Every function takes y of shape (..., n): one curve per leading index (a metric, a bootstrap replicate, or both),
models ordered along the scale axis, oriented so that higher is better. They return (...,) arrays, NaN where the
index is undefined, so the point estimate and thousands of bootstrap replicates go through the same code.

Definitions (Srivastava et al. 2022, BIG-bench, arXiv:2206.04615, appendix "Definitions of linearity and
breakthroughness"), with d_i = y_{i+1} − y_i:

    I(y) = sign(argmax_i y_i − argmin_i y_i) · (max_i y_i − min_i y_i)       overall improvement
    L(y) = I(y) / sqrt(mean_i d_i²)                                            linearity
    B(y) = I(y) / sqrt(median_i d_i²)                                          breakthroughness

and one scale-free statistic of how concentrated the change is (used to compare a sharp metric with a smooth one):

    share(y) = max_i (s · d_i) / (max_i y_i − min_i y_i),  s = sign(I)         largest-step share

the part of the total change made in the single largest step in the direction of improvement; 1 when all of it
happens in one step, 1/(n − 1) for n − 1 equal steps. For a curve that is linear in log-scale, the largest step is
the widest gap between neighbouring log-sizes, so `steady_share(t)` is the share a steady trend would show on the
same ladder (ladders are rarely evenly spaced).

Conventions, as in `metrics.emergence`: fewer than MIN_MODELS models → NaN (one step cannot tell a jump from a
trend); a flat curve (I = 0) → L = B = 0 and share NaN (no change to share out); I ≠ 0 with a zero median squared
step (over half the steps flat) → B = ±inf with the sign of I; ties in argmax/argmin go to the first (smallest)
model. A curve with any NaN value gives NaN everywhere.

>>> y = np.array([[0.0, 0.1, 0.2, 1.2, 1.3]])      # steps .1 .1 1 .1: I = 1.3, RMS² = .2575, median² = .01
>>> round(float(breakthroughness(y)[0]), 9), round(float(largest_step_share(y)[0]), 4)
(13.0, 0.7692)
"""

from __future__ import annotations

import numpy as np

#: Curves with fewer models get NaN indices.
MIN_MODELS = 3


def improvement(y: np.ndarray) -> np.ndarray:
    """I(y): (..., n) → (...). Signed range, positive when the maximum comes after the minimum.

    >>> improvement(np.array([3.0, 2.0, 1.0])).item(), improvement(np.array([2.0, 0.0, 2.0])).item()
    (-2.0, -2.0)
    """
    y = np.asarray(y, dtype=np.float64)
    direction = np.sign(np.argmax(y, axis=-1) - np.argmin(y, axis=-1))  # (...,) first occurrences win ties
    out = direction * (np.max(y, axis=-1) - np.min(y, axis=-1))  # (...,)
    return np.where(np.isnan(y).any(axis=-1), np.nan, out)


def _steps(y: np.ndarray) -> np.ndarray:
    return np.diff(np.asarray(y, dtype=np.float64), axis=-1)  # (..., n − 1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """I / denominator with the conventions: flat → 0, zero denominator → ±inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    out = np.where(numerator == 0, 0.0, out)
    return np.where(np.isnan(numerator), np.nan, out)


def linearity(y: np.ndarray) -> np.ndarray:
    """L(y) = I / root-mean-square step; (..., n) → (...)."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1] < MIN_MODELS:
        return np.full(y.shape[:-1], np.nan)
    rms = np.sqrt(np.mean(_steps(y) ** 2, axis=-1))  # (...,)
    return _ratio(improvement(y), rms)


def median_step(y: np.ndarray) -> np.ndarray:
    """Root-median-square step = median_i |d_i|, B's denominator; (..., n) → (...)."""
    return np.sqrt(np.median(_steps(y) ** 2, axis=-1))


def breakthroughness(y: np.ndarray) -> np.ndarray:
    """B(y) = I / root-median-square step; (..., n) → (...)."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1] < MIN_MODELS:
        return np.full(y.shape[:-1], np.nan)
    return _ratio(improvement(y), median_step(y))


def largest_step_share(y: np.ndarray) -> np.ndarray:
    """max_i sign(I)·d_i / (max y − min y): the share of the change made in the largest step; (..., n) → (...).

    >>> largest_step_share(np.array([[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 2.0, 2.0]])).tolist()
    [1.0, 0.3333333333333333, 1.0]
    """
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1] < MIN_MODELS:
        return np.full(y.shape[:-1], np.nan)
    total = improvement(y)  # (...,)
    signed = np.sign(total)[..., None] * _steps(y)  # (..., n − 1) steps in the direction of improvement
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.max(signed, axis=-1) / np.abs(total)
    return np.where((total == 0) | np.isnan(total), np.nan, out)


def largest_step_at(y: np.ndarray) -> np.ndarray:
    """Where the largest step in the direction of improvement is: i for the step y_i → y_(i+1) (the step whose share
    `largest_step_share` reports), −1 where that share is undefined; (..., n) → (...) int.

    >>> largest_step_at(np.array([[0.0, 0.0, 0.0, 1.0], [3.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]])).tolist()
    [2, 0, -1]
    """
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1] < MIN_MODELS:
        return np.full(y.shape[:-1], -1)
    total = improvement(y)  # (...,)
    signed = np.sign(total)[..., None] * _steps(y)  # (..., n − 1)
    at = np.argmax(np.nan_to_num(signed, nan=-np.inf), axis=-1)  # (...,)
    return np.where(np.isfinite(total) & (total != 0), at, -1)


def steady_share(t: np.ndarray) -> float:
    """Largest-step share of a curve linear in t (log-scale): the widest gap over the span.

    >>> steady_share(np.log10([1e3, 1e4, 1e5, 1e6]))
    0.3333333333333333
    """
    t = np.asarray(t, dtype=np.float64)
    if t.size < MIN_MODELS or t[-1] == t[0]:
        return float("nan")
    return float(np.max(np.diff(t)) / (t[-1] - t[0]))


def log_scale(x: np.ndarray) -> np.ndarray:
    """t = log10(x), NaN where x ≤ 0 (a step-0 checkpoint has no place on a log axis).

    >>> log_scale(np.array([1e3, 0.0, 1e6])).tolist()
    [3.0, nan, 6.0]
    """
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)
