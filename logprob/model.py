"""ModelSpec → loaded causal LM and tokenizer, parameter counts and maximum length; the only code placing weights.

A model loads whole onto one device (`--device`), or, with `--device-map auto`, spread over the devices by
accelerate's big-model inference (transformers' `from_pretrained(device_map="auto", max_memory=...)`): layers fill
the GPUs in order, then the CPU, each up to its `--max-memory` entry, and whatever is left stays on disk and is read
from the safetensors files on every forward pass. Without a GPU the map has the CPU and disk only (checked with
transformers 5.24 / accelerate 1.15: layers past the CPU limit run from disk, with the same scores).
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from logprob.config import ModelSpec

log = logging.getLogger(__name__)

#: lm-eval's fallback context length when neither config nor tokenizer states one (HFLM._DEFAULT_MAX_LENGTH).
DEFAULT_MAX_LENGTH = 2048
#: Config attributes holding the context length, in lm-eval's order (`lm_eval.models.utils.resolve_max_length`).
MAX_LENGTH_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")
#: transformers' "no limit" value of tokenizer.model_max_length.
TOKENIZER_INFINITY = int(1e30)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score, with what identifies it on the scale axis."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    revision: str | None
    device: torch.device
    dtype: torch.dtype
    params: int
    non_embedding_params: int
    max_length: int
    placement: dict[str, str] | None = None  # module → device under --device-map auto (accelerate's hf_device_map)


def resolve_device(device: str) -> torch.device:
    """`auto` → CUDA if available else CPU; `cuda`/`cuda:N` must exist.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} requested but CUDA is not available (torch {torch.__version__})")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device: {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` → bfloat16 on CUDA (float16 where bfloat16 is unsupported), float32 on CPU.

    >>> resolve_dtype("auto", torch.device("cpu"))
    torch.float32
    """
    if dtype != "auto":
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected auto or one of {tuple(_DTYPES)}, got {dtype!r}")
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, non-embedding) parameter counts.

    Total counts each distinct Parameter once, so tied input/output embeddings count once. Non-embedding follows
    Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv:2001.08361), section 2.1, which excludes
    vocabulary and positional embeddings from N: total minus the input token embedding matrix, minus the output head
    when it is not tied to it, minus learned absolute position embeddings (an `nn.Embedding` other than the token
    embedding whose attribute name is `wpe` or contains `position`, e.g. GPT-2 `wpe`, OPT `embed_positions`).
    Rotary and ALiBi positions have no parameters.

    >>> emb = torch.nn.Embedding(10, 4)  # a toy LM: 40 + 4*4+4 = 60 parameters, of which 20 are not embeddings
    >>> class Toy(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__(); self.emb, self.mid = emb, torch.nn.Linear(4, 4)
    ...     def get_input_embeddings(self): return self.emb
    ...     def get_output_embeddings(self): return None
    >>> count_parameters(Toy())
    (60, 20)
    """
    total = sum(p.numel() for p in model.parameters())  # parameters() yields each shared Parameter once
    embedding = {id(p): p for p in model.get_input_embeddings().parameters()}
    head = model.get_output_embeddings()
    if head is not None:
        embedding.update({id(p): p for p in head.parameters()})
    token_embedding = model.get_input_embeddings()
    for name, module in model.named_modules():
        attr = name.rsplit(".", 1)[-1]
        if (isinstance(module, torch.nn.Embedding) and module is not token_embedding
                and (attr == "wpe" or "position" in attr)):
            embedding.update({id(p): p for p in module.parameters()})
    return total, total - sum(p.numel() for p in embedding.values())


def max_length_of(config, tokenizer) -> int:
    """The model's context length, in the order lm-eval 0.4.13's `resolve_max_length` documents: the nested
    `text_config`'s n_positions, max_position_embeddings or n_ctx (a composite config may state a modality encoder's
    limit at the top level), then the same attributes of the top-level config, then the tokenizer's
    model_max_length, then DEFAULT_MAX_LENGTH. (lm-eval's code reads only `text_config` when one exists and never
    falls back to the top level; scalelens follows the documented order, which differs only for a `text_config`
    that states no length.)"""
    for cfg in (getattr(config, "text_config", None), config):
        for attr in MAX_LENGTH_ATTRS:
            value = getattr(cfg, attr, None) if cfg is not None else None
            if value is not None:
                return int(value)
    value = getattr(tokenizer, "model_max_length", None)
    if value is not None and value != TOKENIZER_INFINITY:
        return int(value)
    return DEFAULT_MAX_LENGTH


