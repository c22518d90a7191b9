"""A run folder's score and generation tables, read and checked before anything is computed from them.

`scalelens score` writes `scores.parquet` and `generations.parquet` with provenance columns (`schema.PROVENANCE`):
the checkpoint's fingerprint, the task's content hash and the number-changing settings of every row. A folder is
only worth reading if it holds one version of each thing it compares, so `read_run_folder` refuses, each time with
one line naming the file and the fix:

- a file that is not a readable parquet table (truncated, corrupt): delete it, or rescore with --restart;
- a table without the provenance columns or with other columns (written by another scalelens version);
- repeated rows (one key twice);
- one model name with results of two different checkpoints, or one task with results of two versions of its file;
- rows of one table under different settings, or score and generation tables whose shared settings differ;
- a task with more rows for one model than for another (an incomplete write).

Everything here is polars; `logprob.run` uses the same checks before it resumes a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from metrics.schema import GENERATIONS, GENERATIONS_FILE, PROVENANCE, SCORES, SCORES_FILE

#: What to do about a folder that cannot be used as it is.
RESCORE_FIX = "rerun `scalelens score` with --restart to rescore it, or score into another --out"
CORRUPT_FIX = "delete it, or rerun `scalelens score` with --restart"


class FolderError(ValueError):
    """A run folder's table is unreadable, from another version, or mixes results that must not be compared."""


def read_table(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame | None:
    """The table at `path` with `schema` + PROVENANCE checked, or None when there is no such file.

    >>> import tempfile
    >>> bad = Path(tempfile.mkdtemp()) / "scores.parquet"
    >>> _ = bad.write_bytes(b"PAR1 not really")
    >>> read_table(bad, SCORES)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metrics.folder.FolderError: .../scores.parquet: not a readable parquet table (...); it is truncated or corrupt: delete it, or rerun `scalelens score` with --restart
    """
    if not path.exists():
        return None
    try:
        frame = pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - polars raises several classes for a damaged file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
        raise FolderError(f"{path}: not a readable parquet table ({reason}); it is truncated or corrupt: "
                          f"{CORRUPT_FIX}") from None
    missing_provenance = [c for c in PROVENANCE if c not in frame.columns]
    missing = [c for c in schema if c not in frame.columns]
    if missing_provenance or missing:
        what = missing_provenance or missing
        raise FolderError(f"{path}: written by another scalelens version (no column(s) {', '.join(what)}); "
                          f"{RESCORE_FIX}")
    for name, dtype in {**schema, **PROVENANCE}.items():
        if frame.schema[name] != dtype:
            raise FolderError(f"{path}: column '{name}' has dtype {frame.schema[name]}, expected {dtype} "
                              f"(written by another scalelens version?); {RESCORE_FIX}")
    return frame


def settings_difference(a: str, b: str) -> str:
    """The settings that differ between two `score_config` strings, as `name: a vs b`.

    >>> settings_difference('{"dtype": "float32", "max_length": 8}', '{"dtype": "float32", "max_length": null}')
    'max_length: 8 vs None'
    """
    try:
        da, db = json.loads(a), json.loads(b)
    except ValueError:
        return f"{a} vs {b}"
    keys = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
    return ", ".join(f"{k}: {da.get(k)} vs {db.get(k)}" for k in keys) or "none"


def _several(frame: pl.DataFrame, key: str | list[str], value: str) -> pl.DataFrame:
    """Rows (key, values) for each key holding more than one distinct value."""
    return (
        frame.group_by(key)
        .agg(pl.col(value).unique().sort())
        .filter(pl.col(value).list.len() > 1)
        .sort(key)
    )


def check_provenance(scores: pl.DataFrame | None, generations: pl.DataFrame | None, folder: Path) -> None:
    """Refuse a folder whose tables mix what must not be compared (module docstring), naming the first problem."""
    tables = [(t, name) for t, name in ((scores, SCORES_FILE), (generations, GENERATIONS_FILE)) if t is not None]
    for table, name in tables:
        keys = ["model", "task", "formulation", "item_id"] + (["choice"] if name == SCORES_FILE else [])
        repeated = table.group_by(keys).len().filter(pl.col("len") > 1)
        if repeated.height:
            first = repeated.row(0, named=True)
            raise FolderError(f"{folder / name}: {repeated.height} row key(s) appear more than once, e.g. model "
                              f"{first['model']!r} task {first['task']!r} item {first['item_id']!r}; {RESCORE_FIX}")
        configs = table["score_config"].unique().sort().to_list()
        if len(configs) > 1:
            raise FolderError(f"{folder / name}: rows scored under different settings "
                              f"({settings_difference(configs[0], configs[1])}); {RESCORE_FIX}")
        counts = table.group_by("task", "formulation", "model").len()
        uneven = _several(counts, ["task", "formulation"], "len")
        if uneven.height:
            task, formulation = uneven.row(0, named=True)["task"], uneven.row(0, named=True)["formulation"]
            per_model = counts.filter((pl.col("task") == task) & (pl.col("formulation") == formulation)).sort("model")
            shown = ", ".join(f"{m}: {n}" for m, n in per_model.select("model", "len").iter_rows())
            raise FolderError(f"{folder / name}: task {task!r} has a different number of rows per model ({shown}), "
                              f"so some results are incomplete; {RESCORE_FIX}")
    if len(tables) == 2:
        a, b = scores["score_config"][0] if scores.height else None, generations["score_config"][0] if generations.height else None
        if a is not None and b is not None:
            da, db = json.loads(a), json.loads(b)
            shared = sorted(k for k in set(da) & set(db) if da[k] != db[k])
            if shared:
                raise FolderError(f"{folder}: {SCORES_FILE} and {GENERATIONS_FILE} were written under different "
                                  f"settings ({', '.join(f'{k}: {da[k]} vs {db[k]}' for k in shared)}); {RESCORE_FIX}")
    both = pl.concat([t.select("model", "task", "formulation", "model_fingerprint", "task_hash") for t, _ in tables]
                     ) if tables else None
    if both is None or both.is_empty():
        return
    for key, value, what in ((["model"], "model_fingerprint", "checkpoints (model_fingerprint"),
                             (["task", "formulation"], "task_hash", "versions of its task file (task_hash")):
        several = _several(both, key, value)
        if several.height:
            row = several.row(0, named=True)
            name = f"model {row['model']!r}" if key == ["model"] else \
                f"task {row['task']!r}" + (f" ({row['formulation']})" if row["formulation"] != "default" else "")
            raise FolderError(f"{folder}: {name} has results of {len(row[value])} different {what} "
                              f"{', '.join(row[value])}); {RESCORE_FIX}")


def read_run_folder(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(scores, generations or None) of a folder written by `scalelens score`, checked: every problem is one
    FolderError line naming the file and the fix (module docstring). A missing score table is FileNotFoundError."""
    folder = Path(folder)
    scores_path = folder / SCORES_FILE
    if not scores_path.exists():
        raise FileNotFoundError(f"{scores_path}: no score table here; run `scalelens score ... --out {folder}` first")
    scores = read_table(scores_path, SCORES)
    generations = read_table(folder / GENERATIONS_FILE, GENERATIONS)
    check_provenance(scores, generations, folder)
    return scores, generations
