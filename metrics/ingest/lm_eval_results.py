"""lm-evaluation-harness results files → the model they describe and, per task, each metric's mean and stderr.

Two layouts are read:

- **current** (`results_<date>.json`, lm-eval ≥ 0.4): `results → {task: {"acc,none": m, "acc_stderr,none": s, …}}`
  (metric, then the filter after the comma), with `n-shot`, `versions`, `higher_is_better`, `n-samples`,
  `configs` (output_type, target_delimiter), `model_name` and `config → {model_args, model_revision,
  model_num_parameters}`.
- **old** (lm-eval < 0.4, e.g. the Pythia suite's published evals): `results → {task: {"acc": m, "acc_stderr": s}}`,
  `config → {model_args: "pretrained=NAME,revision=stepN", num_fewshot}`, `versions`.

A metric whose filter is `none` keeps its name (`acc`); another filter is kept after a comma
(`exact_match,strict-match`), as lm-eval writes it. A stderr lm-eval could not compute (`"N/A"`) is null: that mean
gets no interval.

The model is `model_args`' `pretrained` (else `model`, else the file's `model_name`) and its revision
(`model_args`' `revision`, else `config.model_revision`; "main" counts as none). The same name at several
revisions is several models, keyed `NAME@REVISION`, which is how training checkpoints form a ladder along steps.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metrics.ingest.errors import bad

CURRENT = "current"
OLD = "old"
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}[-:]\d{2}[-:]\d{2}(?:\.\d+)?)")


@dataclass(frozen=True)
class ModelRef:
    """A model as an lm-eval file names it."""

    name: str
    revision: str | None
    num_parameters: int | None  # lm-eval's `model_num_parameters` (every parameter once)
    path: Path  # the results file that names it

    @property
    def key(self) -> str:
        """The model's name in every scalelens table: NAME, or NAME@REVISION for a revision other than main."""
        return f"{self.name}@{self.revision}" if self.revision else self.name


@dataclass(frozen=True)
class TaskResult:
    task: str
    metrics: dict[str, tuple[float, float | None]]  # metric → (mean, stderr or None)
    n_shot: int | None
    version: str | None
    n_items: int | None
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    output_type: str | None = None
    target_delimiter: str | None = None


@dataclass(frozen=True)
class ResultsFile:
    path: Path
    layout: str  # CURRENT or OLD
    model: ModelRef
    tasks: dict[str, TaskResult]
    timestamp: str | None  # the date in the file name, which its samples files share


def timestamp_of(path: Path) -> str | None:
    """The date lm-eval puts in its file names ('2026-11-29T10-21-14.352730'), or None."""
    match = _TIMESTAMP.search(path.name)
    return match.group(1) if match else None


def parse_model_args(args: Any) -> dict[str, str]:
    """lm-eval's model_args, a dict or a 'k=v,k=v' string, as a dict of strings.

    >>> parse_model_args("pretrained=EleutherAI/pythia-v1.1-70m,revision=step143000")
    {'pretrained': 'EleutherAI/pythia-v1.1-70m', 'revision': 'step143000'}
    """
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items() if v is not None}
    if isinstance(args, str):
        out = {}
        for part in args.split(","):
            key, sep, value = part.partition("=")
            if sep:
                out[key.strip()] = value.strip()
        return out
    return {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _model(path: Path, data: dict) -> ModelRef:
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    args = parse_model_args(config.get("model_args"))
    name = args.get("pretrained") or args.get("model") or data.get("model_name")
    if not name:
        raise bad(path, "config.model_args", "names no model (no 'pretrained=' and no 'model_name'); give the "
                  "results of a named model")
    revision = args.get("revision") or config.get("model_revision")
    revision = None if revision in (None, "", "main") else str(revision)
    n_params = config.get("model_num_parameters")
    n_params = int(n_params) if isinstance(n_params, (int, float)) and not isinstance(n_params, bool) \
        and n_params > 0 else None
    return ModelRef(str(name), revision, n_params, path)


def _metrics(path: Path, task: str, entry: dict) -> tuple[dict[str, tuple[float, float | None]], str]:
    """(metric → (mean, stderr)) of one task entry, and the layout its keys are in."""
    current = any("," in key for key in entry)
    means: dict[str, float] = {}
    errors: dict[str, float | None] = {}
    for key, value in entry.items():
        base, _, filt = key.partition(",")
        if current and not filt:
            continue  # alias, name, sample_len, …
        stderr = base.endswith("_stderr")
        metric = base[: -len("_stderr")] if stderr else base
        name = metric if filt in ("", "none") else f"{metric},{filt}"
        number = _number(value)
        if stderr:
            errors[name] = number if number is not None and number >= 0 else None
        elif number is not None:
            means[name] = number
    if not means:
        raise bad(path, f"results.{task}", "has no numeric metric")
    return {m: (v, errors.get(m)) for m, v in means.items()}, CURRENT if current else OLD


def read_results(path: Path) -> ResultsFile:
    """Parse one results file (either layout); every problem is an InputError naming the file and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(path, "file", f"is not readable JSON ({e})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not results:
        raise bad(path, "results", "must be a non-empty object {task: {metric: value}}")
    model = _model(path, data)
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    shots = data.get("n-shot") if isinstance(data.get("n-shot"), dict) else {}
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    better = data.get("higher_is_better") if isinstance(data.get("higher_is_better"), dict) else {}
    samples = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
    configs = data.get("configs") if isinstance(data.get("configs"), dict) else {}
    tasks: dict[str, TaskResult] = {}
    layouts = set()
    for task, entry in results.items():
        if not isinstance(entry, dict):
            raise bad(path, f"results.{task}", "must be an object {metric: value}")
        metrics, layout = _metrics(path, task, entry)
        layouts.add(layout)
        shot = shots.get(task, config.get("num_fewshot"))
        n = samples.get(task, {}).get("effective") if isinstance(samples.get(task), dict) else None
        n = n if isinstance(n, int) else entry.get("sample_len") if isinstance(entry.get("sample_len"), int) else None
        task_config = configs.get(task) if isinstance(configs.get(task), dict) else {}
        hib = better.get(task) if isinstance(better.get(task), dict) else {}
        tasks[str(task)] = TaskResult(
            task=str(task), metrics=metrics, n_shot=int(shot) if isinstance(shot, (int, float)) else None,
            version=None if versions.get(task) is None else str(versions.get(task)), n_items=n,
            higher_is_better={str(k): bool(v) for k, v in hib.items() if isinstance(v, bool)},
            output_type=task_config.get("output_type"), target_delimiter=task_config.get("target_delimiter"),
        )
    return ResultsFile(path, CURRENT if CURRENT in layouts else OLD, model, tasks, timestamp_of(path))
