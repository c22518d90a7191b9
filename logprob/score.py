"""Packed batches → per-token log-probs and ranks of every continuation; items → the score table.

The shift, stated once: the hidden state at row position p predicts the token at p+1 of the same sequence. A
continuation token cont[0] is predicted at the context's last position, cont[t] (t >= 1) at the branch position
holding cont[t-1] (`batching.build_batch` records which). The output embedding is applied only at those positions,
never to the (B, R, V) grid.

Model families in PACKABLE_MODEL_TYPES get packed rows (shared contexts, a custom 4-D mask, explicit position ids;
transformers returns a 4-D mask as given, `masking_utils._preprocess_mask_arguments`). Any other causal LM is scored
one request per right-padded row under its own causal mask: slower, same numbers.

Speed choices, measured on CPU (Pythia-70m shape, float32, interleaved A/B runs during development; those runs
were not kept as a report, so the numbers below are their only record; `benchmarks/RESULTS.md` holds the whole
scorer's benchmark against lm-eval): rows are filled best-fit and rows of similar fill share a pass, so a pass is
barely padded (4-choice items: 17% fewer grid tokens); passes hold `device.CPU_TOKEN_BUDGET` tokens, not one long
sequence each: many small passes lost badly with two threads; a pass of unpadded plain sequences gets no mask (SDPA's causal kernel); the (chunk, V) logits and 0/1
buffers live across passes in a `Scratch`, as fresh ones page-fault on first write. Budget and logits chunk
were then set on a quiet machine for memory at equal speed: 2048 tokens and 8M logits per chunk used 184 MB above
the loaded model on 4-choice items (4096 and 32M: 458 MB) in the same 5.4 s; 1-token answers 3.5 s vs 3.8 s;
long continuations 8.7 s vs 8.2 s. Long continuations cost what the model costs: the bare body and output head
per sequence, nothing else, took 8.95 s where the scorer took 9.2 s (`benchmarks/RESULTS.md`, the `bare` row).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import torch

from logprob.batching import PackedBatch, build_batch, make_segments, pack
from logprob.config import ScoreConfig
from logprob.device import TokenBudget, execution_device
from logprob.model import LoadedModel
from logprob.tasks import Item
from logprob.tokenize import Request, build_requests
from metrics.schema import SCORES, per_model_columns

log = logging.getLogger(__name__)

#: Rows of float32 logits per output-embedding chunk: (rows, vocab) <= this many elements (32 MiB). Large enough for
#: the (rows, H) x (H, V) product to run efficiently on CPU BLAS; two such buffers exist at once.
LOGIT_CHUNK_ELEMENTS = 1 << 23
#: Model types (config.model_type) checked to give, packed with the custom 4-D mask and explicit position ids, the
#: log-probs of scoring each request alone (tests/test_score.py). Other types are scored one request per
#: right-padded row with the model's own causal mask (no shared contexts), which is correct for any causal LM.
PACKABLE_MODEL_TYPES = frozenset({"gpt_neox", "llama", "gpt2", "opt", "qwen2", "qwen3", "olmo", "olmo2", "phi",
                                  "mistral", "gemma"})
#: Columns written here; run.py adds the model and task columns.
SCORE_COLUMNS = per_model_columns(SCORES)


def attention_mask(segment: torch.Tensor, branch: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive (B, 1, R, R) mask: 0 where query i may attend key k, the dtype's minimum elsewhere.

    i attends k iff both are in the same segment, k <= i, and k is context (branch 0) or in i's own branch. Padding
    has a unique segment label per token, so it attends only to itself and no row is fully masked.

    >>> m = attention_mask(torch.tensor([[0, 0, 0, 0]]), torch.tensor([[0, 0, 1, 2]]), torch.float32)
    >>> (m[0, 0] == 0).int().tolist()  # two context tokens, then branches 1 and 2 that both see only the context
    [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1]]
    """
    B, R = segment.shape
    same_segment = segment[:, :, None] == segment[:, None, :]  # (B, R, R) query i, key k
    causal = torch.ones(R, R, dtype=torch.bool, device=segment.device).tril()  # (R, R) k <= i
    visible = (branch[:, None, :] == 0) | (branch[:, :, None] == branch[:, None, :])  # (B, R, R)
    allowed = same_segment & causal & visible  # (B, R, R)
    zero = torch.zeros((), dtype=dtype, device=segment.device)
    blocked = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=segment.device)
    return torch.where(allowed, zero, blocked)[:, None]  # (B, 1, R, R)


