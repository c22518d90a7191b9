"""Trend tests: Spearman against scipy, inverse scaling, U shapes, per-item correlations on a constructed table."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.stats

from metrics.bootstrap import BootstrapConfig
from metrics.curves import item_curves
from metrics.trends import (
    FALLING,
    INVERTED_U,
    NO_TREND,
    RISING,
    U_SHAPED,
    item_correlations,
    quadratic,
    spearman,
    spearman_pvalue,
    trend_table,
)

SIZES = [10**3, 10**4, 10**5, 10**6, 10**7, 10**8]


def trends(table):
    out = trend_table(item_curves(table, BootstrapConfig(n_resamples=400, seed=2)))
    return {r["metric"]: r for r in out.filter(pl.col("slice") == "all").iter_rows(named=True)}


def noisy(means, n_items=300, scale=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return np.asarray(means, dtype=float)[:, None] + rng.normal(scale=scale, size=(len(means), n_items))


def test_spearman_and_quadratic_equal_scipy_and_numpy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(20, 7))
    y[3, 2] = y[3, 5]  # a tie
    x = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0])
    expected = [scipy.stats.spearmanr(row, x).statistic for row in y]
    assert np.allclose(spearman(y, x), expected)
    t = np.log10(x)
    for row in y[:5]:
        c2, c1, c0 = np.polyfit(t - t.mean(), row, 2)
        assert np.allclose(quadratic(row, t), [c0, c1, c2])


def test_a_falling_curve_is_flagged_inverse(item_table):
    table = item_table({"margin": noisy([3.0, 2.5, 2.0, 1.5, 1.0, 0.5]),
                        "brier_score": noisy([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], scale=0.05)}, SIZES)
    got = trends(table)
    assert got["margin"]["trend"] == FALLING and got["margin"]["inverse_scaling"] is True
    assert got["margin"]["spearman"] == pytest.approx(-1.0)
    # brier_score is lower-is-better: rising Brier is getting worse, i.e. inverse scaling too
    assert got["brier_score"]["trend"] == FALLING and got["brier_score"]["inverse_scaling"] is True


def test_a_u_is_flagged_u_and_its_mirror_inverted_u(item_table):
    u = [2.0, 1.0, 0.2, 0.3, 1.1, 2.1]  # worse, then better (Wei et al. 2022)
    table = item_table({"margin": noisy(u), "reciprocal_rank": noisy([1 - v / 3 for v in u], scale=0.05)}, SIZES)
    got = trends(table)
    assert got["margin"]["shape"] == U_SHAPED and got["margin"]["curvature_ci_low"] > 0
    assert 10**5 < got["margin"]["vertex"] < 10**6  # the dip sits between the 3rd and 4th model
    assert got["reciprocal_rank"]["shape"] == INVERTED_U
    # ρ = 0.26 over six models: stable under item resampling, but a random order of six sizes does that often
    assert got["margin"]["spearman"] == pytest.approx(1 - 6 * 26 / 210)
    assert got["margin"]["spearman_ci_low"] > 0 and got["margin"]["spearman_p"] > 0.5
    assert got["margin"]["trend"] == NO_TREND


def test_spearman_permutation_pvalue_by_enumeration():
    import itertools
    for n, rho in ((5, 0.9), (6, 0.2571428571428571), (8, -0.5)):
        orders = np.array(list(itertools.permutations(range(n))))
        null = 1 - 6 * ((orders - np.arange(n)) ** 2).sum(axis=1) / (n * (n * n - 1))
        assert spearman_pvalue(np.array([rho]), n)[0] == pytest.approx(np.mean(np.abs(null) >= abs(rho) - 1e-12))
    y = np.random.default_rng(0).normal(size=20) + 0.05 * np.arange(20)  # beyond enumeration: scipy's t approximation
    result = scipy.stats.spearmanr(np.arange(20.0), y)
    assert spearman_pvalue(np.array([result.statistic]), 20)[0] == pytest.approx(result.pvalue)


def test_a_late_jump_is_not_a_u(item_table):
    # convex-looking (flat, then a jump) but never worse: the dip condition keeps it from being called U-shaped
    table = item_table({"margin": noisy([0.0, 0.05, 0.1, 0.15, 1.0, 3.0], scale=0.1)}, SIZES)
    got = trends(table)["margin"]
    assert got["curvature_ci_low"] > 0 and got["shape"] is None
    assert got["trend"] == RISING


def test_per_item_correlations_on_a_constructed_table(item_table):
    values = np.array([
        # items:  a    b    c    d
        [0.0, 3.0, 1.0, 1.0],
        [1.0, 2.0, 1.0, 3.0],
        [2.0, 1.0, 1.0, 2.0],
        [3.0, 0.0, 1.0, 4.0],
    ])  # (models, items): a rises (ρ = 1), b falls (−1), c is constant (undefined), d = 1, 3, 2, 4 (ρ = 0.8)
    table = item_table({"margin": values, "brier_score": values}, SIZES[:4])
    curves = item_curves(table, BootstrapConfig(n_resamples=50))
    corr = item_correlations(curves)
    margin = dict(corr.filter(pl.col("metric") == "margin").select("item_id", "spearman").iter_rows())
    assert margin == {"i000": pytest.approx(1.0), "i001": pytest.approx(-1.0), "i002": None,
                      "i003": pytest.approx(0.8)}
    brier = dict(corr.filter(pl.col("metric") == "brier_score").select("item_id", "spearman").iter_rows())
    assert brier["i000"] == pytest.approx(-1.0)  # lower is better: oriented before correlating
    row = trend_table(curves, corr).filter(pl.col("metric") == "margin").row(0, named=True)
    assert row["item_rho_mean"] == pytest.approx((1.0 - 1.0 + 0.8) / 3)
    assert row["item_rho_median"] == pytest.approx(0.8)
    assert row["item_rho_share_positive"] == pytest.approx(2 / 3) and row["item_rho_n"] == 3
