"""Scorer throughput against real peers, measured side by side in one run.

    .venv/bin/python benchmarks/throughput.py [--quick] [--out benchmarks/RESULTS.md]

One seeded checkpoint (a Pythia-70m-shaped GPT-NeoX with random weights and a BPE tokenizer trained here) is written
to a temporary folder; three methods score identical (context, continuation) requests from it:

- ``scalelens``: ``logprob.score.score_items`` on ``logprob.model.load_model``;
- ``lm-eval``: lm-evaluation-harness's ``HFLM.loglikelihood`` (float32, CPU), at each batch size in ``--lm-eval-batch``,
  the best one reported;
- ``plain``: one transformers forward pass per request, ``log_softmax``, sum over the continuation: the reference;
- ``bare`` (every workload): not a scorer but the least arithmetic an exact one must do: the transformer body once
  over each item's context and the tokens its continuations feed, and the output-head matmul at the positions that
  predict a scored token (for one-token choices: the context's last position alone); no softmax, gather of target
  log-probs, or bookkeeping. Items go in right-padded batches of at most ``CPU_TOKEN_BUDGET`` tokens
  (``logprob.device``), packed longest first by ``logprob.generate.plan_batches``, under the model's own causal mask
  (right padding never precedes a real token, so it changes nothing: batch 1 left the matmuls of 100-token items too
  small to be a floor on CPU). On the generation workload: the prompts in left-padded batches of at most
  ``CPU_TOKEN_BUDGET`` tokens (prompt + new tokens), as scalelens packs them, with a KV cache, the head at the last
  position, argmax and a stop check on token ids (no text decoding). lm-eval's time over it is about the largest
  speed-up over lm-eval an exact float32 method could reach; scalelens's time over it is scalelens's distance to its
  own floor.

Workload (d) is greedy generation of short answers (at most ``GEN_MAX_NEW_TOKENS`` tokens, stop at a newline):
scalelens's ``logprob.generate.generate_items`` against lm-eval's ``HFLM.generate_until`` (greedy, ``do_sample``
false) on the same prompts, with ``plain`` (a full forward per step, no cache) as the reference; every method must
produce the same text on every prompt before anything is reported. Its tokens are the prompt tokens plus the tokens
the reference generated.

Each (method, workload) runs in its own fresh subprocess, so its peak memory is its own: the peak resident set size
(``VmHWM``), and the increase of the peak over the resident set right after the model was loaded (the kernel's
high-water mark is reset there through ``/proc/self/clear_refs``). A small warm-up request runs before the timer
starts. Every method gets the same torch thread count. The three methods must agree (summed log-prob within
``ATOL`` absolute, ``is_greedy`` equal) or the script stops with an error before any number is reported.

Tokens per second counts, for every request, the context tokens plus the continuation tokens as lm-eval 0.4.13
computes them (``TemplateLM._encode_pair``: whole = enc(context + continuation), context = enc(context),
continuation = whole[len(context):]); the same total is divided by each method's time. Work a method avoids (a
context shared by four choices, a logits cache) is therefore credited to it, which is the point of measuring.

A second comparison times whole processes on workload (a): ``scalelens score --no-generate`` against the
``lm_eval`` command on the same items as a local task, both started as subprocesses, offline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `logprob` imports from the checkout when run as a script

#: Summed log-prob agreement: |Δ| ≤ ATOL + RTOL·|logprob|. ATOL is the brief's 1e-4; RTOL (8 float32 ulps) is there
#: because lm-eval returns a float32 sum: a 300-token continuation of a random 50k-vocab model sums to about -3,200,
#: where one float32 ulp is already 2.4e-4, so no method can be held to 1e-4 absolute on it.
ATOL = 1e-4
RTOL = 1e-6
SEED = 0
METHODS = ("scalelens", "lm-eval", "plain", "bare")
#: Workload (d): short greedy answers, as lm-eval's generate_until asks for them.
GEN_MAX_NEW_TOKENS = 8
GEN_STOP = "\n"
EOS = "<|endoftext|>"

#: The Pythia-70m shape (EleutherAI/pythia-70m config.json): untied embeddings, rotary on a quarter of each head.
PYTHIA_70M = dict(
    vocab_size=50304,
    hidden_size=512,
    num_hidden_layers=6,
    num_attention_heads=8,
    intermediate_size=2048,
    max_position_embeddings=2048,
    rotary_pct=0.25,
    tie_word_embeddings=False,
    use_parallel_residual=True,
)

#: Targets from the project brief: reported as met / not met, never asserted.
TARGETS = {"a": 6.0, "b": 1.5, "c": 1.5}
TARGET_PROCESS = 3.0
TARGET_MEMORY = 0.5


# ----------------------------------------------------------------------------------------------------------------------
# checkpoint and workloads


def word_list(n: int = 800, seed: int = SEED) -> list[str]:
    """Pronounceable made-up words (1–3 consonant-vowel syllables): text for a tokenizer without any download."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
    return sorted(words)


