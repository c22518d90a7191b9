"""metrics.folder.read_run_folder: a scored folder is returned as written; every damaged, outdated or mixed one is
refused with one line naming the file and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from logprob.config import ModelSpec, ScoreConfig
from logprob.ladder import ADDITION_GEN_TASK, ADDITION_MC_TASK, LADDER_DIR
from logprob.run import score_models
from logprob.tasks import Task, load_jsonl
from metrics.folder import FolderError, read_run_folder, settings_difference


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """Two ladder models × (4 multiple-choice items, 2 generative items), with generations."""
    folder = tmp_path_factory.mktemp("scored")
    tasks = [load_jsonl(ADDITION_MC_TASK), load_jsonl(ADDITION_GEN_TASK)]
    tasks = [Task(t.name, t.items[:n], t.source) for t, n in zip(tasks, (4, 2), strict=True)]
    specs = [ModelSpec(str(LADDER_DIR / m), device="cpu") for m in ("ladder-00-1k", "ladder-01-4k")]
    score_models(specs, tasks, folder, ScoreConfig(max_new_tokens=6))
    return folder


@pytest.fixture
def folder(scored, tmp_path) -> Path:
    """A private copy of the scored folder, to damage."""
    return Path(shutil.copytree(scored, tmp_path / "run"))


def rewrite(folder: Path, name: str, change) -> None:
    path = folder / f"{name}.parquet"
    change(pl.read_parquet(path)).write_parquet(path)


def refused(folder: Path) -> str:
    with pytest.raises(FolderError) as info:
        read_run_folder(folder)
    message = str(info.value)
    assert "\n" not in message
    return message


def is_model(name: str) -> pl.Expr:
    return pl.col("model") == name


def test_a_scored_folder_reads_back_as_written(folder):
    scores, gens = read_run_folder(folder)
    assert scores.equals(pl.read_parquet(folder / "scores.parquet"))
    assert gens.equals(pl.read_parquet(folder / "generations.parquet"))
    # 2 models × (4 items × 4 choices + 2 items × 1 reference); 2 models × 2 generative items
    assert (scores.height, gens.height) == (2 * (4 * 4 + 2), 2 * 2)
    (folder / "generations.parquet").unlink()
    assert read_run_folder(folder)[1] is None


def test_no_score_table(tmp_path):
    with pytest.raises(FileNotFoundError, match="no score table here"):
        read_run_folder(tmp_path)


@pytest.mark.parametrize("name", ["scores", "generations"])
def test_truncated_table(folder, name):
    path = folder / f"{name}.parquet"
    path.write_bytes(path.read_bytes()[:200])
    message = refused(folder)
    assert message.startswith(str(path)) and "truncated or corrupt: delete it, or rerun `scalelens score` with --restart" in message


def test_table_of_an_older_version(folder):
    rewrite(folder, "scores", lambda f: f.drop("model_fingerprint", "task_hash"))
    assert "written by another scalelens version (no column(s) model_fingerprint, task_hash)" in refused(folder)


def test_column_of_another_dtype(folder):
    rewrite(folder, "scores", lambda f: f.with_columns(pl.col("params").cast(pl.Int32)))
    assert "column 'params' has dtype Int32, expected Int64" in refused(folder)


def test_repeated_rows(folder):
    rewrite(folder, "scores", lambda f: pl.concat([f, f.head(1)]))
    assert "1 row key(s) appear more than once" in refused(folder)


def test_one_model_name_with_two_checkpoints(folder):
    rewrite(folder, "generations", lambda f: f.with_columns(
        model_fingerprint=pl.when(is_model("ladder-00-1k")).then(pl.lit("0000000000000000"))
        .otherwise(pl.col("model_fingerprint"))))
    message = refused(folder)
    assert "model 'ladder-00-1k' has results of 2 different checkpoints" in message and "--restart" in message


def test_one_task_with_two_versions(folder):
    rewrite(folder, "scores", lambda f: f.with_columns(
        task_hash=pl.when(is_model("ladder-01-4k") & (pl.col("task") == "addition_mc")).then(pl.lit("ffff"))
        .otherwise(pl.col("task_hash"))))
    assert "task 'addition_mc' has results of 2 different versions of its task file" in refused(folder)


def test_rows_under_two_settings(folder):
    other = json.dumps({**json.loads(pl.read_parquet(folder / "scores.parquet")["score_config"][0]), "max_length": 8},
                       sort_keys=True)
    rewrite(folder, "scores", lambda f: f.with_columns(
        score_config=pl.when(is_model("ladder-01-4k")).then(pl.lit(other)).otherwise(pl.col("score_config"))))
    assert "rows scored under different settings (max_length: 8 vs None)" in refused(folder)


def test_generations_under_other_shared_settings(folder):
    def change(f):
        other = json.dumps({**json.loads(f["score_config"][0]), "dtype": "bfloat16"}, sort_keys=True)
        return f.with_columns(score_config=pl.lit(other))

    rewrite(folder, "generations", change)
    assert "written under different settings (dtype: float32 vs bfloat16)" in refused(folder)


def test_a_task_with_rows_missing_for_one_model(folder):
    rewrite(folder, "scores", lambda f: f.filter(~(is_model("ladder-01-4k") & (pl.col("task") == "addition_mc")
                                                   & (pl.col("item_id") == "add-0000"))))
    message = refused(folder)
    assert "task 'addition_mc' has a different number of rows per model (ladder-00-1k: 16, ladder-01-4k: 12)" in message


def test_settings_difference_names_each_setting():
    a = '{"dtype": "float32", "max_length": null, "scalelens_version": "0.1.0"}'
    b = '{"dtype": "bfloat16", "max_length": 64, "scalelens_version": "0.1.0"}'
    assert settings_difference(a, b) == "dtype: float32 vs bfloat16, max_length: None vs 64"
