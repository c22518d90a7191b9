"""Text metrics on hand-computed cases; corpus scores checked against sacrebleu's own corpus functions."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
import sacrebleu

from metrics.aggregate import METRICS_TABLE, aggregate
from metrics.bootstrap import BootstrapConfig
from metrics.registry import MetricInfo
from metrics.schema import GENERATIONS, ITEM_METRICS
from metrics.text import (
    BleuConfig,
    ChrfConfig,
    ExactMatchConfig,
    bleu_chrf,
    corpus_text_metrics,
    edit_distances,
    exact_match,
    extra_metric,
    levenshtein,
    text_metrics,
    text_statistics,
)

FIXTURES = Path(__file__).parent / "fixtures" / "evaluate_modules"


def gen(item, prediction, references, pred_ids=(1,), ref_ids=None, model="m", task="t"):
    ref_ids = [[1]] * len(references) if ref_ids is None else ref_ids
    return {
        "model": model,
        "params": 100,
        "non_embedding_params": 50,
        "task": task,
        "item_id": item,
        "prediction": prediction,
        "n_generated_tokens": len(pred_ids),
        "generated_token_ids": list(pred_ids),
        "prediction_token_ids": list(pred_ids),
        "references": references,
        "reference_token_ids": ref_ids,
        "stop_reason": "eos",
        "n_truncated": 0,
    }


def frame(rows):
    return pl.DataFrame(rows, schema=GENERATIONS)


def by_metric(out, metric):
    return out.filter(pl.col("metric") == metric).sort("item_id")["value"].to_list()


# ------------------------------------------------------------------------------------------------- exact match


@pytest.mark.parametrize(
    ("prediction", "references", "config", "expected"),
    [
        ("Paris", ["Paris"], ExactMatchConfig(), 1.0),
        ("paris", ["Paris"], ExactMatchConfig(), 0.0),
        ("paris", ["Paris"], ExactMatchConfig(ignore_case=True), 1.0),
        ("Answer: 42", ["answer 42"], ExactMatchConfig(ignore_case=True), 0.0),  # the colon remains
        ("Answer: 42", ["answer 42"], ExactMatchConfig(ignore_case=True, ignore_punctuation=True), 1.0),
        ("abc123", ["abc"], ExactMatchConfig(ignore_numbers=True), 1.0),
        ("the answer is yes", ["yes"], ExactMatchConfig(regexes_to_ignore=("^the answer is ",)), 1.0),
        ("yes", ["no", "yes"], ExactMatchConfig(), 1.0),  # any reference
        (" yes", ["yes"], ExactMatchConfig(), 0.0),  # whitespace is not normalised, as in HF evaluate
    ],
)
def test_exact_match(prediction, references, config, expected):
    out = exact_match(frame([gen("i", prediction, references)]), config)
    assert out.schema == pl.Schema(ITEM_METRICS)
    assert out["value"].to_list() == [expected]


def test_exact_match_config_rejects_bad_input():
    with pytest.raises(ValueError, match="regexes_to_ignore"):
        ExactMatchConfig(regexes_to_ignore="^a")
    with pytest.raises(ValueError, match="invalid pattern"):
        ExactMatchConfig(regexes_to_ignore=("(",))


# ------------------------------------------------------------------------------------------------- BLEU and chrF


def test_bleu_identical_sentence_is_100_and_hand_computed_case():
    rows = [gen("a", "the quick brown fox jumps", ["the quick brown fox jumps"]), gen("b", "a b c d", ["a b c e"])]
    out = bleu_chrf(frame(rows))
    identical, partial = by_metric(out, "bleu")
    assert identical == pytest.approx(100.0)
    # precisions 3/4, 2/3, 1/2 and 0/1 → exp smoothing 100 / (2 · 1) = 50; BP = 1
    assert partial == pytest.approx((75.0 * (200 / 3) * 50.0 * 50.0) ** 0.25)
    assert partial == pytest.approx(sacrebleu.sentence_bleu("a b c d", ["a b c e"]).score)


def test_bleu_statistics_by_hand():
    stats = text_statistics(frame([gen("b", "a b c d", ["a b c e"])])).row(0, named=True)
    assert [stats[c] for c in BleuConfig().stat_columns()] == [4, 4, 3, 2, 1, 0, 4, 3, 2, 1]


def test_chrf_by_hand():
    out = bleu_chrf(frame([gen("a", "ab", ["abc"]), gen("b", "same text", ["same text"])]))
    partial, identical = by_metric(out, "chrf")
    # orders with hyp and ref n-grams: 1 (P = 2/2, R = 2/3) and 2 (P = 1/1, R = 1/2) → P = 1, R = 7/12;
    # F_2 = 5PR / (4P + R) = (35/12) / (55/12) = 7/11
    assert partial == pytest.approx(100 * 7 / 11)
    assert identical == pytest.approx(100.0)
    stats = text_statistics(frame([gen("a", "ab", ["abc"])])).row(0, named=True)
    assert (stats["chrf_char1_hyp"], stats["chrf_char1_ref"], stats["chrf_char1_match"]) == (2, 3, 2)
    assert (stats["chrf_char2_hyp"], stats["chrf_char2_ref"], stats["chrf_char2_match"]) == (1, 2, 1)


HYPS = ["the cat sat on the mat", "a dog barked loudly", "it rained all day long today", "hello there"]
REFS = ["the cat sat on a mat", "the dog barked", "it rained the whole day", "hello"]
REFS2 = ["a cat was on the mat", "a dog was barking loudly", "rain fell all day", "hi there"]


def _corpus(rows, bootstrap=BootstrapConfig(n_resamples=200)):
    out = corpus_text_metrics(frame(rows), bootstrap)
    return {r["metric"]: r for r in out.iter_rows(named=True)}


def test_corpus_scores_equal_sacrebleu_from_summed_statistics():
    one_ref = _corpus([gen(str(i), h, [r]) for i, (h, r) in enumerate(zip(HYPS, REFS))])
    assert one_ref["corpus_bleu"]["mean"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert one_ref["corpus_chrf"]["mean"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    two_refs = _corpus([gen(str(i), h, [r, s]) for i, (h, r, s) in enumerate(zip(HYPS, REFS, REFS2))])
    assert two_refs["corpus_bleu"]["mean"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS, REFS2]).score)
    assert two_refs["corpus_chrf"]["mean"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS, REFS2]).score)
    # corpus BLEU is not the mean of sentence BLEU
    sentence_mean = sum(sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(HYPS, REFS)) / len(HYPS)
    assert abs(one_ref["corpus_bleu"]["mean"] - sentence_mean) > 1.0


def test_corpus_variable_reference_count_matches_sacrebleu_none_padding():
    refs = [[REFS[0], REFS2[0]], [REFS[1]], [REFS[2], REFS2[2]], [REFS[3]]]
    out = _corpus([gen(str(i), h, r) for i, (h, r) in enumerate(zip(HYPS, refs))])
    stream2 = [REFS2[0], None, REFS2[2], None]
    assert out["corpus_bleu"]["mean"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS, stream2]).score)
    assert "nrefs:var" in out["corpus_bleu"]["signature"]


def test_corpus_rows_schema_signature_and_interval():
    rows = [gen(str(i), h, [r]) for i, (h, r) in enumerate(zip(HYPS, REFS))]
    out = corpus_text_metrics(frame(rows), BootstrapConfig(n_resamples=300, seed=7))
    assert out.schema == pl.Schema(METRICS_TABLE)
    bleu = out.filter(pl.col("metric") == "corpus_bleu").row(0, named=True)
    assert bleu["n_items"] == 4 and bleu["taxonomy"] == "nonlinear" and bleu["direction"] == "higher"
    assert bleu["kind"] == "sharp"  # a geometric mean of n-gram precisions
    assert "tok:13a" in bleu["signature"] and "bs:300" in bleu["signature"] and "seed:7" in bleu["signature"]
    assert bleu["ci_low"] <= bleu["mean"] <= bleu["ci_high"]
    assert bleu["ci_low"] < bleu["ci_high"]


def test_corpus_bootstrap_of_identical_items_is_a_point():
    # every resample sums to 3 × the same statistics → same corpus score → a zero-width interval
    rows = [gen(str(i), "a b c d", ["a b c e"]) for i in range(3)]
    bleu = _corpus(rows)["corpus_bleu"]
    assert bleu["ci_low"] == pytest.approx(bleu["mean"]) and bleu["ci_high"] == pytest.approx(bleu["mean"])


def test_bleu_config_changes_the_number():
    rows = [gen("a", "The Cat", ["the cat"])]
    assert by_metric(bleu_chrf(frame(rows)), "bleu") != by_metric(bleu_chrf(frame(rows), BleuConfig(lowercase=True)), "bleu")
    assert by_metric(bleu_chrf(frame(rows), BleuConfig(lowercase=True)), "bleu") == [pytest.approx(100.0)]
    assert by_metric(bleu_chrf(frame(rows), chrf=ChrfConfig(lowercase=True)), "chrf") == [pytest.approx(100.0)]


# ------------------------------------------------------------------------------------------------- edit distance


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "abc", 3), ("abc", "", 3), ("same", "same", 0),
     ([1, 2, 3, 4], [1, 2, 4], 1), ([1, 2, 3, 4], [9, 9, 9, 9, 9], 5)],
)
def test_levenshtein(a, b, expected):
    assert levenshtein(a, b) == expected


def test_edit_distances_use_closest_reference():
    rows = [
        gen("a", "kitten", ["sitting", "kitchen"], pred_ids=[1, 2, 3, 4], ref_ids=[[9, 9, 9, 9, 9], [1, 2, 4]]),
        gen("b", "x", [""], pred_ids=[7], ref_ids=[[]]),
    ]
    out = edit_distances(frame(rows))
    assert by_metric(out, "token_edit_distance") == [1.0, 1.0]
    assert by_metric(out, "token_edit_distance_norm") == [pytest.approx(1 / 3), None]  # empty reference → null
    assert by_metric(out, "char_edit_distance") == [2.0, 1.0]  # kitten → kitchen: t→c, insert h


def test_text_metrics_has_every_builtin_metric():
    out = text_metrics(frame([gen("a", "x", ["x"])]))
    assert set(out["metric"]) == {
        "exact_match", "bleu", "chrf", "token_edit_distance", "token_edit_distance_norm", "char_edit_distance"
    }


# ------------------------------------------------------------------------------------------------- validation


def test_generation_validation_errors():
    with pytest.raises(ValueError, match="reference"):
        exact_match(frame([gen("a", "x", [], ref_ids=[])]))
    with pytest.raises(ValueError, match="reference_token_ids"):
        exact_match(frame([gen("a", "x", ["x", "y"], ref_ids=[[1]])]))
    with pytest.raises(ValueError, match="duplicated"):
        exact_match(frame([gen("a", "x", ["x"]), gen("a", "y", ["y"])]))
    with pytest.raises(ValueError, match="column 'prediction' must have dtype String"):
        exact_match(frame([gen("a", "x", ["x"])]).with_columns(pl.lit(1).alias("prediction")))


# ------------------------------------------------------------------------------------------------- evaluate modules


def test_extra_metric_with_local_evaluate_module():
    import evaluate

    module = evaluate.load(str(FIXTURES / "char_overlap.py"))
    rows = [gen("a", "abc", ["abd", "xyz"]), gen("b", "zz", ["z"])]
    out = extra_metric(frame(rows), module)
    assert out.schema == pl.Schema(ITEM_METRICS)
    assert set(out["metric"]) == {"char_overlap_overlap", "char_overlap_length"}  # "note" is not numeric
    assert set(out["signature"]) == {"evaluate:char_overlap"}
    assert by_metric(out, "char_overlap_overlap") == [pytest.approx(2 / 3), 1.0]  # {a,b} of {a,b,d}; {z} of {z}
    assert by_metric(out, "char_overlap_length") == [3.0, 2.0]
    info = MetricInfo("continuous", "higher", "character overlap", "test fixture")
    agg = aggregate(out, BootstrapConfig(n_resamples=10), extra_info={"char_overlap_overlap": info,
                                                                      "char_overlap_length": info})
    assert agg.filter(pl.col("metric") == "char_overlap_overlap")["mean"][0] == pytest.approx((2 / 3 + 1) / 2)


def test_extra_metric_rejects_non_modules():
    with pytest.raises(ValueError, match="EvaluationModule"):
        extra_metric(frame([gen("a", "x", ["x"])]), object())



def test_empty_generations_give_empty_tables():
    empty = frame([])
    assert text_metrics(empty).height == 0
    assert corpus_text_metrics(empty).schema == pl.Schema(METRICS_TABLE)
    assert corpus_text_metrics(empty).height == 0


def test_exact_match_config_signature_names_every_setting():
    sig = ExactMatchConfig(ignore_case=True, regexes_to_ignore=("^a",)).signature()
    assert sig == "ignore_case:True|ignore_punctuation:False|ignore_numbers:False|regexes_to_ignore:('^a',)"


def test_item_rows_carry_their_settings():
    """Each item row says how its number was made: sacrebleu's own signature for sentence BLEU and chrF (as
    sacrebleu's sentence functions report it), the exact-match normalisation, nothing for edit distances."""
    rows = frame([gen("a", "the cat", ["the cat", "a cat"]), gen("b", "a dog", ["the dog", "one dog"])])
    exact = ExactMatchConfig(ignore_case=True)
    out = text_metrics(rows, exact, BleuConfig(tokenize="char"))
    sig = dict(out.select("metric", "signature").unique().iter_rows())
    reference_bleu = sacrebleu.metrics.BLEU(tokenize="char", effective_order=True)
    reference_bleu.sentence_score("the cat", ["the cat", "a cat"])
    reference_chrf = sacrebleu.metrics.CHRF()
    reference_chrf.sentence_score("the cat", ["the cat", "a cat"])
    assert sig["bleu"] == reference_bleu.get_signature().format()
    assert "tok:char" in sig["bleu"] and "eff:yes" in sig["bleu"] and "nrefs:2" in sig["bleu"]
    assert sig["chrf"] == reference_chrf.get_signature().format()
    assert sig["exact_match"] == exact.signature()
    assert sig["token_edit_distance"] == sig["char_edit_distance"] == ""
    assert out.group_by("metric").agg(pl.col("signature").n_unique())["signature"].max() == 1
    # the mean keeps the item setting beside the bootstrap's
    agg = aggregate(out, BootstrapConfig(n_resamples=10))
    assert agg.filter(pl.col("metric") == "bleu")["signature"][0] == sig["bleu"] + "|ci:percentile|bs:10|conf:0.95|seed:0"


def test_sentence_scores_equal_sacrebleu_public_functions():
    """The statistic methods are private sacrebleu API (pinned to sacrebleu 2.x in pyproject.toml): the per-item
    scores must equal sacrebleu's public sentence functions."""
    out = bleu_chrf(frame([gen(str(i), h, [r, s]) for i, (h, r, s) in enumerate(zip(HYPS, REFS, REFS2))]))
    assert by_metric(out, "bleu") == pytest.approx(
        [sacrebleu.sentence_bleu(h, [r, s]).score for h, r, s in zip(HYPS, REFS, REFS2)])
    assert by_metric(out, "chrf") == pytest.approx(
        [sacrebleu.sentence_chrf(h, [r, s]).score for h, r, s in zip(HYPS, REFS, REFS2)])


def test_sacrebleu_is_pinned_to_the_tested_major_version():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert re.findall(r'"(sacrebleu[^"]*)"', pyproject) == ["sacrebleu>=2.4,<3"]
    assert sacrebleu.__version__.startswith("2.")
