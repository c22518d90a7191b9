"""The built-in model ladders: small Llama LMs trained here on fixed-width addition, shipped with their task files,
so `scalelens demo` can show a sharp metric jumping while smooth ones improve steadily. Two families of the same
sizes: the direct ladder (`LADDER_DIR`, answer right after the prompt; formats in `data`) and the scratchpad ladder
(`SCRATCHPAD_LADDER_DIR`, column-by-column working before the answer; format in `scratchpad`)."""

from __future__ import annotations

import json
from pathlib import Path

from logprob.ladder.train import train_ladder

LADDER_DIR = Path(__file__).parent / "models"
SCRATCHPAD_LADDER_DIR = Path(__file__).parent / "models_scratchpad"
TASKS_DIR = Path(__file__).parent / "tasks"
ADDITION_MC_TASK = TASKS_DIR / "addition_mc.jsonl"
ADDITION_GEN_TASK = TASKS_DIR / "addition_gen.jsonl"
#: The direct generative task's problems and ids, with the scratchpad and answer as reference (`scratchpad`).
ADDITION_SCRATCHPAD_GEN_TASK = TASKS_DIR / "addition_scratchpad_gen.jsonl"

__all__ = [
    "ADDITION_GEN_TASK",
    "ADDITION_MC_TASK",
    "ADDITION_SCRATCHPAD_GEN_TASK",
    "LADDER_DIR",
    "SCRATCHPAD_LADDER_DIR",
    "TASKS_DIR",
    "load_manifest",
    "train_ladder",
]


def load_manifest(path: str | Path = LADDER_DIR) -> dict:
    """The ladder's manifest, with each model's `directory` made absolute. `path` is the ladder directory or the
    manifest file itself."""
    path = Path(path)
    manifest_path = path / "manifest.json" if path.is_dir() else path
    if not manifest_path.is_file():
        raise ValueError(f"path: expected a ladder directory holding manifest.json, got {str(path)!r}")
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["models"]:
        entry["directory"] = str(manifest_path.parent / entry["directory"])
    return manifest
