"""Chain-of-thought answers on the shipped scratchpad ladder: the final answer read out of the generation, the
references reduced to their answers, the answer scored after the model's own reasoning, extraction failures kept."""

from __future__ import annotations

import math
from dataclasses import replace

import polars as pl
import pytest

from logprob.config import ModelSpec, ScoreConfig
from logprob.generate import generate_items
from logprob.ladder import ADDITION_SCRATCHPAD_GEN_TASK, SCRATCHPAD_LADDER_DIR, load_manifest
from logprob.ladder.scratchpad import ANSWER_PATTERN
from logprob.model import load_model
from logprob.reasoning import generation_config, read_answers
from logprob.score import score_items
from logprob.tasks import Item, load_jsonl
from metrics.text import reasoning_metrics


@pytest.fixture(scope="module")
def task():
    full = load_jsonl(ADDITION_SCRATCHPAD_GEN_TASK)
    return replace(full, items=full.items[:6], formulation="scratchpad", answer_regex=ANSWER_PATTERN,
                   max_new_tokens=40)


def model(size_index: int):
    entry = sorted(load_manifest(SCRATCHPAD_LADDER_DIR)["models"], key=lambda m: m["non_embedding_params"])
    return load_model(ModelSpec(entry[size_index]["directory"], device="cpu", dtype="float32"))


def answers(loaded, task):
    config = generation_config(ScoreConfig(max_new_tokens=8), task)
    assert config.max_new_tokens == 40  # the formulation's own budget
    gens = generate_items(loaded, task.items, config)
    return gens, read_answers(loaded, task, gens, ScoreConfig())


def test_the_final_answer_is_read_out_of_the_working(task):
    loaded = model(-1)  # the 787k model writes the working and the answer right
    raw, out = answers(loaded, task)
    for item, row in zip(task.items, out.iter_rows(named=True), strict=True):
        answer = item.references[0].split(";")[1]  # the reference: working, ";", five digits
        assert row["generation"] == raw.filter(pl.col("item_id") == item.item_id)["prediction"][0]
        assert row["generation"].endswith(";" + answer)
        assert row["prediction"] == answer and row["answer_extracted"] is True
        assert row["reference_answers"] == [answer]
        assert row["prediction_token_ids"] == row["reference_token_ids"][0]  # one rule: 0 token edits
        assert row["answer_n_tokens"] == 5 and -0.05 < row["answer_logprob"] <= 0.0


def test_the_answer_after_reasoning_equals_scoring_that_context_by_hand(task):
    loaded = model(0)  # the 1k model: wrong working, and answers not always found
    _, out = answers(loaded, task)
    for item, row in zip(task.items, out.iter_rows(named=True), strict=True):
        text = row["generation"]
        cut = text.index(";") + 1 if row["answer_extracted"] else len(text)  # the answer starts after ";"
        by_hand = score_items(loaded, [Item(item.item_id, item.context + text[:cut],
                                            references=tuple(row["reference_answers"]))], ScoreConfig())
        assert row["answer_logprob"] == pytest.approx(by_hand["logprob"][0], abs=1e-5)
        if not row["answer_extracted"]:
            assert row["prediction"] == ""


def test_an_answer_never_found_is_an_extraction_failure_not_a_silent_zero(task):
    loaded = model(-1)
    strict = replace(task, answer_regex=r"ANSWER: (\d+)")  # a pattern the models never write
    _, out = answers(loaded, strict)
    assert out["answer_extracted"].to_list() == [False] * len(task.items)
    assert out["prediction"].to_list() == [""] * len(task.items)
    rows = reasoning_metrics(out.with_columns(model=pl.lit("m"), params=pl.lit(1), non_embedding_params=pl.lit(1),
                                              task=pl.lit("t")))
    extracted = rows.filter(pl.col("metric") == "answer_extracted")["value"].to_list()
    assert extracted == [0.0] * len(task.items)
    per_token = rows.filter(pl.col("metric") == "logprob_answer_after_reasoning_per_token")["value"].to_list()
    assert all(v is not None and math.isfinite(v) for v in per_token)
