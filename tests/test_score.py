"""The scorer against an independent one-request-at-a-time reference, and its invariance to batching choices."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import polars as pl
import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

import logprob.score as score_module
from logprob.config import ModelSpec, ScoreConfig
from logprob.device import CPU_TOKEN_BUDGET, TokenBudget
from logprob.model import LoadedModel, count_parameters, load_model
from logprob.score import (
    PACKABLE_MODEL_TYPES,
    SCORE_COLUMNS,
    _rank,
    attention_mask,
    score_items,
    token_scores,
)
from logprob.tasks import Item
from logprob.tokenize import build_requests, encode_pair
from metrics.schema import validate

ITEMS = [
    Item("q1", "Question: What is the capital of France?\nAnswer:", (" Paris", " Lyon", " naïve café 🙂"), (0,)),
    Item("q2", "Once upon a time ", ("there", "a model", " fox"), (1, 2)),
    Item("q3", "", ("The quick", "Zwölf"), (0,)),
    Item("g1", "日本語のテキスト", references=("と絵文字 🚀", "mixed")),
    Item("q4", "The quick brown fox jumps over the lazy dog. " * 3, (" A", " B", " C", " D"), (3,)),
    Item("q5", "Question: What is the capital of France?\nAnswer:", (" Lyon", " Marseille"), (1,)),  # q1's context
]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(ModelSpec(tiny_model_dir("gpt_neox"), device="cpu", dtype="float32"))


def reference(loaded, items, max_length):
    """Each request alone through the full model: log_softmax over every position, stable-sort ranks."""
    out = []
    for r in build_requests(loaded.tokenizer, items, max_length):
        ids = torch.tensor([list(r.context_ids) + list(r.continuation_ids)])  # (1, T)
        with torch.inference_mode():
            logp = loaded.model(ids[:, :-1]).logits.log_softmax(-1)[0]  # (T-1, V): position t predicts token t+1
        n = len(r.continuation_ids)
        rows, tgt = logp[-n:], torch.tensor(r.continuation_ids)  # (n, V), (n,)
        order = torch.sort(rows, dim=-1, descending=True, stable=True).indices  # (n, V)
        ranks = (order == tgt[:, None]).int().argmax(-1) + 1  # (n,)
        out.append((rows.gather(1, tgt[:, None])[:, 0].tolist(), ranks.tolist()))
    return out


def test_matches_reference_and_schema(loaded):
    scores = score_items(loaded, ITEMS, ScoreConfig(token_budget=256))
    validate(scores, SCORE_COLUMNS, "scores")
    assert scores.columns == list(SCORE_COLUMNS)
    ref = reference(loaded, ITEMS, loaded.max_length)
    assert scores.height == len(ref) == 16
    for row, (lps, ranks) in zip(scores.iter_rows(named=True), ref, strict=True):
        assert row["token_logprobs"] == pytest.approx(lps, abs=1e-5)
        assert row["token_ranks"] == ranks
        assert row["logprob"] == pytest.approx(math.fsum(row["token_logprobs"]), abs=1e-9)
        assert row["is_greedy"] == all(k == 1 for k in ranks)
        assert row["n_tokens"] == len(lps)
    assert scores["item_id"].to_list() == ["q1"] * 3 + ["q2"] * 3 + ["q3"] * 2 + ["g1"] * 2 + ["q4"] * 4 + ["q5"] * 2
    assert scores["choice"].to_list() == [0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 0, 1, 2, 3, 0, 1]
    assert scores["is_target"].to_list() == [True, False, False, False, True, True, True, False, True, True,
                                             False, False, False, True, False, True]
    assert scores["item_kind"].to_list()[8:10] == ["generative"] * 2
    row = scores.row(2, named=True)
    assert (row["choice_text"], row["n_chars"], row["n_bytes"]) == (" naïve café 🙂", 13, 18)  # ï é: 2 bytes, 🙂: 4


def test_invariant_to_budget_order_and_sharing(loaded):
    base = score_items(loaded, ITEMS, ScoreConfig(token_budget=100_000))
    shuffled_idx = list(range(len(ITEMS)))
    random.Random(0).shuffle(shuffled_idx)
    for config, items in [
        (ScoreConfig(token_budget=8), ITEMS),  # every segment alone (shared groups split), one per forward
        (ScoreConfig(token_budget=100, share_contexts=False), ITEMS),
        (ScoreConfig(token_budget=40), [ITEMS[i] for i in shuffled_idx]),
    ]:
        got = score_items(loaded, items, config)
        got = got.join(pl.DataFrame({"item_id": [it.item_id for it in ITEMS]}).with_row_index("o"), on="item_id")
        got = got.sort("o", "choice")
        assert got["token_ranks"].to_list() == base["token_ranks"].to_list()
        np.testing.assert_allclose(got["logprob"].to_numpy(), base["logprob"].to_numpy(), atol=1e-5)
        np.testing.assert_allclose(got["token_logprobs"].explode().to_numpy(),
                                   base["token_logprobs"].explode().to_numpy(), atol=1e-5)


@pytest.mark.parametrize("family", ["gpt_neox", "llama", "gpt2"])
def test_sdpa_and_eager_attention_agree(tiny_model_dir, family):
    path = tiny_model_dir(family)
    sdpa = load_model(ModelSpec(path, device="cpu", dtype="float32"))
    assert sdpa.model.config._attn_implementation == "sdpa"
    eager = dataclasses.replace(sdpa, model=AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval())
    a = score_items(sdpa, ITEMS, ScoreConfig(token_budget=200))
    b = score_items(eager, ITEMS, ScoreConfig(token_budget=200))
    np.testing.assert_allclose(a["token_logprobs"].explode().to_numpy(), b["token_logprobs"].explode().to_numpy(),
                               atol=1e-5)
    ref = reference(sdpa, ITEMS, sdpa.max_length)
    np.testing.assert_allclose(a["token_logprobs"].explode().to_numpy(),
                               np.concatenate([lps for lps, _ in ref]), atol=1e-5)


def test_truncation_uses_config_max_length(loaded):
    scores = score_items(loaded, ITEMS, ScoreConfig(max_length=20))
    ref = reference(loaded, ITEMS, 20)
    np.testing.assert_allclose(scores["token_logprobs"].explode().to_numpy(), np.concatenate([r[0] for r in ref]),
                               atol=1e-5)
    # the score table records how many context tokens each request lost: ctx + cont[:-1] must fit 20 tokens
    pairs = [encode_pair(loaded.tokenizer, item.context, c) for item in ITEMS for c in item.continuations]
    expected = [max(0, len(ctx) + len(cont) - 21) for ctx, cont in pairs]
    assert scores["n_truncated"].to_list() == expected and max(expected) > 0
    full = [max(0, len(ctx) + len(cont) - (loaded.max_length + 1)) for ctx, cont in pairs]
    assert score_items(loaded, ITEMS, ScoreConfig())["n_truncated"].to_list() == full and min(full) == 0


def test_progress_counts_every_request_once(loaded):
    seen = []
    score_items(loaded, ITEMS, ScoreConfig(token_budget=30), progress=seen.append)
    assert len(seen) > 1 and sum(seen) == 16


def test_out_of_memory_halves_budget_and_keeps_results(loaded, monkeypatch):
    expected = score_items(loaded, ITEMS, ScoreConfig(token_budget=400))
    real, calls = score_module.run_pass, []

    def flaky(base, head, batch, device, dtype, packed, **kwargs):
        n_segments = len(np.unique(batch.segment[batch.segment >= 0]))
        calls.append(n_segments)
        if n_segments > 1:  # "out of memory" for any pass holding more than one segment
            raise torch.OutOfMemoryError("simulated")
        return real(base, head, batch, device, dtype, packed, **kwargs)

    monkeypatch.setattr(score_module, "run_pass", flaky)
    seen = []
    got = score_items(loaded, ITEMS, ScoreConfig(token_budget=400), progress=seen.append)
    assert max(calls) > 1 and sum(seen) == 16
    assert got["token_ranks"].to_list() == expected["token_ranks"].to_list()
    np.testing.assert_allclose(got["logprob"].to_numpy(), expected["logprob"].to_numpy(), atol=1e-5)


def test_empty_items_give_empty_table(loaded):
    scores = score_items(loaded, [], ScoreConfig())
    assert scores.height == 0 and scores.schema == pl.Schema(SCORE_COLUMNS)


def test_token_scores_by_hand(monkeypatch):
    # head: identity on 3-dim hidden states → logits = hidden; V = 3
    head = torch.nn.Linear(3, 3, bias=False)
    head.weight.data = torch.eye(3)
    hidden = torch.tensor([[0.0, 1.0, 2.0], [2.0, 2.0, 0.0]])
    lse0, lse1 = math.log(1 + math.e + math.e**2), math.log(2 * math.e**2 + 1)
    target_needed, target_ids = torch.tensor([1, 0, 0]), torch.tensor([1, 2, 0])
    for chunk in (1 << 24, 3):  # one chunk, or one position per chunk
        monkeypatch.setattr(score_module, "LOGIT_CHUNK_ELEMENTS", chunk)
        lp, rank = token_scores(hidden, head, target_needed, target_ids)
        assert lp.tolist() == pytest.approx([2 - lse1, 2 - lse0, 0 - lse0], abs=1e-6)
        assert rank.tolist() == [2, 1, 3]  # [2, 2, 0]: id 1 ties id 0, which comes first in a stable sort


def test_rank_ties_break_by_id():
    rows = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]] * 4)
    _, rank = _rank(rows, torch.tensor([1, 2, 4, 3]), torch.empty_like(rows))
    assert rank.tolist() == [1, 2, 3, 5]


def test_attention_mask_two_segments_and_padding():
    segment = torch.tensor([[0, 0, 0, 1, 1, -7]])
    branch = torch.tensor([[0, 1, 1, 0, 1, 0]])
    allowed = (attention_mask(segment, branch, torch.float32)[0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding sees only itself
    ]
    assert attention_mask(segment, branch, torch.bfloat16).min() == torch.finfo(torch.bfloat16).min


def test_refuses_logit_transforms_and_narrow_sliding_windows(tiny_model_dir, loaded, monkeypatch):
    assert TokenBudget.resolve(loaded, None).value == CPU_TOKEN_BUDGET
    capped = load_model(ModelSpec(tiny_model_dir("gpt_neox"), device="cpu"))  # a fresh model: checks are cached
    forward = capped.model.forward

    def softcapped(*args, **kwargs):  # a model whose forward changes logits after the output embedding
        out = forward(*args, **kwargs)
        out.logits = 30 * torch.tanh(out.logits / 30)
        return out

    with monkeypatch.context() as patch:
        patch.setattr(capped.model, "forward", softcapped)
        with pytest.raises(ValueError, match="transforms logits after the output embedding"):
            score_items(capped, ITEMS, ScoreConfig())
    monkeypatch.setattr(loaded.model.config, "sliding_window", 30, raising=False)
    with pytest.raises(ValueError, match=r"max_length: a request of \d+ tokens exceeds the model's sliding window"):
        score_items(loaded, ITEMS, ScoreConfig())
    short = score_items(loaded, ITEMS, ScoreConfig(max_length=30))  # every input fits the window
    np.testing.assert_allclose(short["logprob"].to_numpy(), np.concatenate(
        [[sum(lps)] for lps, _ in reference(loaded, ITEMS, 30)]), atol=1e-5)


def test_bfloat16_model_scores_in_float32_close_to_float32_model(tiny_model_dir, loaded):
    half = load_model(ModelSpec(tiny_model_dir("gpt_neox"), device="cpu", dtype="bfloat16"))
    a = score_items(loaded, ITEMS, ScoreConfig(token_budget=64))
    b = score_items(half, ITEMS, ScoreConfig(token_budget=64))
    assert b["token_logprobs"].dtype == pl.List(pl.Float32)
    # bfloat16 weights and activations (8-bit mantissa) move per-token log-probs of about -7 by a few hundredths;
    # a wrong mask (context or branch leaking) would move them by far more
    np.testing.assert_allclose(b["token_logprobs"].explode().to_numpy(), a["token_logprobs"].explode().to_numpy(),
                               atol=0.15)


SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
             initializer_range=0.3)
ARCHITECTURES = {
    "opt": lambda v: transformers.OPTConfig(vocab_size=v, ffn_dim=48, word_embed_proj_dim=32, **SMALL),
    "qwen2": lambda v: transformers.Qwen2Config(vocab_size=v, intermediate_size=48, num_key_value_heads=2, **SMALL),
    "qwen3": lambda v: transformers.Qwen3Config(vocab_size=v, intermediate_size=48, num_key_value_heads=2,
                                                head_dim=8, **SMALL),
    "olmo": lambda v: transformers.OlmoConfig(vocab_size=v, intermediate_size=48, pad_token_id=0, **SMALL),
    "olmo2": lambda v: transformers.Olmo2Config(vocab_size=v, intermediate_size=48, pad_token_id=0, **SMALL),
    "phi": lambda v: transformers.PhiConfig(vocab_size=v, intermediate_size=48, **SMALL),
    "mistral": lambda v: transformers.MistralConfig(vocab_size=v, intermediate_size=48, num_key_value_heads=2,
                                                    sliding_window=None, **SMALL),
    "gemma": lambda v: transformers.GemmaConfig(vocab_size=v, intermediate_size=48, num_key_value_heads=2,
                                                head_dim=8, **SMALL),
    # not packable: ALiBi built from the 2-D mask (BLOOM); local attention windows in row coordinates (GPT-Neo)
    "bloom": lambda v: transformers.BloomConfig(vocab_size=v, hidden_size=32, n_layer=2, n_head=4,
                                                initializer_range=0.3),
    "gpt_neo": lambda v: transformers.GPTNeoConfig(vocab_size=v, hidden_size=32, num_layers=2, num_heads=4,
                                                   max_position_embeddings=64, window_size=8,
                                                   attention_types=[[["global", "local"], 1]], initializer_range=0.3),
}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_architectures_match_reference(tiny_model_dir, arch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir("gpt_neox"))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(ARCHITECTURES[arch](len(tokenizer) + 12)).eval()
    assert (model.config.model_type in PACKABLE_MODEL_TYPES) == (arch not in ("bloom", "gpt_neo"))
    loaded = LoadedModel(model, tokenizer, arch, None, torch.device("cpu"), torch.float32, *count_parameters(model),
                         max_length=64)
    scores = score_items(loaded, ITEMS, ScoreConfig(token_budget=128))
    np.testing.assert_allclose(scores["token_logprobs"].explode().to_numpy(),
                               np.concatenate([lps for lps, _ in reference(loaded, ITEMS, 64)]), atol=1e-5)


def test_plain_causal_passes_match_reference(loaded, monkeypatch):
    real, seen = score_module.run_pass, []

    def recording(base, head, batch, *args, **kwargs):
        seen.append(batch.causal)
        return real(base, head, batch, *args, **kwargs)

    monkeypatch.setattr(score_module, "run_pass", recording)
    scores = score_items(loaded, ITEMS, ScoreConfig(token_budget=1, share_contexts=False))  # one request per pass
    assert all(seen) and len(seen) == 16  # every pass a single unpadded sequence: no 4-D mask
    np.testing.assert_allclose(scores["token_logprobs"].explode().to_numpy(),
                               np.concatenate([lps for lps, _ in reference(loaded, ITEMS, loaded.max_length)]),
                               atol=1e-5)
    assert scores["token_ranks"].to_list() == [ranks for _, ranks in reference(loaded, ITEMS, loaded.max_length)]
