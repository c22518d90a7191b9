"""Device policy in one place (logprob/device.py): one token budget per model shared by scoring and generation, one
out-of-memory rule (halve, or fail in one line when nothing is left to halve); and big-model placement with
`--device-map auto --max-memory`, on the map a CPU machine allows: layers in RAM up to the limit, the rest read
from disk, the output head among them."""

from __future__ import annotations

import functools
import json
import logging

import numpy as np
import polars as pl
import pytest
import torch

import logprob.score as score_module
from logprob.cli import main
from logprob.config import ModelSpec, ScoreConfig
from logprob.device import CPU_TOKEN_BUDGET, DeviceOutOfMemory, TokenBudget, execution_device, halve
from logprob.distributed import join
from logprob.generate import generate_items
from logprob.model import load_model
from logprob.tasks import Item

ITEMS = [Item(f"q{k}", f"Question {k}: what is the capital of France?\nAnswer:", choices=(" Paris", " Lyon", " Nice"),
              target=0) for k in range(4)]
PROMPTS = [Item(f"g{k}", f"The quick brown fox {k}", references=(" jumps",)) for k in range(4)]
#: cpu=110KB splits the tiny GPT-NeoX (35,040 float32 parameters, 140 kB): embedding and layer 0 in RAM; layer 1,
#: the final norm and the (untied) output head on disk (measured with transformers 5.24 / accelerate 1.15).
SPLIT = (("cpu", "110KB"),)


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(ModelSpec(tiny_model_dir("gpt_neox"), device="cpu", dtype="float32"))


# ---------------------------------------------------------------------------------------------------- budget


