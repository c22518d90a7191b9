"""Parameter counts from a model's `config.json` hyperparameters alone: no torch, no weights, no download.

The counts follow the project's rule (`logprob.model.count_parameters`, Kaplan et al. 2020, "Scaling Laws for
Neural Language Models", arXiv:2001.08361, section 2.1): `params` counts every weight once (tied input and output
embeddings once), `non_embedding_params` is that minus the input token embedding, minus an untied output head, minus
learned absolute position embeddings. Rotary positions have no parameters.

Each architecture's count is the sum of the shapes its Hugging Face `transformers` implementation creates, read
from the modeling files (h = hidden size, L = layers, V = vocabulary, f = feed-forward width, n and k = query and
key/value heads, d = head width):

| model_type | per layer | outside the layers |
| --- | --- | --- |
| gpt_neox (Pythia) | 2 LayerNorms 4h + qkv 3h²+3h + dense h²+h + MLP 2hf+f+h | final LayerNorm 2h; embed_in Vh; embed_out Vh unless tied |
| gpt2 (GPT-2, Cerebras-GPT) | 2 LayerNorms 4h + c_attn 3h²+3h + c_proj h²+h + MLP 2hf+f+h (f = n_inner or 4h) | ln_f 2h; wte Vh (tied head); wpe (n_positions)·h |
| opt | q,k,v,out 4(h²+h) + 2 LayerNorms 4h + fc1/fc2 2hf+f+h | final LayerNorm 2h when do_layer_norm_before (and not _remove_final_layer_norm); project_in/out 2ph without bias when word_embed_proj_dim p ≠ h; embed_tokens Vp (tied head); embed_positions (max_position_embeddings + 2)·h |
| llama (SmolLM2), qwen2 | q h·nd, k and v h·kd each, o nd·h (biases on q, k, v for qwen2 and when attention_bias); gated MLP 3hf; 2 RMSNorms 2h | final RMSNorm h; embed_tokens Vh; lm_head Vh unless tied |
| olmo2 | as llama without biases, plus q_norm nd and k_norm kd; RMSNorms after attention and after the MLP 2h | final RMSNorm h; embed_tokens Vh; lm_head Vh unless tied |

`tests/test_ladders.py` builds each known ladder's config with `transformers` on the meta device and checks both
counts against `logprob.model.count_parameters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: model_type values `count_from_config` knows.
SUPPORTED = ("gpt_neox", "gpt2", "opt", "llama", "qwen2", "olmo2")


def _get(config: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    if default is not None:
        return default
    raise KeyError(names[0])


def _gpt_neox(c: Mapping[str, Any]) -> tuple[int, int, int]:
    h, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    f = _get(c, "intermediate_size", default=4 * h)
    bias = bool(c.get("attention_bias", True))
    layer = 4 * h + 3 * h * h + h * h + (4 * h if bias else 0) + 2 * h * f + f + h
    tied = bool(c.get("tie_word_embeddings", False))
    body = L * layer + 2 * h
    embedding = V * h + (0 if tied else V * h)
    return body + embedding, body, 0


def _gpt2(c: Mapping[str, Any]) -> tuple[int, int, int]:
    h, L, V = _get(c, "n_embd", "hidden_size"), _get(c, "n_layer", "num_hidden_layers"), c["vocab_size"]
    f = _get(c, "n_inner", default=4 * h)
    positions = _get(c, "n_positions", "max_position_embeddings") * h
    layer = 4 * h + 3 * h * h + 3 * h + h * h + h + 2 * h * f + f + h
    body = L * layer + 2 * h
    return body + V * h + positions, body, positions


def _opt(c: Mapping[str, Any]) -> tuple[int, int, int]:
    h, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    f = c["ffn_dim"]
    p = _get(c, "word_embed_proj_dim", default=h)
    bias = bool(c.get("enable_bias", True))
    layer = 4 * h * h + (4 * h if bias else 0) + 4 * h + 2 * h * f + ((f + h) if bias else 0)
    final_norm = 2 * h if c.get("do_layer_norm_before", True) and not c.get("_remove_final_layer_norm", False) else 0
    projections = 2 * p * h if p != h else 0
    positions = (c["max_position_embeddings"] + 2) * h  # OPTLearnedPositionalEmbedding keeps an offset of 2 rows
    body = L * layer + final_norm + projections
    return body + V * p + positions, body, positions


def _gated(c: Mapping[str, Any], *, qkv_bias: bool, qk_norm: bool) -> tuple[int, int, int]:
    h, L, V, f = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"], c["intermediate_size"]
    n = c["num_attention_heads"]
    k = _get(c, "num_key_value_heads", default=n)
    d = _get(c, "head_dim", default=h // n)
    attention = h * n * d + 2 * h * k * d + n * d * h
    if qkv_bias:
        attention += n * d + 2 * k * d
    if c.get("attention_bias", False) and not qkv_bias:
        attention += n * d + 2 * k * d + h
    norms = 2 * h + ((n * d + k * d) if qk_norm else 0)
    mlp = 3 * h * f + ((2 * f + h) if c.get("mlp_bias", False) else 0)
    body = L * (attention + mlp + norms) + h
    tied = bool(c.get("tie_word_embeddings", False))
    return body + V * h + (0 if tied else V * h), body, 0


def count_from_config(config: Mapping[str, Any]) -> tuple[int, int]:
    """(params, non_embedding_params) of the model a `config.json` describes; ValueError for an architecture not in
    `SUPPORTED` or a config without the fields its count needs.

    >>> count_from_config({"model_type": "gpt_neox", "hidden_size": 512, "num_hidden_layers": 6,
    ...     "vocab_size": 50304, "intermediate_size": 2048, "tie_word_embeddings": False})  # Pythia-70M
    (70426624, 18915328)
    """
    kind = config.get("model_type")
    try:
        if kind == "gpt_neox":
            total, body, _ = _gpt_neox(config)
        elif kind == "gpt2":
            total, body, _ = _gpt2(config)
        elif kind == "opt":
            total, body, _ = _opt(config)
        elif kind == "qwen2":
            total, body, _ = _gated(config, qkv_bias=True, qk_norm=False)
        elif kind == "llama":
            total, body, _ = _gated(config, qkv_bias=False, qk_norm=False)
        elif kind == "olmo2":
            total, body, _ = _gated(config, qkv_bias=False, qk_norm=True)
        else:
            raise ValueError(f"model_type {kind!r} is not one scalelens counts from a config (known: "
                             f"{', '.join(SUPPORTED)})")
    except KeyError as e:
        raise ValueError(f"model_type {kind!r}: the config has no {e.args[0]!r}") from None
    return int(total), int(body)
