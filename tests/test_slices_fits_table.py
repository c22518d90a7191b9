"""Difficulty slices by hand, and the fits table's glue (locations on the scale axis, the best shape, reasons)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from metrics.analysis import analyse_curves
from metrics.bootstrap import BootstrapConfig
from metrics.curves import item_curves
from metrics.fits import fit_table
from metrics.slices import difficulty_slices

SIZES = [10**3, 10**4, 10**5, 10**6, 10**7, 10**8]


def test_slices_cut_items_by_the_smaller_half_of_the_ladder(item_table):
    # prob_target_among_choices orders items; the three smaller models' mean per item decides the slice
    difficulty = np.array([[0.9, 0.1, 0.5, 0.7, 0.3, 0.2]] * 3 + [[1.0] * 6] * 3)  # (models, items)
    grade = np.array([[1, 0, 0, 1, 0, 0]] * 3 + [[1, 1, 1, 1, 1, 1]] * 3, dtype=float)
    curves = item_curves(item_table({"prob_target_among_choices": difficulty, "multiple_choice_grade": grade}, SIZES),
                         BootstrapConfig(n_resamples=50))
    metric, parts = difficulty_slices(curves[0], k=3)
    assert metric == "prob_target_among_choices"
    # by difficulty score 0.9 (i000), 0.7 (i003), 0.5 (i002), 0.3 (i004), 0.2 (i005), 0.1 (i001)
    assert [p.item_ids for p in parts] == [("i000", "i003"), ("i002", "i004"), ("i001", "i005")]
    hard = parts[2]
    assert hard.means[hard.index("multiple_choice_grade")].tolist() == [0, 0, 0, 1, 1, 1]
    result = analyse_curves(curves, n_slices=3)
    easy = result.slices.filter((pl.col("slice") == "Q1 (easiest)") & (pl.col("metric") == "multiple_choice_grade"))
    assert easy["mean"].to_list() == [1.0] * 6 and set(easy["difficulty_metric"]) == {"prob_target_among_choices"}
    assert set(result.trends["slice"]) == {"all", "Q1 (easiest)", "Q2", "Q3 (hardest)"}


def test_fit_table_reports_locations_on_the_scale_axis(item_table):
    # a logistic in log10(size) with midpoint 10^5.5, fitted on items with small noise
    t = np.log10(SIZES)
    mean = 0.1 + 0.8 / (1 + np.exp(-3.0 * (t - 5.5)))
    rng = np.random.default_rng(0)
    values = mean[:, None] + rng.normal(scale=0.02, size=(6, 200))
    table = fit_table(item_curves(item_table({"margin": values}, SIZES), BootstrapConfig(n_resamples=200)))
    logistic = table.filter(pl.col("shape") == "logistic").row(0, named=True)
    assert logistic["best"] is True and logistic["status"] == "ok"
    assert np.log10(logistic["location"]) == pytest.approx(5.5, abs=0.1)
    assert logistic["location_low"] < logistic["location"] < logistic["location_high"]
    assert json.loads(logistic["params"])["t0"] == pytest.approx(np.log10(logistic["location"]))
    assert table["aic_weight"].sum() == pytest.approx(1.0)
    assert table.filter(pl.col("shape") == "linear")["location"].to_list() == [None]


def test_fit_table_gives_the_reason_without_enough_models(item_table):
    table = fit_table(item_curves(item_table({"margin": np.ones((3, 5))}, SIZES[:3]), BootstrapConfig(n_resamples=20)))
    assert table["status"].to_list() == ["needs at least 4 models, found 3"] * 3
    assert table["best"].to_list() == [False] * 3
