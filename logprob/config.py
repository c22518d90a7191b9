"""Frozen settings that change numbers. Each one is written beside the results it produced (sacrebleu's habit)."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from logprob import __version__

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")

#: ScoreConfig fields that can change a number of the score table, and of the generation table. The others
#: (token_budget, share_contexts) only batch the same work differently: results equal to float tolerance (README,
#: "How scores are computed"), so they never block a resume.
SCORE_SETTINGS = ("max_length",)
GENERATION_SETTINGS = ("max_length", "max_new_tokens", "stop_sequences")


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
        if not isinstance(self.name_or_path, str) or not self.name_or_path.strip():
            raise ValueError(f"--model: expected a hub id or a local checkpoint directory, got {self.name_or_path!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ValueError(f"--device: expected auto, cpu, cuda or cuda:N with N a device number, got {self.device!r}")


def _check_positive(value, name: str, option: str, none_ok: bool) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option}: expected a positive whole number of tokens, got {value!r} ({name})")


@dataclass(frozen=True)
class ScoreConfig:
    """How requests are batched and scored. Only `max_length` (left truncation) and the generation settings may
    change a reported number beyond float tolerance; `settings` lists those for the provenance columns.

    >>> ScoreConfig(max_length=0)
    Traceback (most recent call last):
    ...
    ValueError: --max-length: expected a positive whole number of tokens, got 0 (max_length)
    """

    # tokens per forward pass; None = automatic (logprob.score.CPU_TOKEN_BUDGET = 2048 on CPU, from free memory on
    # CUDA, see logprob.score.auto_token_budget)
    token_budget: int | None = None
    max_length: int | None = None  # None = the model's own maximum context
    share_contexts: bool = True  # encode a context once for all of its choices
    max_new_tokens: int = 32  # greedy generation bound
    stop_sequences: tuple[str, ...] = ("\n",)

    def __post_init__(self) -> None:
        _check_positive(self.token_budget, "token_budget", "--token-budget", none_ok=True)
        _check_positive(self.max_length, "max_length", "--max-length", none_ok=True)
        _check_positive(self.max_new_tokens, "max_new_tokens", "--max-new-tokens", none_ok=False)
        stops = self.stop_sequences
        if isinstance(stops, str) or not all(isinstance(s, str) and s for s in stops):
            raise ValueError(f"stop_sequences: expected a tuple of non-empty strings, got {stops!r}")
        object.__setattr__(self, "stop_sequences", tuple(stops))

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "scalelens_version": __version__}

    def settings(self, dtype: str, *, generation: bool) -> str:
        """The `score_config` column: a stable JSON string of every setting that can change a number of the score
        table (or, with `generation`, of the generation table), with the weights dtype and the scalelens version.

        >>> ScoreConfig(max_length=64, token_budget=512).settings("float32", generation=False)  # doctest: +ELLIPSIS
        '{"dtype": "float32", "max_length": 64, "scalelens_version": "..."}'
        """
        fields = GENERATION_SETTINGS if generation else SCORE_SETTINGS
        values = {name: getattr(self, name) for name in fields}
        return json.dumps({**values, "dtype": dtype, "scalelens_version": __version__}, sort_keys=True)
