"""Checks before any work: every option, model, task and the output folder, each failure one line.

A ladder run can take hours, so everything a user can get wrong is checked before the first model loads: the tasks
(valid, no two alike), the models (an existing checkpoint directory or a hub id, told apart by `is_local_path`), the
device, and the output folder (creatable, writable, and, once the run knows what is left to score, with room for
the tables).

Every model of the ladder is checked before any work, and every problem found is reported in one message (one line):
its checkpoint reachable (a local directory, the Hugging Face cache, or the hub when online), its weight format
allowed (safetensors; pickle only with --allow-pickle), and its weights fitting the chosen device: parameters ×
bytes per parameter of the dtype, against the device's free memory (`device_memory`; on the CPU, shared by the
processes of this machine). The parameter count comes from the safetensors headers on disk, else from the hub's
model info, else from `metrics.ladders` for a known model; with `--device-map auto` no fit is required (accelerate
keeps what does not fit on disk).

The rule for `--model` (README, "Command line"): a value is a **local path** if it exists on disk, is absolute,
starts with `.` or `~`, contains a backslash or more than one `/`, or its part before the `/` is an existing
directory (`models/ladder-typo` beside a `models/` folder). A local path must be a checkpoint directory: config.json,
safetensors weights (pickle weights only with --allow-pickle) and tokenizer files. Anything else is a **hub id**
(`name` or `org/name`), looked up in the Hugging Face cache, and on the hub unless offline.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from logprob.config import ModelSpec, ScoreConfig
from logprob.fingerprint import model_fingerprint, safetensors_header
from logprob.tasks import Task

#: Files holding a tokenizer's vocabulary; a checkpoint needs one of them (or a *.tiktoken file).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json",
                   "vocab.txt")
#: Pickle weight files transformers reads (only with --allow-pickle).
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
#: Bytes per score-table row beyond its text and token lists (ids, counts, flags, provenance), for the space estimate.
ROW_OVERHEAD_BYTES = 256
#: Bytes per continuation token in a score row (a float32 log-prob and an int32 rank), and per generated token.
TOKEN_BYTES = 8
#: Head room kept free beyond the estimate.
SPARE_BYTES = 16 * 2**20


@dataclass(frozen=True)
class ResolvedModel:
    """A `--model` after the checks: where it loads from and, when known before loading, its fingerprint."""

    spec: ModelSpec
    label: str  # the `model` column: a local checkpoint's directory name, or the hub id (with @revision)
    local_dir: Path | None  # the checkpoint directory: a local path, or a hub id's snapshot in the cache
    hub_id: str | None
    fingerprint: str | None  # None: a hub model not in the cache yet (known once loaded)
    params: int | None = None  # parameters stored in its weights, where known before loading (the fit estimate)
    step: int | None = None  # training step (logprob.checkpoints)
    tokens_seen: int | None = None  # training tokens seen, where known

    @property
    def load_spec(self) -> ModelSpec:
        """The spec to load: a local path resolved (`~` expanded), a hub id as given."""
        if self.hub_id is None:
            return dataclasses.replace(self.spec, name_or_path=str(self.local_dir))
        return self.spec


def is_local_path(value: str) -> bool:
    """The documented rule telling a local path from a hub id (module docstring).

    >>> [is_local_path(v) for v in ("EleutherAI/pythia-70m", "gpt2", "./gpt2", "/abs/model", "~/m", "a/b/c")]
    [False, False, True, True, True, True]
    """
    if os.path.exists(value) or os.path.isabs(value) or value.startswith((".", "~")):
        return True
    if "\\" in value or value.count("/") > 1:
        return True
    return "/" in value and os.path.isdir(value.split("/", 1)[0])


def model_label(spec: ModelSpec) -> str:
    """The `model` column: the spec's label if it has one; a local checkpoint by its directory name; a hub id as
    given, with "@revision" when a revision is asked for (a ladder of checkpoints of one model).

    >>> model_label(ModelSpec("EleutherAI/pythia-1.4b", revision="step3000"))
    'EleutherAI/pythia-1.4b@step3000'
    """
    if spec.label is not None:
        return spec.label
    value = spec.name_or_path
    if is_local_path(value):
        return Path(value).expanduser().resolve().name
    return f"{value}@{spec.revision}" if spec.revision else value


def check_checkpoint_dir(path: Path, spec: ModelSpec) -> None:
    """An existing folder with config.json, complete weights that may be loaded, and tokenizer files."""
    given = f"--model {spec.name_or_path}"
    if not path.exists():
        hint = _siblings_hint(path)
        raise ValueError(f"{given}: no such directory{hint}")
    if not path.is_dir():
        raise ValueError(f"{given}: not a directory (a checkpoint is a folder holding config.json and weights)")
    names = {p.name for p in path.iterdir()}
    if "config.json" not in names:
        raise ValueError(f"{given}: no config.json in this directory, so it is not a Hugging Face checkpoint "
                         "(expected config.json, weights and tokenizer files)")
    safetensors = sorted(path.glob("*.safetensors"))
    pickles = [n for n in PICKLE_FILES if n in names] or sorted(p.name for p in path.glob("pytorch_model*.bin"))
    if safetensors:
        for file in safetensors:
            safetensors_header(file)  # a truncated or corrupt file fails here, naming it
        _check_shards(path, "model.safetensors.index.json", given)
    elif pickles:
        if not spec.allow_pickle:
            raise ValueError(f"{given}: has only pickle weights ({pickles[0]}); add --allow-pickle to load them "
                             "(unpickling can run code: only for checkpoints you trust), or convert to safetensors")
        _check_shards(path, "pytorch_model.bin.index.json", given)
    else:
        raise ValueError(f"{given}: no weights in this directory (expected model.safetensors, sharded "
                         "*.safetensors, or pytorch_model.bin with --allow-pickle)")
    if not spec.trust_remote_code and not (names & set(TOKENIZER_FILES) or any(n.endswith(".tiktoken") for n in names)):
        raise ValueError(f"{given}: no tokenizer files in this directory (expected one of {', '.join(TOKENIZER_FILES)}); "
                         "save the tokenizer beside the model")


def _check_shards(path: Path, index_name: str, given: str) -> None:
    index = path / index_name
    if not index.is_file():
        return
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{given}: {index_name} is not a valid index (no weight_map); copy it again") from None
    missing = sorted(s for s in shards if not (path / s).is_file())
    if missing:
        raise ValueError(f"{given}: {index_name} names {len(missing)} missing shard(s), e.g. {missing[0]}; "
                         "copy or download the checkpoint again")


def _siblings_hint(path: Path) -> str:
    parent = path.parent
    if not parent.is_dir():
        return f" ({parent} does not exist either)"
    near = sorted(p.name for p in parent.iterdir() if p.is_dir() and (p / "config.json").is_file())
    if not near:
        return ""
    shown = ", ".join(near[:5]) + (", ..." if len(near) > 5 else "")
    return f" (checkpoints in {parent}: {shown})"


def stored_params(folder: Path) -> int | None:
    """Parameters stored in a checkpoint folder's safetensors files (from their headers), or None without any."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        _, header, _ = safetensors_header(file)
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def resolve_model(spec: ModelSpec) -> ResolvedModel:
    """Apply the path/hub rule, check the checkpoint, and fingerprint it when it is on disk."""
    from logprob.checkpoints import known_model, step_and_tokens

    value = spec.name_or_path
    label = model_label(spec)
    if is_local_path(value):
        path = Path(value).expanduser()
        check_checkpoint_dir(path, spec)
        if spec.revision is not None:
            raise ValueError(f"--revision {spec.revision}: applies to hub ids, but --model {value} is a local "
                             "directory; drop --revision (or check out that revision into the directory)")
        step, tokens = step_and_tokens(None, None, str(path.resolve()), spec.step, spec.tokens_seen)
        return ResolvedModel(spec, label, path.resolve(), None, model_fingerprint(path), stored_params(path),
                             step, tokens)
    snapshot, params = check_hub_id(spec)
    if params is None:
        params = getattr(known_model(value), "params", None)
    step, tokens = step_and_tokens(value, spec.revision, None, spec.step, spec.tokens_seen)
    return ResolvedModel(spec, label, snapshot, value, model_fingerprint(snapshot) if snapshot else None, params,
                         step, tokens)


