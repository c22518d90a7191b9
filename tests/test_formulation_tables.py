"""The formulation axis through the statistics: one curve per (task, formulation, metric), paired resamples across
formulations of the same items, a validated default for tables without the column, and the formulation figure."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from metrics.analysis import analyse_curves
from metrics.bootstrap import BootstrapConfig
from metrics.curves import item_curves
from metrics.figures import formulation_curves
from metrics.schema import ITEM_METRICS, validate

SIZES = [10**3, 10**4, 10**5, 10**6]


def table(item_table, shift: float) -> pl.DataFrame:
    base = np.linspace(0.0, 3.0, len(SIZES))[:, None] + np.arange(8)[None] * 0.1  # (models, items)
    direct = item_table({"margin": base}, SIZES, task="sums")
    other = item_table({"margin": base + shift}, SIZES, task="sums").with_columns(formulation=pl.lit("3-shot"))
    return pl.concat([direct, other])


def test_one_row_per_task_formulation_metric_with_paired_resamples(item_table):
    frame = table(item_table, shift=1.0)
    curves = {c.formulation: c for c in item_curves(frame, BootstrapConfig(n_resamples=100))}
    assert set(curves) == {"default", "3-shot"}
    # the same task, the same items: one resample set for both formulations (paired across formulations too)
    assert np.array_equal(curves["default"].counts, curves["3-shot"].counts)
    assert np.allclose(curves["3-shot"].replicates - curves["default"].replicates, 1.0)
    result = analyse_curves(list(curves.values()), frame)
    assert sorted(result.emergence.select("formulation", "metric").rows()) == [("3-shot", "margin"),
                                                                              ("default", "margin")]
    assert result.metrics.group_by("formulation").len().sort("formulation")["len"].to_list() == [4, 4]
    shifted = result.metrics.filter(pl.col("formulation") == "3-shot").sort("x")["mean"].to_numpy()
    plain = result.metrics.filter(pl.col("formulation") == "default").sort("x")["mean"].to_numpy()
    assert np.allclose(shifted - plain, 1.0)


def test_a_table_without_the_column_is_read_as_written():
    frame = pl.DataFrame({"model": ["m"], "params": [2], "non_embedding_params": [1], "task": ["t"], "item_id": ["a"],
                          "metric": ["margin"], "value": [1.0], "signature": [""]})
    assert validate(frame, ITEM_METRICS, "item_metrics")["formulation"].to_list() == ["default"]


def test_formulation_figure_draws_each_formulation_and_their_spread(item_table):
    frame = table(item_table, shift=0.5)
    result = analyse_curves(item_curves(frame, BootstrapConfig(n_resamples=50)), frame)
    fig = formulation_curves(result.metrics, "sums")
    axes = [ax for sub in fig.subfigs for ax in sub.axes]
    (ax,) = axes
    lines = {line.get_gid(): line for line in ax.lines}
    by_form = {f: result.metrics.filter(pl.col("formulation") == f).sort("x") for f in ("default", "3-shot")}
    for f, rows in by_form.items():
        assert list(lines[f"margin:{f}:mean"].get_ydata()) == pytest.approx(rows["mean"].to_list())
    spread = next(c for c in ax.collections if c.get_gid() == "margin:spread")
    top = spread.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(max(by_form["3-shot"]["mean"]))
    with pytest.raises(ValueError, match="needs two"):
        formulation_curves(result.metrics.filter(pl.col("formulation") == "default"), "sums")
