"""Shared fixtures: tiny causal LMs with random weights and byte-level BPE tokenizers trained here, saved to a
temporary directory so they load through the same path as a hub model. No network."""

from __future__ import annotations

import os

# Nothing in the suite may reach a model hub: local paths only, and a typo fails at once instead of timing out.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, PreTrainedTokenizerFast

torch.set_num_threads(1)  # tests share a few CPU cores; tiny models gain nothing from more threads

#: Fixture files are data (a local `evaluate` module script among them), not tests or doctests.
collect_ignore = ["fixtures"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog. A naïve café serves crème brûlée 🙂 and jalapeño.",
    "Question: What is the capital of France?\nAnswer: Paris. Question: 2 + 2 = ?\nAnswer: 4",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. Façade, coöperate, señor.",
    "日本語のテキストと絵文字 🚀🙂👍 mixed with English words, numbers 12345 and   spaces.",
    "Once upon a time there was a model that scored every choice of every question exactly.",
] * 20

#: family → its special tokens, and whether its tokenizer prepends BOS itself (as Llama's does)
FAMILIES = {
    "gpt_neox": dict(eos="<|endoftext|>", bos="<|endoftext|>", adds_bos=False),
    "llama": dict(eos="</s>", bos="<s>", adds_bos=True),
    "gpt2": dict(eos="<|endoftext|>", bos="<|endoftext|>", adds_bos=False),
}
MAX_POSITIONS = 64
VOCAB = 300


def train_tokenizer(bos: str, eos: str, adds_bos: bool) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every UTF-8 string is encodable), optionally prepending BOS like Llama tokenizers do."""
    specials = sorted({bos, eos})
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)


def model_config(family: str, tokenizer: PreTrainedTokenizerFast):
    vocab = len(tokenizer) + 12  # padded vocabulary, like Pythia's 50,304 vs its tokenizer's 50,277
    common = dict(vocab_size=vocab, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  initializer_range=0.3)
    if family == "gpt_neox":
        return GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                             max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False, **common)
    if family == "llama":
        return LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=48, max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False,
                           **common)
    return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=MAX_POSITIONS, tie_word_embeddings=True, **common)


def build_tiny(family: str, path) -> str:
    """Save a random tiny model of `family` and its tokenizer to `path`; return the path as a string."""
    spec = FAMILIES[family]
    tokenizer = train_tokenizer(spec["bos"], spec["eos"], spec["adds_bos"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config(family, tokenizer))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A function family → directory of a saved tiny model, built once per session."""
    built: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in built:
            built[family] = build_tiny(family, tmp_path_factory.mktemp(family))
        return built[family]

    return get


@pytest.fixture
def item_table():
    """Build an ITEM_METRICS table by hand: item_table({metric: (n models, N items) array}, sizes) with NaN for an
    item a model did not score; models are named m<size>, items i000, i001, …"""
    import numpy as np
    import polars as pl

    from metrics.schema import ITEM_METRICS

    def build(values, sizes, task="t", models=None):
        models = models or [f"m{s}" for s in sizes]
        rows = []
        for metric, matrix in values.items():
            matrix = np.asarray(matrix, dtype=float)
            for j, (model, size) in enumerate(zip(models, sizes, strict=True)):
                rows.extend(
                    {"model": model, "params": int(size) * 2, "non_embedding_params": int(size), "task": task,
                     "item_id": f"i{i:03d}", "metric": metric, "value": float(v)}
                    for i, v in enumerate(matrix[j]) if not np.isnan(v)
                )
        return pl.DataFrame(rows, schema=ITEM_METRICS)

    return build
