"""Train the built-in ladders: Llama-architecture causal LMs of growing size on `data`'s addition problems, written
directly (`DIRECT`: the answer after the prompt) or with a scratchpad (`SCRATCHPAD`: the column-by-column working,
then the answer; `scratchpad`). Both families share sizes, seeds, training problems and held-out problems.

Everything is seeded (torch.manual_seed per model, numpy data streams from `data.DATA_SEED`), so on one machine
and one thread count `train_ladder` reproduces the same weights bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from logprob.ladder import data, scratchpad
from logprob.model import count_parameters

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
    batch_size: int = 128


# Pythia-style: every rung sees the same problems for the same number of steps; only the size changes, and depth
# grows with width. Measured with this seed at 1500 steps, models either stay on a plateau (leading digits only,
# from the operands' magnitude) or escape it and learn digit-aligned addition. For 2-layer models the escape is
# seed-dependent: d24 and d28 stayed on the plateau, d32 and d40 escaped, and d48 (74k) stayed on it again, so the
# ladder takes 2 layers only up to d40 and 3 layers above (3-layer d48, d64 and d128 all escaped by step ~1100).
# Tried for a ladder without the plateau (20 single-model runs, same data): longer training only moves the escape.
# At lr 3e-3 and 6000 steps, 1-layer models up to 4k and 2-layer ones up to 13k stayed at 0.41-0.53 per-token
# accuracy while 2-layer 19k reached 0.98; at lr 1e-2, 2-layer models of 1.2k-8k all reached 0.95-1.0 (d4 stayed
# at 0.49). Only 1-layer models at lr 1e-2 and 20000 steps were limited by size (1k: 0.63, 4k: 0.73). A smoother
# curve assembled from those runs would mix depths, learning rates and step counts picked after the fact, so it
# was not shipped.
# Third attempt (1-layer families, lr 1e-2, same seeds): with 3-4-digit operands and 20000 steps the outcome is a
# lottery, not a size limit: d12 (2.3k) reached 0.98 per-token accuracy, d16 (4k) stayed at 0.73, d20-d32 0.98-0.99.
# Head count matters more than width (1 layer, head dim 4, 5-6-digit operands: d12 at 0.975 already). With one
# layer, 2 heads and 5-6-digit operands (7-digit answers), 8000 steps, the doubling ladder d4-d128 (lr halved per
# doubling above d32) rose without a plateau: per-token accuracy 0.25, 0.56, 0.93, 0.99, 1.00, 1.00 and exact match
# 0.00, 0.01, 0.64, 0.93, 0.99, 0.99 (exact match ≈ p^7 throughout). But the smooth metrics rose from floor to
# ceiling within the same two doublings as exact match, so BIG-bench breakthroughness could not tell them apart
# (exact match B = 16, per-token log-prob B = 15) and scalelens's own summary read it as a change in the models.
# Finer widths (d12, d20, d24) were again not monotonic, and one head per layer left d4-d8 at the marginal
# distribution and d16 below d12. A rung between 25k and 33k in this family (2 layers, d30, 3 heads: 29k) stayed on
# the plateau (0.48 per-token accuracy, below d28's 0.51). This ladder, whose small models show the metric effect
# and whose breakthroughness separates sharp from smooth, stays; the plateau escape between 25k and 33k is
# documented in the README.
DEFAULT_SIZES: tuple[LadderSize, ...] = (
    LadderSize("ladder-00", d_model=8, n_layers=1, n_heads=2, d_ff=32, steps=1500, lr=3e-3),
    LadderSize("ladder-01", d_model=16, n_layers=1, n_heads=2, d_ff=64, steps=1500, lr=3e-3),
    LadderSize("ladder-02", d_model=24, n_layers=2, n_heads=2, d_ff=96, steps=1500, lr=3e-3),
    LadderSize("ladder-03", d_model=28, n_layers=2, n_heads=2, d_ff=112, steps=1500, lr=3e-3),
    LadderSize("ladder-04", d_model=32, n_layers=2, n_heads=4, d_ff=128, steps=1500, lr=3e-3),
    LadderSize("ladder-05", d_model=40, n_layers=2, n_heads=4, d_ff=160, steps=1500, lr=3e-3),
    LadderSize("ladder-06", d_model=64, n_layers=3, n_heads=4, d_ff=256, steps=1500, lr=3e-3),
    LadderSize("ladder-07", d_model=128, n_layers=3, n_heads=4, d_ff=512, steps=1500, lr=2e-3),
)
# The scratchpad family: the same rungs (architecture, steps, batch, learning rate), seeds and problems, named apart
# so that both families can be scored in one run folder. One format was designed before training (`scratchpad`:
# 41 tokens a problem against the direct 16; each column's digits and carry in are copied into its group, as Nye et
# al. write them, so every step reads only its own group and the one to its left) and shipped as it trained the
# first time: no other format was tried, nothing was tuned on these results. Measured with seed 0 and one thread
# on 2 cores shared with other jobs (1-minute load average 1.0-2.95, mean 2.0, sampled every 30 s): 1481 s of
# training, 1501 s wall with the held-out evaluation. Final-answer exact match (greedy), scratchpad (direct):
# 1k 0.000 (0.003), 4k 0.000 (0.000), 19k 0.823 (0.003), 25k 0.825 (0.005), 33k 1.000 (0.745), 51k 0.998 (0.990),
# 197k 1.000 (1.000), 787k 1.000 (0.998). Seeds 1 and 2 (not shipped, rungs 4k-51k, direct also 197k), to see
# whether one rung's difference is the seed's: scratchpad 4k 0.000/0.000, 19k 0.008/0.018, 25k 0.000/0.925,
# 33k 1.000/0.925, 51k 0.998/1.000; direct 4k 0.003/0.005, 19k 0.003/0.005, 25k 0.003/0.000, 33k 0.000/0.000,
# 51k 0.005/0.990, 197k 1.000/1.000. Exact match reaches 0.5 at 19k/33k/25k (seeds 0/1/2) with a scratchpad and at
# 33k/197k/51k without; 0.9 at 33k/33k/25k and 51k/197k/51k. The escape from the plateau is seed-dependent in both
# families, but in every seed the scratchpad family escapes one or two rungs earlier.
SCRATCHPAD_SIZES: tuple[LadderSize, ...] = tuple(
    replace(s, name=s.name.replace("ladder", "scratchpad")) for s in DEFAULT_SIZES
)


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


@torch.no_grad()
def greedy_continuations(model: LlamaForCausalLM, prompts: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """(B, P) prompt ids, all of one length → (B, n_tokens) ids chosen by argmax at every step (the whole sequence
    is re-run each step: no cache, no generation config, nothing but argmax)."""
    ids = prompts  # (B, P)
    for _ in range(n_tokens):
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits  # (B, 1, V): the next token's
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)  # (B, P + step + 1)
    return ids[:, prompts.shape[1] :]  # (B, n_tokens)


#: What each held-out number of the scratchpad family means (recorded in its manifest).
SCRATCHPAD_HELDOUT_METRICS = {
    "exact_match": "greedy generation from the prompt (scratchpad, then answer), cut at the first newline; the "
    f"final answer extracted by {scratchpad.ANSWER_PATTERN!r} equals the sum (no answer found counts as wrong)",
    "generation_matches_reference": "the greedy generation, cut at the first newline, is exactly the reference "
    "scratchpad, ';' and answer",
    "extraction_failures": "share of greedy generations with no final answer for the pattern",
    "token_accuracy": "teacher-forced on the full target (scratchpad, ';', answer; no newline) after the prompt: "
    "share of its tokens that are the argmax",
    "token_logprob": "teacher-forced on the full target: mean log-probability per token",
    "answer_exact_match": "teacher-forced on the answer digits alone, given the prompt and the reference "
    "scratchpad and ';': every answer digit is the argmax",
    "answer_token_accuracy": "the same answer digits: share that are the argmax",
    "answer_token_logprob": "the same answer digits: mean log-probability per token",
}


@torch.no_grad()
def evaluate_scratchpad_heldout(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, problems: Sequence[tuple[int, int]]
) -> dict[str, float]:
    """The scratchpad family's held-out scores, `SCRATCHPAD_HELDOUT_METRICS`; each a mean over problems (the
    per-token ones first averaged within each problem, as `evaluate_heldout`)."""
    vocab = tokenizer.get_vocab()
    n_prompt, n_target, n_answer = scratchpad.PROMPT_LEN, scratchpad.TARGET_LEN, data.ANSWER_DIGITS
    per_problem: dict[str, list[torch.Tensor]] = {k: [] for k in SCRATCHPAD_HELDOUT_METRICS}
    for start in range(0, len(problems), EVAL_BATCH):
        chunk = problems[start : start + EVAL_BATCH]
        texts = [data.prompt(a, b) + scratchpad.target(a, b) for a, b in chunk]
        ids = torch.tensor([[vocab[c] for c in text] for text in texts])  # (B, T): prompt + target, T = 40
        logp = model(input_ids=ids, use_cache=False).logits.float()[:, :-1].log_softmax(-1)  # (B, T-1, V)
        tok_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1): position t scores token t+1
        hit = logp.argmax(-1) == ids[:, 1:]  # (B, T-1)
        full, ans = tok_logp[:, n_prompt - 1 :], tok_logp[:, -n_answer:]  # (B, n_target), (B, n_answer)
        full_hit, ans_hit = hit[:, n_prompt - 1 :], hit[:, -n_answer:]  # same shapes
        per_problem["token_accuracy"].append(full_hit.float().mean(-1))  # (B,)
        per_problem["token_logprob"].append(full.mean(-1))  # (B,)
        per_problem["answer_exact_match"].append(ans_hit.all(-1).float())  # (B,)
        per_problem["answer_token_accuracy"].append(ans_hit.float().mean(-1))  # (B,)
        per_problem["answer_token_logprob"].append(ans.mean(-1))  # (B,)

        out = greedy_continuations(model, ids[:, :n_prompt], n_target + 1)  # (B, n_target + 1): room for "\n"
        generations = [tokenizer.decode(row).split("\n", 1)[0] for row in out.tolist()]
        answers = [scratchpad.extract_answer(g) for g in generations]
        per_problem["exact_match"].append(
            torch.tensor([found == data.answer(a, b) for found, (a, b) in zip(answers, chunk)], dtype=torch.float)
        )
        per_problem["generation_matches_reference"].append(
            torch.tensor([g == text[n_prompt:] for g, text in zip(generations, texts)], dtype=torch.float)
        )
        per_problem["extraction_failures"].append(torch.tensor([found is None for found in answers], dtype=torch.float))
    return {name: torch.cat(values).mean().item() for name, values in per_problem.items()}


@dataclass(frozen=True)
class Family:
    """What a ladder learns and how it is judged: its tokenizer, training encoding of a (B, 2) problem batch,
    held-out evaluation and task files (`write_tasks(directory, data_seed)` → {task kind: path})."""

    name: str
    description: str
    sizes: tuple[LadderSize, ...]
    build_tokenizer: Callable[[], PreTrainedTokenizerFast]
    encode: Callable[[np.ndarray, dict[str, int]], tuple[np.ndarray, np.ndarray]]
    evaluate: Callable[[LlamaForCausalLM, PreTrainedTokenizerFast, Sequence[tuple[int, int]]], dict[str, float]]
    write_tasks: Callable[[Path, int], dict[str, Path]]
    extra: tuple[tuple[str, object], ...] = ()  # more manifest fields


DIRECT = Family(
    name="direct",
    description="Llama-architecture character-level LMs trained on fixed-width addition "
    "('0123+4567=' -> '04690\\n'); held-out scores are teacher-forced on the answer digits",
    sizes=DEFAULT_SIZES,
    build_tokenizer=data.build_tokenizer,
    encode=data.encode_training,
    evaluate=evaluate_heldout,
    write_tasks=lambda directory, seed: dict(
        zip(("multiple_choice", "generative"), data.write_tasks(directory, seed))
    ),
)

SCRATCHPAD = Family(
    name="scratchpad",
    description="Llama-architecture character-level LMs trained on fixed-width addition written with a scratchpad, "
    "column by column from the units: digit of a, digit of b, carry in, two-digit column total, '|'; then ';' "
    "and the answer ('0123+4567=' -> '37010|26109|15006|04004|;04690\\n'); held-out scores in heldout_metrics",
    sizes=SCRATCHPAD_SIZES,
    build_tokenizer=scratchpad.build_tokenizer,
    encode=scratchpad.encode_training,
    evaluate=evaluate_scratchpad_heldout,
    write_tasks=lambda directory, seed: {"generative": scratchpad.write_task(directory, seed)},
    extra=(("answer_pattern", scratchpad.ANSWER_PATTERN), ("heldout_metrics", SCRATCHPAD_HELDOUT_METRICS)),
)


def train_model(
    size: LadderSize,
    tokenizer: PreTrainedTokenizerFast,
    heldout: list[tuple[int, int]],
    seed: int,
    data_seed: int,
    on_step: Callable[[int, float], None] | None = None,
    encode: Callable[[np.ndarray, dict[str, int]], tuple[np.ndarray, np.ndarray]] = data.encode_training,
) -> tuple[LlamaForCausalLM, float]:
    """Train one rung from scratch on fresh random problems each step, encoded by `encode`; returns (model, mean
    loss of the last 50 steps)."""
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
        ids, labels = (torch.from_numpy(x) for x in encode(next(stream), vocab))  # (B, T) each
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


def short_count(n: int) -> str:
    """Parameter count as a short label for model names.

    >>> short_count(268), short_count(1088), short_count(786_944), short_count(1_770_816)
    ('268', '1k', '787k', '1.8M')
    """
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{round(n / 1000)}k"
    return f"{n / 1_000_000:.1f}M"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_ladder(
    out_dir: str | Path,
    seed: int = TRAIN_SEED,
    sizes: Sequence[LadderSize] | None = None,
    progress: Callable[[str, int, int, float], None] | None = None,
    data_seed: int = data.DATA_SEED,
    tasks_dir: str | Path | None = None,
    threads: int | None = None,
    scratchpad: bool = False,
) -> dict:
    """Train every rung in `sizes` (default: the family's shipped sizes), save each to `out_dir/<name>-<N>`
    (safetensors + tokenizer, loadable with AutoModelForCausalLM / AutoTokenizer), write the held-out task files to
    `tasks_dir` (default `out_dir/tasks`) and `out_dir/manifest.json`; returns the manifest. `scratchpad` trains
    the scratchpad family (`SCRATCHPAD`) instead of the direct one (`DIRECT`).

    Per model the manifest records the architecture, parameter counts (Kaplan et al. 2020: non-embedding excludes
    the tied token embedding), steps, batch, learning rate, wall and CPU seconds, the final train loss (mean of the
    last 50 steps), the family's held-out scores (`evaluate_heldout`, `evaluate_scratchpad_heldout`) and the sha256
    of model.safetensors.

    `progress(model_name, step, total_steps, loss)` is called after every optimiser step. `threads`, if given,
    sets torch's intra-op thread count for the run (restored afterwards); results are bit-identical only for the
    same seed, data seed and thread count on the same machine.
    """
    family = SCRATCHPAD if scratchpad else DIRECT
    sizes = family.sizes if sizes is None else tuple(sizes)
    if not sizes:
        raise ValueError("sizes: expected at least one LadderSize, got none")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks_dir = out_dir / "tasks" if tasks_dir is None else Path(tasks_dir)
    task_paths = family.write_tasks(tasks_dir, data_seed)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        tokenizer = family.build_tokenizer()
        heldout = data.heldout_problems(data_seed)
        entries = []
        for size in sizes:
            start, cpu_start = time.perf_counter(), time.process_time()
            on_step = None if progress is None else (lambda step, loss, s=size: progress(s.name, step, s.steps, loss))
            model, final_loss = train_model(size, tokenizer, heldout, seed, data_seed, on_step, family.encode)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            n_params, n_non_embedding = count_parameters(model)
            name = f"{size.name}-{short_count(n_non_embedding)}"
            model_dir = out_dir / name
            if model_dir.exists():
                shutil.rmtree(model_dir)
            model.save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
            weights = model_dir / "model.safetensors"
            scores = family.evaluate(model, tokenizer, heldout)
            log.info("%s: %.0f s, loss %.4f, %s", name, seconds, final_loss, scores)
            entries.append(
                {
                    "name": name,
                    "directory": name,
                    "config": {k: v for k, v in asdict(size).items() if k in ("d_model", "n_layers", "n_heads", "d_ff")}
                    | {"vocab_size": len(tokenizer), "architecture": "LlamaForCausalLM", "tied_embeddings": True},
                    "params": n_params,
                    "non_embedding_params": n_non_embedding,
                    "train_steps": size.steps,
                    "batch_size": size.batch_size,
                    "learning_rate": size.lr,
                    "train_seconds": round(seconds, 1),
                    "train_cpu_seconds": round(cpu_seconds, 1),
                    "final_train_loss": final_loss,
                    "heldout": scores,
                    "weights_dtype": "float32",
                    "weights_bytes": weights.stat().st_size,
                    "sha256": _sha256(weights),
                }
            )
        manifest = {
            "description": family.description,
            "family": family.name,
            "data_seed": data_seed,
            "train_seed": seed,
            "heldout_size": len(heldout),
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "total_train_seconds": round(sum(e["train_seconds"] for e in entries), 1),
            "total_train_cpu_seconds": round(sum(e["train_cpu_seconds"] for e in entries), 1),
            "total_weights_bytes": sum(e["weights_bytes"] for e in entries),
            "tasks": {kind: os.path.relpath(path, out_dir) for kind, path in task_paths.items()},
            **dict(family.extra),
            "models": entries,
        }
    finally:
        torch.set_num_threads(previous_threads)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
