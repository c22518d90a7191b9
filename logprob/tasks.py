"""Task files → items. All input validation lives here, so bad input fails before any model is loaded.

Two file formats are read: scalelens JSONL (`load_jsonl`, one item per line) and BIG-bench JSON tasks
(`load_bigbench`, a `task.json`). `load_task` picks one from the path. Every problem raises `TaskError`
(a `ValueError`) with one message naming the file, the line (JSONL, 1-based) or example index (BIG-bench,
0-based) and the field.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metrics.schema import DEFAULT_FORMULATION, GENERATIVE, MULTIPLE_CHOICE

log = logging.getLogger(__name__)

#: BIG-bench's defaults (bigbench/api/json_task.py, `JsonTask.load_and_process_json`, bigbench 1.0.0).
BIGBENCH_INPUT_PREFIX = "\nQ: "
BIGBENCH_OUTPUT_PREFIX = "\nA: "
BIGBENCH_CHOICE_PREFIX = "\n  choice: "
#: BIG-bench's `random_seed` default; `default_format_fn` seeds a fresh RandomState with it for every example.
BIGBENCH_SEED = 42

JSONL_FIELDS = ("id", "context", "choices", "target", "target_scores", "references")


class TaskError(ValueError):
    """A task file or item is malformed. The message names the file, the line or example, and the field."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Item:
    """One scored question.

    A multiple-choice item has `choices` (continuation strings, scored exactly as given) and `target`, the index
    or indices of the correct ones. A generative item has `references` instead; each reference is scored
    teacher-forced as a target, and the model may also be asked to generate.

    A multiple-choice item may also carry `target_scores`, one number per choice: graded credit, as in BIG-bench's
    `target_scores`, read by the `bigbench_grade` metric. The targets must then be exactly the choices with the
    highest score, as BIG-bench defines its correct choices.

    Construction validates and normalises, so items built in Python are checked like loaded ones: lists become
    tuples and a plain int `target` becomes a 1-tuple.

    >>> Item(item_id="q", context="2+2=", choices=["4", "5"], target=0).target
    (0,)
    >>> Item(item_id="q", context="2+2=", choices=("4", "5"), target=(5,))
    Traceback (most recent call last):
    ...
    logprob.tasks.TaskError: item 'q': field 'target': index 5 out of range for 2 choices (expected 0..1)
    """

    item_id: str
    context: str
    choices: tuple[str, ...] = ()
    target: tuple[int, ...] = ()
    references: tuple[str, ...] = ()
    target_scores: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.item_id, str) or not self.item_id:
            raise TaskError(f"field 'item_id': expected a non-empty string, got {self.item_id!r}")
        where = f"item {self.item_id!r}"
        if not isinstance(self.context, str):
            raise TaskError(f"{where}: field 'context': expected a string, got {type(self.context).__name__}")
        # Frozen dataclass: normalise through object.__setattr__.
        for name in ("choices", "references"):
            object.__setattr__(self, name, _strings(getattr(self, name), name, where))
        target = self.target
        if _is_int(target):
            target = (target,)
        if not isinstance(target, (list, tuple)):
            raise TaskError(f"{where}: field 'target': expected an int or a list of ints, got {type(target).__name__}")
        for t in target:
            if not _is_int(t):
                raise TaskError(f"{where}: field 'target': expected ints, got {t!r}")
        object.__setattr__(self, "target", tuple(int(t) for t in target))

        if self.choices and self.references:
            raise TaskError(f"{where}: fields 'choices' and 'references': give one or the other, not both")
        if not self.choices and not self.references:
            raise TaskError(f"{where}: fields 'choices'/'references': one of them must be a non-empty list")
        if self.references:
            if self.target:
                raise TaskError(f"{where}: field 'target': must be empty for a generative item "
                                "(every reference is a target)")
            if self.target_scores is not None:
                raise TaskError(f"{where}: field 'target_scores': only for multiple-choice items")
            return
        if len(set(self.choices)) != len(self.choices):
            raise TaskError(f"{where}: field 'choices': duplicate choice strings {list(self.choices)!r}")
        if not self.target:
            raise TaskError(f"{where}: field 'target': a multiple-choice item needs at least one target index")
        n = len(self.choices)
        for t in self.target:
            if not 0 <= t < n:
                raise TaskError(f"{where}: field 'target': index {t} out of range for {n} choices "
                                f"(expected 0..{n - 1})")
        if len(set(self.target)) != len(self.target):
            raise TaskError(f"{where}: field 'target': duplicate indices {list(self.target)!r}")
        if self.target_scores is not None:
            scores = _target_scores(self.target_scores, n, where)
            object.__setattr__(self, "target_scores", scores)
            best = tuple(i for i, v in enumerate(scores) if v == max(scores))
            if tuple(sorted(self.target)) != best:
                raise TaskError(f"{where}: field 'target': must be the choices with the highest target score "
                                f"{list(best)}, got {list(self.target)}")

    @property
    def kind(self) -> str:
        return GENERATIVE if self.references else MULTIPLE_CHOICE

    @property
    def continuations(self) -> tuple[str, ...]:
        """What gets scored, in order: the choices, or for a generative item its references."""
        return self.references or self.choices

    @property
    def targets(self) -> tuple[int, ...]:
        """Indices into `continuations` that are correct (every reference of a generative item)."""
        return tuple(range(len(self.references))) if self.references else self.target