def build_checkpoint(path: Path, model_config: dict, vocab: int = 4096, seed: int = SEED) -> Path:
    """A GPT-NeoX with random weights and a byte-level BPE tokenizer trained on word salad, saved to `path`.

    The tokenizer uses far fewer ids than the model's `vocab_size`; the model's extra output rows stay (they are what
    makes full-vocabulary logits expensive, as in Pythia, whose 50,304 rows exceed its tokenizer's 50,277).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(seed)
    words = word_list(seed=seed)
    corpus = [" ".join(rng.choice(words) for _ in range(50)) for _ in range(2000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS)
    if fast.vocab_size > model_config["vocab_size"]:
        raise ValueError(f"vocab: the tokenizer has {fast.vocab_size} ids, the model only {model_config['vocab_size']}")
    torch.manual_seed(seed)
    config = GPTNeoXConfig(**model_config, bos_token_id=0, eos_token_id=0)
    model = GPTNeoXForCausalLM(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@dataclass(frozen=True)
class Workload:
    """Items as plain data (JSON-able, so a child process can rebuild them): (item_id, context, continuations)."""

    name: str
    description: str
    items: tuple[tuple[str, str, tuple[str, ...]], ...]
    generative: bool = False  # continuations are references (perplexity style), not choices
    generate: bool = False  # greedy generation from each context (workload d); items have no continuations

    def requests(self) -> list[tuple[str, str]]:
        """(context, continuation) per (item, continuation), in item order then continuation order."""
        return [(ctx, cont) for _, ctx, conts in self.items for cont in conts]

    def to_items(self):
        from logprob.tasks import Item

        if self.generate:  # a placeholder reference: generation reads only the context
            return [Item(item_id=i, context=c, references=("?",)) for i, c, _ in self.items]
        if self.generative:
            return [Item(item_id=i, context=c, references=conts) for i, c, conts in self.items]
        return [Item(item_id=i, context=c, choices=conts, target=(0,)) for i, c, conts in self.items]


#: Workload sizes: (items for (a) and (c), requests for (b), token range of a (b) continuation).
FULL = (120, 40, (200, 400))
QUICK = (12, 4, (60, 100))


def make_workloads(tokenizer, sizes: tuple[int, int, tuple[int, int]] = FULL, seed: int = SEED) -> dict[str, Workload]:
    """(a) 4 multi-token choices after ~100-token contexts, (b) long single continuations, (c) 4 one-token choices.

    Continuations carry their own leading space, so the context/continuation boundary is a word boundary and no
    method's tokenization can differ from another's there. Lengths are counted per word: the byte-level
    pre-tokenizer splits at spaces, so the token count of a text is the sum over its words.
    """
    rng = random.Random(seed)
    words = word_list(seed=seed)
    cost = {w: len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) for w in words}
    one_token = [w for w in words if cost[w] == 1]

    def salad(n_tok: int) -> str:
        out, n = [], 0
        while n < n_tok:
            out.append(rng.choice(words))
            n += cost[out[-1]]
        return "".join(" " + w for w in out)

    def context() -> str:
        return salad(rng.randint(80, 120)).lstrip()

    n_mc, n_long, long_len = sizes
    a = tuple((f"a{i}", context(), tuple(salad(rng.randint(3, 8)) for _ in range(4))) for i in range(n_mc))
    b = tuple((f"b{i}", f"Passage {i}:", (salad(rng.randint(*long_len)),)) for i in range(n_long))
    c = tuple((f"c{i}", context(), tuple(" " + w for w in rng.sample(one_token, 4))) for i in range(n_mc))
    d = tuple((f"d{i}", context(), ()) for i in range(n_mc))  # drawn last: (a)–(c) are as before (d) existed
    return {
        "a": Workload("a", f"{n_mc} items × 4 choices of 3–8 tokens, 80–120-token contexts", a),
        "b": Workload("b", f"{n_long} continuations of {long_len[0]}–{long_len[1]} tokens, short context", b, True),
        "c": Workload("c", f"{n_mc} items × 4 one-token choices, 80–120-token contexts", c),
        "d": Workload("d", f"{n_mc} greedy answers of ≤ {GEN_MAX_NEW_TOKENS} tokens (stop at a newline), "
                           "80–120-token prompts", d, generate=True),
    }


def lm_eval_token_count(tokenizer, requests: Sequence[tuple[str, str]]) -> int:
    """Context + continuation tokens per request as lm-eval 0.4.13 counts them (`TemplateLM._encode_pair`):
    trailing context spaces move to the continuation, whole = enc(ctx + cont), ctx = enc(ctx), cont = whole[len(ctx):].
    Contexts here are never empty (an empty one would be lm-eval's single prefix token)."""
    total = 0
    for ctx, cont in requests:
        ctx_ids, cont_ids = encode_like_lm_eval(tokenizer, ctx, cont)
        total += len(ctx_ids) + len(cont_ids)
    return total


def encode_like_lm_eval(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval 0.4.13's `_encode_pair` for a non-empty context, written out independently for the plain reference."""
    if not context:
        raise ValueError("context: the plain reference needs a non-empty context")
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    ctx = tokenizer(context)["input_ids"]
    return list(ctx), list(whole[len(ctx) :])


# ----------------------------------------------------------------------------------------------------------------------
# the three methods (each returns [(summed logprob, is_greedy)] in request order)


def load_method(method: str, path: Path, batch_size: int):
    """Load the checkpoint the way `method` does; returns a scoring function of a Workload."""
    import torch

    if method == "scalelens":
        from logprob.config import ModelSpec, ScoreConfig
        from logprob.model import load_model
        from logprob.score import score_items

        loaded = load_model(ModelSpec(str(path), device="cpu", dtype="float32"))
        config = ScoreConfig()
        gen_config = ScoreConfig(max_new_tokens=GEN_MAX_NEW_TOKENS, stop_sequences=(GEN_STOP,))

        def run(w: Workload) -> list:
            if w.generate:
                from logprob.generate import generate_items

                return generate_items(loaded, w.to_items(), gen_config)["prediction"].to_list()
            frame = score_items(loaded, w.to_items(), config)
            return scalelens_results(frame, w)

        return run

    if method == "lm-eval":
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=str(path), device="cpu", dtype="float32", batch_size=batch_size)

        def run(w: Workload) -> list:
            if w.generate:
                args = {"until": [GEN_STOP], "max_gen_toks": GEN_MAX_NEW_TOKENS, "do_sample": False}
                reqs = [Instance("generate_until", {}, (ctx, dict(args)), i) for i, (_, ctx, _) in enumerate(w.items)]
                return list(lm.generate_until(reqs, disable_tqdm=True))
            reqs = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(w.requests())]
            return [(float(lp), bool(g)) for lp, g in lm.loglikelihood(reqs, disable_tqdm=True)]

        return run

    if method == "plain":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from logprob.device import CPU_TOKEN_BUDGET
        from logprob.generate import plan_batches

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)

        @torch.inference_mode()
        def run(w: Workload) -> list:
            if w.generate:
                return [plain_generate(model, tokenizer, ctx) for _, ctx, _ in w.items]
            out = []
            for ctx, cont in w.requests():
                ctx_ids, cont_ids = encode_like_lm_eval(tokenizer, ctx, cont)
                ids = torch.tensor([ctx_ids + cont_ids])  # (1, T)
                logp = model(ids[:, :-1]).logits.log_softmax(-1)  # (1, T-1, V): position t scores token t+1
                logp = logp[0, -len(cont_ids) :]  # (C, V) rows that score the continuation
                target = ids[0, -len(cont_ids) :]  # (C,)
                tok = logp.gather(-1, target[:, None])[:, 0]  # (C,)
                out.append((float(tok.sum()), bool((logp.argmax(-1) == target).all())))
            return out

        return run

    if method == "bare":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from logprob.device import CPU_TOKEN_BUDGET
        from logprob.generate import plan_batches

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        body, head = model.base_model, model.get_output_embeddings().weight  # head: (V, D)
        stop_ids = {tokenizer.eos_token_id, *tokenizer(GEN_STOP, add_special_tokens=False)["input_ids"]}

        @torch.inference_mode()
        def run(w: Workload) -> list:
            if w.generate:
                prompts = [tokenizer(ctx)["input_ids"] for _, ctx, _ in w.items]
                for batch in plan_batches(prompts, range(len(prompts)), GEN_MAX_NEW_TOKENS, CPU_TOKEN_BUDGET):
                    bare_generate(model, [prompts[i] for i in batch], stop_ids)
                return []
            sequences = bare_sequences(tokenizer, w)  # tokenizing is timed, as for every method
            fed = [ids for ids, _ in sequences]
            for batch in plan_batches(fed, range(len(fed)), 0, CPU_TOKEN_BUDGET):
                width = max(len(sequences[i][0]) for i in batch)
                grid = torch.zeros(len(batch), width, dtype=torch.long)  # (B, T) right-padded
                rows, cols = [], []
                for r, i in enumerate(batch):
                    ids, n_head = sequences[i]
                    grid[r, : len(ids)] = torch.tensor(ids)
                    rows += [r] * n_head
                    cols += range(len(ids) - n_head, len(ids))
                hidden = body(input_ids=grid, use_cache=False).last_hidden_state  # (B, T, D)
                hidden[rows, cols] @ head.T  # (N, V): the head's arithmetic at the N predicting positions, unused
            return []

        return run

    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def bare_sequences(tokenizer, w: Workload) -> list[tuple[list[int], int]]:
    """Per item, the tokens the bare arithmetic feeds the body: the context (once) then every continuation but its
    last token (as lm-eval encodes them), and how many final positions the head is applied at: the context's last
    one, which predicts every continuation's first token, and every fed continuation token, which predicts the
    next. (A floor, not a scorer: the continuations attend to each other here, as one sequence.)"""
    out = []
    for _, ctx, conts in w.items:
        pairs = [encode_like_lm_eval(tokenizer, ctx, cont) for cont in conts]
        fed = [t for _, cont_ids in pairs for t in cont_ids[:-1]]
        out.append((pairs[0][0] + fed, 1 + len(fed)))
    return out


