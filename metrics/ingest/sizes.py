"""Each model's size (and training tokens), and where it came from.

Sources, in this order; the first that gives a model's parameter count is used, and the `size_source` column and
the printed notes name it:

1. `--sizes FILE`: a CSV (or parquet) with columns model, params, optional non_embedding_params, optional
   training_tokens, and any other numeric per-model column (usable as the scale axis).
2. The plain table's own params / non_embedding_params columns.
3. lm-eval's `model_num_parameters` in the results file (every parameter once; no non-embedding count).
4. A local `config.json`: the model name as a folder (as given, or beside the results file), its hyperparameters
   counted by `metrics.param_count` (GPT-NeoX, GPT-2, OPT, Llama, Qwen2, OLMo-2).
5. The built-in table of known ladders (`metrics.ladders`: Pythia, GPT-2, OPT, Qwen2.5, SmolLM2, OLMo-2,
   Cerebras-GPT), by hub id or alias, ignoring @revision.

A source without a non-embedding count (lm-eval's) takes it from the next source that has one only when that
source's total equals the chosen total; otherwise non_embedding_params stays null. Training tokens come from the
first source that gives them: --sizes, the table, then the known ladder (step × tokens per step for a
`revision=stepN` checkpoint, the final count otherwise). A model no source sizes is an error naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from metrics.ingest.errors import InputError, bad
from metrics.ingest.tables import numeric, read_file
from metrics.ladders import known_model, parse_step, tokens_at
from metrics.param_count import count_from_config

SIZES_COLUMNS = ("model", "params", "non_embedding_params", "training_tokens")


@dataclass(frozen=True)
class Size:
    params: int | None
    non_embedding_params: int | None
    source: str
    training_tokens: int | None = None
    extra: dict[str, float] = field(default_factory=dict)  # other numeric per-model columns (--sizes)


@dataclass(frozen=True)
class ModelEntry:
    """What the inputs say about one model before its size is resolved."""

    model: str  # the key used in every table
    name: str  # without @revision
    revision: str | None
    lm_eval_params: int | None = None
    lm_eval_file: Path | None = None  # the results file that gives lm_eval_params
    table_size: Size | None = None
    search_dirs: tuple[Path, ...] = ()  # folders a relative local model path may be relative to
    files: tuple[Path, ...] = ()  # the inputs that name it (for messages)


def read_sizes(path: Path) -> dict[str, Size]:
    """The --sizes file: model → Size."""
    if not path.exists():
        raise InputError(f"--sizes {path}: no such file")
    frame = read_file(path)
    for column in ("model", "params"):
        if column not in frame.columns:
            raise bad(path, f"column '{column}'", f"missing; --sizes needs columns model, params (optional "
                      f"non_embedding_params, training_tokens); found {', '.join(frame.columns)}")
    for column in frame.columns:
        if column != "model" and not (frame.schema[column].is_numeric() or frame.schema[column] == pl.Null):
            raise bad(path, f"column '{column}'", f"must be numeric, found {frame.schema[column]}")
    frame = frame.with_columns(pl.col("model").cast(pl.String))
    for column in ("params", "non_embedding_params", "training_tokens"):
        if column in frame.columns:
            frame = numeric(path, frame, column, pl.Int64)
    dup = frame.group_by("model").len().filter(pl.col("len") > 1)
    if dup.height:
        raise bad(path, "column 'model'", f"model {dup['model'][0]!r} is listed twice")
    if frame["params"].null_count() or (frame["params"] <= 0).any():
        raise bad(path, "column 'params'", "every model needs a parameter count > 0")
    out = {}
    for row in frame.iter_rows(named=True):
        extra = {k: float(v) for k, v in row.items() if k not in SIZES_COLUMNS and v is not None}
        out[row["model"]] = Size(row["params"], row.get("non_embedding_params"), f"--sizes {path}",
                                 row.get("training_tokens"), extra)
    return out


def _config_size(entry: ModelEntry) -> Size | None:
    """The size counted from a local config.json, when the model name is a folder holding one."""
    candidates = [Path(entry.name), *(d / entry.name for d in entry.search_dirs)]
    for folder in candidates:
        config = folder / "config.json"
        if not config.is_file():
            continue
        try:
            params, non_embedding = count_from_config(json.loads(config.read_text(encoding="utf-8")))
        except (ValueError, OSError):
            continue  # an architecture not counted here: the next source decides
        return Size(params, non_embedding, f"config.json {config}")
    return None


def _ladder_size(entry: ModelEntry) -> Size | None:
    known = known_model(entry.name)
    if known is None:
        return None
    return Size(known.params, known.non_embedding_params, f"known ladder {known.ladder} ({known.hub_id}: "
                f"{known.source})", tokens_at(known, parse_step(entry.revision), entry.revision))


def resolve(entry: ModelEntry, sizes_file: dict[str, Size] | None) -> Size:
    """The model's Size from the first source that has one (module docstring); InputError naming it otherwise."""
    given = (sizes_file or {}).get(entry.model) or (sizes_file or {}).get(entry.name)
    lm_eval = Size(entry.lm_eval_params, None, f"lm-eval model_num_parameters in {entry.lm_eval_file}") \
        if entry.lm_eval_params else None
    ladder = _ladder_size(entry)
    sources = [s for s in (given, entry.table_size, lm_eval, _config_size(entry), ladder)
               if s is not None and (s.params is not None or s.non_embedding_params is not None)]
    if not sources:
        where = ", ".join(str(f) for f in entry.files[:2])
        raise InputError(f"model {entry.model!r} (in {where}): no size known: not in --sizes, no "
                         "model_num_parameters, no local config.json, not a known ladder; give it in a --sizes "
                         "CSV (model,params[,non_embedding_params,training_tokens])")
    chosen = sources[0]
    non_embedding = chosen.non_embedding_params
    if non_embedding is None:
        non_embedding = next((s.non_embedding_params for s in sources[1:] if s.non_embedding_params is not None
                              and s.params == chosen.params), None)
    tokens = next((s.training_tokens for s in (given, entry.table_size) if s and s.training_tokens),
                  ladder.training_tokens if ladder else None)
    return Size(chosen.params, non_embedding, chosen.source, tokens, dict(given.extra) if given else {})
