"""Difficulty slices: the same curves drawn separately for easy, middling and hard items (Wu & Lo 2025).

Wu & Lo (2025, "U-shaped and inverted-U scaling behind emergent abilities of large language models",
arXiv:2410.01692) group questions by difficulty and find that easy items can get worse with scale (inverted-U)
while hard ones get better after a dip (U), the two cancelling in the average until the hard items take over:
an apparent jump. scalelens slices the items of each task the same way and re-runs every statistic per slice.

Difficulty. One continuous metric per task measures it, so that every metric of the task is sliced the same way:
the first of DIFFICULTY_METRICS the task has (a smooth score defined on every item kind), else its first smooth
metric. An item's difficulty score is its mean of that metric, oriented higher-is-better, over the smaller half of
the ladder (the first ⌊n/2⌋ models by scale, at least one) — judged before the large models, so the slices are not
defined by the outcome they are used to explain. Items are sorted from easiest to hardest (ties by item id) and
cut into k groups of equal size (sizes differ by at most one). Items without a difficulty score are left out.

Each slice resamples its items with the task's own resample counts restricted to the slice (`curves.restrict`).
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

from metrics.aggregate import METRICS_TABLE, metric_table
from metrics.curves import Curves, restrict
from metrics.registry import SMOOTH

DIFFICULTY_METRICS = ("prob_target_among_choices", "per_token_accuracy", "logprob_target_per_token", "chrf")
DEFAULT_SLICES = 3


def difficulty_metric(curves: Curves) -> str | None:
    """The metric that orders `curves`'s items by difficulty, or None when the task has no smooth item metric."""
    has_values = set()
    if curves.values is not None:
        has_values = {m for m, v in zip(curves.metrics, curves.values) if not np.all(np.isnan(v))}
    for name in DIFFICULTY_METRICS:
        if name in has_values:
            return name
    return next((m for m, i in zip(curves.metrics, curves.info) if i.kind == SMOOTH and m in has_values), None)


def slice_label(j: int, k: int) -> str:
    """'Q1 (easiest)', 'Q2', …, 'Qk (hardest)'.

    >>> [slice_label(j, 3) for j in range(3)]
    ['Q1 (easiest)', 'Q2', 'Q3 (hardest)']
    """
    return f"Q{j + 1}" + (" (easiest)" if j == 0 else " (hardest)" if j == k - 1 else "")


def difficulty_order(curves: Curves, metric: str) -> np.ndarray:
    """Item indices from easiest to hardest by the smaller half's oriented mean of `metric` (ties by item id)."""
    m = curves.index(metric)
    half = max(1, len(curves.models) // 2)
    oriented = curves.sign[m] * curves.values[m, :half]  # (half, N), models are in scale order
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an item no small model scored: NaN, left out below
        score = np.nanmean(oriented, axis=0)  # (N,)
    ids = np.array(curves.item_ids, dtype=object)
    scored = np.flatnonzero(np.isfinite(score))
    order = np.lexsort((ids[scored], -score[scored]))  # primary: score descending; then item id
    return scored[order]


def difficulty_slices(curves: Curves, k: int = DEFAULT_SLICES) -> tuple[str | None, list[Curves]]:
    """(difficulty metric, k Curves over equal-size item groups from easiest to hardest); no Curves when the task
    has no item values or smooth metric (metric None) or fewer scored items than slices.

    >>> import polars as pl
    >>> from metrics.bootstrap import BootstrapConfig
    >>> from metrics.curves import item_curves
    >>> rows = pl.DataFrame({"model": ["s"] * 4 + ["l"] * 4, "params": [2] * 4 + [4] * 4,
    ...     "non_embedding_params": [1] * 4 + [3] * 4, "task": ["t"] * 8, "item_id": ["a", "b", "c", "d"] * 2,
    ...     "metric": ["margin"] * 8, "value": [0.5, 3.0, -1.0, 2.0, 1.0, 3.0, 0.0, 4.0], "signature": [""] * 8})
    >>> name, parts = difficulty_slices(item_curves(rows, BootstrapConfig(n_resamples=10))[0], k=2)
    >>> name, [p.item_ids for p in parts], [p.slice for p in parts]
    ('margin', [('b', 'd'), ('a', 'c')], ['Q1 (easiest)', 'Q2 (hardest)'])
    """
    if k < 2:
        raise ValueError(f"slices: expected at least 2 difficulty slices, got {k}")
    metric = difficulty_metric(curves)
    if metric is None:
        return None, []
    order = difficulty_order(curves, metric)
    if len(order) < k:
        return metric, []
    return metric, [restrict(curves, np.sort(part), slice_label(j, k)) for j, part in
                    enumerate(np.array_split(order, k))]


#: slices.parquet: the metric table of every difficulty slice.
SLICES: dict[str, pl.DataType] = {**METRICS_TABLE, "slice": pl.String, "difficulty_metric": pl.String}


def slice_table(slices: list[Curves], difficulty: dict[tuple[str, str], str]) -> pl.DataFrame:
    """SLICES rows: each slice's metric table, with its label and the task's difficulty metric."""
    parts = [metric_table([c]).with_columns(pl.lit(c.slice).alias("slice"),
                                            pl.lit(difficulty[(c.task, c.formulation)]).alias("difficulty_metric"))
             for c in slices]
    if not parts:
        return pl.DataFrame(schema=SLICES)
    return pl.concat(parts).select(list(SLICES))