class Scratch:
    """float32 (rows, V) work buffers kept across forward passes: a fresh one costs a page fault per 4 KiB on its
    first write on every pass (measured: the first comparison into a new 60 MB buffer took 3.5x as long as into a
    reused one)."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int, cols: int, device: torch.device) -> torch.Tensor:
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != cols or buf.device != device:
            buf = self._buffers[name] = torch.empty(rows, cols, dtype=torch.float32, device=device)
        return buf[:rows]  # (rows, cols)


@torch.inference_mode()
def token_scores(hidden: torch.Tensor, head: torch.nn.Module, target_needed: torch.Tensor,
                 target_ids: torch.Tensor, scratch: Scratch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob and rank of each target token from the hidden states that predict it.

    hidden (N_u, H) are the needed positions; target k is predicted by hidden[target_needed[k]] and has id
    target_ids[k]. Logits are upcast to float32 before the log-softmax. Rank = 1 + (tokens with a strictly greater
    log-prob) + (tokens with an equal log-prob and a smaller id): the target's place in a stable descending sort, so
    rank 1 exactly when `argmax` (which returns the first maximal index, as lm-eval's greedy check uses) is the target.
    Work is chunked so that no more than LOGIT_CHUNK_ELEMENTS logits exist at once, in two buffers from `scratch`
    (reused across calls when the caller keeps it).
    """
    N_t, N_u = target_ids.shape[0], hidden.shape[0]
    order = torch.argsort(target_needed, stable=True)  # (N_t,) targets grouped by predicting position
    sorted_needed = target_needed[order]  # (N_t,)
    logprob = torch.empty(N_t, dtype=torch.float32, device=hidden.device)
    rank = torch.empty(N_t, dtype=torch.int64, device=hidden.device)
    V = head.weight.shape[0]
    step = max(1, LOGIT_CHUNK_ELEMENTS // V)
    scratch = scratch or Scratch()
    plain = (type(head) is torch.nn.Linear and head.bias is None and head.weight.dtype == torch.float32
             and head.weight.device == hidden.device)  # not a head offloaded by accelerate (meta weights, a hook)
    logits_buf = scratch.get("logits", min(step, N_u), V, hidden.device) if plain else None  # (step, V)
    flags = scratch.get("flags", min(step, N_t), V, hidden.device)  # (step, V) 0/1 scratch
    bounds = torch.searchsorted(sorted_needed, torch.arange(0, N_u + step, step, device=hidden.device))
    for c, start in enumerate(range(0, N_u, step)):
        lo, hi = bounds[c].item(), bounds[c + 1].item()  # targets predicted in this chunk of positions
        if lo == hi:
            continue
        logp = _log_softmax(hidden[start:start + step], head, logits_buf)  # (n_u, V)
        local = sorted_needed[lo:hi] - start  # (n_t,) row of logp predicting each target, ascending
        first = torch.ones_like(local, dtype=torch.bool)  # (n_t,) first target of its row
        first[1:] = local[1:] != local[:-1]
        primary = first.nonzero()[:, 0]  # (n_p,) one target per row: compare against logp itself, no copy
        rows = logp if primary.numel() == logp.shape[0] else logp[local[primary]]  # (n_p, V)
        sel = order[lo:hi][primary]  # (n_p,)
        logprob[sel], rank[sel] = _rank(rows, target_ids[sel], flags)
        extra = (~first).nonzero()[:, 0]  # (n_e,) further targets of a row (choices sharing a context's last token)
        for e0 in range(0, extra.numel(), step):
            part = extra[e0:e0 + step]  # (n_e',)
            sel = order[lo:hi][part]  # (n_e',)
            logprob[sel], rank[sel] = _rank(logp[local[part]], target_ids[sel], flags)  # (n_e', V) rows copied
    return logprob, rank


def _log_softmax(hidden: torch.Tensor, head: torch.nn.Module, buf: torch.Tensor | None) -> torch.Tensor:
    """float32 log-softmax of head(hidden) (n, V), written into buf[:n] when given (head a plain float32 Linear), and
    in place on CPU (no fresh (n, V) allocations per chunk: on CPU those page-fault in on every call; the in-place
    CPU kernel reduces each row before overwriting it, which tests/test_score.py checks against a reference)."""
    n = hidden.shape[0]
    if buf is not None:
        logits = torch.matmul(hidden, head.weight.T, out=buf[:n])  # (n, V)
    else:
        logits = head(hidden).float()  # (n, V)
    if logits.device.type == "cpu":
        return torch.log_softmax(logits, -1, out=logits)  # (n, V)
    return logits.log_softmax(-1)  # (n, V)


def _rank(rows: torch.Tensor, ids: torch.Tensor, flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows[k, ids[k]], stable descending rank of ids[k] in rows[k]) for rows (n, V). Counts are float sums of the
    0/1 scratch `flags` (exact below 2**24 entries; ~10x faster than summing bools on CPU); the id tie-break is
    computed only for the rare rows where the target's value occurs more than once."""
    n = rows.shape[0]
    tgt = rows.gather(1, ids[:, None])  # (n, 1)
    above = torch.gt(rows, tgt, out=flags[:n]).sum(-1)  # (n,)
    tied = torch.eq(rows, tgt, out=flags[:n]).sum(-1)  # (n,) includes the target itself
    rank = above.long() + 1  # (n,)
    multi = (tied > 1).nonzero()[:, 0]  # (m,)
    if multi.numel():
        vocab = torch.arange(rows.shape[1], device=rows.device)  # (V,)
        before = (rows[multi] == tgt[multi]) & (vocab[None, :] < ids[multi, None])  # (m, V)
        rank[multi] += before.sum(-1)
    return tgt[:, 0], rank


def run_pass(base: torch.nn.Module, head: torch.nn.Module, batch: PackedBatch, device: torch.device,
             dtype: torch.dtype, packed: bool = True, scratch: Scratch | None = None,
             head_device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of a batch → (log-prob, rank) per scored token, in `batch.target_slots` order, on
    `head_device` (default `device`).

    packed: the (segment, branch) 4-D mask and explicit position ids. Otherwise every row is one request,
    right-padded, and the model gets a 2-D padding mask and builds its own causal mask and positions. Inputs go to
    `device` (the input embedding's); under `--device-map auto` accelerate moves them on from layer to layer, and
    the needed hidden states are gathered where the last layer left them, then moved to the head's device."""

    def as_tensor(a: np.ndarray, where: torch.device = device) -> torch.Tensor:
        return torch.from_numpy(a).to(where)

    input_ids = as_tensor(batch.input_ids)  # (B, R)
    if batch.causal:  # no mask: SDPA takes its causal kernel instead of reading a dense (B, 1, R, R) mask
        hidden = base(input_ids=input_ids, use_cache=False).last_hidden_state  # (B, R, H)
    elif packed:
        mask = attention_mask(as_tensor(batch.segment), as_tensor(batch.branch), dtype)  # (B, 1, R, R)
        hidden = base(input_ids=input_ids, position_ids=as_tensor(batch.position_ids), attention_mask=mask,
                      use_cache=False).last_hidden_state  # (B, R, H)
    else:
        padding = as_tensor((batch.segment >= 0).astype(np.int64))  # (B, R) 1 on tokens, 0 on right padding
        hidden = base(input_ids=input_ids, attention_mask=padding, use_cache=False).last_hidden_state  # (B, R, H)
    B, R, H = hidden.shape
    head_device = head_device or device
    needed = hidden.reshape(B * R, H)[as_tensor(batch.needed, hidden.device)].to(head_device)  # (N_u, H)
    return token_scores(needed, head, as_tensor(batch.target_needed, head_device),
                        as_tensor(batch.target_ids, head_device), scratch)


def split_model(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(base model giving final hidden states, output embedding). Refuses models whose own forward does more to the
    logits than the output embedding (soft-capping, scaling), which scoring at gathered positions would skip.
    The check costs two small forward passes, so its answer is kept per model object (run.py scores task by task)."""
    if model not in _SPLIT:
        _SPLIT[model] = _split_model(model)
    return _SPLIT[model]


_SPLIT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → (base, head), checked once


def _split_model(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    base, head = model.base_model, model.get_output_embeddings()
    if base is model or head is None:
        raise ValueError(f"model: {type(model).__name__} has no separate base model and output embedding")
    probe = torch.arange(1, 9, device=execution_device(model.get_input_embeddings()))[None]  # (1, 8)
    probe = probe % head.weight.shape[0]
    with torch.inference_mode():  # on the CPU: a dispatched model's logits and head output may sit on two devices
        full = model(probe, use_cache=False).logits.float().cpu()  # (1, 8, V)
        split = head(base(probe, use_cache=False).last_hidden_state).float().cpu()  # (1, 8, V)
    if not torch.allclose(full, split, rtol=1e-3, atol=1e-3 * (1 + full.abs().max().item())):
        raise ValueError(f"model: {type(model).__name__} transforms logits after the output embedding; "
                         "scalelens scores only models whose logits are output_embedding(last hidden state)")
    return base, head


def _check_window(model: torch.nn.Module, requests: Sequence[Request]) -> None:
    """Sliding-window attention is part of the model's own mask, which the packed 4-D mask replaces: refuse any
    request whose input is longer than the window (shorter ones are unaffected)."""
    window = getattr(model.config, "sliding_window", None)
    if not window or not getattr(model.config, "use_sliding_window", True):
        return
    longest = max(len(r.context_ids) + len(r.continuation_ids) - 1 for r in requests)
    if longest > window:
        raise ValueError(f"max_length: a request of {longest} tokens exceeds the model's sliding window ({window}), "
                         f"which the packed attention mask does not apply; set max_length <= {window}")


@torch.inference_mode()
def score_items(loaded: LoadedModel, items: Sequence[Item], config: ScoreConfig,
                progress: Callable[[int], None] | None = None, *, budget: TokenBudget | None = None) -> pl.DataFrame:
    """Score every continuation of every item: one row per (item, choice), item order then choice order.

    Columns and dtypes are SCORE_COLUMNS (metrics.schema.SCORES without model and task columns). `progress`, if
    given, receives the number of (item, choice) requests finished after each forward pass (an increment).
    `budget` is the model's shared token budget (`logprob.device`); by default one is resolved from `config`.
    """
    max_length = config.max_length or loaded.max_length
    requests = build_requests(loaded.tokenizer, items, max_length)
    if not requests:
        return pl.DataFrame(schema=SCORE_COLUMNS)
    n_tokens = np.array([len(r.continuation_ids) for r in requests], dtype=np.int64)
    slots = np.concatenate([[0], np.cumsum(n_tokens)[:-1]])  # first output slot of each request's tokens
    budget = budget or TokenBudget.resolve(loaded, config.token_budget)
    packed = getattr(loaded.model.config, "model_type", None) in PACKABLE_MODEL_TYPES
    if not packed:
        log.warning("%s (model_type %r) is not checked for packed scoring: one request per padded row, no shared "
                    "contexts (slower, same numbers)", loaded.name, getattr(loaded.model.config, "model_type", None))
    segments = make_segments(requests, config.share_contexts and packed, budget.value)
    base, head = split_model(loaded.model)
    head_device = execution_device(head)
    if packed:
        _check_window(loaded.model, requests)

    logprob = torch.empty(int(n_tokens.sum()), dtype=torch.float32)
    rank = torch.empty(int(n_tokens.sum()), dtype=torch.int64)
    scratch = Scratch()
    pending = list(range(len(segments)))
    while pending:
        done: set[int] = set()
        rows: list[list[int]] = []
        try:
            for rows in pack([segments[s].length for s in pending], budget.value, stack=packed):
                rows = [[pending[i] for i in row] for row in rows]
                batch = build_batch(segments, rows, slots)
                lp, rk = run_pass(base, head, batch, loaded.device, loaded.dtype, packed, scratch=scratch,
                                  head_device=head_device)
                out = torch.from_numpy(batch.target_slots)
                logprob[out], rank[out] = lp.cpu(), rk.cpu()
                done.update(s for row in rows for s in row)
                if progress is not None:
                    progress(batch.n_requests)
            pending = []
        except Exception as exc:  # noqa: BLE001 - back_off re-raises everything but out-of-memory errors
            scratch = Scratch()  # drop the old buffers before the allocator's cache is emptied
            pending = [s for s in pending if s not in done]
            budget.back_off(exc, smallest=len(rows) == 1 and len(rows[0]) == 1, what="segments",
                            n_left=len(pending))
    return _frame(items, requests, n_tokens, logprob.numpy(), rank.numpy())


def _target_score(item: Item, choice: int) -> float | None:
    """The choice's graded credit, or None for an item without `target_scores`."""
    return None if item.target_scores is None else item.target_scores[choice]


def _frame(items: Sequence[Item], requests: Sequence[Request], n_tokens: np.ndarray, logprob: np.ndarray,
           rank: np.ndarray) -> pl.DataFrame:
    """Flat per-token results (request order) → one row per request with list columns."""
    tokens = pl.DataFrame({
        "request": np.repeat(np.arange(len(requests)), n_tokens),
        "lp": logprob.astype(np.float32),
        "rank": rank.astype(np.int32),
    })
    per_request = tokens.group_by("request", maintain_order=True).agg(
        token_logprobs=pl.col("lp"),
        token_ranks=pl.col("rank"),
        logprob=pl.col("lp").cast(pl.Float64).sum(),
        is_greedy=(pl.col("rank") == 1).all(),
    )
    meta = pl.DataFrame({
        "item_id": [items[r.item_index].item_id for r in requests],
        "item_kind": [items[r.item_index].kind for r in requests],
        "choice": np.array([r.choice for r in requests], dtype=np.int32),
        "choice_text": [items[r.item_index].continuations[r.choice] for r in requests],
        "is_target": [r.choice in items[r.item_index].targets for r in requests],
        "n_tokens": n_tokens.astype(np.int32),
        "target_score": pl.Series([_target_score(items[r.item_index], r.choice) for r in requests],
                                  dtype=pl.Float64),
        "n_truncated": np.array([r.n_truncated for r in requests], dtype=np.int32),
    })
    frame = pl.concat([meta, per_request.drop("request")], how="horizontal").with_columns(
        n_chars=pl.col("choice_text").str.len_chars().cast(pl.Int32),
        n_bytes=pl.col("choice_text").str.len_bytes().cast(pl.Int32),
    )
    return frame.select(list(SCORE_COLUMNS))
