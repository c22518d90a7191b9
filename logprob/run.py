"""Tasks × models → score and generation tables: checked before work, one writer per folder, resumable by content.

A ladder run can take hours on real checkpoints, so nothing finished is lost and nothing stale is kept:

1. `open_run` checks every option, task, model and the output folder before any model loads (`preflight`), takes
   the folder's lock (`lock`), reads and checks the tables already there (`metrics.folder`), and plans the run.
2. The plan's unit of work is one (model, task) pair: `score_unit` scores it (and generates, for generative items).
   A finished unit in the folder is reused only when its `model_fingerprint` (the checkpoint's files), `task_hash`
   (the items as scored) and `score_config` (every setting that can change a number) all equal this run's.
   Otherwise it is rescored, with one warning line saying why, or the run is refused before work (decision table
   in README, "What a run folder guarantees").
3. `Run.execute` loads one model at a time, scores its units, and rewrites both tables after each model: the rows
   of every other model and task as they were, this model's new units replaced, to a temporary file renamed over
   the table in one `os.replace`. Rows of models or tasks this run does not name are never removed. A model that
   cannot be loaded is reported and skipped; the others are scored, and `RunResult.failed` names it.
4. Under a launcher (`logprob.distributed`), rank 0 alone checks, locks, reads and writes the folder; it sends the
   checked run to the other ranks, and per model what to compute. Every rank loads the model and scores its share
   of the model's work (a plan balanced by tokens); rank 0 gathers the rows, puts them in item order and writes
   them, so the tables equal one process's. `run.json` (`logprob.record`) says what each rank did.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from logprob.config import ModelSpec, ScoreConfig
from logprob.distributed import SINGLE, World, generation_costs, plan_shares, scoring_costs
from logprob.fingerprint import model_fingerprint
from logprob.lock import FolderLock, current_command
from logprob.preflight import ResolvedModel, check_free_space, check_run, estimate_unit_bytes, hub_snapshot, one_line
from logprob.record import RUN_FILE, RunRecord
from logprob.tasks import Task
from metrics.folder import FolderError, check_provenance, read_table, settings_difference
from metrics.schema import (
    GENERATIONS,
    GENERATIONS_FILE,
    PROVENANCE,
    SCORES,
    SCORES_FILE,
    curve_label,
    temporary_path,
    write_parquet_atomic,
)

log = logging.getLogger(__name__)

__all__ = ["PROVENANCE", "ModelProgress", "ModelsFailed", "Run", "RunRefused", "RunResult", "Unit", "open_run",
           "score_models", "score_unit"]

#: PROVENANCE (defined in metrics.schema, where metrics.folder reads it too) holds the columns written beside the
#: SCORES / GENERATIONS columns: model_source, revision, dtype, model_fingerprint, task_hash, score_config.

#: What to do when a run would mix its results with the folder's.
MIX_FIX = "add --restart to discard the folder's tables and rescore, or use another --out"


@dataclass(frozen=True)
class ModelProgress:
    """What a progress display needs to know about one model's run."""

    model: str
    index: int  # 0-based position in the ladder
    n_models: int
    n_requests: int  # (item, continuation) pairs to score, plus generative items to generate (if skipped: done);
    # under several processes, rank 0's share
    skipped: bool  # every unit already complete in the output folder: nothing to load
    world_size: int = 1  # processes sharing the model's work


ProgressFactory = Callable[[ModelProgress], Callable[[int], None]]


@dataclass(frozen=True)
class Unit:
    """One (model, task) pair and what of it this run computes."""

    model: ResolvedModel
    task: Task
    task_hash: str
    scores: bool  # its score rows are computed (else the folder's are reused)
    generations: bool  # its generation rows are computed
    reason: str | None = None  # why the folder's earlier result is not reused, when there is one
    stale_scores: bool = False  # the folder holds score rows of this unit that are not reused: retired before work
    stale_generations: bool = False  # likewise generation rows (retired even when not regenerated)

    @property
    def generative_items(self) -> tuple:
        return tuple(it for it in self.task.items if it.kind == "generative")


