"""choice_metrics on a tiny hand-built score table; every expected value is worked out by hand in the comments, and
grade, acc_norm, greedy match and Brier score are checked against lm-evaluation-harness's own `process_results`."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from metrics.choice import GENERATIVE_METRICS, GRADED_METRICS, MULTIPLE_CHOICE_METRICS, choice_metrics
from metrics.registry import METRIC_REGISTRY
from metrics.schema import ITEM_METRICS, SCORES

L = math.log


def row(item, choice, lp, target, *, kind="multiple_choice", ranks=None, greedy=False, n_chars=1, model="m",
        text=None, score=None):
    ranks = [1] if ranks is None else ranks
    n = len(ranks)
    text = "x" * n_chars if text is None else text
    return {
        "model": model,
        "params": 100 if model == "m" else 200,
        "non_embedding_params": 50 if model == "m" else 150,
        "task": "t",
        "item_id": item,
        "item_kind": kind,
        "choice": choice,
        "choice_text": text,
        "is_target": target,
        "logprob": lp,
        "n_tokens": n,
        "token_logprobs": [lp / n] * n if n else [],
        "token_ranks": ranks,
        "is_greedy": greedy,
        "n_chars": len(text),
        "n_bytes": len(text.encode("utf-8")),
        "target_score": score,
        "n_truncated": 0,
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
    assert set(values(out, "A")) == set(MULTIPLE_CHOICE_METRICS) - set(GRADED_METRICS)  # A has no graded scores
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
    # targets merged: (1 − (0.4 + 0.2))² + 0.4² = 0.32 (the per-class sum 0.4² + 0.6² + 0.8² = 1.16 would not be 0
    # even for a perfect answer)
    assert v["brier_score"] == pytest.approx(0.4**2 + 0.4**2)
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
    assert v["brier_score"] == pytest.approx(0.5**2 + 0.5**2)  # (1 − 0.5)² + 0.5²
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
    assert g["prob_reference"] == pytest.approx(0.3)
    assert g["token_accuracy_pow_len"] == 1.0  # 1.0³
    h = values(out, "H")
    assert h["prob_reference"] == pytest.approx(0.2)
    assert h["exact_match_greedy"] == 0.0
    assert h["per_token_accuracy"] == 0.5
    assert h["token_accuracy_pow_len"] == pytest.approx(0.25)  # 0.5², two tokens


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
    with pytest.raises(ValueError, match="column 'logprob' must have dtype Float64, found String"):
        choice_metrics(good.with_columns(pl.col("logprob").cast(pl.String)))
    with pytest.raises(ValueError, match="missing column"):
        choice_metrics(good.drop("is_target"))


def test_empty_and_single_kind_tables():
    assert choice_metrics(table([])).schema == pl.Schema(ITEM_METRICS)
    only_generative = choice_metrics(table(ITEM_G))
    assert set(only_generative["metric"]) == set(GENERATIVE_METRICS)


def test_narrower_widths_are_coerced_not_rejected():
    """Int32 parameter counts, Int64 choice indices, Float32 log-probs and Int64 token ranks (a table built
    elsewhere) give the same metrics as the schema's own dtypes."""
    good = table(ITEM_A + ITEM_G)
    narrow = good.with_columns(
        pl.col("params", "non_embedding_params").cast(pl.Int32),
        pl.col("choice", "n_tokens").cast(pl.Int64),
        pl.col("logprob").cast(pl.Float32).cast(pl.Float64).cast(pl.Float32),
        pl.col("token_ranks").cast(pl.List(pl.Int64)),
    )
    a, b = choice_metrics(good), choice_metrics(narrow)
    assert b.schema == pl.Schema(ITEM_METRICS)
    assert a.select("item_id", "metric").equals(b.select("item_id", "metric"))
    assert b["value"].to_list() == pytest.approx(a["value"].to_list(), rel=1e-6, nan_ok=True)
    too_big = good.with_columns(pl.col("n_tokens").cast(pl.Int64) * 2**40)
    with pytest.raises(ValueError, match="'n_tokens' has values that do not fit"):
        choice_metrics(too_big)


# ------------------------------------------------------------------------------------------------ acc_norm


