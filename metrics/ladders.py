"""Well-known ladders of causal LMs: every model's hub id, its parameter counts and where they come from.

Each entry keeps the `config.json` hyperparameters the counts are computed from (`metrics.param_count`, the
project's rule: non-embedding = total − input token embedding − untied output head − learned absolute position
embeddings) and the address of its source. `tests/test_ladders.py` builds every config with `transformers` on the
meta device and checks both counts with `logprob.model.count_parameters`, and checks the totals against the sizes
the model cards publish.

Models left out because a hyperparameter could not be confirmed from a source: Pythia-14M and -31M (added to the
suite later), OLMo-2 32B (its feed-forward width and key/value heads), OPT-175B (not on the hub as a checkpoint).

Training tokens are given only where the source states them exactly: Pythia (143,000 steps × 1024 sequences × 2048
tokens = 299,892,736,000, the model cards) and Cerebras-GPT (steps × batch × 2048 from the model cards' table;
13B is quoted as 174,335 steps at batch 720, the card's batch-720 equivalent of its 720 → 1080 schedule).

Public API: `KnownModel`, `LADDERS`, `ladder(name)`, `known_model(model_id)`, `tokens_at(known, step, revision)`, `parse_step(revision)`,
`parse_tokens(revision)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from metrics.param_count import count_from_config


@dataclass(frozen=True)
class KnownModel:
    """One model of a known ladder. `params` and `non_embedding_params` are computed from `config`."""

    hub_id: str  # "EleutherAI/pythia-70m"
    ladder: str  # key of LADDERS
    params: int
    non_embedding_params: int
    config: Mapping[str, int | str | bool]  # the hyperparameters the counts come from (config.json names)
    source: str  # URL of the config.json (and of the paper or card for training tokens)
    training_tokens: int | None  # tokens seen by the final checkpoint, where the source states them
    tokens_per_step: int | None  # tokens per optimizer step (Pythia: 1024 × 2048), for revision=stepN checkpoints
    aliases: tuple[str, ...] = field(default=())  # other names the same checkpoint goes by


def _hub(hub_id: str) -> str:
    return f"https://huggingface.co/{hub_id}/blob/main/config.json"


def _model(hub_id: str, ladder_name: str, config: dict, source: str | None = None, *,
           training_tokens: int | None = None, tokens_per_step: int | None = None,
           aliases: tuple[str, ...] = ()) -> KnownModel:
    params, non_embedding = count_from_config(config)
    return KnownModel(hub_id, ladder_name, params, non_embedding, MappingProxyType(dict(config)),
                      source or _hub(hub_id), training_tokens, tokens_per_step, aliases)


# --- Pythia (Biderman et al. 2023, arXiv:2304.01373): GPT-NeoX, untied embeddings, 143,000 steps of 2,097,152
# tokens. Sizes: the model cards' table (layers, width, heads); vocabularies 50304, except 6.9B (50432) and 12B
# (50688), as their config.json files state. The deduplicated suite has the same configs.
PYTHIA_TOKENS_PER_STEP = 1024 * 2048
PYTHIA_STEPS = 143_000
_PYTHIA = (  # size, hidden, layers, heads, vocab
    ("70m", 512, 6, 8, 50304),
    ("160m", 768, 12, 12, 50304),
    ("410m", 1024, 24, 16, 50304),
    ("1b", 2048, 16, 8, 50304),
    ("1.4b", 2048, 24, 16, 50304),
    ("2.8b", 2560, 32, 32, 50304),
    ("6.9b", 4096, 32, 32, 50432),
    ("12b", 5120, 36, 40, 50688),
)


def _pythia(deduped: bool) -> tuple[KnownModel, ...]:
    suffix = "-deduped" if deduped else ""
    out = []
    for size, h, L, n, V in _PYTHIA:
        config = {"model_type": "gpt_neox", "hidden_size": h, "num_hidden_layers": L, "num_attention_heads": n,
                  "intermediate_size": 4 * h, "vocab_size": V, "max_position_embeddings": 2048,
                  "rotary_pct": 0.25, "use_parallel_residual": True, "tie_word_embeddings": False}
        hub_id = f"EleutherAI/pythia-{size}{suffix}"
        out.append(_model(hub_id, f"pythia{suffix}", config,
                          f"{_hub(hub_id)}; model card https://huggingface.co/{hub_id} (training tokens)",
                          training_tokens=PYTHIA_STEPS * PYTHIA_TOKENS_PER_STEP,
                          tokens_per_step=PYTHIA_TOKENS_PER_STEP,
                          aliases=(f"EleutherAI/pythia-v1.1-{size}{suffix}",)))  # the Pythia eval files' name
    return tuple(out)


# --- GPT-2 (Radford et al. 2019): tied embeddings, 1024 learned positions, vocabulary 50257.
_GPT2 = (("gpt2", 768, 12, 12), ("gpt2-medium", 1024, 24, 16), ("gpt2-large", 1280, 36, 20), ("gpt2-xl", 1600, 48, 25))
GPT2 = tuple(
    _model(f"openai-community/{name}", "gpt2",
           {"model_type": "gpt2", "n_embd": h, "n_layer": L, "n_head": n, "n_positions": 1024, "vocab_size": 50257,
            "tie_word_embeddings": True},
           aliases=(name,))
    for name, h, L, n in _GPT2
)

# --- OPT (Zhang et al. 2022, arXiv:2205.01068, table 1): learned positions (2048 + offset 2), tied embeddings,
# vocabulary 50272, ffn_dim = 4h; opt-350m alone projects a 512-wide embedding and puts LayerNorm after the blocks.
_OPT = (("125m", 768, 12, 12), ("350m", 1024, 24, 16), ("1.3b", 2048, 24, 32), ("2.7b", 2560, 32, 32),
        ("6.7b", 4096, 32, 32), ("13b", 5120, 40, 40), ("30b", 7168, 48, 56), ("66b", 9216, 64, 72))
OPT = tuple(
    _model(f"facebook/opt-{size}", "opt",
           {"model_type": "opt", "hidden_size": h, "num_hidden_layers": L, "num_attention_heads": n,
            "ffn_dim": 4 * h, "vocab_size": 50272, "max_position_embeddings": 2048,
            "word_embed_proj_dim": 512 if size == "350m" else h, "do_layer_norm_before": size != "350m",
            "enable_bias": True, "tie_word_embeddings": True},
           f"{_hub(f'facebook/opt-{size}')}; Zhang et al. 2022 (arXiv:2205.01068) table 1")
    for size, h, L, n in _OPT
)

# --- Qwen2.5 (Qwen team 2024, arXiv:2412.15115): grouped-query attention with q/k/v biases, SwiGLU; embeddings tied
# up to 3B; vocabulary 151936 (0.5B–3B) or 152064 (7B and up).
_QWEN = (("0.5B", 896, 24, 14, 2, 4864, 151936, True), ("1.5B", 1536, 28, 12, 2, 8960, 151936, True),
         ("3B", 2048, 36, 16, 2, 11008, 151936, True), ("7B", 3584, 28, 28, 4, 18944, 152064, False),
         ("14B", 5120, 48, 40, 8, 13824, 152064, False), ("32B", 5120, 64, 40, 8, 27648, 152064, False),
         ("72B", 8192, 80, 64, 8, 29568, 152064, False))
QWEN25 = tuple(
    _model(f"Qwen/Qwen2.5-{size}", "qwen2.5",
           {"model_type": "qwen2", "hidden_size": h, "num_hidden_layers": L, "num_attention_heads": n,
            "num_key_value_heads": k, "intermediate_size": f, "vocab_size": V, "tie_word_embeddings": tied})
    for size, h, L, n, k, f, V, tied in _QWEN
)

# --- SmolLM2 (Allal et al. 2025, arXiv:2502.02737): Llama architecture, tied embeddings, vocabulary 49152.
_SMOL = (("135M", 576, 30, 9, 3, 1536), ("360M", 960, 32, 15, 5, 2560), ("1.7B", 2048, 24, 32, 32, 8192))
SMOLLM2 = tuple(
    _model(f"HuggingFaceTB/SmolLM2-{size}", "smollm2",
           {"model_type": "llama", "hidden_size": h, "num_hidden_layers": L, "num_attention_heads": n,
            "num_key_value_heads": k, "intermediate_size": f, "vocab_size": 49152, "tie_word_embeddings": True})
    for size, h, L, n, k, f in _SMOL
)

# --- OLMo 2 (OLMo et al. 2024, arXiv:2501.00656): no biases, QK-norm, norms after each sub-block, untied
# embeddings, vocabulary 100352.
_OLMO = (("allenai/OLMo-2-0425-1B", 2048, 16, 16, 8192), ("allenai/OLMo-2-1124-7B", 4096, 32, 32, 11008),
         ("allenai/OLMo-2-1124-13B", 5120, 40, 40, 13824))
OLMO2 = tuple(
    _model(hub_id, "olmo-2",
           {"model_type": "olmo2", "hidden_size": h, "num_hidden_layers": L, "num_attention_heads": n,
            "num_key_value_heads": n, "intermediate_size": f, "vocab_size": 100352, "tie_word_embeddings": False})
    for hub_id, h, L, n, f in _OLMO
)

# --- Cerebras-GPT (Dey et al. 2023, arXiv:2304.03208): GPT-2 architecture with 2048 learned positions, tied
# embeddings, n_inner = 4h; trained to 20 tokens per parameter. Tokens = steps × batch × 2048 (the model cards).
_CEREBRAS = (("111M", 768, 10, 12, 9_037, 120), ("256M", 1088, 14, 17, 9_468, 264),
             ("590M", 1536, 18, 12, 21_836, 264), ("1.3B", 2048, 24, 16, 24_334, 528),
             ("2.7B", 2560, 32, 32, 49_041, 528), ("6.7B", 4096, 32, 32, 62_522, 1040),
             ("13B", 5120, 40, 40, 174_335, 720))
CEREBRAS_GPT = tuple(
    _model(f"cerebras/Cerebras-GPT-{size}", "cerebras-gpt",
           {"model_type": "gpt2", "n_embd": h, "n_layer": L, "n_head": n, "n_inner": 4 * h, "n_positions": 2048,
            "vocab_size": 50257, "tie_word_embeddings": True},
           f"{_hub(f'cerebras/Cerebras-GPT-{size}')}; model card https://huggingface.co/cerebras/Cerebras-GPT-{size} "
           "(steps and batch size)",
           training_tokens=steps * batch * 2048, tokens_per_step=batch * 2048 if size != "13B" else None)
    for size, h, L, n, steps, batch in _CEREBRAS
)

#: Every known ladder, smallest model first.
LADDERS: Mapping[str, tuple[KnownModel, ...]] = MappingProxyType({
    "pythia": _pythia(deduped=False),
    "pythia-deduped": _pythia(deduped=True),
    "gpt2": GPT2,
    "opt": OPT,
    "qwen2.5": QWEN25,
    "smollm2": SMOLLM2,
    "olmo-2": OLMO2,
    "cerebras-gpt": CEREBRAS_GPT,
})

_BY_NAME: dict[str, KnownModel] = {
    name.lower(): m for models in LADDERS.values() for m in models for name in (m.hub_id, *m.aliases)
}


def ladder(name: str) -> tuple[KnownModel, ...]:
    """The models of a known ladder, smallest first.

    >>> [m.hub_id for m in ladder("smollm2")]
    ['HuggingFaceTB/SmolLM2-135M', 'HuggingFaceTB/SmolLM2-360M', 'HuggingFaceTB/SmolLM2-1.7B']
    """
    if name not in LADDERS:
        raise ValueError(f"ladder {name!r} is not known; known ladders: {', '.join(LADDERS)}")
    return LADDERS[name]


def known_model(model_id: str) -> KnownModel | None:
    """The known model a hub id (or alias) names, case-insensitively, ignoring an "@revision" suffix; None if none.

    >>> known_model("EleutherAI/pythia-v1.1-70m@step143000").hub_id
    'EleutherAI/pythia-70m'
    """
    return _BY_NAME.get(model_id.split("@", 1)[0].strip().lower())


#: "step3000", "stage1-step140000-…", "checkpoint-500": a step number between separators.
_STEP = re.compile(r"(?:^|[-_/.])(?:step|checkpoint)[-_]?([0-9]+)(?=$|[-_/.])", re.IGNORECASE)
#: "tokens588B": a token count with an optional K/M/B/T scale.
_TOKENS = re.compile(r"(?:^|[-_/.])tokens?[-_]?([0-9]+(?:\.[0-9]+)?)([KMBT]?)(?=$|[-_/.])", re.IGNORECASE)
_SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def tokens_at(known: KnownModel | None, step: int | None, revision: str | None) -> int | None:
    """Tokens seen by a checkpoint of a known model: step × its tokens per step when the step is known, its training
    tokens at the final checkpoint (no revision, or main), else None.

    >>> pythia = known_model("EleutherAI/pythia-410m")
    >>> tokens_at(pythia, 3000, "step3000"), tokens_at(pythia, None, None) == pythia.training_tokens
    (6291456000, True)
    >>> tokens_at(pythia, None, "v0"), tokens_at(None, 3000, "step3000")
    (None, None)
    """
    if known is None:
        return None
    if step is not None and known.tokens_per_step:
        return step * known.tokens_per_step
    return known.training_tokens if revision in (None, "main") else None


def parse_step(revision: str | None) -> int | None:
    """The training step a revision or checkpoint folder name states (Pythia's "step3000", OLMo's
    "stage1-step140000-tokens588B", a Trainer's "checkpoint-500"), or None.

    >>> [parse_step(r) for r in ("step3000", "stage1-step140000-tokens588B", "checkpoint-500", "main", None)]
    [3000, 140000, 500, None, None]
    """
    found = _STEP.search(revision) if revision else None
    return int(found.group(1)) if found else None


def parse_tokens(revision: str | None) -> int | None:
    """Training tokens a revision states (OLMo's `tokens588B`), or None.

    >>> parse_tokens("stage1-step140000-tokens588B"), parse_tokens("step3000")
    (588000000000, None)
    """
    found = _TOKENS.search(revision) if revision else None
    if not found:
        return None
    return round(float(found.group(1)) * _SCALE[found.group(2).upper()])