@dataclass(frozen=True)
class RunResult:
    scores: pl.DataFrame  # the folder's whole score table after the run (empty on ranks other than 0)
    generations: pl.DataFrame  # the folder's whole generation table (empty when there is none)
    n_computed: int  # (model, task) units scored or generated by this run
    n_reused: int  # units found complete in the folder
    failed: tuple[tuple[str, str], ...] = ()  # (model, one-line reason) of each model that could not be loaded


def score_unit(loaded, unit: Unit, config: ScoreConfig, advance: Callable[[int], None], *, budget=None,
               items: Sequence | None = None,
               generative: Sequence | None = None) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """Score one (model, task) unit: its score rows and/or generation rows, with the task column but without the
    model and provenance columns (the caller's). `items` / `generative` restrict the work to a share of the task's
    items / generative items (a rank's share; default: all); `budget` is the model's shared `device.TokenBudget`."""
    from logprob.generate import generate_items
    from logprob.score import score_items

    keys = {"task": pl.lit(unit.task.name), "formulation": pl.lit(unit.task.formulation)}
    scores = gens = None
    if unit.scores:
        share = unit.task.items if items is None else items
        scores = score_items(loaded, share, config, advance, budget=budget).with_columns(**keys)
    if unit.generations:
        from logprob.reasoning import generation_config, read_answers

        share = unit.generative_items if generative is None else generative
        settings = generation_config(config, unit.task)  # a chain of thought's own budget and stop sequences
        gens = generate_items(loaded, share, settings, advance, budget=budget)
        gens = read_answers(loaded, unit.task, gens, config, budget=budget).with_columns(**keys)
    return scores, gens


def unknown_characters(tokenizer, texts: Sequence[str]) -> list[str]:
    """Characters of `texts` the tokenizer can only encode as its unknown token, sorted (empty when it has none).

    Texts are encoded whole first; only characters of a text whose encoding holds the unknown id are encoded alone.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not texts:
        return []
    texts = sorted(set(texts))
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    suspects = sorted({c for text, ids in zip(texts, encoded, strict=True) if unk in ids for c in text})
    if not suspects:
        return []
    alone = tokenizer(suspects, add_special_tokens=False)["input_ids"]
    return [c for c, ids in zip(suspects, alone, strict=True) if unk in ids]


def _warn_unknown_characters(loaded, label: str, task: Task) -> None:
    texts = [t for it in task.items for t in (it.context, *it.continuations)]
    chars = unknown_characters(loaded.tokenizer, texts)
    if chars:
        shown = "".join(chars[:40]) + ("..." if len(chars) > 40 else "")
        log.warning("%s: its tokenizer has no token for %d character(s) of task %s and reads them as %s: %r; "
                    "texts that differ only there score the same", label, len(chars), task_label(task),
                    getattr(loaded.tokenizer, "unk_token", "<unk>"), shown)


#: A unit's task key in the tables: its task and formulation (one task can be scored posed several ways).
TASK_KEY = pl.concat_str([pl.col("task"), pl.col("formulation")], separator="\x1f")


def task_key(task: Task) -> str:
    """The value of TASK_KEY for a task's rows."""
    return f"{task.name}\x1f{task.formulation}"


def task_label(task: Task) -> str:
    """A task for people: its name, and its formulation unless it is the task as written (`curve_label`)."""
    return curve_label(task.name, task.formulation)


def _rows(table: pl.DataFrame | None, label: str, key: str) -> pl.DataFrame | None:
    if table is None:
        return None
    rows = table.filter((pl.col("model") == label) & (TASK_KEY == key))
    return None if rows.is_empty() else rows


def _stale_reason(rows: pl.DataFrame | None, fingerprint: str | None, digest: str,
                  expected: pl.DataFrame) -> str | None:
    """Why the folder's rows of a unit cannot be reused ("" when there are none), or None when they can."""
    if rows is None:
        return ""
    if rows["model_fingerprint"][0] != fingerprint:
        return f"the checkpoint differs from the one scored earlier (model_fingerprint {rows['model_fingerprint'][0]})"
    if rows["task_hash"][0] != digest:
        return f"the task file changed since it was scored (task_hash {rows['task_hash'][0]} → {digest})"
    keys = expected.columns
    if rows.height != expected.height or not expected.join(rows.select(keys), on=keys, how="anti").is_empty():
        return "its earlier results are incomplete"
    return None


