"""Tasks × models → score and generation tables, written atomically after every model and resumable.

A ladder run can take hours on real checkpoints, so nothing finished is ever lost: after each model, the rows of
every model finished so far are written to a temporary file that replaces `scores.parquet` (and
`generations.parquet`) in one `os.replace`. A rerun of the same command reads those tables back and skips every
model whose rows are complete under the same settings; different settings for the same output folder are refused
rather than mixed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from logprob.config import ModelSpec, ScoreConfig
from logprob.tasks import Task
from metrics.schema import GENERATIONS, GENERATIONS_FILE, SCORES, SCORES_FILE, validate, write_parquet_atomic

log = logging.getLogger(__name__)

#: Provenance columns written beside the SCORES / GENERATIONS columns: the settings that produced each number.
PROVENANCE: dict[str, pl.DataType] = {
    "model_source": pl.String,  # hub id or local path as given
    "revision": pl.String,
    "dtype": pl.String,
    "score_config": pl.String,  # ScoreConfig.fingerprint(), scalelens version included
}


@dataclass(frozen=True)
class ModelProgress:
    """What a progress display needs to know about one model's run."""

    model: str
    index: int  # 0-based position in the ladder
    n_models: int
    n_requests: int  # (item, continuation) pairs to score, plus generative items to generate
    skipped: bool  # already complete in the output folder


ProgressFactory = Callable[[ModelProgress], Callable[[int], None]]


def model_label(spec: ModelSpec) -> str:
    """The `model` column: a hub id as given; a local checkpoint by its directory name."""
    path = Path(spec.name_or_path)
    return path.resolve().name if path.exists() else spec.name_or_path


def _read_existing(path: Path, schema: dict[str, pl.DataType], table: str) -> pl.DataFrame | None:
    if not path.exists():
        return None
    frame = pl.read_parquet(path)
    return validate(frame, {**schema, **PROVENANCE}, f"{path} ({table})")


def _expected_keys(tasks: Sequence[Task]) -> pl.DataFrame:
    """(task, item_id, choice) of every row a complete model contributes to the score table."""
    return pl.DataFrame(
        [(t.name, it.item_id, c) for t in tasks for it in t.items for c in range(len(it.continuations))],
        schema={"task": pl.String, "item_id": pl.String, "choice": pl.Int32},
        orient="row",
    )


def _is_complete(existing: pl.DataFrame | None, label: str, fingerprint: str, expected: pl.DataFrame) -> bool:
    if existing is None:
        return False
    rows = existing.filter(pl.col("model") == label)
    if rows.is_empty():
        return False
    configs = rows["score_config"].unique().to_list()
    if configs != [fingerprint]:
        raise ValueError(
            f"{label}: the output folder already holds its scores under other settings ({configs[0]}); "
            f"now asked for {fingerprint}. Use another --out folder, or delete the old tables first."
        )
    have = rows.select("task", "item_id", "choice")
    return expected.join(have, on=["task", "item_id", "choice"], how="anti").is_empty()


def check_unique_labels(specs: Sequence[ModelSpec]) -> None:
    labels = [model_label(s) for s in specs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"--model: two models would share the name {dupes}; give each checkpoint a distinct directory")


def score_models(
    specs: Sequence[ModelSpec],
    tasks: Sequence[Task],
    out_dir: Path,
    config: ScoreConfig = ScoreConfig(),
    *,
    generate: bool = True,
    progress: ProgressFactory | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score every task with every model, writing `scores.parquet` / `generations.parquet` after each model.

    Models are loaded one at a time (a 12B checkpoint and its neighbours never share memory). Returns both tables
    as written. Generation runs only on generative items, and only when `generate` is set.
    """
    # Imported here so that `scalelens report` and the metrics never pay for torch.
    from logprob.generate import generate_items
    from logprob.model import load_model
    from logprob.score import score_items

    check_unique_labels(specs)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_path, gens_path = out_dir / SCORES_FILE, out_dir / GENERATIONS_FILE
    scores = _read_existing(scores_path, SCORES, "scores")
    gens = _read_existing(gens_path, GENERATIONS, "generations")
    fingerprint = config.fingerprint()
    expected = _expected_keys(tasks)
    gen_items = {t.name: [it for it in t.items if it.kind == "generative"] for t in tasks}
    n_gen = sum(len(v) for v in gen_items.values()) if generate else 0

    for index, spec in enumerate(specs):
        label = model_label(spec)
        done = _is_complete(scores, label, fingerprint, expected) and (
            n_gen == 0 or (gens is not None and gens.filter(pl.col("model") == label).height == n_gen)
        )
        info = ModelProgress(label, index, len(specs), expected.height + n_gen, skipped=done)
        advance = progress(info) if progress else (lambda n: None)
        if done:
            log.info("%s: already scored in %s, skipping", label, out_dir)
            continue

        loaded = load_model(spec)
        provenance = {
            "model": label,
            "params": loaded.params,
            "non_embedding_params": loaded.non_embedding_params,
            "model_source": spec.name_or_path,
            "revision": spec.revision,
            "dtype": str(loaded.dtype).removeprefix("torch."),
            "score_config": fingerprint,
        }
        model_scores = pl.concat(
            [score_items(loaded, t.items, config, advance).with_columns(task=pl.lit(t.name)) for t in tasks]
        )
        model_scores = _with_provenance(model_scores, provenance, SCORES)
        scores = _replace_model_rows(scores, model_scores, label)
        write_parquet_atomic(scores, scores_path)

        if n_gen:
            model_gens = pl.concat(
                [
                    generate_items(loaded, items, config, advance).with_columns(task=pl.lit(name))
                    for name, items in gen_items.items()
                    if items
                ]
            )
            model_gens = _with_provenance(model_gens, provenance, GENERATIONS)
            gens = _replace_model_rows(gens, model_gens, label)
            write_parquet_atomic(gens, gens_path)
        del loaded

    if scores is None:  # no model and no task rows: nothing was scored
        scores = pl.DataFrame(schema={**SCORES, **PROVENANCE})
    if gens is None:
        gens = pl.DataFrame(schema={**GENERATIONS, **PROVENANCE})
    return scores, gens


def _with_provenance(frame: pl.DataFrame, provenance: dict, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Add the model and settings columns and put every column in schema order with schema dtypes."""
    full = {**schema, **PROVENANCE}
    frame = frame.with_columns(pl.lit(v).alias(k) for k, v in provenance.items())
    return frame.select(pl.col(name).cast(dtype) for name, dtype in full.items())


def _replace_model_rows(existing: pl.DataFrame | None, new: pl.DataFrame, label: str) -> pl.DataFrame:
    """All other models' rows as they were, this model's rows replaced (a partial earlier attempt is dropped)."""
    if existing is None:
        return new
    return pl.concat([existing.filter(pl.col("model") != label), new])
