"""choice_metrics on a tiny hand-built score table; every expected value is worked out by hand in the comments."""

from __future__ import annotations

import math

import polars as pl
import pytest

from metrics.choice import GENERATIVE_METRICS, MULTIPLE_CHOICE_METRICS, choice_metrics
from metrics.registry import METRIC_REGISTRY
from metrics.schema import ITEM_METRICS, SCORES

L = math.log


def row(item, choice, lp, target, *, kind="multiple_choice", ranks=None, greedy=False, n_chars=1, model="m"):
    ranks = [1] if ranks is None else ranks
    n = len(ranks)
    return {
        "model": model,
        "params": 100 if model == "m" else 200,
        "non_embedding_params": 50 if model == "m" else 150,
        "task": "t",
        "item_id": item,
        "item_kind": kind,
        "choice": choice,
        "choice_text": "x" * n_chars,
        "is_target": target,
        "logprob": lp,
        "n_tokens": n,
        "token_logprobs": [lp / n] * n if n else [],
        "token_ranks": ranks,
        "is_greedy": greedy,
        "n_chars": n_chars,
        "n_bytes": n_chars,
    }


def table(rows):
    return pl.DataFrame(rows, schema=SCORES)


# Item A: softmax is exactly (0.5, 0.3, 0.2); target is choice 0.
# Per character: log .5 / 1 = -0.693, log .3 / 10 = -0.120, log .2 / 4 = -0.402 → acc_norm picks choice 1.
ITEM_A = [
    row("A", 0, L(0.5), True, ranks=[1, 3], n_chars=1),
    row("A", 1, L(0.3), False, ranks=[2], n_chars=10),
    row("A", 2, L(0.2), False, ranks=[1, 1], greedy=True, n_chars=4),
]
# Item B: two targets (1, 2); distractor 0 ties the best target → grade breaks the tie to choice 0 (a distractor).
ITEM_B = [
    row("B", 0, L(0.4), False),
    row("B", 1, L(0.4), True, ranks=[1]),
    row("B", 2, L(0.2), True, ranks=[2, 1, 1], greedy=False),
]
# Item C: targets 0 and 1 tie at log .25 → best target is choice 0 (lowest index); distractor 2 beats both.
ITEM_C = [
    row("C", 0, L(0.25), True, ranks=[2]),
    row("C", 1, L(0.25), True, ranks=[1, 1], greedy=True),
    row("C", 2, L(0.5), False),
]
# Item D: zero-token target (empty string, logprob 0, zero characters).
ITEM_D = [
    row("D", 0, 0.0, True, ranks=[], n_chars=0, greedy=True),
    row("D", 1, L(0.5), False, ranks=[3]),
]
# Generative items: references are choices, all targets.
ITEM_G = [
    row("G", 0, L(0.1), True, kind="generative", ranks=[1, 2]),
    row("G", 1, L(0.3), True, kind="generative", ranks=[1, 1, 1], greedy=True),
]
ITEM_H = [row("H", 0, L(0.2), True, kind="generative", ranks=[1, 4])]


def values(out, item, model="m"):
    sub = out.filter((pl.col("item_id") == item) & (pl.col("model") == model))
    return dict(zip(sub["metric"].to_list(), sub["value"].to_list()))


@pytest.fixture(scope="module")
def out():
    return choice_metrics(table(ITEM_A + ITEM_B + ITEM_C + ITEM_D + ITEM_G + ITEM_H))


def test_output_schema_and_metric_sets(out):
    assert out.schema == pl.Schema(ITEM_METRICS)
    assert set(values(out, "A")) == set(MULTIPLE_CHOICE_METRICS)
    assert set(values(out, "G")) == set(GENERATIVE_METRICS)
    assert set(MULTIPLE_CHOICE_METRICS) | set(GENERATIVE_METRICS) <= set(METRIC_REGISTRY)


def test_single_target_item(out):
    v = values(out, "A")
    assert v["multiple_choice_grade"] == 1.0
    assert v["acc_norm"] == 0.0  # choice 1 wins per character
    assert v["exact_match_greedy"] == 0.0  # only the distractor is greedy
    assert v["logprob_target"] == pytest.approx(L(0.5))
    assert v["logprob_target_per_token"] == pytest.approx(L(0.5) / 2)
    assert v["logprob_best_distractor"] == pytest.approx(L(0.3))
    assert v["margin"] == pytest.approx(L(5 / 3))
    assert v["prob_target_among_choices"] == pytest.approx(0.5)
    assert v["brier_score"] == pytest.approx(0.25 + 0.09 + 0.04)
    assert v["classification_loss"] == pytest.approx(L(2))
    assert v["target_rank"] == 1.0
    assert v["reciprocal_rank"] == 1.0
    assert v["per_token_accuracy"] == pytest.approx(0.5)  # ranks [1, 3]