def plain_generate(model, tokenizer, context: str) -> tuple[str, int]:
    """The reference greedy answer: a full forward of the whole sequence per step, argmax at the last position,
    until EOS, a decoded newline, or GEN_MAX_NEW_TOKENS; (the text before the newline, EOS left out; tokens
    generated)."""
    import torch

    ids, new = tokenizer(context)["input_ids"], []
    for _ in range(GEN_MAX_NEW_TOKENS):
        nxt = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())  # (V,) at the last position
        new.append(nxt)
        if nxt == tokenizer.eos_token_id or GEN_STOP in tokenizer.decode(new):
            break
    body = new[:-1] if new[-1] == tokenizer.eos_token_id else new
    return tokenizer.decode(body).split(GEN_STOP)[0], len(new)


def bare_generate(model, prompts: list[list[int]], stop_ids: set[int]) -> None:
    """The least arithmetic of a batch of greedy answers: left-padded prompts with a KV cache, the head at the last
    position only, until every row has produced a stop id or GEN_MAX_NEW_TOKENS tokens."""
    import torch

    from logprob.generate import _cache_kwarg

    kw = _cache_kwarg(model)  # transformers 5 calls the KV cache `cache`, earlier versions `past_key_values`
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)  # (B, T) left-padded
    mask = torch.zeros(len(prompts), width, dtype=torch.long)  # (B, T)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):], mask[r, width - len(p):] = torch.tensor(p), 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    stops = torch.tensor(sorted(stop_ids))
    live = torch.ones(len(prompts), dtype=torch.bool)  # (B,)
    for _ in range(GEN_MAX_NEW_TOKENS - 1):
        nxt = out.logits[:, -1].argmax(-1)  # (B,)
        live &= ~torch.isin(nxt, stops)
        if not live.any():
            return
        mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)  # (B, T + 1)
        positions = positions[:, -1:] + 1  # (B, 1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1, **{kw: getattr(out, kw)})


