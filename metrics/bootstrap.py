"""Seeded percentile bootstrap over items, vectorised with numpy.

A resample is stored as a count matrix: counts[b, i] is how many times item i was drawn in resample b. Any
statistic that is a sum over items then becomes one matrix product (counts @ values), so a mean and a corpus score
built from summed sufficient statistics (BLEU, chrF) are resampled the same way. The interval is the percentile
interval of Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 13: the α/2 and 1 − α/2 quantiles of
the bootstrap replicates, α = 1 − confidence.

Resamples are seeded by (`seed`, a stable hash of the task name) and items are ordered by item_id, so every model
scored on the same items of a task gets the same resamples (paired across models), all metrics of one (model,
task) share them, and the result does not depend on the order in which tasks or models are processed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Efron & Tibshirani (1993) suggest at least 1,000 replicates for percentile intervals.
DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0


@dataclass(frozen=True)
class BootstrapConfig:
    """Settings of the percentile bootstrap; `signature()` travels with every interval computed under them."""

    n_resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if not isinstance(self.n_resamples, int) or self.n_resamples < 1:
            raise ValueError(f"BootstrapConfig.n_resamples must be a positive int, found {self.n_resamples!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"BootstrapConfig.confidence must be in (0, 1), found {self.confidence!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"BootstrapConfig.seed must be a non-negative int, found {self.seed!r}")

    def signature(self) -> str:
        """Reproducibility string, e.g. 'ci:percentile|bs:1000|conf:0.95|seed:0'."""
        return f"ci:percentile|bs:{self.n_resamples}|conf:{self.confidence}|seed:{self.seed}"


def resample_counts(n_items: int, config: BootstrapConfig, stream: str) -> np.ndarray:
    """Draw `config.n_resamples` resamples of `n_items` items with replacement, as a count matrix.

    `stream` (the task name) selects an independent, stable random stream under `config.seed`.

    >>> counts = resample_counts(4, BootstrapConfig(n_resamples=3, seed=1), "task")
    >>> counts.shape, counts.sum(axis=1).tolist()
    ((3, 4), [4, 4, 4])
    """
    if n_items < 1:
        raise ValueError(f"resample_counts: n_items must be >= 1, found {n_items}")
    n_resamples = config.n_resamples
    rng = np.random.default_rng([config.seed, zlib.crc32(stream.encode("utf-8"))])
    draws = rng.integers(0, n_items, size=(n_resamples, n_items))  # (B, n) item index per draw
    flat = (draws + n_items * np.arange(n_resamples)[:, None]).ravel()  # (B*n,) index into a flattened (B, n)
    return np.bincount(flat, minlength=n_resamples * n_items).reshape(n_resamples, n_items)  # (B, n) counts


def bootstrap_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of each column over the resampled items, ignoring NaN (an undefined item metric).

    values: (n, M) item × metric; counts: (B, n). Returns (B, M); NaN where a resample drew no defined value.
    Non-finite values other than NaN (±inf) are not supported: 0 × inf would poison the product.

    >>> bootstrap_means(np.array([[1.0], [np.nan], [3.0]]), np.array([[2, 1, 0], [0, 0, 3]])).tolist()
    [[1.0], [3.0]]
    """
    present = ~np.isnan(values)  # (n, M)
    totals = counts @ np.where(present, values, 0.0)  # (B, M)
    drawn = counts @ present.astype(np.float64)  # (B, M) defined items drawn
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals / drawn  # (B, M)


def bootstrap_corpus(stats: np.ndarray, counts: np.ndarray, score: Callable[[np.ndarray], float]) -> np.ndarray:
    """Corpus score of each resample: sum the items' sufficient statistics, then apply `score`.

    stats: (n, S) item × statistic; counts: (B, n). Returns (B,). `score` must be the function that gives the
    point estimate from the full sum, so the replicates and the estimate are the same statistic.
    """
    summed = counts @ stats  # (B, S) summed statistics per resample
    return np.array([score(row) for row in summed], dtype=np.float64)  # (B,)


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of (B, M) replicates (Efron & Tibshirani 1993, ch. 13), NaN-aware.

    Replicates may be ±inf (a breakthroughness whose median step is 0 in that resample): quantiles are taken with
    infinities standing in as the largest finite floats, so an interval reaching them ends at ±inf instead of NaN.

    >>> low, high = percentile_interval(np.arange(101.0)[:, None], 0.9)
    >>> round(float(low[0]), 9), round(float(high[0]), 9)
    (5.0, 95.0)
    >>> percentile_interval(np.array([[1.0], [np.inf], [np.inf], [np.inf]]), 0.9)[1].tolist()
    [inf]
    """
    alpha = 1.0 - confidence
    replicates = np.asarray(replicates, dtype=np.float64)
    big = np.finfo(np.float64).max
    finite_cols = ~np.all(np.isnan(replicates), axis=0)  # (M,) columns with at least one replicate
    low = np.full(replicates.shape[1], np.nan)
    high = np.full(replicates.shape[1], np.nan)
    if finite_cols.any():
        clipped = np.clip(replicates[:, finite_cols], -big, big)  # ±inf → ±max float; NaN stays NaN
        bounds = np.nanquantile(clipped, [alpha / 2, 1 - alpha / 2], axis=0)  # (2, M')
        bounds = np.where(np.abs(bounds) >= big, np.copysign(np.inf, bounds), bounds)
        low[finite_cols], high[finite_cols] = bounds[0], bounds[1]
    return low, high
