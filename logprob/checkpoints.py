"""Which checkpoints a run scores: `--model ID@REVISION`, ladder files, named ladders, and the training step and tokens
seen of each checkpoint (the `step` and `tokens_seen` provenance columns), so that a ladder along training steps can
be analysed like a ladder along size.

**`--model ID@REVISION`** scores one revision (branch, tag or commit) of a hub model, e.g.
`EleutherAI/pythia-1.4b@step3000`; the revision is part of the label (`model` column). A value that exists on disk is
a path even when it holds an `@`; a local directory has no revisions, so `./ckpt@step3` is refused.

**Ladder files** (`--ladder FILE.toml`) list the models of a ladder, either one `[[model]]` table each:

    [[model]]
    id = "EleutherAI/pythia-410m"     # hub id, or a local directory (./ and ../ are relative to this file)
    revision = "step3000"             # optional
    label = "pythia-410m@3k"          # optional: the `model` column
    step = 3000                       # optional: read from the revision when it says (step3000, ...-step3000-...)
    tokens_seen = 6291456000          # optional

or, for a checkpoint ladder of one model, `id = "..."` with `revisions = [...]` (and optionally `labels = [...]`), or
for a size ladder, `ids = [...]` (and optionally `labels = [...]`). Every mistake is one line naming the file, the
model and the field.

**Named ladders** (`--ladder pythia`) come from `metrics.ladders`, the table of known ladders with their sizes and
sources; a named ladder's models are scored at their final checkpoint (or at `--revision`).

**Step and tokens seen.** The step is the ladder file's `step`, else the number in a revision or directory name of
the forms `step3000`, `step-3000`, `stage1-step140000-tokens588B` (OLMo) or `checkpoint-3000` (a Hugging Face Trainer
folder), else unknown (null). Tokens seen: the ladder file's `tokens_seen`, else a revision's `tokens588B` part, else
step × the known tokens per step of the model (`metrics.ladders`: Pythia trains on 2,097,152 tokens per step), else,
for a known model at its final checkpoint, its training tokens, else unknown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from metrics.ladders import parse_step, parse_tokens, tokens_at

#: Fields of a `[[model]]` table of a ladder file.
MODEL_FIELDS = ("id", "revision", "label", "step", "tokens_seen")
#: Top-level keys of a ladder file.
TOP_FIELDS = ("name", "model", "id", "ids", "revisions", "labels")


def known_model(hub_id: str):
    """`metrics.ladders.known_model(hub_id)`: the table of known ladders, which also parses revisions (`parse_step`,
    `parse_tokens`) for the analysis of results read elsewhere."""
    from metrics.ladders import known_model as lookup

    return lookup(hub_id)


def step_and_tokens(hub_id: str | None, revision: str | None, folder: str | None = None,
                    step: int | None = None, tokens_seen: int | None = None) -> tuple[int | None, int | None]:
    """(step, tokens seen) of a checkpoint by the rules of the module docstring; explicit values win."""
    if step is None:
        step = parse_step(revision) if revision else (parse_step(Path(folder).name) if folder else None)
    if tokens_seen is None:
        tokens_seen = parse_tokens(revision)
    if tokens_seen is None and hub_id is not None:
        tokens_seen = tokens_at(known_model(hub_id), step, revision)
    return step, tokens_seen


def split_revision(value: str, is_local) -> tuple[str, str | None]:
    """`--model` value → (hub id or path, revision or None). `is_local` is the path/hub rule
    (`preflight.is_local_path`); a path that exists is never split.

    >>> split_revision("EleutherAI/pythia-1.4b@step3000", lambda v: False)
    ('EleutherAI/pythia-1.4b', 'step3000')
    >>> split_revision("./ckpt@step3", lambda v: v.startswith("."))
    Traceback (most recent call last):
    ...
    ValueError: --model ./ckpt@step3: ./ckpt is a local directory, which has no revisions; drop @step3 (or check out that revision into a directory of its own)
    """
    if "@" not in value or os.path.exists(value):
        return value, None
    name, _, revision = value.rpartition("@")
    if not name or not revision.strip():
        raise ValueError(f"--model {value}: expected ID@REVISION with both parts, e.g. EleutherAI/pythia-1.4b@step3000")
    if is_local(name):
        raise ValueError(f"--model {value}: {name} is a local directory, which has no revisions; drop @{revision} "
                         "(or check out that revision into a directory of its own)")
    return name, revision


@dataclass(frozen=True)
class LadderEntry:
    """One model of a ladder file or named ladder."""

    name_or_path: str
    revision: str | None = None
    label: str | None = None
    step: int | None = None
    tokens_seen: int | None = None


def read_ladder(value: str) -> list[LadderEntry]:
    """`--ladder` value → its models: a TOML file when the value names an existing file or ends in .toml, else the
    name of a known ladder (`metrics.ladders`)."""
    if value.endswith(".toml") or Path(value).is_file():
        return read_ladder_file(Path(value))
    return named_ladder(value)


def named_ladder(name: str) -> list[LadderEntry]:
    """A known ladder's models at their final checkpoints (or at --revision; `step_and_tokens` gives tokens seen)."""
    try:
        from metrics.ladders import ladder
    except ImportError:
        raise ValueError(f"--ladder {name}: not a file, and this installation has no table of named ladders "
                         "(metrics.ladders); give a ladder file (.toml)") from None
    try:
        models = ladder(name)
    except ValueError as e:
        raise ValueError(f"--ladder {name}: {' '.join(str(e).split())} (or give a ladder file, .toml)") from None
    return [LadderEntry(m.hub_id) for m in models]