def test_two_targets_and_distractor_tie(out):
    v = values(out, "B")
    assert v["multiple_choice_grade"] == 0.0  # tie at log .4 goes to choice 0, a distractor
    assert v["acc_norm"] == 0.0  # same tie (all n_chars 1)
    assert v["exact_match_greedy"] == 0.0
    assert v["logprob_target"] == pytest.approx(L(0.4))
    assert v["margin"] == pytest.approx(0.0)
    assert v["prob_target_among_choices"] == pytest.approx(0.6)
    assert v["brier_score"] == pytest.approx(0.4**2 + 0.6**2 + 0.8**2)  # 1.16
    assert v["classification_loss"] == pytest.approx(-L(0.6))
    assert v["target_rank"] == 1.0  # the tied distractor is not strictly higher
    assert v["per_token_accuracy"] == 1.0  # best target is choice 1, ranks [1]


def test_tied_targets_pick_lowest_index(out):
    v = values(out, "C")
    assert v["multiple_choice_grade"] == 0.0
    assert v["exact_match_greedy"] == 1.0  # choice 1 is a greedy target
    assert v["logprob_target_per_token"] == pytest.approx(L(0.25))  # choice 0: one token
    assert v["per_token_accuracy"] == 0.0  # choice 0 ranks [2], not choice 1's [1, 1]
    assert v["target_rank"] == 2.0
    assert v["reciprocal_rank"] == 0.5
    assert v["brier_score"] == pytest.approx(2 * 0.75**2 + 0.5**2)  # 1.375
    assert v["margin"] == pytest.approx(L(0.5))  # log .25 − log .5


def test_zero_token_target(out):
    v = values(out, "D")
    assert v["logprob_target"] == 0.0
    assert v["logprob_target_per_token"] is None
    assert v["per_token_accuracy"] is None
    assert v["acc_norm"] is None  # zero characters: the normalised score is undefined
    assert v["multiple_choice_grade"] == 1.0  # 0 > log .5
    assert v["prob_target_among_choices"] == pytest.approx(1 / 1.5)


def test_generative_items(out):
    g = values(out, "G")
    assert g["logprob_target"] == pytest.approx(L(0.3))  # best reference is choice 1
    assert g["logprob_target_per_token"] == pytest.approx(L(0.3) / 3)
    assert g["per_token_accuracy"] == 1.0
    assert g["exact_match_greedy"] == 1.0
    assert g["predicted_exact_match"] == pytest.approx(0.3)
    h = values(out, "H")
    assert h["predicted_exact_match"] == pytest.approx(0.2)
    assert h["exact_match_greedy"] == 0.0
    assert h["per_token_accuracy"] == 0.5


def test_softmax_is_stable_for_large_negative_logprobs():
    out = choice_metrics(table([row("S", 0, -1000.0, True), row("S", 1, -1001.0, False)]))
    v = values(out, "S")
    assert v["prob_target_among_choices"] == pytest.approx(1 / (1 + math.exp(-1)))
    assert v["classification_loss"] == pytest.approx(math.log(1 + math.exp(-1)))


def test_models_are_separate_windows():
    other = [row("A", k, lp, t, model="m2") for k, lp, t in [(0, L(0.1), True), (1, L(0.9), False)]]
    out = choice_metrics(table(ITEM_A + other))
    assert values(out, "A")["prob_target_among_choices"] == pytest.approx(0.5)
    assert values(out, "A", model="m2")["prob_target_among_choices"] == pytest.approx(0.1)
    assert values(out, "A", model="m2")["multiple_choice_grade"] == 0.0


def test_choice_order_in_input_does_not_matter():
    shuffled = table(list(reversed(ITEM_B)))
    assert values(choice_metrics(shuffled), "B")["multiple_choice_grade"] == 0.0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([row("X", 0, -1.0, False), row("X", 1, -2.0, False)], "has no target"),
        ([row("X", 0, -1.0, True, kind="generative"), row("X", 1, -2.0, False, kind="generative")], "non-target"),
        ([row("X", 0, -1.0, True, kind="essay")], "item_kind"),
        ([row("X", 0, -1.0, True), row("X", 0, -2.0, False)], "repeats a choice"),
    ],
)
def test_bad_items_raise(rows, message):
    with pytest.raises(ValueError, match=message):
        choice_metrics(table(rows))


def test_token_list_length_must_match_n_tokens():
    bad = table([row("X", 0, -1.0, True, ranks=[1, 1])]).with_columns(pl.lit(3, dtype=pl.Int32).alias("n_tokens"))
    with pytest.raises(ValueError, match="n_tokens"):
        choice_metrics(bad)


def test_schema_errors_name_the_column():
    good = table(ITEM_A)
    with pytest.raises(ValueError, match="column 'logprob' must have dtype Float64"):
        choice_metrics(good.with_columns(pl.col("logprob").cast(pl.Float32)))
    with pytest.raises(ValueError, match="missing column"):
        choice_metrics(good.drop("is_target"))


def test_empty_and_single_kind_tables():
    assert choice_metrics(table([])).schema == pl.Schema(ITEM_METRICS)
    only_generative = choice_metrics(table(ITEM_G))
    assert set(only_generative["metric"]) == set(GENERATIVE_METRICS)