def scalelens_results(frame, w: Workload) -> list[tuple[float, bool]]:
    """The score table's rows in request order (item order, then choice order), keyed, not positional."""
    import polars as pl

    order = pl.DataFrame(
        {
            "item_id": [i for i, _, conts in w.items for _ in conts],
            "choice": [k for _, _, conts in w.items for k in range(len(conts))],
        },
        schema={"item_id": pl.String, "choice": frame.schema["choice"]},
    )
    joined = order.join(frame.select("item_id", "choice", "logprob", "is_greedy"), on=["item_id", "choice"], how="left")
    if joined.height != order.height or joined["logprob"].null_count():
        raise ValueError(f"scalelens: score table has {frame.height} rows, expected one per request ({order.height})")
    return list(zip(joined["logprob"].to_list(), joined["is_greedy"].to_list(), strict=True))


# ----------------------------------------------------------------------------------------------------------------------
# one method in one fresh process


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/self/status: no {field} line")


def child_main(method: str, path: Path, workload_file: Path, batch_size: int, threads: int, result_file: Path) -> None:
    """Load, warm up, reset the memory high-water mark, time one scoring call, write results and memory as JSON."""
    import torch

    torch.set_num_threads(threads)
    data = json.loads(workload_file.read_text())
    items = tuple((i, c, tuple(x)) for i, c, x in data["items"])
    w = Workload(data["name"], data["description"], items, data["generative"], data.get("generate", False))
    run = load_method(method, path, batch_size)
    rss_loaded_kb = _status_kb("VmRSS")
    peak_load_kb = _status_kb("VmHWM")
    ctx, conts = w.items[0][1], w.items[0][2]
    run(Workload("warmup", "", (("warmup", ctx[-60:].lstrip(), conts[:1]),), w.generative, w.generate))  # untimed
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
    t0 = time.perf_counter()
    results = run(w)
    seconds = time.perf_counter() - t0
    peak_score_kb = _status_kb("VmHWM")
    result_file.write_text(
        json.dumps(
            {
                "method": method,
                "batch_size": batch_size if method == "lm-eval" else None,
                "seconds": seconds,
                "results": results,
                "rss_loaded_mb": rss_loaded_kb / 1024,
                "peak_rss_mb": max(peak_load_kb, peak_score_kb) / 1024,
                "increase_mb": (peak_score_kb - rss_loaded_kb) / 1024,
            }
        )
    )