class ModelLoadError(OSError):
    """A checkpoint could not be loaded; the message is one line naming the model and what to do."""


def _load_error(spec: ModelSpec, part: str, exc: Exception) -> ModelLoadError:
    """One line for a failure inside transformers, torch or safetensors (their messages span many lines)."""
    given = f"--model {spec.name_or_path}"
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc) or "Weights only load failed" in str(exc):
        return ModelLoadError(f"{given}: its pickle weights hold objects that torch's safe (weights-only) loader "
                              "refuses; convert the checkpoint to safetensors with a tool you trust")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0][:200] if lines else ""
    return ModelLoadError(f"{given}: could not load the {part} ({type(exc).__name__}: {reason}); check the checkpoint's "
                          "files, or its --revision")


def placement_of(spec: ModelSpec) -> tuple[torch.device, dict | str, dict | None]:
    """(the device whose kind sets the dtype, transformers' `device_map`, `max_memory`) for `spec`.

    Whole on one device: `{"": device}`. With `--device-map auto`: "auto", and the `--max-memory` limits (GPU numbers
    as ints, as accelerate wants them); with `--device cpu` and no limits, the CPU's available memory, so no layer
    lands on a GPU. Devices a given `--max-memory` does not name get no layers.
    """
    if spec.device_map is None:
        device = resolve_device(spec.device)
        return device, {"": device}, None
    gpu = spec.device != "cpu" and torch.cuda.is_available()
    limits = {int(k) if k.isdigit() else k: v for k, v in spec.max_memory} or None
    if spec.device == "cpu" and limits is None:
        import psutil

        limits = {"cpu": psutil.virtual_memory().available}
    return torch.device("cuda" if gpu else "cpu"), "auto", limits


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load tokenizer and model from a hub id or a local directory (one code path), in eval mode, placed as the spec
    says (`placement_of`).

    Weights load from safetensors only unless `spec.allow_pickle`. The tokenizer is used as loaded, never modified.
    A failure inside the loaders raises ModelLoadError, one line naming the model.
    """
    from logprob.device import execution_device

    kind, device_map, max_memory = placement_of(spec)
    dtype = resolve_dtype(spec.dtype, kind)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.name_or_path, revision=spec.revision,
                                                  trust_remote_code=spec.trust_remote_code)
    except Exception as e:  # noqa: BLE001 - any loader failure is a problem with this checkpoint, said in one line
        raise _load_error(spec, "tokenizer", e) from None
    try:
        model = AutoModelForCausalLM.from_pretrained(  # device_map: weights load straight onto their devices
            spec.name_or_path, revision=spec.revision, dtype=dtype, trust_remote_code=spec.trust_remote_code,
            use_safetensors=None if spec.allow_pickle else True, device_map=device_map,
            max_memory=dict(max_memory) if max_memory else None,  # a copy: transformers rewrites the dict it is given
        )
    except Exception as e:  # noqa: BLE001
        raise _load_error(spec, "model", e) from None
    model.eval()
    total, non_embedding = count_parameters(model)
    device = execution_device(model.get_input_embeddings())  # where inputs go; == `kind`'s device when whole
    placement = getattr(model, "hf_device_map", None) if spec.device_map else None
    placement = {k: str(v) for k, v in placement.items()} if placement else None
    log.info("loaded %s (%s) on %s as %s: %d parameters, %d non-embedding%s", spec.name_or_path, spec.revision,
             device, dtype, total, non_embedding, f"; layers on {sorted(set(placement.values()))}" if placement else "")
    return LoadedModel(model=model, tokenizer=tokenizer, name=spec.name_or_path, revision=spec.revision,
                       device=device, dtype=dtype, params=total, non_embedding_params=non_embedding,
                       max_length=max_length_of(model.config, tokenizer), placement=placement)