def read_ladder_file(path: Path) -> list[LadderEntry]:
    """The models of a ladder file (module docstring), every mistake one line naming the file and field."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    if not path.is_file():
        raise ValueError(f"--ladder {path}: no such file (a ladder file is TOML; a named ladder has no .toml suffix)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--ladder {path}: not valid TOML ({' '.join(str(e).split())})") from None
    unknown = sorted(set(data) - set(TOP_FIELDS))
    if unknown:
        raise ValueError(f"--ladder {path}: unknown key '{unknown[0]}' (expected [[model]] tables, or id with "
                         "revisions, or ids; optional name and labels)")
    forms = [f for f in ("model", "ids", "id") if f in data]
    if len(forms) != 1:
        raise ValueError(f"--ladder {path}: give exactly one of [[model]] tables, id = \"...\" with revisions = [...], "
                         f"or ids = [...] (found {', '.join(forms) or 'none'})")
    form = forms[0]
    if form == "model":
        for key in ("revisions", "labels"):
            if key in data:
                raise ValueError(f"--ladder {path}: '{key}' belongs with id or ids, not with [[model]] tables")
        tables = data["model"]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ValueError(f"--ladder {path}: 'model' must be [[model]] tables, each with an id")
        entries = [_entry(path, i, table) for i, table in enumerate(tables, start=1)]
    else:
        if form == "id":
            if "revisions" not in data:
                raise ValueError(f"--ladder {path}: id = \"...\" needs revisions = [...] (or use ids = [...])")
            revisions = _strings(path, "revisions", data["revisions"])
            tables = [{"id": data["id"], "revision": r} for r in revisions]
        else:
            if "revisions" in data:
                raise ValueError(f"--ladder {path}: revisions go with one id; give [[model]] tables for several ids")
            tables = [{"id": i} for i in _strings(path, "ids", data["ids"])]
        if "labels" in data:
            labels = _strings(path, "labels", data["labels"])
            if len(labels) != len(tables):
                raise ValueError(f"--ladder {path}: {len(labels)} labels for {len(tables)} models; give one label "
                                 "per model")
            for table, label in zip(tables, labels, strict=True):
                table["label"] = label
        entries = [_entry(path, i, table) for i, table in enumerate(tables, start=1)]
    if not entries:
        raise ValueError(f"--ladder {path}: lists no models")
    return entries


def _strings(path: Path, key: str, value) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"--ladder {path}: '{key}' must be a non-empty list of non-empty strings")
    return value


def _entry(path: Path, index: int, table: dict) -> LadderEntry:
    where = f"--ladder {path}: model {index}"
    unknown = sorted(set(table) - set(MODEL_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field '{unknown[0]}' (expected {', '.join(MODEL_FIELDS)})")
    if not isinstance(table.get("id"), str) or not table["id"].strip():
        raise ValueError(f"{where}: field 'id' must be a hub id or a local directory")
    for key in ("revision", "label"):
        if key in table and (not isinstance(table[key], str) or not table[key].strip()):
            raise ValueError(f"{where}: field '{key}' must be a non-empty string")
    for key in ("step", "tokens_seen"):
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{where}: field '{key}' must be a whole number >= 0, got {value!r}")
    model = table["id"]
    if model.startswith(("./", "../")):  # relative to the ladder file, wherever the command runs
        model = str((path.parent / model).resolve())
    if "@" in model and not os.path.exists(model):
        raise ValueError(f"{where}: field 'id' holds an @; give the revision in the field 'revision'")
    return LadderEntry(model, table.get("revision"), table.get("label"), table.get("step"), table.get("tokens_seen"))