def run_child(method: str, path: Path, w: Workload, batch_size: int, threads: int, tmp: Path) -> dict:
    """Run `child_main` in a fresh interpreter; raise with its stderr if it fails."""
    wfile = tmp / f"workload-{w.name}.json"
    wfile.write_text(json.dumps(dict(name=w.name, description=w.description, items=w.items, generative=w.generative,
                                     generate=w.generate)))
    rfile = tmp / f"result-{w.name}-{method}-{batch_size}.json"
    cmd = [sys.executable, __file__, "--child", method, "--checkpoint", str(path), "--workload", str(wfile),
           "--batch-size", str(batch_size), "--threads", str(threads), "--result", str(rfile)]  # fmt: skip
    proc = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} on workload {w.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(rfile.read_text())


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


# ----------------------------------------------------------------------------------------------------------------------
# agreement


def check_agreement(
    results: dict[str, list[tuple[float, bool]]],
    requests: Sequence[tuple[str, str]],
    atol: float = ATOL,
    rtol: float = RTOL,
) -> float:
    """Raise ValueError unless every method matches the first one on every request (|Δ| ≤ atol + rtol·|first|,
    is_greedy equal); return the largest |Δ logprob|.

    >>> check_agreement({"x": [(-1.0, True)], "y": [(-1.00006103515625, True)]}, [("c", " d")])  # Δ = 2**-14
    6.103515625e-05
    >>> check_agreement({"x": [(-1.0, True)], "y": [(-1.0002, True)]}, [("c", " d")])
    Traceback (most recent call last):
    ...
    ValueError: y disagrees with x on logprob for request 0 ('c', ' d'): -1.0 vs -1.0002
    >>> check_agreement({"x": [(-1.0, True)], "y": [(-1.0, False)]}, [("c", " d")])
    Traceback (most recent call last):
    ...
    ValueError: y disagrees with x on is_greedy for request 0 ('c', ' d'): True vs False
    """
    (ref_name, ref), *others = results.items()
    worst = 0.0
    for name, res in others:
        if len(res) != len(ref):
            raise ValueError(f"{name}: {len(res)} results, expected {len(ref)} (as {ref_name})")
        for i, ((lp0, g0), (lp, g)) in enumerate(zip(ref, res, strict=True)):
            diff = abs(lp - lp0)
            where = f"{name} disagrees with {ref_name} on"
            if not diff <= atol + rtol * abs(lp0):
                raise ValueError(f"{where} logprob for request {i} {requests[i]!r}: {lp0} vs {lp}")
            if g != g0:
                raise ValueError(f"{where} is_greedy for request {i} {requests[i]!r}: {g0} vs {g}")
            worst = max(worst, diff)
    return worst


def check_generations(results: dict[str, list], prompts: Sequence[str]) -> int:
    """Raise ValueError unless every method's answer equals the first method's on every prompt (the first may give
    (text, n_generated) pairs); return how many answers stopped at a newline or EOS before the token limit.

    >>> check_generations({"x": [("ab", 2)], "y": ["ab"]}, ["p"])
    1
    >>> check_generations({"x": [("ab", 2)], "y": ["ac"]}, ["p"])
    Traceback (most recent call last):
    ...
    ValueError: y disagrees with x on the answer to prompt 0 'p': 'ab' vs 'ac'
    """
    (ref_name, ref), *others = results.items()
    texts = [r[0] if isinstance(r, (tuple, list)) else r for r in ref]
    for name, res in others:
        if len(res) != len(ref):
            raise ValueError(f"{name}: {len(res)} answers, expected {len(ref)} (as {ref_name})")
        for i, (want, got) in enumerate(zip(texts, res, strict=True)):
            if got != want:
                raise ValueError(f"{name} disagrees with {ref_name} on the answer to prompt {i} {prompts[i][-40:]!r}: "
                                 f"{want!r} vs {got!r}")
    return sum(r[1] < GEN_MAX_NEW_TOKENS for r in ref if isinstance(r, (tuple, list)))


def generation_tokens(tokenizer, w: Workload, reference: list) -> int:
    """Prompt tokens (as every method encodes them) plus the tokens the reference generated, summed."""
    return sum(len(tokenizer(ctx)["input_ids"]) + n for (_, ctx, _), (_, n) in zip(w.items, reference, strict=True))


def with_greedy_choices(w: Workload, path: Path) -> Workload:
    """Each item's first continuation replaced by the plain model's greedy next token, where that token decodes to
    text that encodes back to exactly it as a continuation: then is_greedy is true somewhere and its check bites."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    items = []
    with torch.inference_mode():
        for item_id, ctx, conts in w.items:
            ids = torch.tensor([tokenizer(ctx)["input_ids"]])  # (1, T)
            nxt = int(model(ids).logits[0, -1].argmax())  # the token the last position predicts
            text = tokenizer.decode([nxt])
            if text.strip() and encode_like_lm_eval(tokenizer, ctx, text)[1] == [nxt]:
                conts = (text, *conts[1:])
            items.append((item_id, ctx, conts))
    return Workload(w.name, w.description + ", first choice greedy where possible", tuple(items), w.generative)


def agreement_check(
    workdir: Path, model_config: dict, vocab: int, batch_size: int = 8
) -> dict[str, tuple[float, int, int]]:
    """Build a checkpoint in `workdir`, score the QUICK workloads with all three methods in this process (choices of
    (a) and (c) made greedy where possible) and check agreement; raises ValueError on any disagreement.
    Returns {workload: (largest |Δ logprob|, requests, requests with is_greedy true)}; for (d): (0, prompts, answers
    that stopped before the token limit). The smoke test's entry point."""
    from transformers import AutoTokenizer

    path = build_checkpoint(workdir / "model", model_config, vocab=vocab)
    workloads = make_workloads(AutoTokenizer.from_pretrained(path), QUICK)
    workloads = {k: with_greedy_choices(w, path) if k in ("a", "c") else w for k, w in workloads.items()}
    runners = {m: load_method(m, path, batch_size) for m in ("plain", "scalelens", "lm-eval")}
    out = {}
    for name, w in workloads.items():
        results = {m: run(w) for m, run in runners.items()}
        if w.generate:  # (d): the same answers; the count is of answers that stopped before the token limit
            out[name] = (0.0, len(results["plain"]), check_generations(results, [c for _, c, _ in w.items]))
            continue
        worst = check_agreement(results, w.requests())
        out[name] = (worst, len(results["plain"]), sum(g for _, g in results["plain"]))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# whole processes


def write_task_files(w: Workload, folder: Path) -> tuple[Path, Path]:
    """The same items as a scalelens JSONL task and an lm-eval local task (YAML + JSONL): identical strings."""
    folder.mkdir(parents=True, exist_ok=True)
    scalelens_file = folder / "bench_mc.jsonl"
    with scalelens_file.open("w") as f:
        for item_id, ctx, conts in w.items:
            f.write(json.dumps({"id": item_id, "context": ctx, "choices": list(conts), "target": 0}) + "\n")
    lm_dir = folder / "lm_eval_task"
    lm_dir.mkdir(exist_ok=True)
    with (lm_dir / "bench_mc.jsonl").open("w") as f:
        for item_id, ctx, conts in w.items:
            f.write(json.dumps({"id": item_id, "context": ctx, "choices": list(conts), "answer": 0}) + "\n")
    (lm_dir / "bench_mc.yaml").write_text(
        "task: bench_mc\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {lm_dir / 'bench_mc.jsonl'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\n'
        'target_delimiter: ""\n'
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
    )
    return scalelens_file, lm_dir


def time_process(cmd: list[str], threads: int, cwd: Path, log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS in MB (of the process and the descendants it waited for) of one command."""
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=child_env(threads), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not every child's so far
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{log.read_text()[-4000:]}")
    return seconds, usage.ru_maxrss / 1024


def scalelens_command() -> list[str]:
    exe = Path(sys.executable).with_name("scalelens")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "logprob.cli"]


def whole_process(w: Workload, path: Path, batch_size: int, threads: int, tmp: Path) -> dict:
    """`scalelens score` vs the `lm_eval` command on workload `w`, each timed end to end as a subprocess."""
    scalelens_file, lm_dir = write_task_files(w, tmp / "tasks")
    scalelens_cmd = scalelens_command() + [
        "score", "--model", str(path), "--task", str(scalelens_file), "--out", str(tmp / "scalelens-out"),
        "--device", "cpu", "--dtype", "float32", "--no-generate",
    ]  # fmt: skip
    lm_cmd = [
        sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={path},dtype=float32",
        "--tasks", "bench_mc", "--include_path", str(lm_dir), "--device", "cpu", "--batch_size", str(batch_size),
    ]  # fmt: skip
    shutil.rmtree(tmp / "scalelens-out", ignore_errors=True)
    s_sec, s_mb = time_process(scalelens_cmd, threads, REPO, tmp / "scalelens-score.log")
    l_sec, l_mb = time_process(lm_cmd, threads, tmp, tmp / "lm-eval.log")
    return {"scalelens": s_sec, "lm-eval": l_sec, "scalelens_mb": s_mb, "lm-eval_mb": l_mb,
            "scalelens_cmd": scalelens_cmd, "lm_cmd": lm_cmd}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# report


def machine_cpu() -> str:
    """The CPU model name from /proc/cpuinfo."""
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    return next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), platform.processor() or "?")


def machine() -> dict[str, str]:
    import lm_eval
    import torch
    import transformers

    return {
        "cpu": machine_cpu(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lm_eval": getattr(lm_eval, "__version__", "?"),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def shown(cmd: list[str]) -> str:
    """A command as the record shows it: paths relative to the repository, the temporary folder as $BENCH.

    >>> import tempfile
    >>> shown([str(REPO / ".venv/bin/scalelens"), "--out", f"{tempfile.gettempdir()}/scalelens-bench-abc123/out"])
    '.venv/bin/scalelens --out $BENCH/out'
    >>> shown(["python", "benchmarks/throughput.py", "--json", f"{tempfile.gettempdir()}/bench.json"])
    'python benchmarks/throughput.py --json bench.json'
    """
    cmd = [Path(c).name if os.path.isabs(c) and not c.startswith(str(REPO)) and "scalelens-bench-" not in c else c
           for c in cmd]  # a file of this machine's outside the checkout: its name only
    text = shlex.join(cmd).replace(str(REPO) + "/", "")
    return re.sub(r"/\S*?/scalelens-bench-[A-Za-z0-9_]+", "$BENCH", text)


def render(report: dict) -> tuple[str, str]:
    """(plain text for the terminal, markdown for --out) from the collected numbers."""
    m = report["machine"]
    head = [
        f"Command: `{report['command']}`",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}, transformers "
        f"{m['transformers']}, lm_eval {m['lm_eval']}; torch threads {report['threads']}; {m['date']}; "
        f"load average at start {m['load']}.",
        "Model: Pythia-70m shape (GPT-NeoX, hidden 512, 6 layers, vocab 50,304), random weights, float32, CPU.",
        f"Agreement: on every request all methods agree on is_greedy and on the summed log-prob within "
        f"{ATOL:g} + {RTOL:g}·|logprob| (float32 resolution of long sums; largest |Δ| per workload below).",
        "Tokens = context + continuation tokens per request as lm-eval counts them, summed; the same count for every "
        "method. Peak = peak RSS of the method's own process; Δ = that peak minus its RSS right after loading the "
        "model.",
    ]
    cols = ["workload", "method", "requests", "tokens", "seconds", "tokens/s", "× lm-eval", "peak MB", "Δ MB"]
    rows, notes = [], []
    for name, r in report["workloads"].items():
        for method, x in r["methods"].items():
            rows.append(
                [
                    f"({name}) {r['description']}" if method == "scalelens" else "",
                    method + (f" (batch {x['batch_size']})" if x.get("batch_size") else ""),
                    str(r["requests"]),
                    f"{r['tokens']:,}",
                    f"{x['seconds']:.2f}",
                    f"{r['tokens'] / x['seconds']:,.0f}",
                    f"{r['lm_eval_seconds'] / x['seconds']:.2f}",
                    f"{x['peak_rss_mb']:.0f}",
                    f"{x['increase_mb']:.0f}",
                ]
            )
        others = ", ".join(f"batch {b}: {s:.2f} s, peak {mb:.0f} MB" for b, (s, mb) in r["lm_eval_all"].items())
        if r.get("generate"):
            notes.append(f"({name}) lm-eval tried {others}; every method gave the same answer to all "
                         f"{r['requests']} prompts; {r['n_stopped']} stopped at a newline or EOS before "
                         f"{GEN_MAX_NEW_TOKENS} tokens")
        else:
            notes.append(f"({name}) lm-eval tried {others}; largest |Δ logprob| between methods {r['max_diff']:.1e}; "
                         f"is_greedy true on {r['n_greedy']} of {r['requests']} requests")  # fmt: skip
    targets = []
    for name, r in report["workloads"].items():
        ratio = r["lm_eval_seconds"] / r["methods"]["scalelens"]["seconds"]
        bound = ""
        if "bare" in r["methods"]:
            ceiling = r["lm_eval_seconds"] / r["methods"]["bare"]["seconds"]
            floor = r["methods"]["scalelens"]["seconds"] / r["methods"]["bare"]["seconds"]
            bound = f" (the bare model arithmetic alone would be {ceiling:.2f}×; scalelens takes {floor:.2f}× its floor)"
        if name in TARGETS:
            goal = TARGETS[name]
            targets.append(f"({name}) throughput ≥ {goal:g}× lm-eval: {ratio:.2f}× — {met(ratio >= goal)}{bound}")
        else:
            targets.append(f"({name}) throughput vs lm-eval (no target): {ratio:.2f}×{bound}")
    if "a" in report["workloads"]:
        ma = report["workloads"]["a"]["methods"]
        lowest = min(mb for _, mb in report["workloads"]["a"]["lm_eval_all"].values())  # its leanest batch size
        frac = ma["scalelens"]["peak_rss_mb"] / lowest
        targets.append(f"(a) peak RSS ≤ ½ lm-eval's at its leanest batch size: {ma['scalelens']['peak_rss_mb']:.0f} "
                       f"vs {lowest:.0f} MB, {frac:.2f} of it — {met(frac <= TARGET_MEMORY)}")  # fmt: skip
        frac = ma["scalelens"]["increase_mb"] / ma["lm-eval"]["increase_mb"]
        targets.append(f"(a) Δ RSS over the loaded model, vs lm-eval at its reported batch size: {frac:.2f} of it")
    proc = report.get("process")
    if proc:
        ratio = proc["lm-eval"] / proc["scalelens"]
        targets.append(
            f"(a) whole process ≥ {TARGET_PROCESS:g}× lm-eval: scalelens score {proc['scalelens']:.1f} s, "
            f"lm_eval {proc['lm-eval']:.1f} s, {ratio:.2f}× — {met(ratio >= TARGET_PROCESS)} "
            f"(peak RSS {proc['scalelens_mb']:.0f} MB vs {proc['lm-eval_mb']:.0f} MB)"
        )

    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w_) if i < 2 else c.rjust(w_) for i, (c, w_) in enumerate(zip(cells, widths)))

    table = [line(cols), *(line(r) for r in rows)]
    text = "\n".join([*head, "", *table, *notes, "", "Targets:", *(f"  {t}" for t in targets)])
    if proc:
        text += f"\nWhole-process commands:\n  {shlex.join(proc['scalelens_cmd'])}\n  {shlex.join(proc['lm_cmd'])}"

    md = [*(f"{h}\n" for h in head), "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", *(f"- {n}" for n in notes)]
    md += ["", "Targets (reported, not asserted):", "", *(f"- {t}" for t in targets)]
    if proc:
        md += ["", "Whole-process commands (offline, wall time end to end, same OMP thread count; `$BENCH` is the "
               "run's temporary folder):", "", "```", shown(proc["scalelens_cmd"]), shown(proc["lm_cmd"]), "```"]
    if report.get("note"):
        md += ["", report["note"]]
    return text, "\n".join(md) + "\n"


def write_section(path: Path, key: str, body: str) -> None:
    """Replace the `key` section of a markdown file (between HTML comment markers), keeping the rest of the file."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body}{end}\n"
    old = path.read_text() if path.exists() else "# scalelens benchmark results\n\n"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end) + 1 :]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new)


