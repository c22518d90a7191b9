"""What a result depends on, as short hashes stored beside it: the checkpoint's files and the task's items.

A run reuses a finished (model, task) result only when both hashes (and the settings) equal those of the run
asking for it (`logprob/run.py`), so a retrained checkpoint, another checkpoint under the same directory name, or
an edited task file is never mistaken for the one scored earlier.

`model_fingerprint(folder)` hashes the top-level files of a checkpoint folder that transformers reads to build the
model and its tokenizer (`checkpoint_files`: configs, weights, vocabularies, remote code), each by name, size and
content; documentation, images, optimizer and trainer state are left out.
Content is read whole up to WHOLE_FILE_BYTES; a larger safetensors file is hashed by its header (every tensor's
name, dtype, shape and offsets) plus SAMPLE_BYTES at the start, middle and end of every tensor's data, so a
multi-gigabyte checkpoint costs a few hundred small reads rather than a full pass. A change that leaves all of
those samples equal (a few weights edited inside one tensor) is not seen; any retraining or fine-tuning of a
tensor changes its samples. Other large files (pickle weights) are read whole. Copying a checkpoint elsewhere
keeps its fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from logprob.tasks import Task

#: Files up to this size are hashed whole (configs, tokenizers, the shipped ladder, small models).
WHOLE_FILE_BYTES = 64 * 2**20
#: Bytes read at the start, middle and end of each tensor of a larger safetensors file.
SAMPLE_BYTES = 4096
#: A safetensors header larger than this is not a header (the format caps it at 100 MB).
MAX_HEADER_BYTES = 100_000_000
#: Hex digits kept of each sha256: 64 bits, plenty to tell versions of one checkpoint or task apart.
DIGITS = 16

#: Suffixes of the files that can change a number: configs (generation_config.json included), safetensors weights
#: and their index, vocabularies and merges (.json, .txt, .model, .tiktoken), chat templates and remote code.
NUMBER_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".tiktoken", ".jinja", ".py")
#: Files with those suffixes that change nothing: training state and documentation.
SKIPPED = ("trainer_state.json",)
_DOC_PREFIXES = ("readme", "license", "licence", "notice", "copying")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or inconsistent (e.g. a truncated safetensors file)."""


def checkpoint_files(folder: Path) -> list[Path]:
    """The top-level files of a checkpoint that can change a number, sorted by name: NUMBER_SUFFIXES and the pickle
    weights transformers reads (pytorch_model*.bin), less SKIPPED, hidden files and documentation. Symlinks are
    followed, as in the Hugging Face cache, where a snapshot's files link to blobs."""
    files = []
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        wanted = name.endswith(NUMBER_SUFFIXES) or (name.startswith("pytorch_model") and name.endswith(".bin"))
        if not wanted or name in SKIPPED or name.startswith(".") or name.startswith(_DOC_PREFIXES):
            continue
        if path.is_file():
            files.append(path)
    return files


def safetensors_header(path: Path) -> tuple[bytes, dict, int]:
    """(raw header bytes, parsed header, offset where tensor data starts) of a safetensors file, checked against
    the file's size: a truncated or corrupt file raises CheckpointError naming it.

    The format: 8 bytes little-endian header length N, N bytes of JSON {tensor: {dtype, shape, data_offsets:
    [begin, end]}, "__metadata__": {...}}, then the data; offsets count from the end of the header.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(f"{path}: not a complete safetensors file ({size} bytes, header unreadable); "
                                  "it is truncated or corrupt: copy or download it again")
        raw = f.read(n)
    try:
        header = json.loads(raw)
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise CheckpointError(f"{path}: not a safetensors file (its header is not valid JSON with data_offsets); "
                              "copy or download it again") from None
    need = 8 + n + max(ends, default=0)
    if size < need:
        raise CheckpointError(f"{path}: truncated: {size} bytes where its header describes {need}; "
                              "copy or download it again")
    return raw, header, 8 + n


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256()
    if size > WHOLE_FILE_BYTES and path.name.endswith(".safetensors"):
        raw, header, start = safetensors_header(path)
        h.update(raw)
        spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
        with open(path, "rb") as f:
            for begin, end in spans:
                middle = begin + max(0, (end - begin - SAMPLE_BYTES) // 2)
                for offset in sorted({begin, middle, max(begin, end - SAMPLE_BYTES)}):
                    f.seek(start + offset)
                    h.update(f.read(min(SAMPLE_BYTES, end - offset)))
        return "sampled:" + h.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "whole:" + h.hexdigest()


def model_fingerprint(folder: str | os.PathLike) -> str:
    """A short hash of a checkpoint folder's files: names, sizes and contents (module docstring)."""
    h = hashlib.sha256()
    for path in checkpoint_files(Path(folder)):
        h.update(f"{path.name}\0{path.stat().st_size}\0{_file_digest(path)}\n".encode())
    return h.hexdigest()[:DIGITS]


def task_hash(task: Task) -> str:
    """A short hash of the items exactly as scored: ids, contexts, choices, targets, graded target scores and
    references, in order, with the task's formulation and how its answers are read (answer regex, generation
    budget, stop sequences): anything that can change a number of the task.

    The task's name is not part of it (the name is the key the hash is stored under).

    >>> from logprob.tasks import Item
    >>> a = Task("t", (Item("q", "2+2=", choices=("4", "5"), target=0),))
    >>> b = Task("other", (Item("q", "2+2=", choices=("4", "5"), target=0),))
    >>> c = Task("t", (Item("q", "2+2=", choices=("4", "5"), target=1),))
    >>> d = Task("t", (Item("q", "2+2=", choices=("4", "5"), target=0, target_scores=(1.0, 0.5)),))
    >>> e = Task("t", a.items, formulation="cot", answer_regex=r"is (\\d+)")
    >>> [task_hash(a) == task_hash(x) for x in (b, c, d, e)]
    [True, False, False, False]
    """
    rows = [[it.item_id, it.context, list(it.choices), list(it.target), list(it.references),
             list(it.target_scores) if it.target_scores else None] for it in task.items]
    reading = [task.formulation, task.answer_regex, task.max_new_tokens,
               list(task.stop_sequences) if task.stop_sequences is not None else None]
    text = json.dumps([rows, reading], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGITS]