"""Intervals on the indices and the resolution rule, against a bootstrap written out by hand."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from metrics.bootstrap import BootstrapConfig
from metrics.curves import item_curves
from metrics.emergence import emergence_from_curves

SIZES = [1_000, 4_000, 19_000, 25_000, 33_000, 51_000]


def by_hand(y: list[float]) -> tuple[float, float, float, float]:
    """I, L, B and the largest-step share of one curve, written from the BIG-bench definitions with plain Python."""
    imax = max(range(len(y)), key=lambda i: (y[i], -i))  # first maximum
    imin = min(range(len(y)), key=lambda i: (y[i], i))  # first minimum
    I = math.copysign(1.0, imax - imin) * (max(y) - min(y)) if imax != imin else 0.0
    steps = [b - a for a, b in zip(y, y[1:])]
    sq = sorted(s * s for s in steps)
    mid = len(sq) // 2
    median = sq[mid] if len(sq) % 2 else (sq[mid - 1] + sq[mid]) / 2
    L = I / math.sqrt(sum(sq) / len(sq)) if I else 0.0
    B = (I / math.sqrt(median) if median else math.copysign(math.inf, I)) if I else 0.0
    share = max(math.copysign(1.0, I) * s for s in steps) / (max(y) - min(y)) if I else math.nan
    return I, L, B, share


def test_intervals_are_percentiles_of_the_indices_of_resampled_curves(item_table):
    rng = np.random.default_rng(11)
    truth = np.array([0.1, 0.2, 0.3, 0.6, 1.1, 1.3])
    values = truth[:, None] + rng.normal(scale=0.4, size=(6, 25))  # (models, items)
    config = BootstrapConfig(n_resamples=400, confidence=0.9, seed=4)
    row = emergence_from_curves(item_curves(item_table({"margin": values}, SIZES), config)).row(0, named=True)
    draws = np.random.default_rng([4, zlib.crc32(b"t")]).integers(0, 25, size=(400, 25))  # (B, N)
    replicates = [by_hand(list(values[:, d].mean(axis=1))) for d in draws]  # each resample: one curve
    for k, name in enumerate(("improvement", "linearity", "breakthroughness", "largest_step_share")):
        got = [r[k] for r in replicates]
        assert row[f"{name}_ci_low"] == pytest.approx(np.quantile(got, 0.05)), name
        assert row[f"{name}_ci_high"] == pytest.approx(np.quantile(got, 0.95)), name
        assert row[name] == pytest.approx(by_hand(list(values.mean(axis=1)))[k]), name


def test_a_jump_from_a_flat_floor_is_resolution_limited(item_table):
    # 10 binary items; every item wrong for the first three models, right for the last three: the curve
    # 0, 0, 0, 1, 1, 1 has steps 0, 0, 1, 0, 0 → median step 0, B = +inf. Every model scores all items alike, so
    # the bootstrap SE of every step is 0 and the resolution is the granularity 1/10.
    values = np.array([[0.0] * 10] * 3 + [[1.0] * 10] * 3)
    row = emergence_from_curves(item_curves(item_table({"exact_match": values}, SIZES),
                                            BootstrapConfig(n_resamples=50))).row(0, named=True)
    assert row["breakthroughness"] == math.inf and row["median_step"] == 0.0
    assert row["resolution"] == pytest.approx(0.1)
    assert row["resolution_limited"] is True
    assert row["breakthroughness_bound"] == pytest.approx(1.0 / (0.0 + 1.959963984540054 * 0.1))
    assert (row["largest_step_from"], row["largest_step_to"]) == ("m19000", "m25000")


def test_steady_steps_well_above_the_noise_are_resolved(item_table):
    # a continuous score rising by 1.0 per model with item noise of sd 0.1 over 50 items: step SE ≈ 0.02 ≪ 1
    rng = np.random.default_rng(0)
    values = np.arange(6.0)[:, None] + rng.normal(scale=0.1, size=(6, 50))
    row = emergence_from_curves(item_curves(item_table({"margin": values}, SIZES),
                                            BootstrapConfig(n_resamples=300))).row(0, named=True)
    steps = np.diff(values, axis=0)  # (5, 50) per-item steps
    se_by_hand = steps.std(axis=1, ddof=1) / math.sqrt(50)  # SE of a mean of paired differences
    assert row["resolution"] == pytest.approx(np.median(se_by_hand), rel=0.15)
    assert row["resolution_limited"] is False
    assert row["breakthroughness"] == pytest.approx(by_hand(list(values.mean(axis=1)))[2])


def test_exact_match_of_the_demo_shape_reports_a_bound_not_400(item_table):
    # the shipped demo's exact match: 1, 0, 1, 2, 298, 396, 400, 399 correct of 400
    sizes = [1_048, 4_144, 18_552, 25_228, 32_928, 51_400, 197_056, 787_328]
    correct = [1, 0, 1, 2, 298, 396, 400, 399]
    values = np.zeros((8, 400))
    for j, k in enumerate(correct):
        values[j, :k] = 1.0  # the same easy items are solved first, as on the real ladder
    row = emergence_from_curves(item_curves(item_table({"exact_match": values}, sizes),
                                            BootstrapConfig(n_resamples=500))).row(0, named=True)
    assert row["breakthroughness"] == pytest.approx(1.0 / 0.0025)  # = 400: one item in 400 is the median step
    assert row["resolution_limited"] is True
    assert row["resolution"] >= 1 / 400
    assert row["breakthroughness_bound"] < 0.5 * row["breakthroughness"]