# ----------------------------------------------------------------------------------------------------------------------
# main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small workloads: a smoke run of the whole harness")
    p.add_argument("--out", type=Path, default=None, help="markdown file; its `throughput` section is (re)written")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers (no per-request results) as JSON")
    p.add_argument("--threads", type=int, default=2, help="torch threads for every method (default 2)")
    p.add_argument("--lm-eval-batch", type=int, nargs="+", default=[16, 32], help="lm-eval batch sizes to try")
    p.add_argument("--workloads", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d"])
    p.add_argument("--no-process", action="store_true", help="skip the whole-process comparison")
    p.add_argument("--note", default="", help="a line appended to the markdown (e.g. 'machine shared')")
    p.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workload", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(args.child, args.checkpoint, args.workload, args.batch_size, args.threads, args.result)
        return 0

    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")  # local paths only
    from transformers import AutoTokenizer

    given = argv if argv is not None else sys.argv[1:]
    report = {"command": shown(["python", "benchmarks/throughput.py", *given]),
              "threads": args.threads, "machine": machine(), "workloads": {}, "note": args.note}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="scalelens-bench-") as tmp_name:
        tmp = Path(tmp_name)
        path = build_checkpoint(tmp / "pythia-70m-random", PYTHIA_70M)
        tokenizer = AutoTokenizer.from_pretrained(path)
        workloads = make_workloads(tokenizer, QUICK if args.quick else FULL)
        best_batch = {}
        for name in args.workloads:
            w = workloads[name]
            requests = w.requests()
            print(f"workload ({name}): {w.description}", file=sys.stderr, flush=True)
            methods = ("plain", "scalelens", "bare")
            runs = {m: run_child(m, path, w, 0, args.threads, tmp) for m in methods}
            lm_runs = [run_child("lm-eval", path, w, b, args.threads, tmp) for b in args.lm_eval_batch]
            worst, n_stopped = 0.0, None
            for lm in lm_runs:  # every batch size must agree, not only the fastest
                three = {"plain": runs["plain"]["results"], "scalelens": runs["scalelens"]["results"],
                         "lm-eval": lm["results"]}  # fmt: skip
                if w.generate:
                    n_stopped = check_generations(three, [c for _, c, _ in w.items])
                else:
                    worst = max(worst, check_agreement(three, requests))
            best = min(lm_runs, key=lambda r: r["seconds"])
            best_batch[name] = best["batch_size"]
            report["workloads"][name] = {
                "description": w.description,
                "requests": len(w.items) if w.generate else len(requests),
                "tokens": (generation_tokens(tokenizer, w, runs["plain"]["results"]) if w.generate
                           else lm_eval_token_count(tokenizer, requests)),
                "generate": w.generate,
                "n_stopped": n_stopped,
                "methods": {"scalelens": runs["scalelens"], "lm-eval": best, **{m: runs[m] for m in methods if m != "scalelens"}},
                "lm_eval_seconds": best["seconds"],
                "lm_eval_all": {r["batch_size"]: (r["seconds"], r["peak_rss_mb"]) for r in lm_runs},
                "max_diff": worst,
                "n_greedy": None if w.generate else sum(g for _, g in runs["plain"]["results"]),
            }
        if not args.no_process and "a" in args.workloads:
            print("whole processes on (a)", file=sys.stderr, flush=True)
            report["process"] = whole_process(workloads["a"], path, best_batch["a"], args.threads, tmp)
    text, md = render(report)
    print(text)
    if args.json:
        for r in report["workloads"].values():
            for x in r["methods"].values():
                x.pop("results", None)
        args.json.write_text(json.dumps(report, indent=1))
    if args.out:
        write_section(args.out, "throughput", md)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