class Run:
    """A checked, locked, planned run; `execute` does the work. Built by `open_run` (on ranks other than 0: without
    the folder's tables, which only rank 0 reads and writes)."""

    def __init__(self, out_dir: Path, models: Sequence[ResolvedModel], tasks: Sequence[Task],
                 hashes: Sequence[str], config: ScoreConfig, dtype: str, generate: bool,
                 scores: pl.DataFrame | None, gens: pl.DataFrame | None, world: World = SINGLE) -> None:
        self.out_dir, self.models, self.tasks, self.hashes = out_dir, tuple(models), tuple(tasks), tuple(hashes)
        self.config, self.dtype, self.generate = config, dtype, generate
        self.scores, self.gens = scores, gens
        self.world = world
        self.scores_settings = config.settings(dtype, generation=False)
        self.gens_settings = config.settings(dtype, generation=True)
        self.labels = {m.label for m in self.models}
        self.task_keys = {task_key(t) for t in self.tasks}
        self._expected = {task_key(t): self._keys(t) for t in self.tasks}
        self._plans: dict[str, list[Unit]] | None = None

    # ------------------------------------------------------------------------------------------------ planning

    @staticmethod
    def _keys(task: Task) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(item_id, choice) of the task's score rows; item_id of its generation rows."""
        scores = pl.DataFrame(
            [(it.item_id, c) for it in task.items for c in range(len(it.continuations))],
            schema={"item_id": pl.String, "choice": pl.Int32}, orient="row",
        )
        gens = pl.DataFrame({"item_id": [it.item_id for it in task.items if it.kind == "generative"]},
                            schema={"item_id": pl.String})
        return scores, gens

    def _generates(self, task: Task) -> bool:
        return self.generate and any(it.kind == "generative" for it in task.items)

    def units(self, model: ResolvedModel, fingerprint: str | None) -> list[Unit]:
        """Every (model, task) unit of this run, with what must be computed and why."""
        units = []
        for task, digest in zip(self.tasks, self.hashes, strict=True):
            score_keys, gen_keys = self._expected[task_key(task)]
            why_scores = _stale_reason(_rows(self.scores, model.label, task_key(task)), fingerprint, digest, score_keys)
            why_gens = _stale_reason(_rows(self.gens, model.label, task_key(task)), fingerprint, digest, gen_keys)
            generations = self._generates(task) and why_gens is not None
            reason = why_scores or (why_gens if generations else None) or None
            units.append(Unit(model, task, digest, why_scores is not None, generations, reason,
                              stale_scores=bool(why_scores), stale_generations=bool(why_gens)))
        return units

    def plans(self) -> dict[str, list[Unit]]:
        """Every model's units at the fingerprint known before loading, by label: computed once, from the tables as
        read (the checks, the space estimate and the work all plan from them before any row is retired)."""
        if self._plans is None:
            self._plans = {m.label: self.units(m, m.fingerprint) for m in self.models}
        return self._plans

    def check_settings(self) -> None:
        """The folder keeps one set of number-changing settings per table: other settings are refused."""
        checks = [(self.scores, SCORES_FILE, self.scores_settings)]
        if any(self._generates(t) for t in self.tasks):
            checks.append((self.gens, GENERATIONS_FILE, self.gens_settings))
        for table, name, wanted in checks:
            if table is not None and table.height and table["score_config"][0] != wanted:
                diff = settings_difference(table["score_config"][0], wanted)
                raise FolderError(f"{self.out_dir / name}: scored earlier with other settings (folder vs now: "
                                  f"{diff}); rerun with the folder's options, or {MIX_FIX}")

    def _held(self) -> pl.DataFrame:
        columns = ("model", "task", "formulation", "model_fingerprint", "task_hash")
        parts = [t.select(columns) for t in (self.scores, self.gens) if t is not None]
        held = pl.concat(parts) if parts else pl.DataFrame(schema={c: pl.String for c in columns})
        return held.with_columns(TASK_KEY.alias("key"))

    def check_tasks_unmixed(self) -> None:
        """A task this run scores anew must not stay in another version for models the run does not name."""
        held = self._held()
        for task, digest in zip(self.tasks, self.hashes, strict=True):
            others = held.filter((pl.col("key") == task_key(task)) & (pl.col("task_hash") != digest)
                                 & ~pl.col("model").is_in(list(self.labels)))
            if others.height:
                models = sorted(others["model"].unique().to_list())
                raise FolderError(f"task {task_label(task)}: {task.source} differs from the version scored in "
                                  f"{self.out_dir} for model(s) {', '.join(models)}, which this run does not name; "
                                  f"add them with --model to rescore them too, or {MIX_FIX}")

    def check_checkpoint_unmixed(self, label: str, fingerprint: str | None, held: pl.DataFrame | None = None) -> None:
        """A model this run scores from another checkpoint must not keep the old checkpoint's other tasks. `held`:
        the tables' `_held()`, when the caller already has it."""
        if fingerprint is None:
            return
        held = self._held() if held is None else held
        others = held.filter((pl.col("model") == label) & (pl.col("model_fingerprint") != fingerprint)
                             & ~pl.col("key").is_in(list(self.task_keys)))
        if others.height:
            tasks = sorted(others["task"].unique().to_list())
            raise FolderError(f"model {label}: the folder holds its results for task(s) {', '.join(tasks)} from "
                              f"another checkpoint (model_fingerprint {others['model_fingerprint'][0]}, now "
                              f"{fingerprint}), which this run does not name; add them with --task to rescore "
                              f"them too, or {MIX_FIX}")

    def check(self) -> None:
        """Refuse, before any work, every run that would leave the folder holding a mix."""
        self.check_settings()
        self.check_tasks_unmixed()
        held = self._held()
        for model in self.models:
            self.check_checkpoint_unmixed(model.label, model.fingerprint, held)
        for model in self.models:
            if model.fingerprint is not None:
                _warn_rescoring(self.plans()[model.label])

    def new_bytes(self) -> int:
        """An estimate of the bytes this run adds to the tables (preflight.estimate_unit_bytes)."""
        return sum(estimate_unit_bytes(u.task, self.config, scores=u.scores, generations=u.generations)
                   for units in self.plans().values() for u in units)

    # ------------------------------------------------------------------------------------------------ work

    def execute(self, progress: ProgressFactory | None = None) -> RunResult:
        """Score every unit still to do, one model at a time, rewriting both tables after each model. Every rank
        runs this; only rank 0 touches the folder (module docstring, 4)."""
        main = self.world.is_main
        record = RunRecord(self.out_dir, self.world, current_command()) if main else None
        if record:
            record.write()
        try:
            result = self._execute(progress, record)
        except BaseException as exc:
            if record:
                record.finish("stopped", one_line(exc) if isinstance(exc, Exception) else type(exc).__name__)
            raise
        if record:
            record.finish("partial" if result.failed else "done")
        return result

    def _execute(self, progress: ProgressFactory | None, record: RunRecord | None) -> RunResult:
        from logprob.model import ModelLoadError, load_model

        main = self.world.is_main
        plans = self.plans() if main else {}
        if main:
            self._retire([u for m in self.models if m.fingerprint is not None for u in plans[m.label]])
        n_computed = n_reused = 0
        failed: list[tuple[str, str]] = []
        for index, model in enumerate(self.models):
            units = plans.get(model.label, [])
            todo = [u for u in units if u.scores or u.generations]
            if not self.world.broadcast(bool(todo)):
                if main:
                    n_requests = sum(sum(len(it.continuations) for it in u.task.items)
                                     + (len(u.generative_items) if self._generates(u.task) else 0) for u in units)
                    if progress:
                        progress(ModelProgress(model.label, index, len(self.models), n_requests, skipped=True))
                    log.info("%s: every task already scored in %s with this checkpoint and settings", model.label,
                             self.out_dir)
                    n_reused += len(units)
                    record.add_model(self._entry(model, "reused"))
                continue
            loaded, error = None, None
            try:
                loaded = load_model(self._load_spec(model))
            except ModelLoadError as e:
                error = one_line(e)
            errors = [e for e in self.world.all_gather(error) if e]
            if errors:
                del loaded
                failed.append((model.label, errors[0]))
                if main:
                    log.warning("%s: could not be loaded, so it is skipped (the run goes on): %s", model.label,
                                errors[0])
                    record.add_model(self._entry(model, "failed", error=errors[0]))
                continue
            fingerprint = model.fingerprint
            if main and fingerprint is None:  # a hub model that was not in the cache: fingerprint what was loaded
                fingerprint = model_fingerprint(hub_snapshot(model.hub_id, model.spec.revision) or model.local_dir)
                self.check_checkpoint_unmixed(model.label, fingerprint)
                units = self.units(model, fingerprint)
                todo = [u for u in units if u.scores or u.generations]
                _warn_rescoring(units)
                self._retire(units)
            keys = self.world.broadcast([(self.tasks.index(u.task), u.scores, u.generations) for u in todo])
            if main:
                n_reused += len(units) - len(todo)
                n_computed += len(todo)
            if keys:
                todo = todo if main else [Unit(model, self.tasks[t], self.hashes[t], s, g) for t, s, g in keys]
                self._run_model(loaded, model, fingerprint, todo, progress, index, record)
            elif main:
                record.add_model(self._entry(model, "reused"))
            del loaded
        scores = self.scores if self.scores is not None else pl.DataFrame(schema={**SCORES, **PROVENANCE})
        gens = self.gens if self.gens is not None else pl.DataFrame(schema={**GENERATIONS, **PROVENANCE})
        return RunResult(scores, gens, n_computed, n_reused, tuple(failed))

    def _load_spec(self, model: ResolvedModel) -> ModelSpec:
        """The spec to load on this rank: under a launcher, on this rank's own device."""
        spec = model.load_spec
        return dataclasses.replace(spec, device=self.world.device) if self.world.size > 1 else spec

    def _entry(self, model: ResolvedModel, status: str, **more) -> dict:
        """A model's run.json entry (logprob.record)."""
        return {"model": model.label, "source": model.spec.name_or_path, "revision": model.spec.revision,
                "step": model.step, "tokens_seen": model.tokens_seen, "status": status, "error": None, **more}

    def _retire(self, units: Sequence[Unit]) -> None:
        """Remove the folder's rows of units that are not reused, before any new row is written, so that the folder
        on disk never holds two versions of a model or task (a run killed at any moment leaves it consistent).
        Generation rows go first: a model missing from the generation table is a consistent state."""
        for table, flag, path in (("gens", "stale_generations", GENERATIONS_FILE),
                                  ("scores", "stale_scores", SCORES_FILE)):
            stale = [u for u in units if getattr(u, flag)]
            if not stale:
                continue
            dropped = [f"{u.model.label} × {task_label(u.task)}" for u in stale if table == "gens" and not u.generations]
            if dropped:
                log.warning("dropping generations of %s: made from an earlier checkpoint or task file, and not "
                            "regenerated by this run (--no-generate)", ", ".join(dropped))
            drop = pl.any_horizontal([(pl.col("model") == u.model.label) & (TASK_KEY == task_key(u.task))
                                      for u in stale])
            frame = getattr(self, table).filter(~drop)
            setattr(self, table, frame)
            _write(frame, self.out_dir / path)

    def _plan(self, loaded, todo: list[Unit]) -> tuple[list[list[tuple[int, int, int]]], dict[tuple[int, int, int], int]]:
        """Per rank, its pieces (unit index, 0 = scoring / 1 = generation, item index within the unit's items or
        generative items), and every piece's tokens (`logprob.distributed`). Scoring and generation are dealt
        separately."""
        max_length = self.config.max_length or loaded.max_length
        shares: list[list[tuple[int, int, int]]] = [[] for _ in range(self.world.size)]
        cost: dict[tuple[int, int, int], int] = {}
        for kind in (0, 1):
            pieces, costs = [], []
            for u, unit in enumerate(todo):
                if kind == 0 and unit.scores:
                    found = scoring_costs(loaded.tokenizer, unit.task.items, max_length)
                elif kind == 1 and unit.generations:
                    found = generation_costs(loaded.tokenizer, unit.generative_items, max_length,
                                             self.config.max_new_tokens)
                else:
                    continue
                pieces += [(u, kind, i) for i in range(len(found))]
                costs += found
            cost.update(zip(pieces, costs, strict=True))
            for rank, share in enumerate(plan_shares(costs, self.world.size)):
                shares[rank] += [pieces[i] for i in share]
        return shares, cost

    def _run_model(self, loaded, model: ResolvedModel, fingerprint: str | None, todo: list[Unit],
                   progress: ProgressFactory | None, index: int, record: RunRecord | None) -> None:
        from logprob.device import TokenBudget

        world, main = self.world, self.world.is_main
        budget = TokenBudget.resolve(loaded, self.config.token_budget)
        shares, cost = self._plan(loaded, todo)
        mine = shares[world.rank]
        per_unit = [([i for u2, k, i in mine if u2 == u and k == 0], [i for u2, k, i in mine if u2 == u and k == 1])
                    for u in range(len(todo))]
        n_mine = sum(len(todo[u].task.items[i].continuations) if k == 0 else 1 for u, k, i in mine)
        info = ModelProgress(model.label, index, len(self.models), n_mine, skipped=False, world_size=world.size)
        advance = progress(info) if (progress and main) else (lambda n: None)
        started = time.perf_counter()
        results, error = [], None
        try:
            for unit, (score_idx, gen_idx) in zip(todo, per_unit, strict=True):
                if main:
                    _warn_unknown_characters(loaded, model.label, unit.task)
                whole = world.size == 1
                items = None if whole else [unit.task.items[i] for i in score_idx]
                gens = None if whole else [unit.generative_items[i] for i in gen_idx]
                results.append(score_unit(loaded, unit, self.config, advance, budget=budget, items=items,
                                          generative=gens))
        except Exception as exc:
            if world.size == 1:
                raise
            error = (isinstance(exc, (ValueError, OSError)), one_line(exc), f"{type(exc).__name__} on rank {world.rank}")
        stats = {"rank": world.rank, "device": str(loaded.device), "requests": n_mine,
                 "tokens": sum(cost[p] for p in mine), "seconds": round(time.perf_counter() - started, 3),
                 "token_budget_final": budget.value}
        errors = [e for e in world.all_gather(error) if e]
        if errors:  # every rank stops with the first failing rank's error: a refusal stays one line, a bug a bug
            refusal, text, where = errors[0]
            raise RankFailed(text) if refusal else RuntimeError(f"{where}: {text}")
        gathered = world.gather((results, stats))
        if not main:
            return
        if world.size > 1:
            results = [_in_item_order(unit, [parts[u] for parts, _ in gathered]) for u, unit in enumerate(todo)]
        self._write_model(loaded, model, fingerprint, todo, results, budget)
        record.set_device(loaded.device.type)
        record.add_model(self._entry(
            model, "scored", tasks=[task_label(u.task) for u in todo], dtype=str(loaded.dtype).removeprefix("torch."),
            token_budget={"initial": budget.initial, "source": budget.source},
            placement=sorted(set(loaded.placement.values())) if loaded.placement else None,
            ranks=[s for _, s in gathered]))

    def _write_model(self, loaded, model: ResolvedModel, fingerprint: str | None, todo: list[Unit],
                     results: list, budget) -> None:
        base = {
            "model": model.label,
            "params": loaded.params,
            "non_embedding_params": loaded.non_embedding_params,
            "model_source": model.spec.name_or_path,
            "revision": model.spec.revision,
            "dtype": str(loaded.dtype).removeprefix("torch."),
            "model_fingerprint": fingerprint,
            "step": model.step,
            "tokens_seen": model.tokens_seen,
            "token_budget": budget.initial,
        }
        new_scores, new_gens = [], []
        for unit, (scores, gens) in zip(todo, results, strict=True):
            if scores is not None:
                prov = {**base, "task_hash": unit.task_hash, "score_config": self.scores_settings}
                new_scores.append(_with_provenance(scores, prov, SCORES))
            if gens is not None:
                prov = {**base, "task_hash": unit.task_hash, "score_config": self.gens_settings}
                new_gens.append(_with_provenance(gens, prov, GENERATIONS))
        # Scores first: until the generations follow, the model is only missing from the generation table.
        if new_scores:
            self.scores = _replace(self.scores, new_scores, model.label, [task_key(u.task) for u in todo if u.scores])
            _write(self.scores, self.out_dir / SCORES_FILE)
        if new_gens:
            done = [task_key(u.task) for u in todo if u.generations]
            self.gens = _replace(self.gens, new_gens, model.label, done, GENERATIONS)
            _write(self.gens, self.out_dir / GENERATIONS_FILE)


