"""What kind of input a path is, decided by its content, never by its name or extension.

| kind | recognised by |
| --- | --- |
| `RESULTS` (lm-evaluation-harness results) | a JSON object with a `results` object (current `results_*.json` layout: metric keys such as `"acc,none"`; older layout of the Pythia suite's evals: `"acc"`, `"acc_stderr"`) |
| `SAMPLES` (lm-eval `--log_samples` output) | JSON lines whose objects have `doc_id`, `arguments` and `resps` or `filtered_resps` |
| `TABLE` (plain table) | a parquet file (magic bytes `PAR1`), or comma-separated text whose header has a `model` column |

A folder is searched recursively; files in it that are none of these (task YAMLs, notes, the task's own data) are
passed over, and a folder with no input at all is an error. A file named on the command line must be one of them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metrics.ingest.errors import InputError, bad

RESULTS = "lm-eval results"
SAMPLES = "lm-eval samples"
TABLE = "table"
KINDS = (RESULTS, SAMPLES, TABLE)
#: The first line of a file is read up to this many bytes to tell its kind (a samples line holds a whole document).
_LINE_LIMIT = 64 << 20


@dataclass(frozen=True)
class Found:
    path: Path
    kind: str


def _is_sample(obj: object) -> bool:
    return isinstance(obj, dict) and "doc_id" in obj and "arguments" in obj and (
        "resps" in obj or "filtered_resps" in obj)


def detect(path: Path) -> str | None:
    """The kind of input `path` holds (one of KINDS), or None when it is none of them."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            first_line = f.readline(_LINE_LIMIT)
    except OSError as e:
        raise bad(path, "file", f"cannot be read ({e.strerror or e})") from None
    if head == b"PAR1":
        return TABLE
    text = first_line.decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            if _is_sample(json.loads(stripped)):
                return SAMPLES
        except json.JSONDecodeError:
            pass
        try:
            whole = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if isinstance(whole, dict) and isinstance(whole.get("results"), dict):
            return RESULTS
        return None
    try:
        header = next(csv.reader([stripped]))
    except (csv.Error, StopIteration):
        return None
    if "model" in [h.strip() for h in header] and len(header) > 1:
        return TABLE
    return None


def find_inputs(paths: Sequence[Path]) -> list[Found]:
    """Every input under `paths` (files as given, folders searched recursively), in a stable order."""
    found: list[Found] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            inside = [Found(p, kind) for p in sorted(path.rglob("*"))
                      if p.is_file() and not p.name.startswith(".") and (kind := detect(p)) is not None]
            if not inside:
                raise bad(path, "folder", "holds no lm-eval results_*.json, samples_*.jsonl or table (CSV with a "
                          "'model' column, or parquet)")
            found.extend(inside)
            continue
        kind = detect(path)
        if kind is None:
            raise bad(path, "file", "is neither an lm-eval results file (a JSON object with 'results'), an lm-eval "
                      "samples file (JSON lines with 'doc_id', 'arguments', 'resps'), nor a table (CSV with a "
                      "'model' column, or parquet)")
        found.append(Found(path, kind))
    seen: dict[Path, Found] = {}
    for f in found:
        seen.setdefault(f.path.resolve(), f)
    return list(seen.values())
