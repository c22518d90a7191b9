"""Frozen settings that change numbers. Each one is written beside the results it produced (sacrebleu's habit)."""

from __future__ import annotations

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


#: `--max-memory` sizes, as accelerate reads them (`accelerate.utils.convert_file_size_to_int`): a number and a unit.
_SIZE = re.compile(r"[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
#: `--max-memory` devices: a CUDA device number or "cpu" (weights beyond the limits are read from disk on each pass).
_MEMORY_DEVICE = re.compile(r"cpu|[0-9]+")


@dataclass(frozen=True)
class ModelSpec:
    """Which checkpoint to load and how, and what the tables call it. `name_or_path` is a hub id or a local
    directory: one loading path for both.

    `device_map="auto"` spreads the layers over the devices (accelerate's big-model inference), each holding at most
    its `max_memory` entry, as ((device, size), ...) pairs: ("0", "70GiB"), ("cpu", "200GiB"). `label`, `step`
    and `tokens_seen` describe the checkpoint for the tables (a ladder file or a named ladder sets them; by default
    the label is the hub id, with "@revision" when one is given, or the directory name, and the step is read from
    the revision); they never change how it loads.

    >>> ModelSpec("m", max_memory=(("cpu", "1GiB"),))
    Traceback (most recent call last):
    ...
    ValueError: --max-memory: applies only with --device-map auto (it caps what each device holds of a model spread over several)
    """

    name_or_path: str
    revision: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (auto: bfloat16 on CUDA, float32 on CPU)
    trust_remote_code: bool = False
    allow_pickle: bool = False  # False: safetensors weights only
    device_map: str | None = None  # None: the whole model on `device`; "auto": spread over the devices
    max_memory: tuple[tuple[str, str], ...] = ()  # per device: ("0", "20GiB"), ("cpu", "64GiB")
    label: str | None = None  # the `model` column; None: the default name (above)
    step: int | None = None  # training step of the checkpoint; None: read from the revision where it says
    tokens_seen: int | None = None  # training tokens seen by the checkpoint, where known

    def __post_init__(self) -> None:
        if not isinstance(self.name_or_path, str) or not self.name_or_path.strip():
            raise ValueError(f"--model: expected a hub id or a local checkpoint directory, got {self.name_or_path!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ValueError(f"--device: expected auto, cpu, cuda or cuda:N with N a device number, got {self.device!r}")
        if self.device_map not in (None, "auto"):
            raise ValueError(f"--device-map: expected auto, got {self.device_map!r}")
        object.__setattr__(self, "max_memory", tuple((str(k), str(v)) for k, v in self.max_memory))
        if self.max_memory and self.device_map is None:
            raise ValueError("--max-memory: applies only with --device-map auto (it caps what each device holds of a "
                             "model spread over several)")
        for key, size in self.max_memory:
            if not _MEMORY_DEVICE.fullmatch(key) or not _SIZE.fullmatch(size):
                raise ValueError(f"--max-memory {key}={size}: expected DEVICE=SIZE with DEVICE a CUDA device number or "
                                 "cpu and SIZE like 20GiB or 500MB")
        if self.device_map is not None and self.device.startswith("cuda:"):
            raise ValueError(f"--device {self.device}: --device-map auto places the model itself; use --device auto "
                             "(every GPU, then the CPU) or cpu (the CPU only), and --max-memory to cap each device")
        if self.device == "cpu" and any(k != "cpu" for k, _ in self.max_memory):
            raise ValueError("--max-memory: names a GPU, but --device cpu keeps the model off the GPUs")
        for name in ("step", "tokens_seen"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name}: expected a whole number >= 0, got {value!r}")
        if self.label is not None and (not isinstance(self.label, str) or not self.label.strip()):
            raise ValueError(f"label: expected a non-empty name, got {self.label!r}")


def parse_max_memory(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """`--max-memory` values (each DEVICE=SIZE, or several joined by commas) → ((device, size), ...) pairs.

    >>> parse_max_memory(["0=70GiB,1=70GiB", "cpu=200GiB"])
    (('0', '70GiB'), ('1', '70GiB'), ('cpu', '200GiB'))
    """
    pairs = []
    for value in values or []:
        for part in value.split(","):
            key, sep, size = part.strip().partition("=")
            if not sep:
                raise ValueError(f"--max-memory {part.strip()}: expected DEVICE=SIZE, e.g. 0=70GiB or cpu=200GiB")
            pairs.append((key.strip(), size.strip()))
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"--max-memory: device {twice[0]} is given twice")
    return tuple(pairs)


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

    # tokens per forward pass; None = automatic (logprob.device.CPU_TOKEN_BUDGET = 2048 on CPU, from free memory on
    # CUDA, see logprob.device.TokenBudget.resolve)
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

    def settings(self, dtype: str, *, generation: bool) -> str:
        """The `score_config` column: a stable JSON string of every setting that can change a number of the score
        table (or, with `generation`, of the generation table), with the weights dtype and the scalelens version.

        >>> ScoreConfig(max_length=64, token_budget=512).settings("float32", generation=False)  # doctest: +ELLIPSIS
        '{"dtype": "float32", "max_length": 64, "scalelens_version": "..."}'
        """
        fields = GENERATION_SETTINGS if generation else SCORE_SETTINGS
        values = {name: getattr(self, name) for name in fields}
        return json.dumps({**values, "dtype": dtype, "scalelens_version": __version__}, sort_keys=True)
