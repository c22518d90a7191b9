"""Smoke test of the benchmark harness (benchmarks/throughput.py, benchmarks/gpu.py): the three scoring methods agree
on a micro model, and the agreement check catches a disagreement. No timing is asserted anywhere."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu  # noqa: E402
import report_speed  # noqa: E402
import throughput  # noqa: E402

#: A micro GPT-NeoX; a large init spread makes the model's preferences sharp enough that greedy choices exist.
MICRO = dict(throughput.PYTHIA_70M, vocab_size=520, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, initializer_range=0.3)


def test_three_methods_agree_on_micro_workloads(tmp_path):
    stats = throughput.agreement_check(tmp_path, MICRO, vocab=512)  # raises ValueError on any disagreement
    # QUICK = 12 items × 4 choices for (a) and (c), 4 single continuations for (b), 12 prompts for (d)
    assert {name: n for name, (_, n, _) in stats.items()} == {"a": 48, "b": 4, "c": 48, "d": 12}
    assert all(worst <= throughput.ATOL for worst, _, _ in stats.values())
    assert stats["c"][2] > 0, "no greedy choice was scored, so the is_greedy agreement was not exercised"


def test_agreement_check_rejects_a_disagreement():
    requests = [("ctx", " a"), ("ctx", " b")]
    good = [(-3.0, False), (-300.0, True)]
    # |Δ| = 3e-4 on -300 is within 1e-4 + 1e-6·300 = 4e-4: accepted; 2e-4 on -3 is outside 1e-4 + 3e-6: rejected
    close = [(-3.0, False), (-300.0003, True)]
    assert throughput.check_agreement({"x": good, "y": close}, requests) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="y disagrees with x on logprob for request 0"):
        throughput.check_agreement({"x": good, "y": [(-3.0002, False), (-300.0, True)]}, requests)
    with pytest.raises(ValueError, match="is_greedy for request 1"):
        throughput.check_agreement({"x": good, "y": [(-3.0, False), (-300.0, False)]}, requests)
    with pytest.raises(ValueError, match="y: 1 results, expected 2"):
        throughput.check_agreement({"x": good, "y": good[:1]}, requests)


def test_gpu_formulas_by_hand():
    # 2 · 7e9 params · 1e5 tokens = 1.4e15 FLOPs in 2 s = 7e14 FLOP/s, of a 1e15 peak: 0.7
    assert gpu.mfu(7 * 10**9, 10**5, 2.0, 1e15) == pytest.approx(0.7)
    # relative errors 0.01, 0.1 (outside 0.05), 0; is_greedy equal on 2 of 3
    f32 = [(-10.0, True), (-2.0, False), (-1.0, False)]
    stats = gpu.bf16_agreement(f32, [(-10.1, True), (-2.2, True), (-1.0, False)])
    assert stats["max_rel"] == pytest.approx(0.1)
    assert stats["within"] == pytest.approx(2 / 3)
    assert stats["greedy_agree"] == pytest.approx(2 / 3)


def test_gpu_script_without_cuda_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", "unused.md"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("workload", ["a", "b", "c"])
def test_bare_arithmetic_runs_each_context_once_and_the_head_where_a_token_is_predicted(tmp_path, workload):
    path = throughput.build_checkpoint(tmp_path / "micro", MICRO, vocab=512)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    w = throughput.make_workloads(tokenizer, throughput.QUICK)[workload]
    sequences = throughput.bare_sequences(tokenizer, w)
    assert len(sequences) == len(w.items)  # one pass per item: the context is not repeated per choice
    for (ids, n_head), (_, ctx, conts) in zip(sequences, w.items, strict=True):
        ctx_ids = tokenizer(ctx)["input_ids"]
        cont_lens = [len(tokenizer(ctx + c)["input_ids"]) - len(ctx_ids) for c in conts]  # continuations carry
        assert ids[: len(ctx_ids)] == ctx_ids  # their leading space, so lm-eval's split is the plain one
        assert len(ids) == len(ctx_ids) + sum(n - 1 for n in cont_lens)  # each continuation feeds all but its last
        assert n_head == 1 + sum(n - 1 for n in cont_lens)  # the context's last position predicts every first token
        if workload == "c":
            assert (len(ids), n_head) == (len(ctx_ids), 1)  # one-token choices: the context alone, the head once
    assert throughput.load_method("bare", path, 0)(w) == []


def test_generation_agreement_check_and_token_count(tmp_path):
    path = throughput.build_checkpoint(tmp_path / "micro", MICRO, vocab=512)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    w = throughput.make_workloads(tokenizer, throughput.QUICK)["d"]
    reference = [("x", 3)] * len(w.items)
    assert throughput.generation_tokens(tokenizer, w, reference) == sum(
        len(tokenizer(ctx)["input_ids"]) + 3 for _, ctx, _ in w.items)
    with pytest.raises(ValueError, match="lm-eval disagrees with plain on the answer to prompt 1"):
        throughput.check_generations({"plain": [("a", 8), ("b", 8)], "lm-eval": ["a", "c"]}, ["p0", "p1"])
    assert throughput.load_method("bare", path, 0)(w) == []


def test_report_speed_builds_tables_the_analysis_accepts(tmp_path):
    """The report benchmark's synthetic inputs pass the schemas and carry the sizes it reports (no timing)."""
    import numpy as np

    from metrics.folder import read_run_folder
    from metrics.schema import ITEM_METRICS, validate

    items = validate(report_speed.synthetic_item_metrics(30, np.random.default_rng(0)), ITEM_METRICS, "items")
    assert items["metric"].n_unique() == 20 and items["model"].n_unique() == len(report_speed.SIZES)
    assert items.height == 20 * 30 * len(report_speed.SIZES)
    report_speed.synthetic_run_folder(tmp_path, 30, np.random.default_rng(0))
    scores, _ = read_run_folder(tmp_path)
    assert scores.height == len(report_speed.SIZES) * 30 * 4
