"""Linearity and breakthroughness on hand-computed curves (BIG-bench appendix definitions)."""

from __future__ import annotations

import math

import polars as pl
import pytest

from metrics.emergence import emergence
from metrics.schema import EMERGENCE, METRICS


def curve(means, metric="m", task="t", direction="higher", sizes=None, taxonomy="continuous"):
    sizes = list(range(1, len(means) + 1)) if sizes is None else sizes
    return [
        {"model": f"model{s}", "params": 1000 - s, "non_embedding_params": s, "task": task, "metric": metric,
         "taxonomy": taxonomy, "kind": "smooth" if taxonomy == "continuous" else "sharp", "direction": direction, "mean": y, "ci_low": None, "ci_high": None, "n_items": 5}
        for s, y in zip(sizes, means)
    ]


def run(rows):
    out = emergence(pl.DataFrame(rows, schema=METRICS))
    assert out.schema == pl.Schema(EMERGENCE)
    return {(r["task"], r["metric"]): r for r in out.iter_rows(named=True)}


def one(rows):
    (result,) = run(rows).values()
    return result


def test_flat_curve_is_zero():
    r = one(curve([0.4, 0.4, 0.4, 0.4]))
    assert (r["linearity"], r["breakthroughness"], r["n_models"]) == (0.0, 0.0, 4)


def test_unit_steps_give_n_minus_one():
    # I = 4, every step 1 → RMS = RootMedianSquare = 1
    r = one(curve([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert r["linearity"] == pytest.approx(4.0) and r["breakthroughness"] == pytest.approx(4.0)


def test_one_jump_among_flat_steps():
    # I = 1; squared steps (0, 0, 1): mean 1/3 → L = √3; median 0 → B = +inf
    r = one(curve([0.0, 0.0, 0.0, 1.0]))
    assert r["linearity"] == pytest.approx(math.sqrt(3))
    assert r["breakthroughness"] == math.inf


def test_jump_among_small_steps():
    # steps .1 .1 1 .1 → squares .01 .01 1 .01: mean .2575, median .01; I = 1.3
    r = one(curve([0.0, 0.1, 0.2, 1.2, 1.3]))
    assert r["linearity"] == pytest.approx(1.3 / math.sqrt(0.2575))
    assert r["breakthroughness"] == pytest.approx(13.0)


def test_falling_curve_is_negative():
    # argmax at 0 before argmin at 2 → sign −1, I = −2; steps −1, −1
    r = one(curve([3.0, 2.0, 1.0]))
    assert r["linearity"] == pytest.approx(-2.0) and r["breakthroughness"] == pytest.approx(-2.0)


def test_direction_lower_is_negated():
    # a loss falling 3 → 2 → 1 is an improvement: y = (−3, −2, −1)
    r = one(curve([3.0, 2.0, 1.0], direction="lower"))
    assert r["linearity"] == pytest.approx(2.0) and r["breakthroughness"] == pytest.approx(2.0)
    assert r["direction"] == "lower"


def test_taxonomy_and_kind_are_carried():
    out = run(curve([0.0, 1.0, 2.0], metric="p", taxonomy="nonlinear") + curve([None] * 3, metric="q"))
    assert (out[("t", "p")]["taxonomy"], out[("t", "p")]["kind"]) == ("nonlinear", "sharp")
    assert (out[("t", "q")]["taxonomy"], out[("t", "q")]["kind"]) == ("continuous", "smooth")  # all-null curve too


def test_fewer_than_three_models_is_null():
    r = one(curve([0.0, 1.0]))
    assert (r["linearity"], r["breakthroughness"], r["n_models"]) == (None, None, 2)


def test_argmax_ties_take_the_first_model():
    # y = (2, 0, 2): first argmax is model 1, argmin model 2 → sign −1, I = −2; squared steps 4, 4
    r = one(curve([2.0, 0.0, 2.0]))
    assert r["linearity"] == pytest.approx(-1.0) and r["breakthroughness"] == pytest.approx(-1.0)


def test_models_are_ordered_by_non_embedding_params():
    # given out of order (and `params` ordered the other way); sorted by size the curve is 0, 1, 2
    rows = curve([2.0, 0.0, 1.0], sizes=[30, 10, 20])
    r = one(rows)
    assert r["linearity"] == pytest.approx(2.0)


def test_null_means_are_left_out_and_groups_are_separate():
    rows = curve([0.0, None, 1.0, 2.0], metric="a") + curve([5.0, 5.0, 5.0], metric="b", task="u")
    rows += curve([None, None, None], metric="c")
    out = run(rows)
    assert out[("t", "a")]["n_models"] == 3 and out[("t", "a")]["linearity"] == pytest.approx(2.0)
    assert out[("u", "b")]["breakthroughness"] == 0.0
    assert out[("t", "c")]["n_models"] == 0 and out[("t", "c")]["linearity"] is None


def test_validation_errors():
    mixed = curve([0.0, 1.0, 2.0])
    mixed[1]["direction"] = "lower"
    with pytest.raises(ValueError, match="taxonomy/kind/direction"):
        run(mixed)
    mixed = curve([0.0, 1.0, 2.0])
    mixed[2]["taxonomy"] = "nonlinear"
    with pytest.raises(ValueError, match="taxonomy/kind/direction"):
        run(mixed)
    with pytest.raises(ValueError, match="duplicated"):
        run(curve([0.0, 1.0, 2.0]) + curve([0.0], sizes=[1]))
    with pytest.raises(ValueError, match="missing column"):
        emergence(pl.DataFrame(curve([0.0, 1.0, 2.0]), schema=METRICS).drop("direction"))
