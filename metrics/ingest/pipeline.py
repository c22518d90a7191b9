"""`scalelens analyze`: results people already have → the same tables, statistics and figures as `report`.

Three stages, so that nothing is written unless every input is good:

1. `read_inputs(paths, config)` finds every input (`metrics.ingest.detect`), parses it, pairs each samples file with
   the results file that names its model, resolves every model's size (`sizes`) and the scale axis (`axes`), and
   checks the whole set: a file that is neither format, a samples file without per-choice log-likelihoods, a model
   with no size, one curve mixing shot counts, task versions or documents, one task given item by item for some
   models and only as a mean for others, and the same (model, task) twice are each one `InputError` line.
2. `analyze(inputs, config)`: item-level inputs (samples) go through the score table → `metrics.choice` /
   `metrics.text` item metrics → `metrics.curves.item_curves` (paired item bootstrap) like `report`; aggregate
   inputs (results files, tables) go through `metrics.curves.mean_curves` (parametric replicates from the stderr,
   which their signature says). Then `metrics.analysis.analyse_curves`: metric means and intervals, emergence with
   intervals and resolution, sharp-versus-smooth comparisons, trends and fits for every curve; per-item correlations
   and difficulty slices for item-level curves only.
3. `write(...)`: the analysis tables and figures (`metrics.analysis.write_analysis`), plus `scores.parquet` and
   `generations.parquet` built from the samples and `models.parquet` (each model's size, its source and its place on
   the scale axis).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from metrics.analysis import Analysis, analyse_curves, with_corpus_metrics, write_analysis
from metrics.bootstrap import BootstrapConfig
from metrics.choice import PER_TOKEN_METRICS, choice_metrics
from metrics.curves import axis_unit, item_curves, mean_curves
from metrics.ingest import axes, detect, directions
from metrics.ingest.errors import InputError, bad
from metrics.ingest.lm_eval_results import ModelRef, ResultsFile, read_results
from metrics.ingest.lm_eval_samples import SamplesFile, read_samples, task_of
from metrics.ingest.sizes import ModelEntry, Size, read_sizes, resolve
from metrics.ingest.tables import PlainTable, read_table
from metrics.ladders import parse_step
from metrics.registry import DISCONTINUOUS, HIGHER, MetricInfo
from metrics.schema import (
    GENERATIONS,
    GENERATIONS_FILE,
    ITEM_METRICS,
    MULTIPLE_CHOICE,
    PROVENANCE,
    SCORES,
    SCORES_FILE,
    validate,
    write_parquet_atomic,
)
from metrics.slices import DEFAULT_SLICES
from metrics.text import BleuConfig, ExactMatchConfig, text_metrics

MODELS_FILE = "models.parquet"
#: models.parquet: one row per model.
MODELS: dict[str, pl.DataType] = {
    "model": pl.String,
    "revision": pl.String,
    "params": pl.Int64,
    "non_embedding_params": pl.Int64,
    "training_tokens": pl.Int64,
    "step": pl.Int64,
    "size_source": pl.String,  # where params / non_embedding_params came from (metrics/ingest/sizes.py)
    "x": pl.Float64,
    "x_axis": pl.String,
    "x_unit": pl.String,
}
TOKEN_ID_METRICS = ("token_edit_distance", "token_edit_distance_norm")
ABOVE_CHANCE_ITEM = ("multiple_choice_grade", "acc_norm")


@dataclass(frozen=True)
class AnalyzeConfig:
    """Every setting of `scalelens analyze` that changes a number or a table."""

    x: str = axes.AUTO
    x_reverse: bool = False
    directions: Mapping[str, str] = field(default_factory=dict)  # metric → "higher" / "lower" (aggregate metrics)
    above_chance: bool = False
    sizes: Path | None = None
    bootstrap: BootstrapConfig = BootstrapConfig()
    exact: ExactMatchConfig = ExactMatchConfig()
    bleu: BleuConfig = BleuConfig()
    n_slices: int = DEFAULT_SLICES


@dataclass(frozen=True)
class Inputs:
    """Every input read and checked; nothing computed or written yet."""

    scores: pl.DataFrame  # SCORES rows from multiple-choice / loglikelihood samples
    generations: pl.DataFrame  # GENERATIONS rows from generate_until samples
    aggregate: pl.DataFrame  # one row per (model, task, metric) of results files and tables, transformed
    models: pl.DataFrame  # MODELS
    x: str  # the scale axis's name
    extra_info: dict[str, MetricInfo]
    formats: tuple[str, ...]  # "PATH: kind" per input
    notes: tuple[str, ...]


@dataclass
class _Collected:
    results: dict[Path, ResultsFile] = field(default_factory=dict)
    given: set[Path] = field(default_factory=set)  # results files that are inputs (not only read to name a model)
    samples: list[tuple[SamplesFile, ResultsFile]] = field(default_factory=list)
    tables: list[PlainTable] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)


def _results_beside(path: Path, task: str, timestamp: str | None, collected: _Collected) -> ResultsFile:
    """The results file that names a samples file's model: same folder, same date (else the only one with the
    task)."""
    candidates = sorted(path.parent.glob("results*.json"))
    for candidate in candidates:
        if candidate.resolve() not in {p.resolve() for p in collected.results}:
            try:
                collected.results[candidate] = read_results(candidate)
            except InputError:
                continue
    beside = [r for p, r in collected.results.items() if p.parent.resolve() == path.parent.resolve()]
    same_date = [r for r in beside if timestamp and r.timestamp == timestamp]
    with_task = [r for r in beside if task in r.tasks]
    pick = same_date or with_task
    if len(pick) != 1:
        problem = "no results_*.json beside it names the model" if not pick else \
            f"{len(pick)} results files beside it could name the model ({', '.join(r.path.name for r in pick)})"
        raise bad(path, "model", f"{problem}; keep the samples file in the folder lm-eval wrote, with its results file")
    return pick[0]


def _collect(paths: Sequence[Path]) -> _Collected:
    collected = _Collected()
    found = detect.find_inputs(paths)
    for f in found:
        if f.kind == detect.RESULTS:
            collected.results[f.path] = read_results(f.path)
            collected.given.add(f.path)
    for f in found:
        if f.kind == detect.SAMPLES:
            task, timestamp = task_of(f.path)
            results = _results_beside(f.path, task, timestamp, collected)
            entry = results.tasks.get(task)
            samples = read_samples(f.path, entry.output_type if entry else None,
                                   entry.target_delimiter if entry else None)
            collected.samples.append((samples, results))
        elif f.kind == detect.TABLE:
            collected.tables.append(read_table(f.path))
        layout = f" ({collected.results[f.path].layout} layout)" if f.kind == detect.RESULTS else ""
        collected.formats.append(f"{f.path}: {f.kind}{layout}")
    return collected


def _twice(first: Path, second: Path, model: str, task: str) -> InputError:
    return InputError(f"{second}: model {model!r}, task {task!r}: already given by {first}; the same model twice "
                      "cannot be one point of a curve (remove one of them)")


def _one_value(task: str, field_name: str, values: dict[Path, object]) -> None:
    """One curve = one task at one setting: refuse two shot counts or task versions in one task."""
    given = [(p, v) for p, v in values.items() if v is not None]
    for path, value in given[1:]:
        if value != given[0][1]:
            raise bad(path, field_name, f"task {task!r} has {field_name} {value!r} here but {given[0][1]!r} in "
                      f"{given[0][0]}; one curve cannot mix them (analyse each setting separately)")


def read_inputs(paths: Sequence[Path], config: AnalyzeConfig = AnalyzeConfig()) -> Inputs:
    """Stage 1 (module docstring): every input parsed and checked, sizes and scale axis resolved."""
    if not paths:
        raise InputError("analyze: give at least one input (lm-eval output folder, results or samples file, table)")
    sizes_file = read_sizes(config.sizes) if config.sizes is not None else None
    collected = _collect(paths)
    notes: list[str] = []
    entries: dict[str, ModelEntry] = {}

    def enter(ref: ModelRef, path: Path, key: str | None = None) -> str:
        key = key or ref.key
        old = entries.get(key)
        entries[key] = ModelEntry(
            model=key, name=ref.name, revision=ref.revision or (old.revision if old else None),
            lm_eval_params=(old.lm_eval_params if old else None) or ref.num_parameters,
            lm_eval_file=(old.lm_eval_file if old and old.lm_eval_params else None) or (ref.path if ref.num_parameters
                                                                                       else None),
            search_dirs=tuple(dict.fromkeys([*(old.search_dirs if old else ()), path.parent, path.parent.parent])),
            files=(*(old.files if old else ()), path))
        return key

    # item level: samples (one per (model, task))
    item_source: dict[tuple[str, str], Path] = {}
    score_parts, generation_parts = [], []
    hashes: dict[str, dict[Path, frozenset]] = {}
    shots: dict[str, dict[Path, object]] = {}
    versions: dict[str, dict[Path, object]] = {}
    for samples, results in collected.samples:
        model = enter(results.model, samples.path)
        key = (model, samples.task)
        if key in item_source:
            raise _twice(item_source[key], samples.path, model, samples.task)
        item_source[key] = samples.path
        entry = results.tasks.get(samples.task)
        shots.setdefault(samples.task, {})[samples.path] = entry.n_shot if entry else None
        versions.setdefault(samples.task, {})[samples.path] = entry.version if entry else None
        documents = samples.doc_hashes or {i: "" for i in samples.scores["item_id"].unique().to_list()} | \
            {i: "" for i in samples.generations["item_id"].unique().to_list()}
        hashes.setdefault(samples.task, {})[samples.path] = frozenset(documents.items())
        score_parts.append(samples.scores.with_columns(pl.lit(model).alias("model")))
        generation_parts.append(samples.generations.with_columns(pl.lit(model).alias("model")))
    for task, by_file in hashes.items():
        if len(set(by_file.values())) > 1:
            (p1, h1), *rest = by_file.items()
            p2 = next(p for p, h in rest if h != h1)
            raise bad(p2, "doc_id/doc_hash", f"task {task!r} has other documents here than in {p1}; one curve cannot "
                      "mix tasks (score every model on the same documents)")

    # aggregate: results files (tasks without samples for that model) and tables
    agg_source: dict[tuple[str, str], Path] = {}
    agg_rows: list[dict] = []
    for path, results in collected.results.items():
        if path not in collected.given:
            continue  # read only to name the model of a samples file given alone
        model = None
        for task, entry in results.tasks.items():
            if (results.model.key, task) in item_source:
                continue
            model = model or enter(results.model, path)
            key = (model, task)
            if key in agg_source:
                raise _twice(agg_source[key], path, model, task)
            agg_source[key] = path
            shots.setdefault(task, {})[path] = entry.n_shot
            versions.setdefault(task, {})[path] = entry.version
            for metric, (mean, stderr) in entry.metrics.items():
                agg_rows.append({"model": model, "task": task, "metric": metric, "mean": mean, "stderr": stderr,
                                 "n_items": entry.n_items, "direction": None,
                                 "higher_is_better": entry.higher_is_better.get(directions.base_name(metric)),
                                 "n_choices": None, "n_shot": entry.n_shot, "source": str(path)})
    table_sizes: dict[str, Size] = {}
    table_models: list[pl.DataFrame] = []
    for table in collected.tables:
        for row in table.models.iter_rows(named=True):
            name, at, named_revision = row["model"].rpartition("@")  # NAME@REVISION, as ModelRef.key writes it
            revision = row.get("revision") or (named_revision if at else None)
            ref = ModelRef(name if at else row["model"], None if revision in (None, "main") else revision, None,
                           table.path)
            enter(ref, table.path, key=row["model"])
            size = Size(row.get("params"), row.get("non_embedding_params"), f"table {table.path}",
                        row.get("training_tokens"))
            if row["model"] in table_sizes and (table_sizes[row["model"]].params, table_sizes[row["model"]]
                                                .non_embedding_params) != (size.params, size.non_embedding_params):
                raise bad(table.path, "column 'params'", f"model {row['model']!r} has another size in "
                          f"{table_sizes[row['model']].source.removeprefix('table ')}")
            table_sizes[row["model"]] = size
        table_models.append(table.models)
        for (model, task), _ in table.rows.group_by("model", "task", maintain_order=True):
            key = (model, task)
            if key in agg_source or key in item_source:
                raise _twice(agg_source.get(key) or item_source[key], table.path, model, task)
            agg_source[key] = table.path
        for task, part in table.rows.group_by("task", maintain_order=True):
            shots.setdefault(task[0], {})[table.path] = part["n_shot"].drop_nulls().first() \
                if part["n_shot"].drop_nulls().len() else None
            if part["n_shot"].drop_nulls().n_unique() > 1:
                raise bad(table.path, "column 'n_shot'", f"task {task[0]!r} mixes shot counts; one curve cannot "
                          "mix them")
        agg_rows.extend(table.rows.with_columns(pl.lit(None, dtype=pl.Boolean).alias("higher_is_better"),
                                                pl.lit(str(table.path)).alias("source")).to_dicts())
    for task, by_file in shots.items():
        _one_value(task, "n-shot", by_file)
    for task, by_file in versions.items():
        _one_value(task, "versions", by_file)
    mixed = {t for _, t in item_source} & {t for _, t in agg_source}
    if mixed:
        task = sorted(mixed)[0]
        with_items = next(p for (m, t), p in item_source.items() if t == task)
        only_mean = next(p for (m, t), p in agg_source.items() if t == task)
        raise bad(only_mean, "task", f"task {task!r} has per-item samples in {with_items} but only aggregate results "
                  "here; one curve cannot mix item-level and aggregate input (give every model's samples, or none)")

    # sizes and the scale axis
    for model, entry in list(entries.items()):
        if model in table_sizes:
            entries[model] = replace(entry, table_size=table_sizes[model])
    model_rows = []
    for model, entry in entries.items():
        size = resolve(entry, sizes_file)
        model_rows.append({"model": model, "revision": entry.revision, "params": size.params,
                           "non_embedding_params": size.non_embedding_params,
                           "training_tokens": size.training_tokens, "step": parse_step(entry.revision),
                           "size_source": size.source, **size.extra})
        counts = ", ".join(f"{v:,} {k}" for k, v in (("parameters", size.params),
                                                     ("non-embedding", size.non_embedding_params)) if v is not None)
        notes.append(f"size of {model}: {counts} (from {size.source})")
    models = pl.DataFrame(model_rows, infer_schema_length=None).cast(
        {k: v for k, v in MODELS.items() if k in ("params", "non_embedding_params", "training_tokens", "step")})
    for extra in table_models:
        more = [c for c in extra.columns if c not in models.columns]
        if "step" in extra.columns:
            models = models.join(extra.select("model", pl.col("step").alias("_step")), on="model", how="left") \
                .with_columns(pl.coalesce("step", pl.col("_step").cast(pl.Int64)).alias("step")).drop("_step")
        if more:
            models = models.join(extra.select("model", *more), on="model", how="left")
    models, x_name, axis_notes = axes.scale_axis(models, config.x, config.x_reverse)
    notes.extend(axis_notes)
    kept = set(models["model"].to_list())

    # assemble
    scores = pl.concat(score_parts, how="diagonal_relaxed") if score_parts else pl.DataFrame()
    generations = pl.concat(generation_parts, how="diagonal_relaxed") if generation_parts else pl.DataFrame()
    size_columns = models.select("model", "params", "non_embedding_params")
    if scores.height:
        scores = validate(scores.filter(pl.col("model").is_in(kept)).join(size_columns, on="model"), SCORES,
                          "scores").select(list(SCORES))
    if generations.height:
        generations = validate(generations.filter(pl.col("model").is_in(kept)).join(size_columns, on="model"),
                               GENERATIONS, "generations").select(list(GENERATIONS))
    aggregate = pl.DataFrame(agg_rows, infer_schema_length=None) if agg_rows else pl.DataFrame()
    extra_info: dict[str, MetricInfo] = {}
    if aggregate.height:
        aggregate = aggregate.cast({"mean": pl.Float64, "stderr": pl.Float64, "n_items": pl.Int64,
                                    "n_choices": pl.Int64, "n_shot": pl.Int64, "direction": pl.String,
                                    "higher_is_better": pl.Boolean}).filter(pl.col("model").is_in(kept))
        aggregate, transform_notes = directions.transform(aggregate, config.above_chance)
        notes.extend(transform_notes)
        extra_info, direction_notes = directions.aggregate_info(aggregate, config.directions)
        notes.extend(direction_notes)
        aggregate = aggregate.with_columns(
            pl.struct("transform", "n_shot").map_elements(
                lambda r: directions.signature(r["transform"], r["n_shot"]), return_dtype=pl.String
            ).alias("signature"))
        tasks = sorted(set(aggregate["task"].to_list()))
        notes.append(f"aggregate input (means and standard errors) for {len(tasks)} task(s): intervals are parametric "
                     "from the reported stderr; per-item correlations and difficulty slices need per-item samples "
                     "and are not computed for them")
    elif config.directions:
        raise InputError(f"--direction {next(iter(config.directions))}: directions are set only for metrics of "
                         "results files and tables; this input has none")
    if config.above_chance and scores.height:
        for name in ABOVE_CHANCE_ITEM:
            base = MetricInfo(DISCONTINUOUS, HIGHER, f"{name} rescaled above chance per item: (value − 1/k) / "
                              "(1 − 1/k), k the item's number of choices; 0 at chance, 1 when correct.",
                              "scalelens (issue 9): accuracy above chance")
            extra_info[f"{name}_above_chance"] = base
    return Inputs(scores, generations, aggregate, models, x_name, extra_info, tuple(collected.formats), tuple(notes))


def _above_chance_items(scores: pl.DataFrame, item_metrics: pl.DataFrame) -> pl.DataFrame:
    """Per-item (v − 1/k) / (1 − 1/k) of multiple_choice_grade and acc_norm, k the item's number of choices."""
    keys = ["model", "task", "item_id"]
    k = scores.filter(pl.col("item_kind") == MULTIPLE_CHOICE).group_by(keys).agg(pl.len().alias("k"))
    rows = item_metrics.filter(pl.col("metric").is_in(ABOVE_CHANCE_ITEM)).join(k, on=keys)
    chance = 1.0 / pl.col("k")
    return rows.with_columns(
        (pl.col("metric") + "_above_chance").alias("metric"),
        ((pl.col("value") - chance) / (1 - chance)).alias("value"),
        pl.lit(directions.ABOVE_CHANCE_TRANSFORM + " per item").alias("signature"),
    ).select(list(ITEM_METRICS))