def hub_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The folder of `repo_id` at `revision` in the local Hugging Face cache, or None when it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(found).parent if isinstance(found, str) else None


def check_hub_id(spec: ModelSpec) -> tuple[Path | None, int | None]:
    """A hub id must be well formed, and cached or (online) known to the hub with allowed weights; returns its
    cached folder if any, and its parameter count where known."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    value = spec.name_or_path
    try:
        validate_repo_id(value)
    except HFValidationError:
        raise ValueError(f"--model {value}: neither an existing directory nor a hub id of the form name or "
                         "org/name (letters, digits, '-', '_', '.')") from None
    snapshot = hub_snapshot(value, spec.revision)
    at = f" at revision {spec.revision}" if spec.revision else ""
    if snapshot is not None:
        if constants.HF_HUB_OFFLINE:  # nothing can be fetched: the cached snapshot must be complete
            check_checkpoint_dir(snapshot, spec)
        return snapshot, stored_params(snapshot)
    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"--model {value}: no such local directory, and not in the Hugging Face cache{at} while "
                         "offline (HF_HUB_OFFLINE); give the path of a local checkpoint, or download it first")
    info = _check_on_hub(value, spec.revision)
    names = [getattr(s, "rfilename", "") for s in getattr(info, "siblings", None) or []]
    if names and not any(n.endswith(".safetensors") for n in names):
        if not any(n.endswith(".bin") for n in names):
            raise ValueError(f"--model {value}: the hub lists no weights for it{at} (no .safetensors or .bin file)")
        if not spec.allow_pickle:
            raise ValueError(f"--model {value}: has only pickle weights on the hub{at}; add --allow-pickle to load "
                             "them (unpickling can run code: only for checkpoints you trust)")
    return None, getattr(getattr(info, "safetensors", None), "total", None)


def hub_model_info(repo_id: str, revision: str | None):
    """One request to the hub (no retries), so a wrong id fails in seconds."""
    from huggingface_hub import HfApi

    return HfApi().model_info(repo_id, revision=revision, timeout=10)


def _check_on_hub(repo_id: str, revision: str | None):
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    given = f"--model {repo_id}"
    try:
        return hub_model_info(repo_id, revision)
    except GatedRepoError:
        raise ValueError(f"{given}: a gated model; accept its terms on the hub and log in (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise ValueError(f"{given}: no such local directory, and no such model on the hub (a local path needs "
                         "./ in front, or a / inside)") from None
    except RevisionNotFoundError:
        raise ValueError(f"--revision {revision}: no such revision of {repo_id} on the hub") from None
    except Exception as e:  # noqa: BLE001 - network failures come in many classes; all mean "cannot check"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{given}: not a local directory, not in the Hugging Face cache, and the hub cannot be "
                         f"reached ({reason[:120]}); check the network or download the model first") from None


def check_tasks(tasks: Sequence[Task]) -> list[str]:
    """No two tasks with the same name and formulation, or the same items; returns each task's hash, in order."""
    from logprob.fingerprint import task_hash

    hashes = [task_hash(t) for t in tasks]
    by_name: dict[tuple[str, str], Task] = {}
    by_hash: dict[str, Task] = {}
    for task, digest in zip(tasks, hashes, strict=True):
        if (task.name, task.formulation) in by_name:
            first = by_name[(task.name, task.formulation)]
            same = "the same file twice" if first.source == task.source else f"{first.source} and {task.source}"
            raise ValueError(f"--task: task {task.name!r} is given twice ({same}); a task is named by its file "
                             "name, so give each task once and rename one of two different files")
        if digest in by_hash:
            raise ValueError(f"--task: {by_hash[digest].source} and {task.source} hold the same items; give the task once")
        by_name[(task.name, task.formulation)], by_hash[digest] = task, task
    return hashes


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def check_models(specs: Sequence[ModelSpec], local_processes: int = 1) -> list[ResolvedModel]:
    """Resolve every model (path/hub rule, checkpoint files) and check that its weights fit the device, then refuse
    two with one label; every problem of every model is reported in one message. A run of different devices or
    dtypes is refused first (the folder keeps one set of settings)."""
    places = {(s.device, s.dtype, s.device_map, s.max_memory) for s in specs}
    if len(places) > 1:
        raise ValueError("models of one run must share device, dtype and device map (their results share one "
                         "settings record)")
    dtype = check_device(specs[0]) if specs else "float32"
    models, problems = [], []
    for spec in specs:
        try:
            models.append(resolve_model(spec))
        except ValueError as e:
            problems.append(one_line(e))
    problems += [p for m in models if (p := fit_problem(m, dtype, local_processes))]
    labels = [m.label for m in models]
    problems += [f"--model: two models would share the name {x!r} (a local model is named by its directory, a hub "
                 "model by its id and revision); give each checkpoint a distinct name" for x in
                 sorted({x for x in labels if labels.count(x) > 1})]
    if len(problems) == 1:
        raise ValueError(problems[0])
    if problems:
        listed = " ".join(f"({i}) {p}" for i, p in enumerate(problems, start=1))
        raise ValueError(f"{len(problems)} problems with the models of this run, found before scoring anything: {listed}")
    return models


