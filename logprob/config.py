"""Frozen settings that change numbers. Each one is written beside the results it produced (sacrebleu's habit)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from logprob import __version__

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelSpec:
    """Which checkpoint to load and how. `name_or_path` is a hub id or a local directory: one loading path for both."""

    name_or_path: str
    revision: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (auto: bfloat16 on CUDA, float32 on CPU)
    trust_remote_code: bool = False
    allow_pickle: bool = False  # False: safetensors weights only

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {DTYPES}, got {self.dtype!r}")
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class ScoreConfig:
    """How requests are batched and scored. None of these may change a reported number beyond float tolerance,
    except `max_length` (left truncation) and the generation settings; all of them are recorded anyway."""

    # tokens per forward pass; None = automatic (logprob.score.CPU_TOKEN_BUDGET = 2048 on CPU, from free memory on
    # CUDA, see logprob.score.auto_token_budget)
    token_budget: int | None = None
    max_length: int | None = None  # None = the model's own maximum context
    share_contexts: bool = True  # encode a context once for all of its choices
    max_new_tokens: int = 32  # greedy generation bound
    stop_sequences: tuple[str, ...] = ("\n",)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "scalelens_version": __version__}

    def fingerprint(self) -> str:
        """A stable string of every setting, stored with results so a resumed run can refuse mixed settings."""
        return json.dumps(self.to_dict(), sort_keys=True)