def analyze(inputs: Inputs, config: AnalyzeConfig = AnalyzeConfig()) -> tuple[Analysis, list[str]]:
    """Stage 2 (module docstring): the analysis and the notes on what is unavailable."""
    x = inputs.x
    axis = inputs.models.select("model", x) if x not in ("params", "non_embedding_params") else None
    curves, notes = [], []
    item_metrics = pl.DataFrame(schema=ITEM_METRICS)
    if inputs.scores.height or inputs.generations.height:
        parts = []
        if inputs.scores.height:
            parts.append(choice_metrics(inputs.scores))
            if config.above_chance:
                parts.append(_above_chance_items(inputs.scores, parts[0]))
        if inputs.generations.height:
            parts.append(text_metrics(inputs.generations, config.exact, config.bleu))
        item_metrics = pl.concat([p.select(list(ITEM_METRICS)) for p in parts])
        rows = item_metrics if axis is None else item_metrics.join(axis, on="model", how="left")
        curves = item_curves(rows, config.bootstrap, inputs.extra_info, x=x)
        if inputs.generations.height:
            curves = with_corpus_metrics(curves, inputs.generations, config.bleu)
        unavailable = item_metrics.group_by("metric").agg(pl.col("value").is_not_null().any().alias("any"))
        missing = set(unavailable.filter(~pl.col("any"))["metric"].to_list())
        per_token = [m for m in PER_TOKEN_METRICS if m in missing]
        if per_token:
            notes.append(f"unavailable without per-token log-probs: {', '.join(per_token)} (lm-eval samples keep "
                         "only each continuation's summed log-likelihood; their rows have no mean and n_items 0)")
        token_ids = [m for m in TOKEN_ID_METRICS if m in missing]
        if token_ids:
            notes.append(f"unavailable without token ids: {', '.join(token_ids)} (lm-eval samples keep the generated "
                         "text only; exact match, BLEU, chrF and character edit distance are computed)")
    if inputs.aggregate.height:
        table = inputs.aggregate.join(inputs.models.select("model", "params", "non_embedding_params",
                                                           *([x] if axis is not None else [])), on="model")
        curves.extend(mean_curves(table.select("model", "params", "non_embedding_params", *([x] if axis is not None
                                                                                           else []),
                                               "task", "metric", "mean", "stderr", "n_items", "signature"),
                                  config.bootstrap, inputs.extra_info, x=x))
    return analyse_curves(curves, item_metrics, n_slices=config.n_slices), notes