def test_one_budget_is_shared_by_scoring_and_generation(loaded, monkeypatch, caplog):
    """An out-of-memory error while scoring halves the model's budget; generation then plans under the halved one."""
    real = score_module.run_pass

    def oom_above_one_segment(base, head, batch, *args, **kwargs):
        if len(np.unique(batch.segment[batch.segment >= 0])) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(base, head, batch, *args, **kwargs)

    monkeypatch.setattr(score_module, "run_pass", oom_above_one_segment)
    budget = TokenBudget(400, "given")
    expected = score_module.score_items(loaded, ITEMS, ScoreConfig(token_budget=10_000))  # one pass, no error
    with caplog.at_level(logging.WARNING, logger="logprob.device"):
        got = score_module.score_items(loaded, ITEMS, ScoreConfig(), budget=budget)
    assert budget.initial == 400 and budget.value < 400 and budget.value == 400 >> budget.halvings
    assert "out of memory" in caplog.text and "segments with token budget" in caplog.text
    np.testing.assert_allclose(got["logprob"].to_numpy(), expected["logprob"].to_numpy(), atol=1e-5)

    halved = budget.value
    batches = []  # (rows, tokens) of each generation batch: rows × (longest prompt + max_new_tokens)
    real_forward = loaded.model.forward

    @functools.wraps(real_forward)  # generate.py reads the signature for the name of the cache argument
    def record(*args, **kwargs):
        if "cache" not in kwargs and "past_key_values" not in kwargs:  # a batch's first step: the prompts
            rows, width = kwargs["input_ids"].shape
            batches.append((rows, rows * (width + 3)))
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", record)
    generate_items(loaded, PROMPTS, ScoreConfig(max_new_tokens=3), budget=budget)
    assert sum(rows for rows, _ in batches) == len(PROMPTS)
    assert all(tokens <= halved for rows, tokens in batches if rows > 1)
    one_batch = len(PROMPTS) * max(tokens // rows for rows, tokens in batches)
    assert one_batch <= 400 and len(batches) > 1  # the first budget would have held them all in one batch


def test_out_of_memory_on_the_smallest_pass_is_one_line_in_both(loaded, monkeypatch):
    def always_oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(score_module, "run_pass", always_oom)
    # one item is one segment: its first pass cannot shrink
    with pytest.raises(DeviceOutOfMemory, match=r"out of memory on cpu for a single segment at token budget 64; "
                                                r"give the model more memory \(--device-map auto"):
        score_module.score_items(loaded, ITEMS[:1], ScoreConfig(token_budget=64))
    monkeypatch.setattr(loaded.model, "forward", always_oom)
    # equal prompts of w tokens + 3 new ones: batches of 64 // w rows, halving until one row is left (budget < 2w)
    width = max(len(loaded.tokenizer(p.context)["input_ids"]) for p in PROMPTS) + 3
    budget = 64
    while budget >= 2 * width:
        budget //= 2
    with pytest.raises(DeviceOutOfMemory, match=f"for a single generative item at token budget {budget};"):
        generate_items(loaded, PROMPTS, ScoreConfig(token_budget=64, max_new_tokens=3))


def test_other_errors_are_not_mistaken_for_out_of_memory(loaded, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(score_module, "run_pass", broken)
    budget = TokenBudget(400, "given")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        score_module.score_items(loaded, ITEMS, ScoreConfig(), budget=budget)
    assert budget.value == 400  # not halved


def test_budget_resolution(loaded):
    assert (TokenBudget.resolve(loaded, None).value, TokenBudget.resolve(loaded, None).source) == (CPU_TOKEN_BUDGET,
                                                                                                   "cpu")
    assert (TokenBudget.resolve(loaded, 123).value, TokenBudget.resolve(loaded, 123).source) == (123, "given")
    assert [halve(b) for b in (400, 200, 3, 1)] == [200, 100, 1, 1]
    with pytest.raises(ValueError, match="token_budget"):
        TokenBudget(0, "given")


# ---------------------------------------------------------------------------------------------------- placement


def test_device_map_auto_on_a_cpu_and_disk_map_scores_and_generates_the_same(tiny_model_dir, loaded):
    spread = load_model(ModelSpec(tiny_model_dir("gpt_neox"), device="cpu", dtype="float32", device_map="auto",
                                  max_memory=SPLIT))
    assert set(spread.placement.values()) == {"cpu", "disk"}
    head = spread.model.get_output_embeddings()
    assert head.weight.device.type == "meta" and execution_device(head) == torch.device("cpu")  # read from disk
    got = score_module.score_items(spread, ITEMS, ScoreConfig())
    want = score_module.score_items(loaded, ITEMS, ScoreConfig())
    np.testing.assert_allclose(got["logprob"].to_numpy(), want["logprob"].to_numpy(), atol=1e-6)
    assert got["token_ranks"].to_list() == want["token_ranks"].to_list()
    config = ScoreConfig(max_new_tokens=4)
    assert generate_items(spread, PROMPTS, config).equals(generate_items(loaded, PROMPTS, config))


def test_device_map_from_the_command_line(tiny_model_dir, tmp_path, capsys):
    task = tmp_path / "t.jsonl"
    task.write_text("".join(json.dumps({"id": it.item_id, "context": it.context, "choices": list(it.choices),
                                        "target": 0}) + "\n" for it in ITEMS))
    path = tiny_model_dir("gpt_neox")
    base = ["score", "--model", path, "--task", str(task), "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "spread"), "--device-map", "auto", "--max-memory", "cpu=110KB"]) == 0
    plain, spread = (pl.read_parquet(tmp_path / d / "scores.parquet") for d in ("plain", "spread"))
    np.testing.assert_allclose(spread["logprob"].to_numpy(), plain["logprob"].to_numpy(), atol=1e-6)
    assert json.loads((tmp_path / "spread" / "run.json").read_text())["models"][0]["placement"] == ["cpu", "disk"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--max-memory", "cpu=1GiB"], "--max-memory: applies only with --device-map auto"),
    (["--device-map", "auto", "--max-memory", "cpu=lots"], "--max-memory cpu=lots: expected DEVICE=SIZE"),
    (["--device-map", "auto", "--max-memory", "0=1GiB"], "--max-memory: names a GPU, but --device cpu"),
    (["--device-map", "auto", "--max-memory", "cpu=1GiB,cpu=2GiB"], "device cpu is given twice"),
])
def test_placement_mistakes_are_one_line(args, needle, tiny_model_dir, tmp_path, capsys):
    code = main(["score", "--model", tiny_model_dir("gpt_neox"), "--task", str(tmp_path / "never-read.jsonl"),
                 "--out", str(tmp_path / "out"), "--device", "cpu", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err


def test_under_a_launcher_each_process_takes_a_whole_device(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="under 2 processes each takes its own GPU"):
        join("cuda:1")
    with pytest.raises(ValueError, match="--device-map auto: spreads one model over the devices of one process"):
        join("auto", "auto")
    monkeypatch.delenv("WORLD_SIZE")
    assert join("cuda:1").size == 1  # alone: nothing to join
