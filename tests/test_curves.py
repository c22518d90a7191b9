"""Curves: paired resamples, means, replicates and granularity against a plain index-gather bootstrap by hand."""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl
import pytest

from metrics.bootstrap import BootstrapConfig
from metrics.curves import PAIRED, PARAMETRIC, item_curves, mean_curves, restrict

SIZES = [10, 100, 1000]


def draws(seed: int, task: str, n_resamples: int, n_items: int) -> np.ndarray:
    """The resampled item indices the module must use: numpy's generator seeded by (seed, crc32(task))."""
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    return rng.integers(0, n_items, size=(n_resamples, n_items))  # (B, N)


def test_paired_resamples_are_identical_across_models(item_table):
    rng = np.random.default_rng(7)
    values = rng.normal(size=(3, 12))  # (models, items)
    (c,) = item_curves(item_table({"margin": values}, SIZES), BootstrapConfig(n_resamples=300, seed=5))
    idx = draws(5, "t", 300, 12)
    # every model's replicate b is the mean of the SAME resampled items
    expected = values[:, idx].mean(axis=2).T  # (B, models)
    assert c.method == PAIRED
    assert np.allclose(c.replicates[0], expected)
    assert c.models == ("m10", "m100", "m1000") and c.means[0] == pytest.approx(values.mean(axis=1))
    # and a step between models moves only with their disagreement: identical models give zero-width steps
    same = item_table({"margin": np.vstack([values[0], values[0], values[0] + 1.0])}, SIZES)
    (d,) = item_curves(same, BootstrapConfig(n_resamples=300, seed=5))
    assert np.allclose(np.diff(d.replicates[0], axis=-1)[:, 0], 0.0)
    assert np.allclose(np.diff(d.replicates[0], axis=-1)[:, 1], 1.0)


def test_one_seed_gives_the_same_resamples_for_every_task_order(item_table):
    a = item_table({"margin": np.arange(30.0).reshape(3, 10)}, SIZES, task="a")
    b = item_table({"margin": np.ones((3, 10))}, SIZES, task="b")
    config = BootstrapConfig(n_resamples=50, seed=2)
    first = {c.task: c for c in item_curves(pl.concat([a, b]), config)}
    second = {c.task: c for c in item_curves(pl.concat([b, a]).sample(fraction=1.0, shuffle=True, seed=1), config)}
    assert np.array_equal(first["a"].counts, second["a"].counts)
    assert np.array_equal(first["a"].replicates, second["a"].replicates)
    assert not np.array_equal(first["a"].counts, first["b"].counts)  # tasks get their own streams


def test_unscored_and_undefined_items_are_left_out(item_table):
    values = np.array([[1.0, 2.0, 3.0, 4.0], [np.nan, 10.0, 20.0, 30.0], [5.0, 5.0, np.nan, 5.0]])
    (c,) = item_curves(item_table({"margin": values}, SIZES), BootstrapConfig(n_resamples=200, seed=1))
    assert c.item_ids == ("i000", "i001", "i002", "i003")  # the union of items, sorted
    assert c.n_items[0].tolist() == [4, 3, 3]
    assert c.means[0] == pytest.approx([2.5, 20.0, 5.0])
    idx = draws(1, "t", 200, 4)
    for j in range(3):  # mean of the resampled items that model j has
        gathered = values[j][idx]  # (B, N)
        drawn = (~np.isnan(gathered)).sum(axis=1)
        with np.errstate(invalid="ignore"):
            expected = np.nansum(gathered, axis=1) / drawn  # NaN when no scored item was drawn
        assert np.allclose(c.replicates[0][:, j], expected, equal_nan=True)


def test_granularity_is_one_over_n_for_integer_scores(item_table):
    table = item_table({"exact_match": np.array([[0, 1, 0, 0, 1]] * 3, dtype=float),
                        "margin": np.full((3, 5), 0.5)}, SIZES)
    (c,) = item_curves(table, BootstrapConfig(n_resamples=10))
    assert c.granularity[c.index("exact_match")] == pytest.approx(1 / 5)
    assert c.granularity[c.index("margin")] == 0.0


def test_restrict_reuses_the_task_counts(item_table):
    values = np.arange(15.0).reshape(3, 5)
    (c,) = item_curves(item_table({"margin": values}, SIZES), BootstrapConfig(n_resamples=100, seed=3))
    part = restrict(c, np.array([1, 3]), "Q1")
    idx = draws(3, "t", 100, 5)
    counts = np.stack([np.bincount(row, minlength=5) for row in idx])[:, [1, 3]]  # (B, 2)
    with np.errstate(invalid="ignore"):
        expected = (counts @ values[:, [1, 3]].T) / counts.sum(axis=1, keepdims=True)  # (B, models)
    assert part.slice == "Q1" and part.item_ids == ("i001", "i003")
    assert part.means[0] == pytest.approx(values[:, [1, 3]].mean(axis=1))
    assert np.allclose(part.replicates[0], expected, equal_nan=True)


def test_mean_curves_draw_normal_replicates_per_model():
    table = pl.DataFrame({
        "model": ["a", "b", "c"], "params": [1, 2, 3], "non_embedding_params": [1, 2, 3], "task": ["t"] * 3,
        "metric": ["margin"] * 3, "mean": [0.0, 1.0, 2.0], "stderr": [0.1, 0.2, None], "n_items": [100] * 3,
    })
    (c,) = mean_curves(table, BootstrapConfig(n_resamples=20000, seed=0))
    rep = c.replicates[0]  # (B, n)
    assert c.method == PARAMETRIC
    assert rep[:, 0].mean() == pytest.approx(0.0, abs=0.005) and rep[:, 0].std() == pytest.approx(0.1, rel=0.03)
    assert rep[:, 1].std() == pytest.approx(0.2, rel=0.03)
    assert abs(np.corrcoef(rep[:, 0], rep[:, 1])[0, 1]) < 0.03  # unpaired: independent draws
    assert np.isnan(rep[:, 2]).all()  # no stderr, no interval


def test_inconsistent_model_sizes_are_refused(item_table):
    table = item_table({"margin": np.ones((3, 2))}, SIZES)
    bad = table.with_columns(pl.when(pl.col("item_id") == "i001").then(7).otherwise(pl.col("params")).alias("params"))
    with pytest.raises(ValueError, match="different sizes"):
        item_curves(bad)