def check_out(out: Path) -> None:
    """Refuse an output folder that is a file, or a `scalelens score` run whose tables analyze would replace."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; name a folder")
    scores = out / SCORES_FILE
    if scores.exists():
        try:
            columns = pl.read_parquet_schema(scores)
        except Exception:  # noqa: BLE001 - unreadable: not a scored run's table either way
            columns = {}
        if all(c in columns for c in PROVENANCE):
            raise InputError(f"--out {out}: holds a `scalelens score` run (scores.parquet with provenance); analyze "
                             "would replace its scores, so write to another folder")


def write(result: Analysis, inputs: Inputs, out: Path, *, figures: bool = True) -> Analysis:
    """Stage 3: every table of the analysis and of the inputs (atomically), and the figures."""
    models = inputs.models.with_columns(pl.col(inputs.x).cast(pl.Float64).alias("x"), pl.lit(inputs.x).alias("x_axis"),
                                        pl.lit(axis_unit(inputs.x)).alias("x_unit"))
    tables = [(frame, name) for frame, name in (
        (inputs.scores, SCORES_FILE), (inputs.generations, GENERATIONS_FILE),
        (validate(models, MODELS, "models").select(list(MODELS)), MODELS_FILE)) if frame.height]
    result = write_analysis(result, out, figures=figures)
    written = list(result.written)
    for frame, name in tables:
        write_parquet_atomic(frame, out / name)
        written.append(out / name)
    return replace(result, written=tuple(written))


def analyze_inputs(paths: Sequence[Path], out: Path, config: AnalyzeConfig = AnalyzeConfig(), *,
                   figures: bool = True) -> tuple[Analysis, Inputs, list[str]]:
    """Read and check every input, then analyse and write: (analysis, inputs, notes). Nothing is written when an
    input is bad or the output folder is refused."""
    check_out(out)
    inputs = read_inputs([Path(p) for p in paths], config)
    result, notes = analyze(inputs, config)
    return write(result, inputs, out, figures=figures), inputs, [*inputs.notes, *notes]
