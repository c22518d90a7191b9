"""Generative items → greedy continuations, batched with left padding and a KV cache.

Greedy means argmax at every step and nothing else: the loop is written here rather than delegated to
`model.generate`, because `generate` folds a checkpoint's `generation_config.json` (repetition penalty, n-gram bans,
minimum length, ...) into any config passed to it, which would silently change what "greedy" means per model.

The prompt is the item's context encoded exactly as lm-eval's `generate_until` sees it (the context as written,
trailing whitespace included), left-truncated so that prompt + `max_new_tokens` fits `max_length`. References are
encoded as continuations of the context by the boundary rule of `logprob.tokenize`, so `reference_token_ids` are the
very tokens whose log-probs the score table holds.

The prediction is encoded by the same rule for comparison: `prediction_token_ids` are the tokens of `prediction` as a
continuation of the context, exactly as a reference with that text would be encoded. The model's own tokens can
differ: when the context ends in whitespace (every BIG-bench prompt ends in "A: "), the prompt keeps it and the
model generates "Paris" after it, while the boundary rule moves the space into the continuation (" Paris"), which a
BPE tokenizer may encode as other tokens. Comparing the model's own tokens with the references would then count a
perfect answer as at least one edit; under one rule a generation equal to a reference has token edit distance 0.
The model's own tokens are kept in `generated_token_ids`.

Generation stops per row at the first of: an EOS token, a decoded text containing a stop sequence, or
`max_new_tokens` tokens. What each output column means:

- `prediction`: the decoded continuation cut before the earliest stop sequence (EOS itself is not decoded).
- `n_generated_tokens`: tokens the model produced, up to and including the token that completed the stop sequence
  or the EOS token; this is what generation cost, not the length of `prediction`.
- `generated_token_ids`: the longest prefix of the generated ids that decodes to a prefix of `prediction`, i.e. the
  model's own tokens before the stop. A token that straddles the stop (".\\n" with stop "\\n") is left out, so its
  characters before the stop are in `prediction` but not in these ids.
- `prediction_token_ids`: `prediction` encoded as a continuation of the context (above); comparable with
  `reference_token_ids`.
- `stop_reason`: "stop_sequence", "eos" or "max_new_tokens".
- `n_truncated`: prompt tokens cut from the left (0 when the prompt fit).
- `generation`, `answer_extracted`, `reference_answers`, `answer_logprob`, `answer_n_tokens`: the chain-of-thought
  columns (logprob/reasoning.py); here `generation` = `prediction`, `reference_answers` = `references` and the rest
  null, until `reasoning.read_answers` reads the answers of a task posed with an answer regex.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Sequence

import polars as pl
import torch

from logprob.config import ScoreConfig
from logprob.device import TokenBudget
from logprob.model import LoadedModel
from logprob.tasks import Item
from logprob.tokenize import encode_pairs
from metrics.schema import GENERATIONS, GENERATIVE, per_model_columns

log = logging.getLogger(__name__)

#: Output columns: GENERATIONS without the model and task columns, which the caller adds.
COLUMNS: dict[str, pl.DataType] = per_model_columns(GENERATIONS)

#: Padding id. Any in-vocabulary id works: padded positions are masked out of attention and never read.
PAD_ID = 0


def generate_items(
    loaded: LoadedModel, items: Sequence[Item], config: ScoreConfig, progress: Callable[[int], None] | None = None,
    *, budget: TokenBudget | None = None,
) -> pl.DataFrame:
    """Greedy continuations of the generative items in `items` (others are skipped), one row each, in item order.

    `progress(n)` is called with the number of items finished after each batch. `budget` is the model's shared
    token budget (`logprob.device`): a batch holds rows × (its longest prompt + max_new_tokens) ≤ budget tokens; by
    default one is resolved from `config`. Columns are `COLUMNS` (module docstring).
    """
    gen_items = [item for item in items if item.kind == GENERATIVE]
    if not gen_items:
        return pl.DataFrame(schema=COLUMNS)
    if any(s == "" for s in config.stop_sequences):
        raise ValueError(f"stop_sequences: expected non-empty strings, got {config.stop_sequences!r}")
    if config.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected a positive token count, got {config.max_new_tokens}")
    max_length = config.max_length or loaded.max_length
    max_prompt = max_length - config.max_new_tokens
    if max_prompt < 1:
        raise ValueError(
            f"max_length: {max_length} leaves no room for a prompt before max_new_tokens {config.max_new_tokens}"
        )
    tokenizer = loaded.tokenizer
    prompts, references, n_truncated = _encode(tokenizer, gen_items, max_prompt)
    eos = _eos_ids(loaded)
    stops = config.stop_sequences

    def done(ids: list[int]) -> bool:
        return ids[-1] in eos or _first_stop(tokenizer.decode(ids), stops) is not None

    budget = budget or TokenBudget.resolve(loaded, config.token_budget)
    generated: list[list[int]] = [[] for _ in gen_items]
    queue = plan_batches(prompts, range(len(prompts)), config.max_new_tokens, budget.value)
    while queue:
        batch = queue.pop(0)
        try:
            outs = _greedy(loaded.model, [prompts[i] for i in batch], config.max_new_tokens, done, loaded.device)
        except Exception as exc:  # noqa: BLE001 - back_off re-raises everything but out-of-memory errors
            left = [i for b in (batch, *queue) for i in b]
            budget.back_off(exc, smallest=len(batch) == 1, what="generative items", n_left=len(left))
            queue = plan_batches(prompts, left, config.max_new_tokens, budget.value)
            continue
        for i, ids in zip(batch, outs, strict=True):
            generated[i] = ids
        if progress is not None:
            progress(len(batch))

    rows = [_finish(tokenizer, ids, eos, stops) for ids in generated]
    predictions = [r[0] for r in rows]
    encoded = encode_pairs(tokenizer, [(item.context, text) for item, text in zip(gen_items, predictions)])
    return pl.DataFrame(
        {
            "item_id": [item.item_id for item in gen_items],
            "prediction": predictions,
            "n_generated_tokens": [len(ids) for ids in generated],
            "generated_token_ids": [r[1] for r in rows],
            "prediction_token_ids": [cont for _, cont in encoded],
            "references": [list(item.references) for item in gen_items],
            "reference_token_ids": references,
            "stop_reason": [r[2] for r in rows],
            "n_truncated": n_truncated,
            "generation": predictions,  # a chain-of-thought task's answers are read by logprob.reasoning
            "answer_extracted": [None] * len(gen_items),
            "reference_answers": [list(item.references) for item in gen_items],
            "answer_logprob": [None] * len(gen_items),
            "answer_n_tokens": [None] * len(gen_items),
        },
        schema=COLUMNS,
    )


def _encode(
    tokenizer, items: Sequence[Item], max_prompt: int
) -> tuple[list[list[int]], list[list[list[int]]], list[int]]:
    """Prompt ids (left-truncated to `max_prompt`), each reference's continuation ids, and the number of prompt
    tokens cut, per item.

    The prompt is the `(context, "")` pair of the boundary rule put back together: with an empty continuation the
    split is `enc(context.rstrip())` + the rest of `enc(context)`, so the two parts join to `enc(context)` itself.
    """
    pairs = [(item.context, text) for item in items for text in ("", *item.references)]
    encoded = iter(encode_pairs(tokenizer, pairs))
    prompts, references, cut = [], [], []
    for item in items:
        ctx, rest = next(encoded)
        prompt = ctx + rest
        cut.append(max(0, len(prompt) - max_prompt))
        prompts.append(prompt[-max_prompt:])
        references.append([next(encoded)[1] for _ in item.references])
    n_cut = sum(c > 0 for c in cut)
    if n_cut:
        log.warning("%d of %d generative prompts exceed %d tokens (max_length - max_new_tokens): "
                    "they were truncated from the left", n_cut, len(items), max_prompt)
    return prompts, references, cut


def _eos_ids(loaded: LoadedModel) -> frozenset[int]:
    """The tokenizer's EOS plus any the checkpoint's generation config names (some models end turns on several)."""
    ids = {loaded.tokenizer.eos_token_id}
    config_eos = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    ids.update(config_eos if isinstance(config_eos, list) else [config_eos])
    return frozenset(i for i in ids if i is not None)


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest occurrence of any stop sequence in `text`, or None (lm-eval's `until` cut).

    >>> _first_stop("ab\\ncd.", ["." , "\\n"])
    2
    >>> _first_stop("abc", ["\\n"]) is None
    True
    """
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def plan_batches(
    prompts: Sequence[Sequence[int]], indices: Iterable[int], max_new_tokens: int, budget: int
) -> list[list[int]]:
    """Batches of the prompt `indices`, longest first, each with rows × (its longest prompt + max_new_tokens) ≤
    budget (a single row may exceed it). Longest first so that an out-of-memory error hits the first batch.

    >>> plan_batches([[1], [1, 2, 3], [1, 2]], range(3), max_new_tokens=2, budget=10)  # widths 5, then 3
    [[1, 2], [0]]
    """
    batches: list[list[int]] = []
    width = 0
    for i in sorted(indices, key=lambda i: -len(prompts[i])):
        if batches and (len(batches[-1]) + 1) * width <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
            width = len(prompts[i]) + max_new_tokens
    return batches