#: Bytes per parameter of each weights dtype.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def device_memory(spec: ModelSpec) -> tuple[str, int] | None:
    """(name, free bytes) of the device the spec loads its whole model onto, or None when no fit is required
    (`--device-map auto`: what does not fit stays on disk) or the free memory cannot be read."""
    from logprob.model import resolve_device

    if spec.device_map is not None:
        return None
    device = resolve_device(spec.device)
    if device.type == "cuda":
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}", torch.cuda.mem_get_info(index)[0]
    import psutil

    return "the CPU", psutil.virtual_memory().available


def fit_problem(model: ResolvedModel, dtype: str, local_processes: int = 1) -> str | None:
    """A problem line when parameters × dtype bytes exceed the device's free memory (shared by `local_processes`
    processes on the CPU), else None (also when either is unknown)."""
    found = device_memory(model.spec)
    if found is None or model.params is None:
        return None
    name, free = found
    share = free // local_processes if name == "the CPU" else free
    need = model.params * DTYPE_BYTES[dtype]
    if need <= share:
        return None
    per = f" per process ({local_processes} processes on this machine)" if name == "the CPU" and local_processes > 1 else ""
    return (f"--model {model.spec.name_or_path}: its weights need about {need / 2**30:.1f} GiB ({model.params:,} "
            f"parameters × {DTYPE_BYTES[dtype]} bytes, {dtype}) but {name} has {share / 2**30:.1f} GiB free{per}; "
            "use --device-map auto (with --max-memory), a smaller --dtype, or a device with more memory")


