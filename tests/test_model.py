"""Loading, device/dtype resolution, maximum length and parameter counts (hand-computed from the configs)."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoTokenizer

from logprob.config import ModelSpec
from logprob.model import count_parameters, load_model, max_length_of, resolve_device, resolve_dtype
from tests.conftest import MAX_POSITIONS

# tests/conftest.py tiny models: hidden E = 32, L = 2 layers, MLP width I = 48 (GPT-NeoX, Llama), 4E (GPT-2),
# vocabulary V = 300 tokenizer entries + 12 padding = 312, P = 64 positions.
E, L, I, V, P = 32, 2, 48, 312, MAX_POSITIONS


def test_gpt_neox_untied_counts(tiny_model_dir):
    loaded = load_model(ModelSpec(tiny_model_dir("gpt_neox"), device="cpu"))
    # per layer: 2 LayerNorms (4E) + qkv (3E^2 + 3E) + attention out (E^2 + E) + MLP (E*I + I + I*E + E)
    layer = 4 * E + (3 * E * E + 3 * E) + (E * E + E) + (E * I + I) + (I * E + E)  # = 7,504
    non_embedding = L * layer + 2 * E  # + final LayerNorm = 15,072
    assert (loaded.params, loaded.non_embedding_params) == (non_embedding + 2 * V * E, non_embedding)
    assert (loaded.params, loaded.non_embedding_params) == (35_040, 15_072)


def test_llama_untied_counts(tiny_model_dir):
    loaded = load_model(ModelSpec(tiny_model_dir("llama"), device="cpu"))
    kv = 2 * (E // 4)  # 2 key/value heads of dimension 8
    layer = 2 * E + (E * E + 2 * E * kv + E * E) + 3 * E * I  # 2 RMSNorms, q k v o, gate up down; no biases
    non_embedding = L * layer + E
    assert (loaded.params, loaded.non_embedding_params) == (non_embedding + 2 * V * E, non_embedding)
    assert non_embedding == 15_520


def test_gpt2_tied_counts_exclude_position_embeddings(tiny_model_dir):
    loaded = load_model(ModelSpec(tiny_model_dir("gpt2"), device="cpu"))
    assert loaded.model.get_output_embeddings().weight is loaded.model.get_input_embeddings().weight
    layer = 2 * 2 * E + (3 * E * E + 3 * E) + (E * E + E) + (4 * E * E + 4 * E) + (4 * E * E + E)  # = 12,704
    non_embedding = L * layer + 2 * E  # = 25,472
    # the tied token matrix counts once; learned positions (P x E) count in the total, not in non-embedding
    assert (loaded.params, loaded.non_embedding_params) == (non_embedding + V * E + P * E, non_embedding)
    assert loaded.params == 37_504


def test_load_model_fields(tiny_model_dir):
    loaded = load_model(ModelSpec(tiny_model_dir("gpt_neox")))
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32  # auto on a CPU machine
    assert loaded.max_length == MAX_POSITIONS and not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.revision is None and loaded.name == tiny_model_dir("gpt_neox")
    half = load_model(ModelSpec(tiny_model_dir("gpt_neox"), device="cpu", dtype="bfloat16"))
    assert next(half.model.parameters()).dtype == torch.bfloat16 and half.dtype == torch.bfloat16


def test_pickle_weights_need_allow_pickle(tiny_model_dir, tmp_path):
    src = tiny_model_dir("gpt2")
    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    state = load_model(ModelSpec(src, device="cpu")).model.state_dict()
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError):
        load_model(ModelSpec(str(tmp_path), device="cpu"))
    loaded = load_model(ModelSpec(str(tmp_path), device="cpu", allow_pickle=True))
    assert loaded.params == 37_504


def test_resolve_device_and_dtype(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="device: 'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8", torch.device("cpu"))


def test_max_length_resolution_order(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("gpt2"))

    class Cfg:
        pass

    cfg = Cfg()
    assert max_length_of(cfg, tok) == 2048  # nothing stated, tokenizer unbounded: lm-eval's default
    tok_limited = AutoTokenizer.from_pretrained(tiny_model_dir("gpt2"), model_max_length=77)
    assert max_length_of(cfg, tok_limited) == 77
    cfg.max_position_embeddings, cfg.n_positions = 128, 96
    assert max_length_of(cfg, tok_limited) == 96  # n_positions is checked first, as in lm-eval


def test_max_length_text_config_first_then_top_level(tiny_model_dir):
    """A composite config: the nested text_config's length wins; a text_config stating none falls back to the
    top-level config (lm-eval's documented order), not to the tokenizer or the 2048 default."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("gpt2"))

    class Cfg:
        pass

    text, top = Cfg(), Cfg()
    top.text_config, top.max_position_embeddings = text, 1200  # e.g. an audio encoder's limit at the top level
    text.max_position_embeddings = 32768
    assert max_length_of(top, tok) == 32768
    del text.max_position_embeddings
    assert max_length_of(top, tok) == 1200


def test_count_parameters_shared_module_counted_once():
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)  # 40
            self.position_embeddings = torch.nn.Embedding(6, 4)  # 24, positional
            self.block = torch.nn.Linear(4, 4)  # 20
            self.again = self.block  # the same module twice: counted once
            self.out = torch.nn.Linear(4, 10, bias=False)  # 40, untied head

        def get_input_embeddings(self):
            return self.emb

        def get_output_embeddings(self):
            return self.out

    assert count_parameters(Toy()) == (124, 20)
