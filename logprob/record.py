"""`run.json`: what the latest `scalelens score` on a folder did, written by rank 0 beside the tables.

It is rewritten atomically (temporary file, fsync, rename) when the run starts, after each model and when the run
ends, so it always describes the latest run as far as it got:

- `scalelens_version`, `command`, `started`, `finished` (null while running), `status`: "running", "done",
  "partial" (some models could not be loaded; the others are in the tables) or "stopped" (an error or interruption
  ended the run; `error` says which);
- `world_size`, `device` (the device kind: cpu or cuda), `backend` (gloo, nccl; null for one process);
- `ranks`: per process, `rank`, `device`, `requests` ((item, choice) pairs scored plus generative items generated),
  `tokens` (the tokens of its share, as `logprob.distributed` counts them for the plan) and `seconds` (scoring and
  generation of its share, summed over models);
- `models`: per model, `model` (its label), `source`, `revision`, `step`, `tokens_seen`, `status` ("scored",
  "reused": every task already in the folder, or "failed": could not be loaded, with `error`), `tasks` computed,
  `dtype`, `token_budget` (the resolved budget and where it came from: given, cpu, or free memory), `placement`
  (devices holding its layers under --device-map auto), and the same per-rank list under `ranks` with the budget
  each rank ended with (`token_budget_final`, lower after out-of-memory back-off).

Nothing in run.json decides what a later run reuses (that is the tables' provenance): a folder scored by 8
processes resumes in one, and the reverse. `scalelens report` reads it only to name the models that failed.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from logprob import __version__
from metrics.schema import write_atomic

RUN_FILE = "run.json"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunRecord:
    """The run.json of one run, kept in memory and rewritten whole on each change (rank 0 only)."""

    def __init__(self, out_dir: Path, world, command: str) -> None:
        self.path = Path(out_dir) / RUN_FILE
        kind = (world.device or "").split(":")[0] or None
        self.data: dict = {
            "scalelens_version": __version__,
            "command": command,
            "started": _now(),
            "finished": None,
            "status": "running",
            "error": None,
            "world_size": world.size,
            "device": kind,
            "backend": world.backend,
            "ranks": [{"rank": r, "requests": 0, "tokens": 0, "seconds": 0.0} for r in range(world.size)],
            "models": [],
        }

    def set_device(self, kind: str) -> None:
        """The device kind, once the first model is loaded (a single process knows it only then)."""
        if self.data["device"] is None:
            self.data["device"] = kind

    def add_model(self, entry: dict) -> None:
        """Append one model's entry, add its per-rank work to the run's totals, and write."""
        for total, rank in zip(self.data["ranks"], entry.get("ranks", []), strict=False):
            for key in ("requests", "tokens"):
                total[key] += rank[key]
            total["seconds"] = round(total["seconds"] + rank["seconds"], 3)
            total.setdefault("device", rank.get("device"))
        self.data["models"].append(entry)
        self.write()

    def finish(self, status: str, error: str | None = None) -> None:
        self.data.update(finished=_now(), status=status, error=error)
        self.write()

    def write(self) -> None:
        text = json.dumps(self.data, indent=1) + "\n"
        write_atomic(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_run_record(folder: Path) -> dict | None:
    """The folder's run.json, or None when there is none or it cannot be read (it is informational only)."""
    path = Path(folder) / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def failed_models(record: dict | None) -> list[tuple[str, str]]:
    """(label, error) of each model the recorded run could not load.

    >>> failed_models({"models": [{"model": "a", "status": "scored"}, {"model": "b", "status": "failed",
    ...                                                              "error": "no weights"}]})
    [('b', 'no weights')]
    """
    models = (record or {}).get("models") or []
    return [(str(m.get("model")), str(m.get("error") or "")) for m in models
            if isinstance(m, dict) and m.get("status") == "failed"]
