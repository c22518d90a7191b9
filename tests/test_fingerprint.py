"""Checkpoint fingerprints change when weights, config or tokenizer change and not when a checkpoint is copied or
documented; task hashes follow the items as scored."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from logprob import fingerprint
from logprob.fingerprint import CheckpointError, model_fingerprint, safetensors_header, task_hash
from logprob.ladder import ADDITION_MC_TASK, LADDER_DIR
from logprob.tasks import load_jsonl

M0 = LADDER_DIR / "ladder-00-1k"


def copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(M0, tmp_path / name))


def test_a_copy_elsewhere_keeps_the_fingerprint_and_documentation_or_training_state_do_not_count(tmp_path):
    path = copy(tmp_path, "elsewhere")
    (path / "README.md").write_text("# notes")
    (path / ".gitattributes").write_text("*.safetensors filter=lfs")
    (path / "trainer_state.json").write_text('{"global_step": 10}')
    (path / "optimizer.pt").write_bytes(b"optimizer state")
    assert model_fingerprint(path) == model_fingerprint(M0)


@pytest.mark.parametrize("file", ["config.json", "tokenizer.json", "generation_config.json"])
def test_a_changed_config_or_tokenizer_changes_it(tmp_path, file):
    path = copy(tmp_path, "edited")
    (path / file).write_text((path / file).read_text().replace("}", ' }', 1))
    assert model_fingerprint(path) != model_fingerprint(M0)


def two_checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    """Same architecture, other weights: identical safetensors headers and sizes (a retrained model)."""
    dirs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"seed{seed}"
        path.mkdir()
        save_file({"a.weight": torch.randn(64, 64), "b.weight": torch.randn(4096)}, path / "model.safetensors")
        dirs.append(path)
    return dirs[0], dirs[1]


@pytest.mark.parametrize("sampled", [False, True])
def test_other_weights_under_the_same_header_change_it(tmp_path, monkeypatch, sampled):
    if sampled:  # the large-file path: header plus samples of every tensor
        monkeypatch.setattr(fingerprint, "WHOLE_FILE_BYTES", 0)
    a, b = two_checkpoints(tmp_path)
    assert safetensors_header(a / "model.safetensors")[0] == safetensors_header(b / "model.safetensors")[0]
    assert (a / "model.safetensors").stat().st_size == (b / "model.safetensors").stat().st_size
    assert model_fingerprint(a) != model_fingerprint(b)
    assert model_fingerprint(a) == model_fingerprint(Path(shutil.copytree(a, tmp_path / "copy")))


def test_sampled_fingerprint_sees_a_change_in_the_middle_of_a_tensor(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "WHOLE_FILE_BYTES", 0)
    a, _ = two_checkpoints(tmp_path)
    before = model_fingerprint(a)
    path = a / "model.safetensors"
    _, header, start = safetensors_header(path)
    begin, end = header["b.weight"]["data_offsets"]  # 16384 bytes; the middle sample covers its centre
    data = bytearray(path.read_bytes())
    data[start + (begin + end) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert model_fingerprint(a) != before


def test_a_truncated_safetensors_file_is_named(tmp_path):
    path = copy(tmp_path, "truncated") / "model.safetensors"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=f"model.safetensors: truncated: {size - 10} bytes where its header "
                                              f"describes {size}"):
        safetensors_header(path)
    path.write_bytes(b"\x05\x00")
    with pytest.raises(CheckpointError, match="not a complete safetensors file"):
        safetensors_header(path)


def test_task_hash_follows_the_items_not_the_name():
    task = load_jsonl(ADDITION_MC_TASK)
    assert task_hash(replace(task, name="renamed")) == task_hash(task)
    assert task_hash(replace(task, items=task.items[::-1])) != task_hash(task)  # order is part of what is scored
    first = task.items[0]
    edited = replace(first, target=((first.target[0] + 1) % len(first.choices),))
    assert task_hash(replace(task, items=(edited, *task.items[1:]))) != task_hash(task)
