"""Figures: hand-built metric and emergence tables in, Figures out; the drawn data must be the tables' values."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from metrics.figures import (
    SHARP_COLOR,
    SHARP_TITLE,
    SMOOTH_COLOR,
    SMOOTH_TITLE,
    X_LABEL,
    logprob_gap,
    metric_grid,
    save_figure,
    sharp_vs_smooth_generative,
)
from metrics.schema import EMERGENCE, METRICS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZES = [70_000_000, 160_000_000, 410_000_000, 1_000_000_000, 2_800_000_000]
MODELS = ["p70m", "p160m", "p410m", "p1b", "p2.8b"]

#: metric → (kind, direction, means per model, half-width of the CI). A sharp metric that jumps at the 4th model,
#: smooth ones that rise (or fall, for lower-is-better) steadily.
CURVES = {
    "multiple_choice_grade": ("sharp", "higher", [0.25, 0.26, 0.25, 0.70, 0.85], 0.05),
    "exact_match": ("sharp", "higher", [0.0, 0.0, 0.02, 0.40, 0.60], 0.04),
    "logprob_target": ("smooth", "higher", [-9.0, -7.5, -6.0, -4.2, -3.0], 0.5),
    "logprob_best_distractor": ("smooth", "lower", [-8.0, -7.0, -6.5, -6.4, -6.6], 0.5),
    "margin": ("smooth", "higher", [-1.0, -0.5, 0.5, 2.2, 3.6], 0.3),
    "brier_score": ("smooth", "lower", [0.80, 0.72, 0.60, 0.45, 0.30], 0.03),
    "bleu": ("smooth", "higher", [5.0, 12.0, 20.0, 31.0, 40.0], 2.0),
    "chrf": ("smooth", "higher", [20.0, 28.0, 36.0, 47.0, 55.0], 2.0),
    "token_edit_distance": ("smooth", "lower", [9.0, 7.0, 5.5, 3.0, 2.0], 0.5),
    "prob_reference": ("sharp", "higher", [0.001, 0.01, 0.06, 0.30, 0.55], 0.02),
}
#: The figures read `kind` only; the tables carry a taxonomy consistent with it.
TAXONOMY = {"sharp": "discontinuous", "smooth": "continuous"}



def metrics_table(names, task="arith") -> pl.DataFrame:
    rows = []
    for name in names:
        kind, direction, means, half = CURVES[name]
        taxonomy = "nonlinear" if name == "prob_reference" else TAXONOMY[kind]
        for model, size, mean in zip(MODELS, SIZES, means, strict=True):
            rows.append({"model": model, "params": size + 50_000_000, "non_embedding_params": size, "task": task,
                         "metric": name, "taxonomy": taxonomy, "kind": kind, "direction": direction, "mean": mean,
                         "ci_low": mean - half, "ci_high": mean + half, "n_items": 200})
    return pl.DataFrame(rows, schema=METRICS)


def emergence_table(task="arith") -> pl.DataFrame:
    rows = [
        {"metric": "multiple_choice_grade", "kind": "sharp", "direction": "higher", "linearity": 1.5,
         "linearity_ci_low": 1.2, "linearity_ci_high": 1.9, "breakthroughness": math.inf, "resolution_limited": True,
         "breakthroughness_bound": 12.5, "breakthroughness_ci_low": 9.0, "breakthroughness_ci_high": math.inf},
        {"metric": "margin", "kind": "smooth", "direction": "higher", "linearity": 3.25, "linearity_ci_low": 3.0,
         "linearity_ci_high": 3.5, "breakthroughness": 3.9, "resolution_limited": False,
         "breakthroughness_bound": 3.1, "breakthroughness_ci_low": 3.2, "breakthroughness_ci_high": 4.6},
        {"metric": "brier_score", "kind": "smooth", "direction": "lower", "linearity": None, "breakthroughness": 2.0},
    ]
    taxonomy = {"sharp": "discontinuous", "smooth": "continuous"}
    return pl.DataFrame([{"task": task, "n_models": 5, "taxonomy": taxonomy[r["kind"]], **r} for r in rows],
                        schema=EMERGENCE)


def _all_axes(fig):
    """Axes of the figure and of its subfigures."""
    axes = list(fig.axes)
    for sub in fig.subfigs:
        axes += [ax for ax in sub.axes if ax not in axes]
    return axes


def _by_ylabel(fig, metric):
    found = [ax for ax in _all_axes(fig) if ax.get_ylabel().startswith(metric + " ") or
             ax.get_ylabel().startswith(metric + "\n")]
    assert len(found) == 1, [ax.get_ylabel() for ax in _all_axes(fig)]
    return found[0]


def _gid(ax, gid):
    artists = [a for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]
    assert len(artists) == 1, gid
    return artists[0]


def _assert_band(ax, table, metric):
    """The band's polygon vertices are exactly the (size, ci_low) and (size, ci_high) points of the table."""
    part = table.filter(pl.col("metric") == metric).sort("non_embedding_params")
    expected = {(x, lo) for x, lo in zip(part["non_embedding_params"], part["ci_low"], strict=True)}
    expected |= {(x, hi) for x, hi in zip(part["non_embedding_params"], part["ci_high"], strict=True)}
    vertices = _gid(ax, f"{metric}:ci").get_paths()[0].vertices
    assert {(float(x), float(y)) for x, y in vertices} == {(float(x), float(y)) for x, y in expected}


