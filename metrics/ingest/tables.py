"""A plain table of results (CSV or parquet) → one aggregate row per (model, task, metric).

Columns (`scalelens analyze table.csv --out DIR`):

| column | required | meaning |
| --- | --- | --- |
| model | yes | the model's name |
| metric | yes | the metric's name (lm-eval's names get their known direction, e.g. ppl is lower-is-better) |
| value | yes | the model's mean of the metric |
| params, non_embedding_params | one of them, unless `--sizes`, lm-eval or a known ladder gives the size | parameter counts |
| task | no | the task (default: the file's name without its extension) |
| stderr | no | the standard error of `value`; without it the mean has no interval |
| n_items | no | items behind the mean |
| direction | no | `higher` or `lower` is better |
| n_choices | no | choices per item, for accuracy above chance (`--above-chance`) |
| n_shot | no | shots; one curve must not mix them |
| revision | no | the checkpoint (`stepN` gives the `step` axis) |
| training_tokens | no | tokens the model was trained on (`compute` and `tokens` axes) |
| any other numeric column | no | constant per model: usable as the scale axis with `--x COLUMN` (e.g. a pre-training loss) |

Integer and float columns of any width are accepted. Per-model columns must hold one value per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from metrics.ingest.errors import bad

REQUIRED = ("model", "metric", "value")
OPTIONAL = {"task": pl.String, "stderr": pl.Float64, "n_items": pl.Int64, "direction": pl.String,
            "n_choices": pl.Int64, "n_shot": pl.Int64, "revision": pl.String}
#: Columns that describe a model, not a result: one value per model.
MODEL_FIELDS = ("params", "non_embedding_params", "training_tokens", "revision")


@dataclass(frozen=True)
class PlainTable:
    path: Path
    rows: pl.DataFrame  # model, task, metric, mean, stderr, n_items, direction, n_choices, n_shot
    models: pl.DataFrame  # one row per model: model + MODEL_FIELDS present + other numeric columns


def read_file(path: Path) -> pl.DataFrame:
    """A parquet file (by its magic bytes) or a CSV, read whole; one line naming the file when it cannot be."""
    try:
        with open(path, "rb") as f:
            parquet = f.read(4) == b"PAR1"
        return pl.read_parquet(path) if parquet else pl.read_csv(path, infer_schema_length=None)
    except Exception as e:  # noqa: BLE001 - polars raises several classes for unreadable files
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise bad(path, "file", f"is not a readable CSV or parquet table ({reason})") from None


def numeric(path: Path, frame: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.DataFrame:
    """`column` cast to `dtype`; refused in one line when it is not numeric, or, for an integer dtype, when a
    value is not a whole number (polars' cast would truncate 1.5 to 1 without a word)."""
    found = frame.schema[column]
    if not (found == pl.Null or found.is_numeric()):
        raise bad(path, f"column '{column}'", f"must be numeric, found {found}")
    if dtype.is_integer() and found.is_float():
        fractional = frame.filter(pl.col(column).is_not_null() & (pl.col(column) != pl.col(column).round()))
        if fractional.height:
            row = fractional.row(0, named=True)
            raise bad(path, f"column '{column}'", f"model {row['model']!r}: {row[column]} is not a whole number")
    try:
        return frame.with_columns(pl.col(column).cast(dtype, strict=True))
    except pl.exceptions.PolarsError:
        raise bad(path, f"column '{column}'", f"has values that are not whole numbers ({found})") from None


def read_table(path: Path) -> PlainTable:
    """Parse and check one plain table; every problem is an InputError naming the file and the column."""
    frame = read_file(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise bad(path, f"column '{missing[0]}'", f"missing; a results table needs columns {', '.join(REQUIRED)} "
                  f"(found {', '.join(frame.columns)})")
    if frame.is_empty():
        raise bad(path, "file", "has no rows")
    frame = frame.with_columns(pl.col("model", "metric").cast(pl.String))
    for column in ("model", "metric"):
        if frame[column].null_count():
            raise bad(path, f"column '{column}'", "has empty values")
    frame = numeric(path, frame, "value", pl.Float64)
    if frame["value"].null_count() or (~frame["value"].is_finite()).any():
        raise bad(path, "column 'value'", "has empty or non-finite values")
    for column in ("params", "non_embedding_params", "training_tokens"):
        if column in frame.columns:
            frame = numeric(path, frame, column, pl.Int64)
    for column, dtype in OPTIONAL.items():
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
        elif dtype == pl.String:
            frame = frame.with_columns(pl.col(column).cast(pl.String))
        else:
            frame = numeric(path, frame, column, dtype)
    frame = frame.with_columns(pl.col("task").fill_null(path.stem))
    if (frame["stderr"].drop_nulls() < 0).any():
        raise bad(path, "column 'stderr'", "has negative values")
    directions = set(frame["direction"].drop_nulls().to_list()) - {"higher", "lower"}
    if directions:
        raise bad(path, "column 'direction'", f"must be 'higher' or 'lower', found {sorted(directions)[0]!r}")
    if (frame["n_choices"].drop_nulls() < 2).any():
        raise bad(path, "column 'n_choices'", "must be at least 2")
    dup = frame.group_by("model", "task", "metric").len().filter(pl.col("len") > 1)
    if dup.height:
        row = dup.row(0, named=True)
        raise bad(path, "column 'model'", f"model {row['model']!r} appears twice for task {row['task']!r}, metric "
                  f"{row['metric']!r}; the same model twice cannot be one point of a curve")
    extra = [c for c in frame.columns if c not in (*REQUIRED, *OPTIONAL, *MODEL_FIELDS) and frame.schema[c].is_numeric()]
    per_model = [c for c in (*MODEL_FIELDS, *extra) if c in frame.columns]
    varying = frame.group_by("model").agg(pl.col(per_model).n_unique()) if per_model else pl.DataFrame()
    for column in per_model:
        if column in extra and varying[column].max() > 1:
            continue  # a per-result numeric column (e.g. a count), not a model property: not an axis
        if varying[column].max() > 1:
            model = varying.filter(pl.col(column) > 1)["model"][0]
            raise bad(path, f"column '{column}'", f"model {model!r} has more than one value; it describes the "
                      "model and must be the same on every row of that model")
    constant = [c for c in per_model if varying.is_empty() or varying[c].max() <= 1]
    models = frame.group_by("model", maintain_order=True).agg(pl.col(constant).drop_nulls().first())
    rows = frame.select("model", "task", "metric", pl.col("value").alias("mean"), "stderr", "n_items", "direction",
                        "n_choices", "n_shot")
    return PlainTable(path, rows, models)
