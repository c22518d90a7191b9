"""Train the built-in ladder: Llama-architecture causal LMs of growing size on `data`'s addition problems.

Everything is seeded (torch.manual_seed per model, numpy data streams from `data.DATA_SEED`), so on one machine
and one thread count `train_ladder` reproduces the same weights bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from logprob.ladder import data

log = logging.getLogger(__name__)

TRAIN_SEED = 0
WARMUP_FRACTION = 0.05
FINAL_LR_FRACTION = 0.1  # cosine decay from lr to lr * this
WEIGHT_DECAY = 0.01
BETAS = (0.9, 0.98)
EVAL_BATCH = 200


@dataclass(frozen=True)
class LadderSize:
    """One rung: architecture and training budget."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    steps: int
    lr: float
    batch_size: int = 256


DEFAULT_SIZES: tuple[LadderSize, ...] = ()


def build_model(size: LadderSize, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A randomly initialised Llama with tied input/output embeddings (RoPE, so no position embedding)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.d_model,
        intermediate_size=size.d_ff,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        num_key_value_heads=size.n_heads,
        max_position_embeddings=tokenizer.model_max_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def non_embedding_params(model: torch.nn.Module) -> int:
    """Kaplan et al. (2020) N: every distinct parameter except token/position embeddings and an untied output
    head. `model.parameters()` yields a tied tensor once, so tied embeddings are counted (and excluded) once."""
    embeddings = {id(model.get_input_embeddings().weight)}
    if model.get_output_embeddings() is not None:
        embeddings.add(id(model.get_output_embeddings().weight))
    return sum(p.numel() for p in model.parameters() if id(p) not in embeddings)


def lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over WARMUP_FRACTION of the steps, then cosine decay to FINAL_LR_FRACTION * lr.

    >>> lr_at(0, 100, 1.0), lr_at(100, 100, 1.0)
    (0.2, 0.1)
    """
    warmup = max(1, int(WARMUP_FRACTION * steps))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate_heldout(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, problems: Sequence[tuple[int, int]]
) -> dict[str, float]:
    """Teacher-forced scores of the reference answer (digits, no newline) given the prompt, per problem:
    exact match (every answer token is the argmax), per-token accuracy and per-token log-probability (means over
    the answer's tokens); each then averaged over problems."""
    vocab = tokenizer.get_vocab()
    exact, accuracy, logprob = [], [], []
    for start in range(0, len(problems), EVAL_BATCH):
        chunk = problems[start : start + EVAL_BATCH]
        texts = [(data.prompt(a, b), data.answer(a, b)) for a, b in chunk]
        ids = torch.full((len(chunk), data.SEQ_LEN), vocab["<pad>"])  # (B, T), right padding
        mask = torch.zeros((len(chunk), data.SEQ_LEN), dtype=torch.bool)  # (B, T): answer token positions
        for row, (context, target) in enumerate(texts):
            ids[row, : len(context) + len(target)] = torch.tensor([vocab[c] for c in context + target])
            mask[row, len(context) : len(context) + len(target)] = True
        logits = model(input_ids=ids, use_cache=False).logits.float()  # (B, T, V); causal, so padding is harmless
        logp = logits[:, :-1].log_softmax(-1)  # (B, T-1, V): position t scores token t+1
        tok_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1)
        hit = logp.argmax(-1) == ids[:, 1:]  # (B, T-1)
        m = mask[:, 1:]  # (B, T-1)
        n = m.sum(-1)  # (B,)
        exact.append((hit | ~m).all(-1).float())  # (B,)
        accuracy.append((hit & m).sum(-1) / n)  # (B,)
        logprob.append((tok_logp * m).sum(-1) / n)  # (B,)
    return {
        "exact_match": torch.cat(exact).mean().item(),
        "token_accuracy": torch.cat(accuracy).mean().item(),
        "token_logprob": torch.cat(logprob).mean().item(),
    }


def train_model(
    size: LadderSize,
    tokenizer: PreTrainedTokenizerFast,
    heldout: list[tuple[int, int]],
    seed: int,
    data_seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[LlamaForCausalLM, float]:
    """Train one rung from scratch on fresh random problems each step; returns (model, mean loss of the last 50
    steps)."""
    torch.manual_seed(seed)
    model = build_model(size, tokenizer)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=size.lr,
        betas=BETAS,
    )
    vocab = tokenizer.get_vocab()
    stream = data.training_batches(data_seed, size.batch_size, heldout)
    losses = []
    model.train()
    for step in range(size.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, size.steps, size.lr)
        ids, labels = (torch.from_numpy(x) for x in data.encode_training(next(stream), vocab))  # (B, T) each
        loss = model(input_ids=ids, labels=labels, use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return model, float(np.mean(losses[-50:]))