def _target_scores(value: Any, n_choices: int, where: str) -> tuple[float, ...]:
    """One finite number per choice, as floats."""
    if not isinstance(value, (list, tuple)) or len(value) != n_choices:
        raise TaskError(f"{where}: field 'target_scores': expected a list of {n_choices} numbers (one per choice), "
                        f"got {value!r:.80}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise TaskError(f"{where}: field 'target_scores': expected finite numbers, got {v!r}")
    return tuple(float(v) for v in value)


def _strings(value: Any, name: str, where: str) -> tuple[str, ...]:
    """A list/tuple of non-empty strings as a tuple: an empty continuation has no tokens to score."""
    if not isinstance(value, (list, tuple)):
        raise TaskError(f"{where}: field {name!r}: expected a list of strings, got {type(value).__name__}")
    for i, s in enumerate(value):
        if not isinstance(s, str) or not s:
            raise TaskError(f"{where}: field {name!r}: entry {i} must be a non-empty string, got {s!r}")
    return tuple(value)


@dataclass(frozen=True)
class Task:
    """A named, ordered set of items with unique ids; `source` says where it was read from.

    `formulation` names how the items were posed (logprob/formulations.py; "default": as written). A chain-of-thought
    formulation also sets how its generative items are answered: `answer_regex` (the final answer is its first
    group in the generation), `max_new_tokens` and `stop_sequences` (None: the run's settings).
    """

    name: str
    items: tuple[Item, ...]
    source: str = "<python>"
    formulation: str = DEFAULT_FORMULATION
    answer_regex: str | None = None
    max_new_tokens: int | None = None
    stop_sequences: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TaskError(f"{self.source}: field 'name': expected a non-empty string, got {self.name!r}")
        object.__setattr__(self, "items", tuple(self.items))
        if not self.items:
            raise TaskError(f"{self.source}: task {self.name!r} has no items")
        seen: set[str] = set()
        for i, item in enumerate(self.items):
            if not isinstance(item, Item):
                raise TaskError(f"{self.source}: items[{i}]: expected an Item, got {type(item).__name__}")
            if item.item_id in seen:
                raise TaskError(f"{self.source}: items[{i}]: field 'item_id': duplicate id {item.item_id!r}")
            seen.add(item.item_id)


# ---------------------------------------------------------------------------------------------------- JSONL


def load_jsonl(path: str | os.PathLike, task_name: str | None = None) -> Task:
    """Read a scalelens JSONL task: one JSON object per line; blank lines are skipped.

    Fields: `id` (string or int, stored as a string), `context` (string), then either `choices` (non-empty list
    of strings) with `target` (an int or a non-empty list of ints indexing `choices`), or `references`
    (non-empty list of strings). A multiple-choice item may add `target_scores`, a list of numbers, one per
    choice (graded credit, as BIG-bench's `target_scores`); `target` may then be left out and is the choices with
    the highest score (if given, it must be exactly those). Continuations are scored exactly as written: put any separating space at the
    end of `context` or the start of each choice yourself. The task name defaults to the file stem.

    >>> import pathlib, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name) / "sums.jsonl"
    >>> _ = path.write_text('{"id": 7, "context": "2+2=", "choices": ["4", "5"], "target": 0}\\n\\n'
    ...                     '{"id": "b", "context": "1+1=", "references": ["2", "two"]}\\n')
    >>> task = load_jsonl(path)
    >>> task.name, [(it.item_id, it.kind, it.targets) for it in task.items]
    ('sums', [('7', 'multiple_choice', (0,)), ('b', 'generative', (0, 1))])
    >>> tmp.cleanup()
    """
    path = Path(path)
    text = _read_text(path)
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        item = _jsonl_item(row, where)
        if item.item_id in first_line:
            first = first_line[item.item_id]
            raise TaskError(f"{where}: field 'id': duplicate id {item.item_id!r} (first on line {first})")
        first_line[item.item_id] = lineno
        items.append(item)
    if not items:
        raise TaskError(f"{path}: no items (the file is empty)")
    return Task(name=task_name or path.stem, items=tuple(items), source=str(path))


def _jsonl_item(row: Any, where: str) -> Item:
    if not isinstance(row, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - set(JSONL_FIELDS))
    if unknown:
        raise TaskError(f"{where}: unknown field {unknown[0]!r} (expected only {', '.join(JSONL_FIELDS)})")
    for name in ("id", "context"):
        if name not in row:
            raise TaskError(f"{where}: missing field {name!r}")
    item_id = row["id"]
    if not (isinstance(item_id, str) or _is_int(item_id)):
        raise TaskError(f"{where}: field 'id': expected a string or an int, got {type(item_id).__name__}")
    if "choices" in row and "references" in row:
        raise TaskError(f"{where}: fields 'choices' and 'references': give one or the other, not both")
    if "choices" in row:
        _require_nonempty_list(row["choices"], "choices", where)
        fields = {"choices": row["choices"]}
        if "target_scores" in row:
            scores = _target_scores(row["target_scores"], len(row["choices"]), where)
            fields["target_scores"] = scores
            if "target" not in row:  # BIG-bench's correct choices: the highest-scoring ones
                fields["target"] = [i for i, v in enumerate(scores) if v == max(scores)]
        elif "target" not in row:
            raise TaskError(f"{where}: missing field 'target' (needed with 'choices', unless 'target_scores' is given)")
        if "target" in row:
            target = row["target"]
            if not (_is_int(target) or (isinstance(target, list) and target)):
                raise TaskError(f"{where}: field 'target': expected an int or a non-empty list of ints, got {target!r}")
            fields["target"] = target
    elif "references" in row:
        if "target" in row:
            raise TaskError(f"{where}: field 'target': not allowed with 'references' (every reference is a target)")
        if "target_scores" in row:
            raise TaskError(f"{where}: field 'target_scores': not allowed with 'references' (only for 'choices')")
        _require_nonempty_list(row["references"], "references", where)
        fields = {"references": row["references"]}
    else:
        raise TaskError(f"{where}: missing field 'choices' (with 'target') or 'references'")
    try:
        return Item(item_id=str(item_id), context=row["context"], **fields)
    except TaskError as e:
        raise TaskError(f"{where}: {e}") from None


def _require_nonempty_list(value: Any, name: str, where: str) -> None:
    if not isinstance(value, list):
        raise TaskError(f"{where}: field {name!r}: expected a list of strings, got {type(value).__name__}")
    if not value:
        raise TaskError(f"{where}: field {name!r}: empty list")


def write_jsonl(task: Task, path: str | os.PathLike) -> Path:
    """Write `task` in the format `load_jsonl` reads, one item per line (UTF-8, non-ASCII kept as is).

    `load_jsonl(write_jsonl(task, p), task.name)` gives back equal items, so a BIG-bench task can be frozen
    into its exact prompts.
    """
    path = Path(path)
    lines = []
    for item in task.items:
        row: dict[str, Any] = {"id": item.item_id, "context": item.context}
        if item.references:
            row["references"] = list(item.references)
        else:
            row["choices"] = list(item.choices)
            row["target"] = list(item.target)
            if item.target_scores is not None:
                row["target_scores"] = list(item.target_scores)
        lines.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------- BIG-bench


def load_bigbench(path: str | os.PathLike) -> Task:
    """Read a BIG-bench JSON task (`task.json`), zero-shot, reproducing BIG-bench's own prompt.

    See `parse_bigbench` for the prompt format and the items produced. The task name is the file's `name`
    field, or else the name of the folder holding the file.
    """
    path = Path(path)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TaskError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    return parse_bigbench(data, default_name=path.parent.name, source=str(path))


def parse_bigbench(data: Any, default_name: str | None = None, source: str = "<dict>") -> Task:
    r"""Turn a parsed BIG-bench task (the dict of a `task.json`) into items, zero-shot only (no few-shot examples).

    Reproduces `bigbench/api/json_task.py` (bigbench 1.0.0: `default_format_fn` and `JsonTask.evaluate_fixed_shot`
    with `num_shots=0`). The prompt of example `e` is::

        task_prefix + example_input_prefix + e["input"]
          [+ choice_prefix + choice_prefix.join(listed)]   # only with target_scores and append_choices_to_input
          + example_output_prefix

    with the task's own fields or BIG-bench's defaults: `task_prefix` "", `example_input_prefix` "\nQ: ",
    `example_output_prefix` "\nA: ", `choice_prefix` "\n  choice: ", `append_choices_to_input` true (a string
    there is read for truth, as BIG-bench does, so "false" appends the choices; a warning is logged).
    `listed` is `numpy.random.RandomState(42).permutation(sorted(choices))`; BIG-bench seeds a fresh generator
    for every example, so the order depends only on the number of choices: n=2 → [1, 0], 3 → [0, 1, 2],
    4 → [1, 3, 0, 2], 5 → [1, 4, 2, 0, 3] (indices into the sorted choices).

    Both kinds of item use this same prompt (BIG-bench generates from it too, choices listed). Continuations
    are the choice keys or target strings exactly as given, with no space added: BIG-bench's HF model tokenizes
    input and target separately and concatenates the ids, so the separating space is the one that ends
    "\nA: ".

    Items: an example with `target_scores` gives a multiple-choice item whose choices are the keys in file
    order, whose `target` is every index whose score equals the maximum (BIG-bench's "correct" options for
    its Brier score), and whose `target_scores` keep every score (BIG-bench's multiple_choice_grade takes the score
    of the argmax choice: scalelens's `bigbench_grade`). An example with `target`
    (a string or a list of strings) gives a generative item with those references. Ids are the 0-based example
    index: "<n>" for an example of one kind, "<n>/mc" and "<n>/gen" for an example with both. Exact duplicate
    examples are dropped with a warning, as BIG-bench does; ids keep the original index.

    >>> task = parse_bigbench({"name": "sums", "examples": [
    ...     {"input": "2+2?", "target_scores": {"4": 1, "5": 0}, "target": "4"}]})
    >>> [(it.item_id, it.kind) for it in task.items]
    [('0/mc', 'multiple_choice'), ('0/gen', 'generative')]
    >>> task.items[0].context
    '\nQ: 2+2?\n  choice: 5\n  choice: 4\nA: '
    >>> task.items[0].choices, task.items[0].target, task.items[0].target_scores, task.items[1].references
    (('4', '5'), (0,), (1.0, 0.0), ('4',))
    """
    if not isinstance(data, dict):
        raise TaskError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    if "subtasks" in data:
        raise TaskError(f"{source}: field 'subtasks': tasks with subtasks are not supported; load each subtask's "
                        "task.json instead")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise TaskError(f"{source}: field 'name': expected a non-empty string, got {name!r}")
    task_prefix = _str_setting(data, "task_prefix", "", source)
    input_prefix = _str_setting(data, "example_input_prefix", BIGBENCH_INPUT_PREFIX, source)
    output_prefix = _str_setting(data, "example_output_prefix", BIGBENCH_OUTPUT_PREFIX, source)
    choice_prefix = _str_setting(data, "choice_prefix", BIGBENCH_CHOICE_PREFIX, source)
    append_choices = data.get("append_choices_to_input", True)
    if isinstance(append_choices, str):
        # Some BIG-bench tasks write "false" as a string; BIG-bench tests it for truth, so choices get appended.
        log.warning("%s: field 'append_choices_to_input' is the string %r; read as %s, as BIG-bench does",
                    source, append_choices, bool(append_choices))
        append_choices = bool(append_choices)
    if not isinstance(append_choices, bool):
        raise TaskError(f"{source}: field 'append_choices_to_input': expected true or false, got {append_choices!r}")
    if "examples" not in data:
        raise TaskError(f"{source}: missing field 'examples' (a parent task keeps its subtasks in sub-folders: "
                        "load each subtask's task.json)")
    examples = data["examples"]
    if not isinstance(examples, list) or not examples:
        raise TaskError(f"{source}: field 'examples': expected a non-empty list, got {examples!r:.80}")

    items: list[Item] = []
    seen: set[str] = set()
    for n, example in enumerate(examples):
        where = f"{source}: example {n}"
        if not isinstance(example, dict):
            raise TaskError(f"{where}: expected a JSON object, got {type(example).__name__}")
        key = json.dumps(example)  # BIG-bench's duplicate test
        if key in seen:
            log.warning("%s: exact duplicate of an earlier example, dropped (as BIG-bench does)", where)
            continue
        seen.add(key)
        if not isinstance(example.get("input"), str):
            raise TaskError(f"{where}: field 'input': expected a string, got {example.get('input')!r:.80}"
                            if "input" in example else f"{where}: missing field 'input'")
        has_mc, has_gen = "target_scores" in example, "target" in example
        if not (has_mc or has_gen):
            raise TaskError(f"{where}: missing field 'target_scores' or 'target'")
        body = example["input"]
        choices, target, scores = (), (), None
        if has_mc:
            choices, target, scores = _bigbench_choices(example["target_scores"], where)
            if append_choices:
                order = np.random.RandomState(seed=BIGBENCH_SEED).permutation(len(choices))  # (n_choices,)
                ranked = sorted(choices)
                body += choice_prefix + choice_prefix.join(ranked[i] for i in order)
        context = task_prefix + input_prefix + body + output_prefix
        refs = _bigbench_references(example["target"], where) if has_gen else ()
        both = has_mc and has_gen
        try:
            if has_mc:
                items.append(Item(f"{n}/mc" if both else f"{n}", context, choices=choices, target=target,
                                  target_scores=scores))
            if has_gen:
                items.append(Item(f"{n}/gen" if both else f"{n}", context, references=refs))
        except TaskError as e:
            raise TaskError(f"{where}: {e}") from None
    return Task(name=name, items=tuple(items), source=source)


def _str_setting(data: dict, name: str, default: str, source: str) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise TaskError(f"{source}: field {name!r}: expected a string, got {value!r}")
    return value


def _bigbench_choices(scores: Any, where: str) -> tuple[tuple[str, ...], tuple[int, ...], tuple[float, ...]]:
    """Choices in file order; targets are the indices whose score equals the maximum, which must be > 0; and every
    choice's score."""
    if not isinstance(scores, dict) or not scores:
        raise TaskError(f"{where}: field 'target_scores': expected a non-empty object of choice → score, "
                        f"got {scores!r:.80}")
    for choice, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise TaskError(f"{where}: field 'target_scores': score of {choice!r} must be a number, got {score!r}")
    values = list(scores.values())
    best = max(values)
    if best <= 0:
        raise TaskError(f"{where}: field 'target_scores': the maximum score must be > 0, got {best!r}")
    if len(values) > 1 and best == min(values):
        # BIG-bench's own rule (default_format_fn): correct choices must score higher than the rest.
        raise TaskError(f"{where}: field 'target_scores': every choice has score {best!r}, so none is singled out")
    return tuple(scores), tuple(i for i, v in enumerate(values) if v == best), tuple(float(v) for v in values)


def _bigbench_references(target: Any, where: str) -> tuple[str, ...]:
    refs = [target] if isinstance(target, str) else target
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r for r in refs):
        raise TaskError(f"{where}: field 'target': expected a non-empty string or a non-empty list of non-empty "
                        f"strings, got {target!r:.80}")
    return tuple(refs)


# ------------------------------------------------------------------------------------------------- dispatch


def load_task(path: str | os.PathLike) -> Task:
    """Load a task file by its form: `.jsonl` → `load_jsonl`; `.json` or a folder holding `task.json` →
    `load_bigbench`. Anything else raises TaskError("unknown task format")."""
    path = Path(path)
    if path.is_dir():
        if not (path / "task.json").is_file():
            raise TaskError(f"{path}: folder has no task.json")
        return load_bigbench(path / "task.json")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return load_jsonl(path)
    if suffix == ".json":
        return load_bigbench(path)
    raise TaskError(f"{path}: unknown task format {suffix or '(no extension)'!r} (expected .jsonl, .json, "
                    "or a folder holding task.json)")


def _read_text(path: Path) -> str:
    if not path.exists():
        raise TaskError(f"{path}: no such file")
    if not path.is_file():
        raise TaskError(f"{path}: not a regular file")
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte order mark, if any, is not part of the text
    except UnicodeDecodeError as e:
        raise TaskError(f"{path}: not UTF-8 text (byte {e.start})") from None