class RankFailed(ValueError):
    """A rank's one-line refusal (a ValueError or OSError there, such as out of memory on one segment), raised on
    every rank."""


def _in_item_order(unit: Unit, parts: list[tuple[pl.DataFrame | None, pl.DataFrame | None]]) -> tuple:
    """One unit's rows from every rank → the rows one process writes: items in task order, choices in order."""
    order = {item.item_id: i for i, item in enumerate(unit.task.items)}

    def merge(frames: list[pl.DataFrame | None], keys: list[str]) -> pl.DataFrame | None:
        frames = [f for f in frames if f is not None]
        if not frames:
            return None
        whole = pl.concat(frames)
        at = pl.col("item_id").replace_strict(order, return_dtype=pl.Int64)
        return whole.with_columns(_at=at).sort("_at", *keys).drop("_at")

    return merge([p[0] for p in parts], ["choice"]), merge([p[1] for p in parts], [])


def _with_provenance(frame: pl.DataFrame, provenance: dict, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Add the model and provenance columns and put every column in schema order with schema dtypes."""
    full = {**schema, **PROVENANCE}
    frame = frame.with_columns(pl.lit(v).alias(k) for k, v in provenance.items())
    return frame.select(pl.col(name).cast(dtype) for name, dtype in full.items())


def _replace(existing: pl.DataFrame | None, new: list[pl.DataFrame], label: str, keys: list[str],
             schema: dict[str, pl.DataType] = SCORES) -> pl.DataFrame:
    """Every row as it was, except this model's rows of the task keys `keys`, which are replaced by `new`."""
    kept = [] if existing is None else [existing.filter(~((pl.col("model") == label) & TASK_KEY.is_in(keys)))]
    parts = kept + new
    return pl.concat(parts) if parts else pl.DataFrame(schema={**schema, **PROVENANCE})


def _write(frame: pl.DataFrame, path: Path) -> None:
    """write_parquet_atomic with a failure said in one line (the temporary file is already gone)."""
    try:
        write_parquet_atomic(frame, path)
    except (OSError, pl.exceptions.PolarsError) as e:
        text = str(e)
        if getattr(e, "errno", None) == errno.ENOSPC or "os error 28" in text or "No space left" in text:
            raise OSError(errno.ENOSPC, f"{path}: the disk is full; the table is unchanged (models finished "
                          "before are kept); free some space and rerun the same command to resume") from None
        reason = (text.strip().splitlines() or [type(e).__name__])[0][:120]
        raise OSError(f"{path}: could not be written ({reason}); the table is unchanged") from None


def _warn_rescoring(units: Sequence[Unit]) -> None:
    for unit in units:
        if unit.reason:
            log.warning("%s × %s: rescoring: %s", unit.model.label, task_label(unit.task), unit.reason)


def _remove_leftovers(out_dir: Path) -> None:
    """Temporary files of a run that was killed mid-write (`metrics.schema.temporary_path`, any process id); safe to
    remove under the lock, as no other run writes here."""
    for name in (SCORES_FILE, GENERATIONS_FILE, RUN_FILE):
        for tmp in out_dir.glob(temporary_path(out_dir / name, "*").name):
            tmp.unlink(missing_ok=True)


@contextmanager
def open_run(specs: Sequence[ModelSpec], tasks: Sequence[Task], out_dir: Path, config: ScoreConfig = ScoreConfig(),
             *, generate: bool = True, restart: bool = False, world: World = SINGLE) -> Iterator[Run]:
    """Check everything (no model loaded), lock the folder, read and check its tables, plan: yields a `Run` whose
    `execute` does the work while the lock is held. Every refusal is one line (ValueError).

    Under several processes (`world`), rank 0 does all of this and sends the checked run to the others (or its
    refusal, which they raise as `RunRefused`); they yield a `Run` without the folder's tables."""
    out_dir = Path(out_dir)
    if not world.is_main:
        setup = world.broadcast(None)
        if isinstance(setup, str):
            raise RunRefused(setup)
        yield Run(*setup, None, None, world)
        return
    with ExitStack() as stack:
        with _refusals_sent(world):
            checked = check_run(specs, tasks, out_dir, config, generate, world.local_size)
            stack.enter_context(FolderLock(out_dir))
            _remove_leftovers(out_dir)
            if restart:
                for name in (SCORES_FILE, GENERATIONS_FILE):
                    if (out_dir / name).exists():
                        log.warning("--restart: removing %s", out_dir / name)
                        (out_dir / name).unlink()
            scores = read_table(out_dir / SCORES_FILE, SCORES)
            gens = read_table(out_dir / GENERATIONS_FILE, GENERATIONS)
            check_provenance(scores, gens, out_dir)
            run = Run(out_dir, checked.models, tasks, checked.task_hashes, config, checked.dtype, generate, scores,
                      gens, world)
            run.check()
            check_free_space(out_dir, run.new_bytes())
        world.broadcast((out_dir, run.models, run.tasks, run.hashes, config, run.dtype, generate))
        yield run


class RunRefused(ValueError):
    """Raised on ranks other than 0 when rank 0 refused the run (rank 0 prints the reason)."""


@contextmanager
def _refusals_sent(world: World) -> Iterator[None]:
    """On rank 0 of several processes, a refusal (any exception) is sent to the other ranks, waiting in
    `open_run`, before it is raised here, so that they stop too instead of waiting forever."""
    try:
        yield
    except BaseException as exc:
        if world.size > 1:
            world.broadcast(one_line(exc) if isinstance(exc, Exception) else type(exc).__name__)
        raise


def score_models(
    specs: Sequence[ModelSpec],
    tasks: Sequence[Task],
    out_dir: Path,
    config: ScoreConfig = ScoreConfig(),
    *,
    generate: bool = True,
    restart: bool = False,
    progress: ProgressFactory | None = None,
    world: World = SINGLE,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score every task with every model into `out_dir` (`open_run`, then `Run.execute`); returns the folder's
    score and generation tables as written.

    Models are loaded one at a time (a 12B checkpoint and its neighbours never share memory). Generation runs only
    on generative items, and only when `generate` is set. `restart` discards the folder's tables first.
    """
    with open_run(specs, tasks, out_dir, config, generate=generate, restart=restart, world=world) as run:
        result = run.execute(progress)
    if result.failed:
        raise ModelsFailed(result)
    return result.scores, result.generations


class ModelsFailed(OSError):
    """Some models could not be loaded; the others were scored and written. `result` is the run's `RunResult`."""

    def __init__(self, result: RunResult) -> None:
        names = ", ".join(f"{label} ({reason})" for label, reason in result.failed)
        super().__init__(f"{len(result.failed)} model(s) could not be loaded and are missing from the tables: "
                         f"{names}; the other models were scored")
        self.result = result