def test_acc_norm_leaves_the_leading_delimiter_out():
    """lm-eval scores " 4" and " 22" but divides by len("4") = 1 and len("22") = 2: −3/1 < −5/2, so " 22" wins.
    Dividing by the continuation's length (2 and 3) would pick " 4" (−1.5 > −1.67)."""
    out = choice_metrics(table([row("N", 0, -3.0, True, text=" 4"), row("N", 1, -5.0, False, text=" 22")]))
    assert values(out, "N")["acc_norm"] == 0.0
    assert values(out, "N")["multiple_choice_grade"] == 1.0
    # every leading whitespace character is delimiter: "\n\t 4" counts 1, like " 4"
    out = choice_metrics(table([row("N", 0, -3.0, True, text="\n\t 4"), row("N", 1, -5.0, False, text=" 22")]))
    assert values(out, "N")["acc_norm"] == 0.0
    # a choice that is only whitespace has no length to divide by: null, not a division by zero
    out = choice_metrics(table([row("W", 0, -3.0, True, text="  "), row("W", 1, -5.0, False, text=" 22")]))
    assert values(out, "W")["acc_norm"] is None


# ------------------------------------------------------------------------------------------------ Brier score


def test_brier_perfect_answer_is_zero_with_several_targets():
    # all mass on the two targets (0.7 + 0.3), none on the distractor (−1000 nats): a perfect answer
    rows = [row("P", 0, L(0.7), True), row("P", 1, L(0.3), True), row("P", 2, -1000.0, False)]
    assert values(choice_metrics(table(rows)), "P")["brier_score"] == pytest.approx(0.0, abs=1e-12)
    # one target: the usual multi-class Brier score, Σ_k (q_k − 1[k = target])² = 0.3² + 0.3² + 0.0² by hand
    rows = [row("Q", 0, L(0.7), True), row("Q", 1, L(0.3), False), row("Q", 2, -1000.0, False)]
    assert values(choice_metrics(table(rows)), "Q")["brier_score"] == pytest.approx(0.18)


# ------------------------------------------------------------------------------------------ vocabulary mass


def test_vocabulary_probabilities_by_hand():
    # Item A: exp(lp) = 0.5, 0.3, 0.2 with target 0; here not renormalised, so give them mass 0.05, 0.03, 0.02
    rows = [row("V", 0, L(0.05), True), row("V", 1, L(0.03), False), row("V", 2, L(0.02), False)]
    v = values(choice_metrics(table(rows)), "V")
    assert v["prob_target_vocab"] == pytest.approx(0.05)
    assert v["prob_choices_vocab"] == pytest.approx(0.10)
    assert v["prob_distractors_vocab"] == pytest.approx(0.05)
    assert v["prob_target_among_choices"] == pytest.approx(0.5)  # the renormalised counterpart
    # two targets: the best one's probability; the distractor mass excludes both
    v = values(choice_metrics(table(ITEM_B)), "B")
    assert (v["prob_target_vocab"], v["prob_distractors_vocab"]) == (pytest.approx(0.4), pytest.approx(0.4))


def test_vocabulary_probabilities_underflow_to_zero_and_stay_finite():
    rows = [row("U", 0, -800.0, True), row("U", 1, -801.0, False), row("U", 2, -2.0, False)]
    v = values(choice_metrics(table(rows)), "U")
    assert v["prob_target_vocab"] == 0.0  # e^−800 is below float64's range: 0, not NaN
    assert v["prob_choices_vocab"] == pytest.approx(math.exp(-2.0))
    assert v["prob_distractors_vocab"] == pytest.approx(math.exp(-2.0))
    only_targets = values(choice_metrics(table([row("T", 0, L(0.5), True)])), "T")
    assert only_targets["prob_distractors_vocab"] == 0.0  # no distractor: no mass on wrong choices


# ------------------------------------------------------------------------------------------ graded BIG-bench


def test_bigbench_grade_scores_the_argmax_choice():
    # BIG-bench's multiple_choice_grade: credit of the highest-log-prob choice. Choice 1 wins (log .5) → 0.5.
    graded = [row("G1", 0, L(0.3), True, score=1.0), row("G1", 1, L(0.5), False, score=0.5),
              row("G1", 2, L(0.2), False, score=0.0)]
    # exact tie between choices 1 and 2 (scores 0.25 and 0.75): scalelens takes the lowest index → 0.25
    tied = [row("G2", 0, L(0.2), True, score=1.0), row("G2", 1, L(0.4), False, score=0.25),
            row("G2", 2, L(0.4), False, score=0.75)]
    out = choice_metrics(table(graded + tied + ITEM_A))
    assert values(out, "G1")["bigbench_grade"] == 0.5
    assert values(out, "G1")["multiple_choice_grade"] == 0.0  # the binary grade: the winner is not a target
    assert values(out, "G2")["bigbench_grade"] == 0.25
    assert "bigbench_grade" not in values(out, "A")  # ungraded items get no row


