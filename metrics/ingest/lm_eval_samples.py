"""lm-evaluation-harness `--log_samples` files → score-table rows (multiple choice) or generations rows.

One line of `samples_<task>_<date>.jsonl` is one document. What is read from it:

- `doc_id` → item_id; `doc_hash` (when present) tells whether two models saw the same documents.
- `arguments` → per request `gen_args_k: {arg_0: context, arg_1: continuation}`; for `generate_until` the single
  request's `arg_1` is the generation settings instead of a continuation.
- `filtered_resps` (else `resps`, first response of each request): per choice `[log-likelihood, is_greedy]`, written
  by lm-eval as numbers or as their strings ("-15.44", "False"); for `generate_until`, the generated text.
- `target` → the gold: an integer index, a list of indices, a string of digits (lm-eval turns a digit target into an
  index whenever the task has choices, `ConfigurableTask.doc_to_target`), or a string matched against the choices
  (the continuation without the task's target delimiter).

**multiple_choice** documents become one score row per choice: `choice_text` is the continuation exactly as scored
(`arg_1`, delimiter included, so `metrics.choice`'s acc_norm rule `len(choice_text.lstrip())` is lm-eval's
`len(choice)`), `logprob` the summed log-likelihood, `is_greedy` lm-eval's flag, and `n_tokens`, `token_logprobs`,
`token_ranks` null: lm-eval keeps no per-token data, so the per-token metrics are unavailable (null), not 0.
**loglikelihood** documents (one continuation, e.g. LAMBADA) become a generative item whose one reference is the
continuation, so `exact_match_greedy` is lm-eval's acc there. **generate_until** documents become a generations row:
the filtered prediction and the references (`target`, a string or a list), without token ids (token edit distance
is then unavailable). `loglikelihood_rolling` (perplexity) samples hold no item scores: use the results file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from metrics.ingest.errors import InputError, bad
from metrics.ingest.lm_eval_results import timestamp_of
from metrics.schema import GENERATIONS, GENERATIVE, MULTIPLE_CHOICE, SCORES, per_model_columns

MULTIPLE_CHOICE_TYPE = "multiple_choice"
LOGLIKELIHOOD = "loglikelihood"
GENERATE_UNTIL = "generate_until"
ROLLING = "loglikelihood_rolling"
_NAME = re.compile(r"^samples_(.+)_(\d{4}-\d{2}-\d{2}T\d{2}[-:]\d{2}[-:]\d{2}(?:\.\d+)?)\.jsonl?$")
#: Score-table columns a samples file fills (the model columns are added once the model is known).
SCORE_COLUMNS = {"task": pl.String, **per_model_columns(SCORES)}
GENERATION_COLUMNS = {"task": pl.String, **per_model_columns(GENERATIONS)}


@dataclass(frozen=True)
class SamplesFile:
    path: Path
    task: str
    timestamp: str | None
    output_type: str
    scores: pl.DataFrame  # SCORE_COLUMNS rows (multiple_choice, loglikelihood); empty otherwise
    generations: pl.DataFrame  # GENERATION_COLUMNS rows (generate_until); empty otherwise
    doc_hashes: dict[str, str]  # item_id → doc_hash (empty when the file has none)


def task_of(path: Path) -> tuple[str, str | None]:
    """(task, date) from lm-eval's file name samples_<task>_<date>.jsonl.

    >>> task_of(Path("samples_toy_mc_2026-11-29T10-21-14.352730.jsonl"))
    ('toy_mc', '2026-11-29T10-21-14.352730')
    """
    match = _NAME.match(path.name)
    if match is None:
        raise bad(path, "file name", "lm-eval names samples files samples_<task>_<date>.jsonl, and the task is read "
                  "from it; keep the name lm-eval wrote")
    return match.group(1), timestamp_of(path)


def _requests(path: Path, line: int, doc: dict) -> list[tuple[str, Any]]:
    args = doc.get("arguments")
    if isinstance(args, dict):
        pairs = [args[k] for k in sorted(args, key=lambda k: int(re.sub(r"\D", "", k) or 0))]
    elif isinstance(args, list):
        pairs = args
    else:
        raise bad(path, f"line {line}: field 'arguments'", "must hold one request per choice")
    out = []
    for p in pairs:
        if isinstance(p, dict):
            out.append((p.get("arg_0"), p.get("arg_1")))
        elif isinstance(p, (list, tuple)) and len(p) >= 2:
            out.append((p[0], p[1]))
        else:
            raise bad(path, f"line {line}: field 'arguments'", "each request must be {arg_0: context, arg_1: ...}")
    return out


def _responses(doc: dict) -> list[Any]:
    """One response per request: filtered_resps, else the first response of each request in resps."""
    if isinstance(doc.get("filtered_resps"), list):
        return doc["filtered_resps"]
    resps = doc.get("resps")
    if isinstance(resps, list):
        return [r[0] if isinstance(r, list) and r and isinstance(r[0], list) else r for r in resps]
    return []


def _loglikelihood(path: Path, line: int, response: Any) -> tuple[float, bool]:
    """[log-likelihood, is_greedy] as numbers or strings → (float, bool)."""
    if isinstance(response, list) and len(response) == 1 and isinstance(response[0], list):
        response = response[0]
    if not (isinstance(response, (list, tuple)) and len(response) == 2):
        raise bad(path, f"line {line}: field 'filtered_resps'", "has no per-choice log-likelihoods ([log-likelihood, "
                  "is_greedy] per choice); multiple-choice samples need them")
    ll, greedy = response
    try:
        value = float(ll)
    except (TypeError, ValueError):
        raise bad(path, f"line {line}: field 'filtered_resps'", f"log-likelihood {ll!r} is not a number") from None
    if value != value or value > 0:
        raise bad(path, f"line {line}: field 'filtered_resps'", f"log-likelihood {ll!r} must be a number <= 0")
    if isinstance(greedy, bool):
        return value, greedy
    if str(greedy) in ("True", "False"):
        return value, str(greedy) == "True"
    raise bad(path, f"line {line}: field 'filtered_resps'", f"is_greedy {greedy!r} is not True or False")


def _gold(path: Path, line: int, target: Any, choices: list[str], delimiter: str | None) -> list[int]:
    """Target indices; see the module docstring for the rules."""
    where = f"line {line}: field 'target'"
    if isinstance(target, bool):
        raise bad(path, where, f"{target!r} is not a choice index")
    if isinstance(target, str) and target.strip().isdigit():
        target = int(target.strip())
    elif isinstance(target, str) and target.startswith("[") and target.endswith("]"):
        try:
            target = json.loads(target)
        except json.JSONDecodeError:
            pass
    if isinstance(target, int):
        indices = [target]
    elif isinstance(target, list) and target and all(isinstance(t, int) and not isinstance(t, bool) for t in target):
        indices = list(target)
    elif isinstance(target, str):
        bare = [c[len(delimiter):] if delimiter and c.startswith(delimiter) else c.lstrip() for c in choices]
        if target not in bare and target not in choices:
            raise bad(path, where, f"{target!r} is none of the choices {bare}")
        indices = [bare.index(target) if target in bare else choices.index(target)]
    else:
        raise bad(path, where, f"{target!r} is not an index, a list of indices or one of the choices")
    wrong = [i for i in indices if not 0 <= i < len(choices)]
    if wrong:
        raise bad(path, where, f"gold index {wrong[0]} but the document has {len(choices)} choices")
    return indices


def _output_type(requests: list[tuple[str, Any]]) -> str:
    """lm-eval's output type, from the shape of one document's requests (when the results file does not say)."""
    if len(requests) == 1 and isinstance(requests[0][1], dict):
        return GENERATE_UNTIL
    if len(requests) == 1 and requests[0][1] is None:
        return ROLLING
    return LOGLIKELIHOOD if len(requests) == 1 else MULTIPLE_CHOICE_TYPE


def read_samples(path: Path, output_type: str | None = None, target_delimiter: str | None = None) -> SamplesFile:
    """Parse one samples file. `output_type` and `target_delimiter` come from the results file's `configs` when it
    has them; otherwise the output type is read from the shape of the requests and the delimiter is leading
    whitespace."""
    task, timestamp = task_of(path)
    score_rows: list[dict] = []
    generation_rows: list[dict] = []
    hashes: dict[str, str] = {}
    seen: set[str] = set()
    kind = output_type
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise bad(path, "file", f"cannot be read as UTF-8 text ({e})") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise bad(path, f"line {number}", f"is not JSON ({e.msg})") from None
        if not isinstance(doc, dict) or "doc_id" not in doc:
            raise bad(path, f"line {number}: field 'doc_id'", "missing; every line of a samples file is a document")
        item = str(doc["doc_id"])
        if item in seen:
            raise bad(path, f"line {number}: field 'doc_id'", f"{item!r} appears twice")
        seen.add(item)
        if isinstance(doc.get("doc_hash"), str):
            hashes[item] = doc["doc_hash"]
        requests = _requests(path, number, doc)
        responses = _responses(doc)
        kind = kind or _output_type(requests)
        if kind == ROLLING:
            raise bad(path, "output_type", "loglikelihood_rolling (perplexity) samples hold no per-item scores; "
                      "analyse the results file instead")
        if kind == GENERATE_UNTIL:
            generation_rows.append(_generation(path, number, task, item, doc, responses))
            continue
        if kind not in (MULTIPLE_CHOICE_TYPE, LOGLIKELIHOOD):
            raise bad(path, "output_type", f"{kind!r} is not one scalelens reads (multiple_choice, loglikelihood, "
                      "generate_until)")
        if len(responses) != len(requests):
            raise bad(path, f"line {number}: field 'filtered_resps'", f"has {len(responses)} responses for "
                      f"{len(requests)} choices; multiple-choice samples need one log-likelihood per choice")
        choices = [r[1] for r in requests]
        if not all(isinstance(c, str) for c in choices):
            raise bad(path, f"line {number}: field 'arguments'", "each choice's continuation (arg_1) must be text")
        scored = [_loglikelihood(path, number, r) for r in responses]
        gold = list(range(len(choices))) if kind == LOGLIKELIHOOD else _gold(
            path, number, doc.get("target"), choices, target_delimiter)
        for k, (text_k, (ll, greedy)) in enumerate(zip(choices, scored, strict=True)):
            score_rows.append({
                "task": task, "item_id": item, "item_kind": GENERATIVE if kind == LOGLIKELIHOOD else MULTIPLE_CHOICE,
                "choice": k, "choice_text": text_k, "is_target": k in gold, "logprob": ll, "n_tokens": None,
                "token_logprobs": None, "token_ranks": None, "is_greedy": greedy, "n_chars": len(text_k),
                "n_bytes": len(text_k.encode("utf-8")), "target_score": None, "n_truncated": None,
            })
    if not seen:
        raise bad(path, "file", "holds no documents")
    return SamplesFile(
        path, task, timestamp, kind or MULTIPLE_CHOICE_TYPE,
        pl.DataFrame(score_rows, schema=SCORE_COLUMNS, strict=False),
        pl.DataFrame(generation_rows, schema=GENERATION_COLUMNS, strict=False), hashes,
    )


def _generation(path: Path, line: int, task: str, item: str, doc: dict, responses: list[Any]) -> dict:
    prediction = responses[0] if responses else None
    while isinstance(prediction, list) and prediction:
        prediction = prediction[0]
    if not isinstance(prediction, str):
        raise bad(path, f"line {line}: field 'filtered_resps'", "has no generated text")
    target = doc.get("target")
    references = [target] if isinstance(target, str) else target
    if not (isinstance(references, list) and references and all(isinstance(r, str) for r in references)):
        raise InputError(f"{path}: line {line}: field 'target': a generate_until document needs a reference text "
                         f"or a list of them, found {target!r}")
    return {"task": task, "item_id": item, "prediction": prediction, "n_generated_tokens": None,
            "generated_token_ids": None, "prediction_token_ids": None, "references": references,
            "reference_token_ids": None, "stop_reason": None, "n_truncated": None}
