"""Chain-of-thought answers: the final answer read out of a generation, and the reference answer scored after the
model's own reasoning.

A task posed with an `answer_regex` (logprob/formulations.py: a chain-of-thought or scratchpad formulation, Wei et
al. 2022; Kojima et al. 2022; Nye et al. 2021) is generated as usual, up to its own `max_new_tokens` and stop
sequences. Then, per generative item:

- `generation` keeps the whole generated text (reasoning and answer); `prediction` becomes the **final answer**: the
  regex's first group at its first match in the generation, or "" when it does not match (`answer_extracted`
  false: an extraction failure, counted, never silently scored as a wrong answer without a record).
- `reference_answers`: each reference's own answer by the same regex (a reference that does not match, such as a
  bare "42", is its own answer). Exact match, BLEU, chrF and the edit distances compare `prediction` with these.
- `prediction_token_ids` / `reference_token_ids`: the answers encoded by one rule, as continuations of the context
  (logprob/generate.py), so a right answer is 0 token edits away.
- `answer_logprob`, `answer_n_tokens`: the teacher-forced log-probability of the best reference answer given the
  prompt **and the model's own reasoning** — the context followed by the generation up to where its answer starts
  (the whole generation when no answer was found). It says how much the model's reasoning put the right answer
  within reach, on a continuous scale, even when the greedy answer is wrong.

Items of other tasks keep `generation` = `prediction`, `reference_answers` = `references`, and null answer columns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from logprob.config import ScoreConfig
from logprob.tasks import Item, Task
from logprob.tokenize import encode_pairs


def final_answer(regex: str, text: str) -> tuple[str | None, int | None]:
    """(answer, where the answer starts) of the first match of `regex` in `text`; (None, None) without one.

    >>> final_answer(r";(\\d{5})", "37010|26109|;04690")
    ('04690', 13)
    >>> final_answer(r"answer is (\\d+)", "I am not sure")
    (None, None)
    """
    match = re.search(regex, text)
    return (match.group(1), match.start(1)) if match else (None, None)


def reference_answer(regex: str, reference: str) -> str:
    """A reference's own final answer by `regex`; the whole reference when it holds no match.

    >>> reference_answer(r";(\\d{5})", "37010|;04690"), reference_answer(r";(\\d{5})", "04690")
    ('04690', '04690')
    """
    answer, _ = final_answer(regex, reference)
    return reference if answer is None else answer


def generation_config(config: ScoreConfig, task: Task) -> ScoreConfig:
    """The run's settings with the task's own generation budget and stop sequences, where its formulation sets
    them (a chain of thought needs more tokens than a direct answer, and may span lines)."""
    from dataclasses import replace

    changes = {}
    if task.max_new_tokens is not None:
        changes["max_new_tokens"] = task.max_new_tokens
    if task.stop_sequences is not None:
        changes["stop_sequences"] = tuple(task.stop_sequences)
    return replace(config, **changes) if changes else config


def read_answers(loaded, task: Task, generations: pl.DataFrame, config: ScoreConfig, *, budget=None) -> pl.DataFrame:
    """`generations` (rows of `task`'s generative items, the columns `generate_items` writes) with the answer
    columns of the module docstring filled in by `task.answer_regex`."""
    from logprob.score import score_items

    regex = task.answer_regex
    if regex is None or generations.is_empty():
        return generations
    items = {it.item_id: it for it in task.items}
    rows = list(generations.select("item_id", "prediction").iter_rows())
    found = [final_answer(regex, text) for _, text in rows]
    ref_answers = [[reference_answer(regex, r) for r in items[i].references] for i, _ in rows]
    answers = [answer or "" for answer, _ in found]
    # the context, then the model's own reasoning up to where its answer starts (all of it when none was found)
    reasoned = [Item(item_id, items[item_id].context + (text[:start] if start is not None else text),
                     references=tuple(refs))
                for (item_id, text), (_, start), refs in zip(rows, found, ref_answers, strict=True)]
    scored = score_items(loaded, reasoned, config, None, budget=budget)
    best = (scored.sort("logprob", descending=True).group_by("item_id", maintain_order=True)
            .agg(pl.col("logprob").first().alias("answer_logprob"),
                 pl.col("n_tokens").first().alias("answer_n_tokens")))
    contexts = [items[i].context for i, _ in rows]
    predicted_ids = [cont for _, cont in encode_pairs(loaded.tokenizer, list(zip(contexts, answers, strict=True)))]
    reference_ids = _encode_each(loaded.tokenizer, contexts, ref_answers)
    filled = generations.with_columns(
        pl.col("prediction").alias("generation"),
        pl.Series("prediction", answers, dtype=pl.String),
        pl.Series("answer_extracted", [a is not None for a, _ in found], dtype=pl.Boolean),
        pl.Series("reference_answers", ref_answers, dtype=pl.List(pl.String)),
        pl.Series("prediction_token_ids", predicted_ids, dtype=pl.List(pl.Int32)),
        pl.Series("reference_token_ids", reference_ids, dtype=pl.List(pl.List(pl.Int32))),
    ).drop("answer_logprob", "answer_n_tokens", strict=False)
    return filled.join(best, on="item_id", how="left").select(generations.columns)


def _encode_each(tokenizer, contexts: Sequence[str], answers: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    pairs = [(ctx, a) for ctx, refs in zip(contexts, answers, strict=True) for a in refs]
    encoded = iter(cont for _, cont in encode_pairs(tokenizer, pairs))
    return [[next(encoded) for _ in refs] for refs in answers]
