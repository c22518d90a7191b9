"""The scale axis the models are ordered along: `--x non_embedding_params|params|compute|tokens|step|COLUMN`.

| axis | value per model |
| --- | --- |
| `auto` (default) | non_embedding_params when every model has one, else params (the notes say which) |
| `non_embedding_params`, `params` | the parameter counts (`metrics.ingest.sizes`) |
| `tokens` | training tokens D: --sizes or the table's `training_tokens`; for a known ladder's `revision=stepN` checkpoint, N × tokens per step |
| `compute` | C = 6·N·D FLOPs with N the non-embedding parameters (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361, section 2.1: C ≈ 6NBS = 6ND); only where D is known |
| `step` | the training step of a `revision=stepN` checkpoint (or the table's `step` column): one model's checkpoints |
| any other name | a numeric per-model column of the table or the --sizes file, e.g. a pre-training loss (Du et al. 2024, "Understanding emergent abilities of language models from the loss perspective") |

`reverse=True` (`--x-reverse`, for an axis on which lower means further along, such as a loss) uses 1/value, named
`1/COLUMN`: the order flips and log-scale distances stay those of the column (log(1/v) = −log v).

Every statistic of the curves reads log10(x), so x must be > 0. A model at x ≤ 0 (the step-0 checkpoint, the random
initialisation) cannot be placed on a log axis: it is left out of the analysis and the notes name it.
"""

from __future__ import annotations

import polars as pl

from metrics.ingest.errors import InputError

AUTO = "auto"
PARAMETER_AXES = ("non_embedding_params", "params")
#: Kaplan et al. 2020's approximation of training compute: 6 FLOPs per parameter per token (forward + backward).
FLOPS_PER_PARAM_TOKEN = 6


def _need(models: pl.DataFrame, column: str, axis: str, how: str) -> None:
    if column not in models.columns or models[column].null_count():
        missing = models if column not in models.columns else models.filter(pl.col(column).is_null())
        raise InputError(f"--x {axis}: model {missing['model'][0]!r} has no {how}; give it in a --sizes CSV "
                         f"(column {column}) or choose another --x")


def scale_axis(models: pl.DataFrame, x: str, reverse: bool = False) -> tuple[pl.DataFrame, str, list[str]]:
    """(the models with the axis as column `x_name`, dropping x ≤ 0; x_name; notes).

    `models` has one row per model: model, params, non_embedding_params, training_tokens, step and any extra
    numeric columns.
    """
    notes: list[str] = []
    if x == AUTO:
        x = "non_embedding_params" if models["non_embedding_params"].null_count() == 0 else "params"
        if x == "params":
            unknown = models.filter(pl.col("non_embedding_params").is_null())["model"].to_list()
            notes.append(f"scale axis: params (total parameters), since the non-embedding count of "
                         f"{', '.join(unknown[:3])}{' …' if len(unknown) > 3 else ''} is unknown; give them in a "
                         "--sizes CSV to use non-embedding parameters")
    if x in PARAMETER_AXES:
        _need(models, x, x, "parameter count of that kind")
        axis = pl.col(x).cast(pl.Float64)
    elif x == "tokens":
        _need(models, "training_tokens", x, "known training-token count")
        axis = pl.col("training_tokens").cast(pl.Float64)
    elif x == "compute":
        _need(models, "non_embedding_params", x, "non-embedding parameter count (C = 6·N·D)")
        _need(models, "training_tokens", x, "known training-token count (C = 6·N·D)")
        axis = FLOPS_PER_PARAM_TOKEN * pl.col("non_embedding_params").cast(pl.Float64) * \
            pl.col("training_tokens").cast(pl.Float64)
    elif x == "step":
        _need(models, "step", x, "training step (revision=stepN, or a 'step' column)")
        axis = pl.col("step").cast(pl.Float64)
    else:
        if x not in models.columns:
            known = [c for c in models.columns if c not in ("model", "size_source") and models.schema[c].is_numeric()]
            raise InputError(f"--x {x}: no such per-model column; the axes are non_embedding_params, params, compute, "
                             f"tokens, step, or a numeric column of the table or --sizes ({', '.join(known) or 'none'})")
        if not models.schema[x].is_numeric():
            raise InputError(f"--x {x}: column {x!r} is not numeric ({models.schema[x]})")
        _need(models, x, x, f"value in column {x!r}")
        axis = pl.col(x).cast(pl.Float64)
    name = f"1/{x}" if reverse else x
    raw = models.with_columns(axis.alias("_raw"))
    dropped = raw.filter(pl.col("_raw") <= 0)
    if dropped.height:
        notes.append(f"left out {', '.join(dropped['model'].to_list())}: {x} ≤ 0 has no place on the log scale "
                     "every statistic reads (a step-0 checkpoint is the random initialisation)")
    out = raw.filter(pl.col("_raw") > 0)
    if out.is_empty():
        raise InputError(f"--x {x}: no model has a value > 0 on this axis")
    if name in (*PARAMETER_AXES, "step"):  # the column itself is the axis (and stays an integer column)
        return out.drop("_raw"), name, notes
    out = out.with_columns((1.0 / pl.col("_raw") if reverse else pl.col("_raw")).alias(name)).drop("_raw")
    return out, name, notes