def check_device(spec: ModelSpec) -> str:
    """The dtype the weights will load in (for the settings record); a missing CUDA device fails here."""
    from logprob.model import placement_of, resolve_dtype

    kind, _, _ = placement_of(spec)
    gpus = [int(k) for k, _ in spec.max_memory if k.isdigit()]
    if gpus:
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if max(gpus) >= have:
            raise ValueError(f"--max-memory: names GPU {max(gpus)}, but {have} CUDA device(s) exist")
    return str(resolve_dtype(spec.dtype, kind)).removeprefix("torch.")


def check_out_dir(out_dir: Path) -> None:
    """Create `out_dir` if needed and prove a file can be written there (then removed)."""
    if str(out_dir).strip() == "":
        raise ValueError("--out: empty path; name the output folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"--out {out_dir}: exists and is not a folder") from None
    except OSError as e:
        raise ValueError(f"--out {out_dir}: cannot create the folder ({e.strerror or e}); choose another --out") from None
    probe = out_dir / f".scalelens-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
    except OSError as e:
        raise ValueError(f"--out {out_dir}: cannot write in this folder ({e.strerror or e}); "
                         "choose another --out or fix its permissions") from None
    finally:
        probe.unlink(missing_ok=True)
    from metrics.schema import GENERATIONS_FILE, SCORES_FILE

    for name in (SCORES_FILE, GENERATIONS_FILE):
        if (out_dir / name).exists() and not (out_dir / name).is_file():
            raise ValueError(f"--out {out_dir}: {name} is not a file; move it away or choose another --out")


def estimate_unit_bytes(task: Task, config: ScoreConfig, *, scores: bool, generations: bool) -> int:
    """A generous estimate of the bytes one model's rows of `task` take in the tables (uncompressed: a row's text
    twice, every continuation byte counted as a token, plus ROW_OVERHEAD_BYTES; a generation at full length)."""
    total = 0
    for item in task.items:
        if scores:
            for text in item.continuations:
                size = len(text.encode("utf-8"))
                total += ROW_OVERHEAD_BYTES + 2 * size + TOKEN_BYTES * (size + 1)
        if generations and item.references:
            refs = sum(len(r.encode("utf-8")) for r in item.references)
            total += ROW_OVERHEAD_BYTES + 5 * refs + (TOKEN_BYTES + 8) * config.max_new_tokens
    return total


def check_free_space(out_dir: Path, new_bytes: int) -> None:
    """Room for the tables rewritten with the new rows, beside the current ones (a rewrite holds both until the
    rename)."""
    from metrics.schema import GENERATIONS_FILE, SCORES_FILE

    if new_bytes <= 0:  # nothing will be written
        return
    existing = sum((out_dir / n).stat().st_size for n in (SCORES_FILE, GENERATIONS_FILE) if (out_dir / n).is_file())
    need = existing + new_bytes + SPARE_BYTES
    free = shutil.disk_usage(out_dir).free
    if free < need:
        raise ValueError(f"--out {out_dir}: {free / 2**20:.0f} MiB free, but the tables need about "
                         f"{need / 2**20:.0f} MiB; free some space or choose another --out")


@dataclass(frozen=True)
class CheckedRun:
    """Everything a run needs once the checks have passed."""

    models: tuple[ResolvedModel, ...]
    task_hashes: tuple[str, ...]
    dtype: str  # the dtype every model loads in


def check_run(specs: Sequence[ModelSpec], tasks: Sequence[Task], out_dir: Path, config: ScoreConfig,
              generate: bool, local_processes: int = 1) -> CheckedRun:
    """Every check that needs neither a model nor the folder's tables, cheapest first; the output folder is created
    only if all the others pass. (Free space is checked once the run knows what it will write: `check_free_space`.)
    `local_processes`: processes of this run on this machine, each loading its own copy of a model."""
    if not tasks:
        raise ValueError("--task: give at least one task file")
    if not specs:
        raise ValueError("--model: give at least one model (or --ladder)")
    hashes = check_tasks(tasks)
    models = check_models(specs, local_processes)
    dtype = check_device(specs[0])
    check_out_dir(Path(out_dir))
    return CheckedRun(tuple(models), tuple(hashes), dtype)