def _assert_png(fig, path):
    save_figure(fig, path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_metric_grid_groups_bands_and_scores(tmp_path):
    names = ["multiple_choice_grade", "logprob_target", "margin", "brier_score"]
    table = metrics_table(names)
    fig = metric_grid(table, emergence_table())
    _assert_png(fig, tmp_path / "grid.png")

    assert [sub.get_suptitle() for sub in fig.subfigs] == [SHARP_TITLE, SMOOTH_TITLE]
    assert [len(sub.axes) for sub in fig.subfigs] == [1, 3]
    assert "arith" in fig.get_suptitle()
    for name in names:
        ax = _by_ylabel(fig, name)
        assert ax.get_xscale() == "log"
        assert len(ax.lines) == 1
        line = _gid(ax, f"{name}:mean")
        assert list(line.get_xdata()) == SIZES
        assert list(line.get_ydata()) == CURVES[name][2]
        assert line.get_color() == (SHARP_COLOR if CURVES[name][0] == "sharp" else SMOOTH_COLOR)
        _assert_band(ax, table, name)
    assert "↓ better" in _by_ylabel(fig, "brier_score").get_ylabel()
    assert "↑ better" in _by_ylabel(fig, "margin").get_ylabel()
    # B is never drawn as a bare ∞ when resolution-limited: the bound the data support is
    assert _by_ylabel(fig, "multiple_choice_grade").get_title() == \
        "L = 1.50 [1.20, 1.90]\nB ≥ 12.5 (resolution-limited)"
    assert _by_ylabel(fig, "margin").get_title() == "L = 3.25 [3.00, 3.50]\nB = 3.90 [3.20, 4.60]"
    assert _by_ylabel(fig, "brier_score").get_title() == "L = n/a\nB = 2.00"
    assert _by_ylabel(fig, "logprob_target").get_title() == ""  # no emergence row for it
    assert any(ax.get_xlabel() == X_LABEL for ax in fig.subfigs[1].axes)


def test_metric_grid_one_kind_and_task_choice(tmp_path):
    table = pl.concat([metrics_table(["bleu", "chrf"], task="a"), metrics_table(["bleu"], task="b")])
    with pytest.raises(ValueError, match="pass task="):
        metric_grid(table)
    with pytest.raises(ValueError, match="'c' is not in the metrics table"):
        metric_grid(table, task="c")
    fig = metric_grid(table, task="a")
    _assert_png(fig, tmp_path / "smooth_only.png")
    assert [sub.get_suptitle() for sub in fig.subfigs] == [SMOOTH_TITLE]
    assert len(_all_axes(fig)) == 2


def test_metric_grid_rejects_bad_schema():
    with pytest.raises(ValueError, match="'mean' must have dtype Float64, found String"):
        metric_grid(metrics_table(["bleu"]).with_columns(pl.col("mean").cast(pl.String)))


def test_logprob_gap(tmp_path):
    table = metrics_table(["logprob_target", "logprob_best_distractor", "margin", "brier_score"])
    fig = logprob_gap(table)
    _assert_png(fig, tmp_path / "gap.png")
    left, right = fig.axes
    assert left.get_xscale() == right.get_xscale() == "log"
    assert left.get_xlabel() == right.get_xlabel() == X_LABEL
    assert len(left.lines) == 2 and len(left.collections) == 2
    assert list(_gid(left, "logprob_target:mean").get_ydata()) == CURVES["logprob_target"][2]
    assert list(_gid(left, "logprob_best_distractor:mean").get_ydata()) == CURVES["logprob_best_distractor"][2]
    assert list(_gid(right, "margin:mean").get_ydata()) == CURVES["margin"][2]
    for ax, name in ((left, "logprob_target"), (left, "logprob_best_distractor"), (right, "margin")):
        _assert_band(ax, table, name)
    assert "nats" in left.get_ylabel() and right.get_ylabel().startswith("margin (nats)")
    assert len(left.get_legend().get_texts()) == 2


def test_logprob_gap_names_missing_metric():
    with pytest.raises(ValueError, match=r"missing \['margin'\]"):
        logprob_gap(metrics_table(["logprob_target", "logprob_best_distractor"]))


def test_sharp_vs_smooth_generative(tmp_path):
    names = ["exact_match", "bleu", "chrf", "token_edit_distance", "prob_reference", "brier_score"]
    table = metrics_table(names)
    fig = sharp_vs_smooth_generative(table)
    _assert_png(fig, tmp_path / "gen.png")
    axes = fig.axes
    assert len(axes) == 5  # four single panels + the overlay; brier_score is not part of this figure
    assert [ax.get_title() for ax in axes[:4]] == [
        "exact_match (sharp)", "bleu (smooth)", "chrf (smooth)", "token_edit_distance (smooth)"]
    assert all(ax.get_xscale() == "log" for ax in axes)
    overlay = axes[4]
    assert len(overlay.lines) == 2
    assert list(_gid(overlay, "exact_match:mean").get_ydata()) == CURVES["exact_match"][2]
    assert list(_gid(overlay, "prob_reference:mean").get_ydata()) == CURVES["prob_reference"][2]
    _assert_band(overlay, table, "prob_reference")
    _assert_band(axes[1], table, "bleu")
    assert _gid(axes[0], "exact_match:mean").get_color() == SHARP_COLOR
    assert _gid(axes[1], "bleu:mean").get_color() == SMOOTH_COLOR
    assert "↓ better" in axes[3].get_ylabel()
    assert sum(ax.get_xlabel() == X_LABEL for ax in axes) == 3  # the bottom panel of each of the 3 columns


def test_sharp_vs_smooth_generative_skips_absent_and_rejects_none(tmp_path):
    fig = sharp_vs_smooth_generative(metrics_table(["chrf", "prob_reference"]))
    _assert_png(fig, tmp_path / "partial.png")
    assert [ax.get_title() for ax in fig.axes] == ["chrf (smooth)", "Measured vs predicted exact match"]
    assert len(fig.axes[1].lines) == 1
    fig = sharp_vs_smooth_generative(metrics_table(["bleu", "brier_score"]))  # nothing to overlay: no last panel
    assert [ax.get_title() for ax in fig.axes] == ["bleu (smooth)"]
    assert fig.axes[0].get_xlabel() == X_LABEL
    with pytest.raises(ValueError, match="exact_match.*bleu.*prob_reference"):
        sharp_vs_smooth_generative(metrics_table(["brier_score"]))


def test_null_mean_is_a_gap_not_an_error(tmp_path):
    table = metrics_table(["bleu"]).with_columns(
        pl.when(pl.col("model") == "p410m").then(None).otherwise(pl.col("mean")).alias("mean"))
    fig = metric_grid(table)
    _assert_png(fig, tmp_path / "gap_in_curve.png")
    ydata = _gid(_by_ylabel(fig, "bleu"), "bleu:mean").get_ydata()
    assert np.isnan(ydata[2]) and list(ydata[[0, 1, 3, 4]]) == [5.0, 12.0, 31.0, 40.0]
