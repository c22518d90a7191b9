"""Items → (context ids, continuation ids) per choice: the sole home of the context/continuation boundary rule.

The rule is lm-evaluation-harness 0.4.13's, so log-probs here equal lm-eval's for the same model
(`lm_eval/api/model.py` `TemplateLM.loglikelihood` and `_encode_pair`, `lm_eval/models/huggingface.py`
`HFLM.tok_encode`, `prefix_token_id` and `_loglikelihood_tokens`):

1. Trailing whitespace of the context moves to the front of the continuation.
2. `whole = enc(context + continuation)`, `ctx = enc(context)`, `cont = whole[len(ctx):]`; the model sees
   `ctx + cont`. (If the tokenizer merges across the boundary, `ctx` is still `enc(context)`, not `whole[:len(ctx)]`.)
3. `enc(s)` is the tokenizer's default encoding (its own special tokens, e.g. a BOS it prepends), except that no
   special tokens are added when `s` already starts with the decoded prefix token.
4. An empty context becomes the prefix token (BOS, or EOS when there is no BOS) and the continuation is encoded
   without special tokens; if the continuation's first token *is* the prefix token, that token becomes the context.
5. Left truncation: of `ctx + cont` only the last `max_length + 1` tokens are kept (the last one is never fed to the
   model), i.e. the context keeps its last `max_length + 1 - len(cont)` tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from logprob.tasks import Item

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One (item, choice) to score: the model reads `context_ids + continuation_ids[:-1]` and every continuation token
    is scored. `item_index` is the item's position in the scored sequence; `n_truncated` counts context tokens cut."""

    item_index: int
    choice: int
    context_ids: tuple[int, ...]
    continuation_ids: tuple[int, ...]
    n_truncated: int = 0


def prefix_token_id(tokenizer) -> int:
    """The token lm-eval puts before a continuation that has no context: BOS, or EOS if there is no BOS."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise ValueError("tokenizer: has neither bos_token_id nor eos_token_id, so an empty context cannot be scored")
    return token


def _encode(tokenizer, texts: list[str], prefix_text: str) -> list[list[int]]:
    """lm-eval's `tok_encode` for many strings: default special tokens, none if the text starts with the prefix."""
    out: list[list[int] | None] = [None] * len(texts)
    for add_special, idx in ((True, [i for i, t in enumerate(texts) if not t.startswith(prefix_text)]),
                             (False, [i for i, t in enumerate(texts) if t.startswith(prefix_text)])):
        if idx:
            enc = tokenizer([texts[i] for i in idx], add_special_tokens=add_special)["input_ids"]
            for i, ids in zip(idx, enc, strict=True):
                out[i] = list(ids)
    return out  # type: ignore[return-value]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids under the lm-eval rule (module docstring, rules 1-4), before truncation.

    >>> class Chars:  # a toy tokenizer: one token per character, ids are code points, BOS = 1
    ...     bos_token_id, eos_token_id = 1, 2
    ...     def decode(self, ids): return "<s>"
    ...     def __call__(self, texts, add_special_tokens=True):
    ...         return {"input_ids": [[ord(c) for c in t] for t in texts]}
    >>> encode_pair(Chars(), "ab ", "c")   # the trailing space moves to the continuation
    ([97, 98], [32, 99])
    >>> encode_pair(Chars(), "", "c")      # empty context: BOS is the context
    ([1], [99])
    """
    return encode_pairs(tokenizer, [(context, continuation)])[0]


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """`encode_pair` for many pairs, with batched tokenizer calls."""
    prefix = prefix_token_id(tokenizer)
    prefix_text = tokenizer.decode(prefix)
    result: list[tuple[list[int], list[int]] | None] = [None] * len(pairs)

    empty = [i for i, (ctx, _) in enumerate(pairs) if ctx == ""]
    if empty:
        conts = tokenizer([pairs[i][1] for i in empty], add_special_tokens=False)["input_ids"]
        for i, cont in zip(empty, conts, strict=True):
            cont = list(cont)
            result[i] = ([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:])

    full = [i for i, (ctx, _) in enumerate(pairs) if ctx != ""]
    if full:
        contexts, wholes = [], []
        for i in full:
            ctx, cont = pairs[i]
            stripped = ctx.rstrip()
            contexts.append(stripped)
            wholes.append(stripped + ctx[len(stripped):] + cont)  # rule 1: trailing whitespace joins the continuation
        ctx_ids = _encode(tokenizer, contexts, prefix_text)
        whole_ids = _encode(tokenizer, wholes, prefix_text)
        for i, c, w in zip(full, ctx_ids, whole_ids, strict=True):
            result[i] = (c, w[len(c):])  # rule 2: split the joint encoding at the context's own length
    return result  # type: ignore[return-value]


def truncate_left(context_ids: Sequence[int], continuation_ids: Sequence[int], max_length: int) -> tuple[int, ...]:
    """Context ids left after lm-eval's left truncation (rule 5): the model input `ctx + cont[:-1]` fits max_length.

    >>> truncate_left([1, 2, 3, 4], [5, 6], max_length=4)  # keep the last 5 of 1..6, feed 4
    (2, 3, 4)
    """
    if len(continuation_ids) > max_length:
        raise ValueError(f"continuation: {len(continuation_ids)} tokens exceed max_length {max_length}")
    keep = max_length + 1 - len(continuation_ids)
    return tuple(context_ids[-keep:]) if len(context_ids) > keep else tuple(context_ids)


def build_requests(tokenizer, items: Sequence[Item], max_length: int) -> list[Request]:
    """One Request per (item, continuation), in item order then choice order."""
    if max_length < 1:
        raise ValueError(f"max_length: expected a positive token count, got {max_length}")
    keys = [(i, c) for i, item in enumerate(items) for c in range(len(item.continuations))]
    pairs = [(items[i].context, items[i].continuations[c]) for i, c in keys]
    requests = []
    n_cut = 0
    for (i, c), (_, text), (ctx, cont) in zip(keys, pairs, encode_pairs(tokenizer, pairs), strict=True):
        if not cont:
            raise ValueError(f"item {items[i].item_id!r} choice {c}: continuation {text!r} "
                             "has no tokens after the context/continuation split")
        if not ctx:
            raise ValueError(f"item {items[i].item_id!r}: context {items[i].context!r} has no tokens once its trailing "
                             "whitespace moves to the continuation (lm-eval fails on it too); use an empty context")
        if len(cont) > max_length:
            raise ValueError(f"item {items[i].item_id!r} choice {c}: continuation has {len(cont)} tokens, more than "
                             f"max_length {max_length}")
        kept = truncate_left(ctx, cont, max_length)
        n_cut += len(ctx) > len(kept)
        requests.append(Request(i, c, kept, tuple(cont), len(ctx) - len(kept)))
    if n_cut:
        log.warning("%d of %d requests exceed max_length %d: their contexts were truncated from the left",
                    n_cut, len(requests), max_length)
    return requests