def test_partial_or_generative_target_scores_are_rejected():
    partial = [row("X", 0, -1.0, True, score=1.0), row("X", 1, -2.0, False)]
    with pytest.raises(ValueError, match="target_score' for some choices but not all"):
        choice_metrics(table(partial))
    generative = [row("Y", 0, -1.0, True, kind="generative", score=1.0)]
    with pytest.raises(ValueError, match="generative but has a 'target_score'"):
        choice_metrics(table(generative))


# ---------------------------------------------------------------------------- against lm-eval's process_results


def _lm_eval_task(docs, multiple_target: bool):
    """A ConfigurableTask over in-memory docs (lm-eval's `custom_dataset` hook: nothing is downloaded), scored with
    lm-eval's default target delimiter " "."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    metrics = [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")]
    metrics += [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]
    if not multiple_target:  # lm-eval's brier_score takes one gold index
        metrics += [{"metric": "brier_score", "aggregation": "brier_score", "higher_is_better": False}]
    return ConfigurableTask(config={
        "task": "toy", "output_type": "multiple_choice", "test_split": "test",
        "custom_dataset": lambda **_: datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)}),
        "doc_to_text": "{{question}}", "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}",
        "metric_list": metrics,
    })


def _lm_eval_items(multiple_target: bool, n_items: int = 100, seed: int = 0):
    """lm-eval-style items: choices of unequal lengths written without the delimiter, random log-likelihoods (so the
    two normalisation rules disagree on some items) and random greedy flags."""
    rng = np.random.default_rng(seed)
    words = ["4", "22", "four", "twenty-two", "x", "Paris", "a b c", "日本語", "café", "99"]
    docs, lls = [], []
    for i in range(n_items):
        choices = list(rng.choice(words, size=int(rng.integers(2, 6)), replace=False))
        gold = sorted(rng.choice(len(choices), size=2, replace=False).tolist()) if multiple_target else \
            int(rng.integers(len(choices)))
        docs.append({"question": f"Question {i}:", "choices": choices, "label": gold})
        # log-likelihoods roughly proportional to length, as a model's are: the normaliser then decides the argmax
        lls.append([(float(-len(c) * rng.uniform(0.5, 1.5) - rng.uniform(0, 2)), bool(rng.random() < 0.3))
                    for c in choices])
    return docs, lls


@pytest.mark.parametrize("multiple_target", [False, True])
def test_grade_acc_norm_greedy_and_brier_equal_lm_eval(multiple_target):
    docs, lls = _lm_eval_items(multiple_target)
    task = _lm_eval_task(docs, multiple_target)
    rows, expected, differ = [], {}, 0
    for doc, results in zip(task.test_docs(), lls, strict=True):
        item = doc["question"]
        requests = task.construct_requests(doc, task.doc_to_text(doc))
        gold = doc["label"] if multiple_target else [doc["label"]]
        for k, (req, (ll, greedy)) in enumerate(zip(requests, results, strict=True)):
            continuation = req.arguments[1]  # lm-eval's target_delimiter + choice, e.g. " 22"
            rows.append(row(item, k, ll, k in gold, text=continuation, greedy=greedy))
        expected[item] = task.process_results(doc, results)
        # the rule scalelens had before: divide by the whole continuation's length
        old = np.argmax([ll / len(r.arguments[1]) for r, (ll, _) in zip(requests, results)])
        differ += int(old in gold) != expected[item]["acc_norm"]
    assert differ >= 3  # the comparison covers items where the two rules disagree
    out = choice_metrics(table(rows))
    for item, lm in expected.items():
        v = values(out, item)
        assert v["multiple_choice_grade"] == lm["acc"], item
        assert v["acc_norm"] == lm["acc_norm"], item
        assert v["exact_match_greedy"] == lm["exact_match"], item
        if not multiple_target:
            gold, probs = lm["brier_score"]  # lm-eval's per-item pair; its aggregation sums (p − one-hot)² per item
            assert v["brier_score"] == pytest.approx(float(((probs - np.eye(len(probs))[gold]) ** 2).sum()))