def _cache_kwarg(model) -> str:
    """transformers 5 renamed the KV cache argument and output field `past_key_values` to `cache`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def _greedy(
    model, prompts: Sequence[Sequence[int]], max_new_tokens: int, done: Callable[[list[int]], bool], device
) -> list[list[int]]:
    """Argmax decoding of a left-padded batch with a KV cache; each row's ids end at the step `done` first holds."""
    n_rows, width = len(prompts), max(len(p) for p in prompts)
    input_ids = torch.full((n_rows, width), PAD_ID, dtype=torch.long)  # (B, T)
    mask = torch.zeros((n_rows, width), dtype=torch.long)  # (B, T) 1 = real token
    for r, p in enumerate(prompts):
        input_ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[r, width - len(p):] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T) each row's real tokens at 0..len-1
    cache_kwarg = _cache_kwarg(model)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1)
    generated: list[list[int]] = [[] for _ in prompts]
    active = set(range(n_rows))
    for step in range(max_new_tokens):
        next_ids = out.logits[:, -1].argmax(-1)  # (B,) logits at the last position predict the next token
        next_list = next_ids.tolist()
        for r in sorted(active):
            generated[r].append(next_list[r])
            if done(generated[r]):
                active.discard(r)
        if not active or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones((n_rows, 1))], dim=1)  # (B, T + step + 1)
        position_ids = position_ids[:, -1:] + 1  # (B, 1)
        out = model(
            input_ids=next_ids[:, None],  # (B, 1); finished rows keep decoding, their tokens are dropped
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=True,
            **{cache_kwarg: getattr(out, cache_kwarg)},
        )
    return generated


def _finish(tokenizer, ids: list[int], eos: frozenset[int], stops: Sequence[str]) -> tuple[str, list[int], str]:
    """(prediction, generated_token_ids, stop_reason) of one row's generated ids (module docstring)."""
    body = ids[:-1] if ids and ids[-1] in eos else ids
    text = tokenizer.decode(body)
    cut = _first_stop(text, stops)
    if len(body) < len(ids):
        reason, prediction = "eos", text
    elif cut is not None:
        reason, prediction = "stop_sequence", text[:cut]
    else:
        reason, prediction = "max_new_tokens", text
    keep = len(body)
    while keep and not prediction.startswith(tokenizer.decode(body[:keep])):
        keep -= 1
    return prediction, body[:keep], reason
