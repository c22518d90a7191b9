"""Task × formulation → items: the same questions posed another way (a template, k-shot exemplars, lettered
options, an instruction or a chain-of-thought trigger), so that formulation becomes an axis of every result.

Wei et al. (2022, "Emergent abilities of large language models") show that the scale at which an ability appears
depends on how the task is posed (standard prompting against chain of thought); Kojima et al. (2022) add the
zero-shot trigger "Let's think step by step."; Lu et al. (2024, "Are emergent abilities in large language models
just in-context learning?") treat prompt format and shot count as factors of every result. A `Formulation` is data:

    name            the label every table carries in its `formulation` column
    template        the query, with {context} (the item's context) and, when choices = "letters", {options}
    instruction     text put once before the exemplars and the query
    shots, pool, separator, seed
                    k exemplars before the query, each the exemplar's own rendered query followed by its answer,
                    joined by `separator`; exemplars are drawn per item by a seeded choice (numpy's default_rng
                    seeded by (seed, crc32(item id))) from the pool: a task file given with `pool` (JSONL or
                    BIG-bench), which must not share an id or a context with the evaluated items; for a BIG-bench
                    task without `pool`, the task's own other examples, as BIG-bench's few-shot evaluation does
                    (never the example itself, nor its other-kind twin "<n>/mc" / "<n>/gen"), with the task's
                    `few_shot_example_separator` (BIG-bench's default "\\n") and its `task_prefix` once at the top
    choices         "continuations" (default: each choice scored as given) or "letters": the choices listed as
                    "A. …" lines in {options} and scored as the letters " A", " B", …
    trigger         text after the query (e.g. " Let's think step by step.", Kojima et al. 2022)
    answer_regex    chain of thought (generative items): generate up to `max_new_tokens` tokens, stopping only at
                    `stop` (default: EOS or the budget), and read the final answer as the regex's first group
    max_new_tokens, stop

Formulations come from a TOML file (`--formulations FILE`: a `[[formulation]]` table per formulation) or are
built in (`BUILT_IN`). Every problem is one `FormulationError` line naming the file, the formulation and the field.
The rendered prompt is the item's context, so the run's `task_hash` (logprob/fingerprint.py) covers it.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import Formatter

import numpy as np

from logprob.tasks import DEFAULT_FORMULATION, Item, Task, TaskError, load_task

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONTINUATIONS = "continuations"
LETTERS = "letters"
LETTER_LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: The task as written: no template, no exemplars, nothing added.
DEFAULT = DEFAULT_FORMULATION
#: BIG-bench's default `few_shot_example_separator` (bigbench/api/json_task.py).
BIGBENCH_SEPARATOR = "\n"
KOJIMA_TRIGGER = " Let's think step by step."
FIELDS = ("name", "template", "instruction", "shots", "pool", "separator", "seed", "choices", "trigger",
          "answer_regex", "max_new_tokens", "stop")


class FormulationError(ValueError):
    """A formulation file or setting is malformed; the message names the file, the formulation and the field."""


@dataclass(frozen=True)
class Formulation:
    """How a task is posed; see the module docstring for every field."""

    name: str = DEFAULT
    template: str = "{context}"
    instruction: str = ""
    shots: int = 0
    pool: str | None = None
    separator: str | None = None  # None: "\n\n", or the BIG-bench task's own separator
    seed: int = 0
    choices: str = CONTINUATIONS
    trigger: str = ""
    answer_regex: str | None = None
    max_new_tokens: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    where: str = "<python>"  # where it was defined, for messages

    def __post_init__(self) -> None:
        at = f"{self.where}: formulation {self.name!r}"
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", self.name or ""):
            raise FormulationError(f"{at}: field 'name': expected letters, digits and _.+- only")
        placeholders = {f for _, f, _, _ in Formatter().parse(self.template) if f is not None}
        allowed = {"context", "options"} if self.choices == LETTERS else {"context"}
        if placeholders - allowed or "context" not in placeholders:
            raise FormulationError(f"{at}: field 'template': expected {{context}}"
                                   + (" and {options}" if self.choices == LETTERS else "")
                                   + f", found {sorted(placeholders) or 'none'}")
        if self.choices == LETTERS and "options" not in placeholders:
            raise FormulationError(f"{at}: field 'template': choices = \"letters\" needs {{options}} in the template")
        if self.choices not in (CONTINUATIONS, LETTERS):
            raise FormulationError(f"{at}: field 'choices': expected \"continuations\" or \"letters\", "
                                   f"got {self.choices!r}")
        if isinstance(self.shots, bool) or not isinstance(self.shots, int) or self.shots < 0:
            raise FormulationError(f"{at}: field 'shots': expected a non-negative integer, got {self.shots!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise FormulationError(f"{at}: field 'seed': expected a non-negative integer, got {self.seed!r}")
        if self.answer_regex is not None:
            try:
                groups = re.compile(self.answer_regex).groups
            except re.error as e:
                raise FormulationError(f"{at}: field 'answer_regex': not a regular expression ({e})") from None
            if groups < 1:
                raise FormulationError(f"{at}: field 'answer_regex': needs a group around the answer, e.g. "
                                       r"'answer is (\d+)'")
        if self.max_new_tokens is not None and (isinstance(self.max_new_tokens, bool)
                                                or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1):
            raise FormulationError(f"{at}: field 'max_new_tokens': expected a positive integer, "
                                   f"got {self.max_new_tokens!r}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise FormulationError(f"{at}: field 'stop': expected non-empty strings, got {list(self.stop)!r}")

    @property
    def chain_of_thought(self) -> bool:
        return self.answer_regex is not None


#: Built-in formulations, by name.
BUILT_IN: dict[str, Formulation] = {
    DEFAULT: Formulation(),
    "letters": Formulation("letters", template="{context}\n{options}\nAnswer:", choices=LETTERS),
    "zero-shot-cot": Formulation("zero-shot-cot", trigger=KOJIMA_TRIGGER, answer_regex=r"(?i)answer is:?\s*(\S+)",
                                 max_new_tokens=128),
}


def load_formulations(path: str | Path) -> list[Formulation]:
    """Read a TOML file of `[[formulation]]` tables; a table naming only a built-in (`name = "letters"`) takes it.

    >>> import pathlib, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name) / "f.toml"
    >>> _ = path.write_text('[[formulation]]\\nname = "qa"\\ntemplate = "Q: {context}\\\\nA:"\\n'
    ...                     '[[formulation]]\\nname = "letters"\\n')
    >>> [(f.name, f.template) for f in load_formulations(path)]
    [('qa', 'Q: {context}\\nA:'), ('letters', '{context}\\n{options}\\nAnswer:')]
    >>> tmp.cleanup()
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise FormulationError(f"{path}: no such formulations file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise FormulationError(f"{path}: not valid TOML ({e})") from None
    tables = data.get("formulation")
    if set(data) - {"formulation"} or not isinstance(tables, list) or not tables:
        raise FormulationError(f"{path}: expected one or more [[formulation]] tables and nothing else")
    out: list[Formulation] = []
    for k, table in enumerate(tables):
        where = f"{path}: formulation {k + 1}"
        unknown = sorted(set(table) - set(FIELDS))
        if unknown:
            raise FormulationError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(FIELDS)})")
        if "name" not in table:
            raise FormulationError(f"{where}: missing field 'name'")
        if set(table) == {"name"} and table["name"] in BUILT_IN:
            out.append(BUILT_IN[table["name"]])
            continue
        settings = dict(table)
        if "pool" in settings:
            if not isinstance(settings["pool"], str) or not settings["pool"]:
                raise FormulationError(f"{where}: field 'pool': expected a task file path")
            settings["pool"] = str((path.parent / settings["pool"]).resolve())
        if "stop" in settings:
            stop = settings["stop"]
            settings["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        try:
            out.append(Formulation(**settings, where=str(path)))
        except TypeError as e:
            raise FormulationError(f"{where}: {e}") from None
    names = [f.name for f in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FormulationError(f"{path}: field 'name': formulation {dup[0]!r} is defined twice")
    return out


def resolve(names_or_files: list[str]) -> list[Formulation]:
    """`--formulations` values: built-in names or TOML files, in order; duplicates refused."""
    out: list[Formulation] = []
    for value in names_or_files:
        if value in BUILT_IN:
            out.append(BUILT_IN[value])
        elif Path(value).suffix.lower() == ".toml" or Path(value).exists():
            out.extend(load_formulations(value))
        else:
            raise FormulationError(f"--formulations {value}: not a built-in ({', '.join(BUILT_IN)}) and not a file")
    names = [f.name for f in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FormulationError(f"--formulations: formulation {dup[0]!r} is given twice")
    return out


# ------------------------------------------------------------------------------------------------- rendering


def _options(choices: tuple[str, ...], where: str) -> tuple[str, tuple[str, ...]]:
    if len(choices) > len(LETTER_LABELS):
        raise FormulationError(f"{where}: {len(choices)} choices, more than the {len(LETTER_LABELS)} letters")
    labels = LETTER_LABELS[: len(choices)]
    listed = "\n".join(f"{label}. {choice.strip()}" for label, choice in zip(labels, choices))
    return listed, tuple(f" {label}" for label in labels)


def _query(item: Item, f: Formulation, context: str) -> tuple[str, tuple[str, ...]]:
    """The rendered query of one item and the continuations it is scored with."""
    if item.choices and f.choices == LETTERS:
        listed, letters = _options(item.choices, f"formulation {f.name!r}, item {item.item_id!r}")
        return f.template.format(context=context, options=listed), letters
    return f.template.format(context=context), item.continuations


def _answer(item: Item, f: Formulation) -> str:
    """An exemplar's answer: its first target (as a letter when choices are lettered), or its first reference."""
    if item.choices:
        first = item.target[0]
        return f" {LETTER_LABELS[first]}" if f.choices == LETTERS else item.choices[first]
    return item.references[0]


@dataclass(frozen=True)
class _BigBench:
    prefix: str  # task_prefix, put once at the top
    separator: str


def _bigbench_settings(task: Task) -> _BigBench | None:
    """BIG-bench's few-shot settings when `task` was read from a BIG-bench task.json, else None."""
    source = Path(task.source)
    if source.name != "task.json" or not source.is_file():
        return None
    data = json.loads(source.read_text(encoding="utf-8-sig"))
    return _BigBench(prefix=data.get("task_prefix", ""),
                     separator=data.get("few_shot_example_separator", BIGBENCH_SEPARATOR))


def _example(item_id: str) -> str:
    """The BIG-bench example an item came from: "<n>" of "<n>", "<n>/mc" or "<n>/gen"."""
    return item_id.split("/", 1)[0]


def render(task: Task, f: Formulation) -> Task:
    """`task` posed as `f`: same name and item ids, new contexts (and lettered choices), `formulation` set.

    >>> t = Task("sums", (Item("a", "2+2=", choices=(" 4", " 5"), target=0),))
    >>> r = render(t, BUILT_IN["letters"])
    >>> r.formulation, r.items[0].context, r.items[0].choices
    ('letters', '2+2=\\nA. 4\\nB. 5\\nAnswer:', (' A', ' B'))
    """
    bigbench = _bigbench_settings(task)
    pool: tuple[Item, ...] = ()
    if f.shots:
        if f.pool is not None:
            try:
                pool = load_task(f.pool).items
            except TaskError as e:
                raise FormulationError(f"formulation {f.name!r}: field 'pool': {e}") from None
            evaluated = {it.item_id: it for it in task.items}
            contexts = {it.context for it in task.items}
            for ex in pool:
                if ex.item_id in evaluated or ex.context in contexts:
                    raise FormulationError(
                        f"formulation {f.name!r}: field 'pool': {f.pool} item {ex.item_id!r} is also an evaluated "
                        f"item of task {task.name!r}; the exemplar pool must not overlap the evaluated items")
        elif bigbench is not None:
            pool = task.items  # BIG-bench's convention: the task's other examples
        else:
            raise FormulationError(f"formulation {f.name!r}: field 'pool': shots = {f.shots} needs a pool file for "
                                   f"task {task.name!r} (only BIG-bench tasks draw exemplars from themselves)")
    separator = f.separator if f.separator is not None else (bigbench.separator if bigbench else "\n\n")
    prefix = bigbench.prefix if bigbench else ""

    def strip(context: str) -> str:  # BIG-bench's task_prefix goes once at the top, not into every exemplar
        return context[len(prefix):] if prefix and context.startswith(prefix) else context

    items = []
    for item in task.items:
        query, continuations = _query(item, f, strip(item.context))
        parts = [f.instruction] if f.instruction else []
        if f.shots:
            candidates = [ex for ex in pool if ex.kind == item.kind and _example(ex.item_id) != _example(item.item_id)
                          and ex.item_id != item.item_id]
            if len(candidates) < f.shots:
                raise FormulationError(f"formulation {f.name!r}: field 'shots': item {item.item_id!r} of task "
                                       f"{task.name!r} needs {f.shots} exemplars of its kind, the pool has "
                                       f"{len(candidates)}")
            rng = np.random.default_rng([f.seed, zlib.crc32(item.item_id.encode("utf-8"))])
            chosen = rng.choice(len(candidates), size=f.shots, replace=False)
            parts += [_query(candidates[j], f, strip(candidates[j].context))[0] + _answer(candidates[j], f)
                      for j in chosen]
        context = prefix + separator.join([*parts, query]) + f.trigger
        if item.choices:
            items.append(replace(item, context=context, choices=continuations))
        else:
            items.append(replace(item, context=context))
    if not f.chain_of_thought:
        return replace(task, items=tuple(items), formulation=f.name)
    return replace(task, items=tuple(items), formulation=f.name, answer_regex=f.answer_regex,
                   max_new_tokens=f.max_new_tokens, stop_sequences=f.stop)
