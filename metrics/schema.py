"""Column names and dtypes of every scalelens table, and the validators that guard each stage's input.

The score table is the contract between `logprob` (which writes it) and `metrics` (which reads it); the other
tables are produced inside `metrics`. Each stage validates its input here, so a wrong column or dtype fails with
a message naming the table, the column, the expected dtype and the dtype found, instead of becoming a plausible
number.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import polars as pl

#: Columns identifying a model on the scale axis; they travel into every downstream table.
MODEL_COLUMNS: dict[str, pl.DataType] = {
    "model": pl.String,
    "params": pl.Int64,
    "non_embedding_params": pl.Int64,
}

#: Item kinds. A multiple-choice item has choices and one or more targets among them; a generative item has
#: references (stored as its choices, every one a target), scored teacher-forced and optionally generated.
MULTIPLE_CHOICE = "multiple_choice"
GENERATIVE = "generative"

#: How a task's items were posed (logprob/formulations.py): the task as written is DEFAULT_FORMULATION. Every table
#: keys its rows by (task, formulation), and every statistic is computed per (task, formulation, metric).
DEFAULT_FORMULATION = "default"


def curve_label(task: str, formulation: str = DEFAULT_FORMULATION) -> str:
    """How a (task, formulation) is named for people: the task, and the formulation unless it is the default.

    >>> curve_label("sums"), curve_label("sums", "3-shot")
    ('sums', 'sums [3-shot]')
    """
    return task if formulation == DEFAULT_FORMULATION else f"{task} [{formulation}]"

#: Columns added to each model's rows by `logprob.run`, which alone knows the model, the task and its formulation.
RUN_COLUMNS: tuple[str, ...] = (*MODEL_COLUMNS, "task", "formulation")

#: One item of one model: the window every per-item metric is computed over.
ITEM_KEYS: list[str] = [*RUN_COLUMNS, "item_id"]

#: The files a run folder holds: `logprob.run` writes them, `metrics.analysis` reads them.
SCORES_FILE = "scores.parquet"
GENERATIONS_FILE = "generations.parquet"

#: Provenance columns `logprob.run` writes beside the SCORES / GENERATIONS columns: what each number depends on.
#: A run reuses a (model, task) result only when model_fingerprint, task_hash and score_config all match, and
#: `metrics.folder` refuses a folder where one model, one task or one table carries two values of them.
PROVENANCE: dict[str, pl.DataType] = {
    "model_source": pl.String,  # the --model value as given: hub id or local path
    "revision": pl.String,  # hub revision asked for; null for the default branch and for local checkpoints
    "dtype": pl.String,  # weights dtype as loaded
    "model_fingerprint": pl.String,  # hash of the checkpoint's files (logprob/fingerprint.py)
    "task_hash": pl.String,  # hash of the task's items exactly as scored (logprob/fingerprint.py)
    "score_config": pl.String,  # JSON of every setting that can change this table's numbers, version included
    "step": pl.Int64,  # training step of the checkpoint (a revision such as step3000, or a ladder file); null: unknown
    "tokens_seen": pl.Int64,  # training tokens the checkpoint has seen, where known; null otherwise
    "token_budget": pl.Int64,  # tokens per forward pass resolved for this model (batching only: never blocks a resume)
}

#: scores.parquet: one row per (model, task, item, choice).
SCORES: dict[str, pl.DataType] = {
    **MODEL_COLUMNS,
    "task": pl.String,
    "formulation": pl.String,
    "item_id": pl.String,
    "item_kind": pl.String,  # MULTIPLE_CHOICE or GENERATIVE
    "choice": pl.Int32,  # index of the choice (or reference) within the item, 0-based
    "choice_text": pl.String,  # the continuation exactly as given in the task
    "is_target": pl.Boolean,
    "logprob": pl.Float64,  # sum of token_logprobs: log P(continuation | context)
    "n_tokens": pl.Int32,  # tokens in the continuation after the lm-eval boundary rule
    "token_logprobs": pl.List(pl.Float32),  # (n_tokens,) log P(token_t | context, tokens_<t)
    "token_ranks": pl.List(pl.Int32),  # (n_tokens,) rank of token_t in the vocabulary, 1 = argmax
    "is_greedy": pl.Boolean,  # every token rank is 1
    "n_chars": pl.Int32,  # characters of choice_text
    "n_bytes": pl.Int32,  # UTF-8 bytes of choice_text
    "target_score": pl.Float64,  # graded credit of this choice (BIG-bench target_scores); null when not graded
    "n_truncated": pl.Int32,  # context tokens cut from the left to fit the model's maximum length (0: none)
}

#: generations.parquet: one row per (model, task, generative item).
GENERATIONS: dict[str, pl.DataType] = {
    **MODEL_COLUMNS,
    "task": pl.String,
    "formulation": pl.String,
    "item_id": pl.String,
    "prediction": pl.String,  # greedy continuation, cut at the stop sequence
    "n_generated_tokens": pl.Int32,
    "generated_token_ids": pl.List(pl.Int32),  # the model's own tokens of `prediction`, as generated
    # `prediction` and each reference encoded by one rule, as continuations of the context (logprob.tokenize), so
    # the two are comparable token for token (token edit distance)
    "prediction_token_ids": pl.List(pl.Int32),
    "references": pl.List(pl.String),
    "reference_token_ids": pl.List(pl.List(pl.Int32)),
    "stop_reason": pl.String,  # "stop_sequence", "eos" or "max_new_tokens"
    "n_truncated": pl.Int32,  # prompt tokens cut from the left to leave room for max_new_tokens (0: none)
    # chain of thought (logprob/reasoning.py): with an answer regex, `prediction` is the final answer read out of
    # `generation`; without one, `generation` = `prediction` and the answer columns are null
    "generation": pl.String,  # the whole generated text, cut at the stop sequence
    "answer_extracted": pl.Boolean,  # the answer regex matched the generation (null: no regex)
    "reference_answers": pl.List(pl.String),  # each reference's final answer (the reference itself without a regex)
    "answer_logprob": pl.Float64,  # log P(best reference answer | context + the model's own reasoning)
    "answer_n_tokens": pl.Int32,  # its tokens
}

#: Per-item metric values, long format: one row per (model, task, item, metric).
ITEM_METRICS: dict[str, pl.DataType] = {
    **MODEL_COLUMNS,
    "task": pl.String,
    "formulation": pl.String,
    "item_id": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "signature": pl.String,  # the settings that produced the value (e.g. sacrebleu's signature); "" when none
}

#: metrics.parquet: one row per (model, task, metric).
METRICS: dict[str, pl.DataType] = {
    **MODEL_COLUMNS,
    "task": pl.String,
    "formulation": pl.String,
    "metric": pl.String,
    "taxonomy": pl.String,  # "discontinuous", "nonlinear" or "continuous" (metrics.registry)
    "kind": pl.String,  # "sharp" or "smooth", derived from taxonomy
    "direction": pl.String,  # "higher" or "lower" is better
    "mean": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_items": pl.Int64,
}

#: emergence.parquet: one row per (task, metric). Indices of the curve of model means along the scale axis, each
#: with a percentile-bootstrap interval (null without item-level replicates); see metrics/emergence.py.
EMERGENCE: dict[str, pl.DataType] = {
    "task": pl.String,
    "formulation": pl.String,
    "metric": pl.String,
    "taxonomy": pl.String,
    "kind": pl.String,
    "direction": pl.String,
    "n_models": pl.Int64,
    "n_items": pl.Int64,  # most items behind one model's mean
    "improvement": pl.Float64,  # I: signed range of the oriented curve
    "improvement_ci_low": pl.Float64,
    "improvement_ci_high": pl.Float64,
    "linearity": pl.Float64,  # L
    "linearity_ci_low": pl.Float64,
    "linearity_ci_high": pl.Float64,
    "breakthroughness": pl.Float64,  # B
    "breakthroughness_ci_low": pl.Float64,
    "breakthroughness_ci_high": pl.Float64,
    "median_step": pl.Float64,  # B's denominator: median |step|
    "resolution": pl.Float64,  # δ: the smallest step the data resolve
    "resolution_limited": pl.Boolean,  # median step ≤ z·δ: B is set by the noise floor
    "breakthroughness_bound": pl.Float64,  # I / (median step + z·δ): what the data support when limited
    "largest_step_share": pl.Float64,  # share of the change made in the largest step
    "largest_step_share_ci_low": pl.Float64,
    "largest_step_share_ci_high": pl.Float64,
    "steady_share": pl.Float64,  # the share a curve linear in log-scale would show on this ladder, without noise
    "steady_share_threshold": pl.Float64,  # … with this curve's noise: the 95% quantile of its null replicates
    "concentrated": pl.Boolean,  # largest_step_share > steady_share_threshold
    "largest_step_from": pl.String,  # the models the largest step lies between
    "largest_step_to": pl.String,
    "method": pl.String,  # how the replicates were drawn
    "x_axis": pl.String,  # the scale axis the models are ordered along (metrics.curves.SCALE_AXES, or a column)
    "x_unit": pl.String,  # its unit; "" when unknown
    "signature": pl.String,  # bootstrap and resolution settings
}


def _coercible(found: pl.DataType, expected: pl.DataType) -> bool:
    """Whether `found` differs from `expected` only in width or numeric kind: any integer → any integer, any integer
    or float → any float, a column with no values (Null) → anything, and lists of these."""
    if found == expected or found == pl.Null:
        return True
    if isinstance(found, pl.List) and isinstance(expected, pl.List):
        return _coercible(found.inner, expected.inner)
    if found.is_integer() and expected.is_integer():
        return True
    return (found.is_integer() or found.is_float()) and expected.is_float()


#: The chain-of-thought columns of a generation table of plain answers (no answer regex).
_PLAIN_ANSWERS = {
    "generation": pl.col("prediction"),
    "answer_extracted": pl.lit(None, pl.Boolean),
    "reference_answers": pl.col("references"),
    "answer_logprob": pl.lit(None, pl.Float64),
    "answer_n_tokens": pl.lit(None, pl.Int32),
}


def validate(frame: pl.DataFrame, schema: dict[str, pl.DataType], table: str) -> pl.DataFrame:
    """Check that `frame` has every column of `schema`, and return it with each of those columns in the schema's
    dtype; extra columns are kept as they are.

    A table without the `formulation` column that the schema has (one built before formulations, or by hand), or
    with nulls in it, gets DEFAULT_FORMULATION there: its tasks are taken as written. A generation table without the
    chain-of-thought columns gets those of plain answers: `generation` = `prediction`, `reference_answers` =
    `references`, null answer columns.

    Numeric widths are converted, never refused, so a table built elsewhere need not match scalelens's storage
    choices: any signed or unsigned integer becomes the schema's integer dtype when every value fits (a value that
    does not is an error naming the column), any integer or float becomes the schema's float dtype (Float64 stored
    as Float32 is rounded to the nearest Float32, as token log-probabilities are stored; an integer above 2^24 or
    2^53 is rounded to the nearest float), an all-null column (dtype Null) takes the schema's dtype, and list
    columns follow the same rules element by element. Anything else is a type error: a string where a number is
    expected, a Boolean, or a float where an integer is expected (it would have to be rounded).

    >>> validate(pl.DataFrame({"n": [3]}, schema={"n": pl.UInt8}), {"n": pl.Int32}, "toy").schema
    Schema([('n', Int32)])
    >>> validate(pl.DataFrame({"lp": [[-1, -2]]}), {"lp": pl.List(pl.Float32)}, "toy")["lp"].to_list()
    [[-1.0, -2.0]]
    >>> validate(pl.DataFrame({"model": [1]}), {"model": pl.String}, "toy")
    Traceback (most recent call last):
    ...
    ValueError: toy: column 'model' must have dtype String, found Int64
    """
    if "formulation" in schema and "task" in frame.columns:  # a table of tasks as written, or built by hand
        if "formulation" not in frame.columns:
            frame = frame.with_columns(pl.lit(DEFAULT_FORMULATION).alias("formulation"))
        elif frame["formulation"].null_count():
            frame = frame.with_columns(pl.col("formulation").cast(pl.String).fill_null(DEFAULT_FORMULATION))
    if schema is GENERATIONS and "prediction" in frame.columns and "references" in frame.columns:
        frame = frame.with_columns(expr.alias(name) for name, expr in _PLAIN_ANSWERS.items()
                                   if name not in frame.columns)
        frame = frame.with_columns(  # a row without them (built by hand, read elsewhere): a plain answer's
            pl.coalesce(pl.col("generation").cast(pl.String), pl.col("prediction")).alias("generation"),
            pl.coalesce(pl.col("reference_answers").cast(pl.List(pl.String)), pl.col("references"))
            .alias("reference_answers"))
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing column(s) {missing}; found {frame.columns}")
    casts = []
    for name, dtype in schema.items():
        found = frame.schema[name]
        if found == dtype:
            continue
        if not _coercible(found, dtype):
            raise ValueError(f"{table}: column '{name}' must have dtype {dtype}, found {found}")
        casts.append((name, dtype, found))
    for name, dtype, found in casts:
        try:
            frame = frame.with_columns(pl.col(name).cast(dtype, strict=True))
        except pl.exceptions.PolarsError:
            raise ValueError(
                f"{table}: column '{name}' has values that do not fit dtype {dtype} (found {found}); "
                "check the column's values"
            ) from None
    return frame


def per_model_columns(schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    """`schema` without the columns `logprob.run` adds (model columns and task): what a scorer or generator of one
    model on one task writes itself."""
    return {name: dtype for name, dtype in schema.items() if name not in RUN_COLUMNS}


def temporary_path(path: Path, pid: int | str | None = None) -> Path:
    """The sibling `write_atomic` writes before the rename: hidden, and named by the writing process (`pid="*"`: the
    glob pattern of every process's)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid() if pid is None else pid}")


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write` on a sibling temporary file, then rename it over `path`: readers see the old file or the new,
    never half.

    The file is flushed to disk before the rename. On any failure or interruption (a full disk, Ctrl-C) the
    temporary file is removed and `path` is left as it was.
    """
    tmp = temporary_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write a table with `write_atomic`."""
    write_atomic(path, frame.write_parquet)
