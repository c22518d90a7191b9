"""Sharp against smooth: verdicts on curves built so that the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.bootstrap import BootstrapConfig
from metrics.compare import (
    CANNOT_TELL,
    METRIC,
    MODELS,
    NO_JUMP,
    RULE_METRIC,
    RULE_MODELS,
    RULE_NO_POWER,
    RULE_NOT_RISING,
    compare,
    verdict,
)
from metrics.curves import item_curves

SIZES = [10**3, 10**4, 10**5, 10**6, 10**7]  # evenly spaced in log-scale: the steady share is 1/4


def pairs(table, **kwargs):
    out = compare(item_curves(table, BootstrapConfig(n_resamples=400, seed=1)))
    return {(r["sharp_metric"], r["smooth_metric"]): r for r in out.iter_rows(named=True)}


def test_verdict_rules():
    # (sharp share, its threshold, smooth share, its threshold, difference CI low, high)
    assert verdict(0.28, 0.3, 0.25, 0.3, 0.0, 0.1)[0] == NO_JUMP  # sharp no more concentrated than steady change
    assert verdict(0.7, 0.3, 0.5, 0.3, 0.1, 0.4)[:2] == (MODELS, RULE_MODELS)
    assert "further" in verdict(0.7, 0.3, 0.5, 0.3, 0.1, 0.4)[2]
    assert "as abrupt" in verdict(0.7, 0.3, 0.65, 0.3, -0.1, 0.1)[2]
    assert "more abrupt" in verdict(0.7, 0.3, 0.9, 0.3, -0.3, -0.1)[2]
    assert verdict(0.7, 0.3, 0.25, 0.3, 0.1, 0.4)[:2] == (METRIC, RULE_METRIC)
    assert verdict(0.7, 0.3, 0.25, 0.3, -0.1, 0.4)[0] == CANNOT_TELL
    assert verdict(float("nan"), 0.3, 0.2, 0.3, 0.1, 0.4)[0] == CANNOT_TELL
    assert verdict(0.7, 0.3, 0.25, 0.3, 0.1, 0.4, smooth_rising=False)[:2] == (CANNOT_TELL, RULE_NOT_RISING)
    assert verdict(1.0, 0.97, 1.0, 0.97, -0.4, 0.4)[:2] == (CANNOT_TELL, RULE_NO_POWER)


def test_three_models_have_no_power_to_tell(item_table):
    # three untrained-like models that differ only by noise: with two steps, any curve makes at least half of its
    # change in one, and steady change plus this noise reaches a share near 1; the comparison must say it cannot
    # tell, not "no jump"
    rng = np.random.default_rng(1)
    p = np.array([0.5, 0.5, 0.5])
    tokens = rng.random((3, 30, 5)) < p[:, None, None]
    table = item_table({"per_token_accuracy": tokens.mean(axis=2), "exact_match": tokens.all(axis=2)}, SIZES[:3])
    row = pairs(table)[("exact_match", "per_token_accuracy")]
    assert row["sharp_threshold"] >= 0.95
    assert (row["verdict"], row["rule"]) == (CANNOT_TELL, RULE_NO_POWER)


def test_all_or_nothing_answers_of_steadily_improving_tokens_are_the_metric(item_table):
    # Schaeffer et al.'s mechanism: per-token accuracy p rises in equal steps with log-size (0.5 … 0.9); an answer
    # of 10 tokens is exactly right with probability p^10 (0.001 … 0.35), which concentrates the change at the top.
    rng = np.random.default_rng(3)
    p = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    tokens = rng.random((5, 3000, 10)) < p[:, None, None]  # (models, items, tokens)
    table = item_table({"per_token_accuracy": tokens.mean(axis=2), "exact_match": tokens.all(axis=2)}, SIZES)
    row = pairs(table)[("exact_match", "per_token_accuracy")]
    assert row["steady_share"] == pytest.approx(0.25)
    assert row["smooth_share"] == pytest.approx(0.25, abs=0.02)  # equal steps
    assert row["sharp_share"] > 0.6  # (0.349 − 0.107) / 0.348 ≈ 0.70 expected
    assert row["share_difference_ci_low"] > 0
    assert row["verdict"] == METRIC


def test_a_jump_in_the_model_shows_in_both_metrics(item_table):
    # the per-token accuracy itself jumps between the 3rd and 4th model: both metrics concentrate the change there
    rng = np.random.default_rng(4)
    p = np.array([0.3, 0.3, 0.31, 0.95, 0.96])
    tokens = rng.random((5, 3000, 10)) < p[:, None, None]
    table = item_table({"per_token_accuracy": tokens.mean(axis=2), "exact_match": tokens.all(axis=2)}, SIZES)
    row = pairs(table)[("exact_match", "per_token_accuracy")]
    assert row["smooth_share_ci_low"] > 0.25
    assert row["verdict"] == MODELS


def test_a_steady_sharp_metric_has_no_jump_to_explain(item_table):
    rng = np.random.default_rng(5)
    p = np.array([0.1, 0.3, 0.5, 0.7, 0.9])  # exact match of one-token answers: as linear as the accuracy
    tokens = rng.random((5, 3000, 1)) < p[:, None, None]
    table = item_table({"per_token_accuracy": tokens.mean(axis=2), "exact_match": tokens.all(axis=2)}, SIZES)
    assert pairs(table)[("exact_match", "per_token_accuracy")]["verdict"] == NO_JUMP


def test_strictest_pair_is_the_most_concentrated_smooth_metric(item_table):
    rng = np.random.default_rng(6)
    base = rng.random((5, 200))
    table = item_table({
        "exact_match": (base < np.array([0.0, 0.0, 0.0, 0.9, 1.0])[:, None]).astype(float),
        "margin": np.array([0.0, 1.0, 2.0, 3.0, 4.0])[:, None] + base,  # steady
        "brier_score": -np.array([0.0, 0.0, 0.1, 1.0, 1.0])[:, None] + 0.01 * base,  # jumps (lower is better)
    }, SIZES)
    got = pairs(table)
    assert got[("exact_match", "brier_score")]["strictest"] is True
    assert got[("exact_match", "margin")]["strictest"] is False


def test_a_smooth_metric_that_does_not_rise_cannot_witness_steady_progress(item_table):
    rng = np.random.default_rng(7)
    base = rng.random((5, 400))
    table = item_table({
        "exact_match": (base < np.array([0.0, 0.0, 0.0, 0.9, 1.0])[:, None]).astype(float),
        "margin": np.array([2.0, 1.0, 0.0, 1.0, 2.0])[:, None] + base,  # falls, then rises: no rising trend
    }, SIZES)
    row = pairs(table)[("exact_match", "margin")]
    assert row["smooth_share"] <= row["smooth_threshold"]
    assert (row["verdict"], row["rule"]) == (CANNOT_TELL, RULE_NOT_RISING)
