"""The built-in ladder: shipped weights match the manifest, task files are well-formed and held out, and
`train_ladder` is deterministic. Expected values are recomputed independently of the training code.

Tests named `test_data_*` are data checks: they read the shipped manifest and task files and test what those files
record (the ladder's sizes, its exact-match jump, correct sums), not any code, so they fail when the shipped data
change, never when code breaks."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from logprob.ladder import ADDITION_GEN_TASK, ADDITION_MC_TASK, LADDER_DIR, data, load_manifest, train_ladder
from logprob.ladder.train import DEFAULT_SIZES, LadderSize, lr_at
from logprob.model import count_parameters
from logprob.tasks import load_jsonl

MANIFEST = load_manifest()
MODELS = MANIFEST["models"]


def _parse(context: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{4})\+(\d{4})=", context)
    assert match, context
    return int(match[1]), int(match[2])


def _llama_non_embedding(d: int, layers: int, d_ff: int) -> int:
    """By hand: per layer q,k,v,o (4 d², no biases), gate/up/down (3 d d_ff), two RMSNorm weights (2 d); plus the
    final norm (d). Tied embeddings and RoPE add nothing to the non-embedding count."""
    return layers * (4 * d * d + 3 * d * d_ff + 2 * d) + d


@pytest.mark.parametrize("entry", MODELS, ids=[m["name"] for m in MODELS])
def test_shipped_model_matches_manifest(entry):
    directory = Path(entry["directory"])
    model = AutoModelForCausalLM.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    cfg = entry["config"]
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == entry["params"]
    assert entry["params"] == _llama_non_embedding(cfg["d_model"], cfg["n_layers"], cfg["d_ff"]) + 18 * cfg["d_model"]
    assert entry["non_embedding_params"] == _llama_non_embedding(cfg["d_model"], cfg["n_layers"], cfg["d_ff"])
    assert count_parameters(model) == (entry["params"], entry["non_embedding_params"])
    digest = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    assert digest == entry["sha256"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("0123+4567=").input_ids) == list("0123+4567=")


def test_data_ladder_spans_two_orders_of_magnitude_within_30_mb():
    assert all(Path(m["directory"]).parent == LADDER_DIR for m in MODELS)
    counts = [m["non_embedding_params"] for m in MODELS]
    assert len(MODELS) >= 6
    assert counts == sorted(counts)
    assert counts[-1] >= 100 * counts[0]
    sizes = [(Path(m["directory"]) / "model.safetensors").stat().st_size for m in MODELS]
    assert sum(sizes) == MANIFEST["total_weights_bytes"] <= 30 * 2**20


@pytest.mark.parametrize("entry", MODELS, ids=[m["name"] for m in MODELS])
def test_greedy_generation_agrees_with_recorded_exact_match(entry):
    """Greedy decoding reproduces the reference digits exactly when every teacher-forced argmax is right, so
    `generate` is an independent check of the manifest's exact match."""
    model = AutoModelForCausalLM.from_pretrained(entry["directory"])
    tokenizer = AutoTokenizer.from_pretrained(entry["directory"])
    items = load_jsonl(ADDITION_GEN_TASK).items
    ids = torch.tensor([tokenizer(item.context).input_ids for item in items])  # (N, 10): every prompt is 10 tokens
    out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)  # (N, 16)
    texts = tokenizer.batch_decode(out[:, ids.shape[1] :])
    exact = np.mean([text[:5] == item.references[0] for text, item in zip(texts, items)])
    assert exact == pytest.approx(entry["heldout"]["exact_match"], abs=1e-6)


def test_data_manifest_exact_match_jumps_while_per_token_scores_rise():
    """The phenomenon the ladder exists for: exact match from ~0 to >= 0.8 with one big step between neighbours;
    per-token accuracy and log-probability never fall by more than a saturated model's noise (0.005); and while
    exact match is still ~0 the per-token log-prob has already improved by more than 0.4 nats per token."""
    exact = [m["heldout"]["exact_match"] for m in MODELS]
    assert exact[0] < 0.05 and exact[-1] >= 0.8
    assert max(b - a for a, b in zip(exact, exact[1:])) > 0.5
    for name in ("token_accuracy", "token_logprob"):
        values = [m["heldout"][name] for m in MODELS]
        assert all(b > a - 0.005 for a, b in zip(values, values[1:])), (name, values)
        assert values[-1] - values[0] > 0.5
    logprob = [m["heldout"]["token_logprob"] for m in MODELS]
    still_zero = [i for i, e in enumerate(exact) if e < 0.05]
    assert logprob[max(still_zero)] - logprob[0] > 0.4, (exact, logprob)


def test_data_task_files_parse_and_are_correct():
    mc, gen = load_jsonl(ADDITION_MC_TASK).items, load_jsonl(ADDITION_GEN_TASK).items
    assert len(mc) == len(gen) == MANIFEST["heldout_size"] == data.HELDOUT_SIZE
    for m, g in zip(mc, gen):
        a, b = _parse(m.context)
        total = f"{a + b:05d}"
        assert 100 <= a <= 9999 and 100 <= b <= 9999
        assert len(set(m.choices)) == 4
        assert all(re.fullmatch(r"[01]\d{4}\n", c) for c in m.choices)
        assert [c for c in m.choices if c == total + "\n"] == [total + "\n"]
        assert m.target == (m.choices.index(total + "\n"),)
        assert (g.item_id, g.context, g.references) == (m.item_id, m.context, (total,))
    assert len({_parse(m.context) for m in mc}) == len(mc)
    targets = np.bincount([m.target[0] for m in mc], minlength=4)
    assert targets.min() > 0.15 * len(mc)  # shuffled: the correct answer is not always in one slot


def test_task_files_are_the_heldout_problems():
    assert [_parse(m.context) for m in load_jsonl(ADDITION_MC_TASK).items] == data.heldout_problems(
        MANIFEST["data_seed"]
    )


def test_training_stream_never_yields_a_heldout_pair():
    heldout = data.heldout_problems()
    held = set(heldout)
    stream = data.training_batches(data.DATA_SEED, 512, heldout)
    seen = np.concatenate([next(stream) for _ in range(50)])  # (25600, 2)
    assert not held & set(map(tuple, seen.tolist()))
    # the filter itself, on a draw salted with held-out pairs (a stream alone would almost never hit one)
    salted = np.concatenate([seen[:100], np.array(heldout[:7])])  # (107, 2)
    assert data.is_heldout(salted, heldout).tolist() == [False] * 100 + [True] * 7
    assert data.is_heldout(np.array([[4554, 2138]]), [(2138, 4554)]).tolist() == [False]


def test_operand_digit_counts_are_balanced():
    pairs = data.sample_problems(np.random.default_rng(0), 20_000)  # (20000, 2)
    assert pairs.min() >= 100 and pairs.max() <= 9999
    three_digit = (pairs < 1000).mean()
    assert 0.48 < three_digit < 0.52  # digit count is drawn first, uniformly from {3, 4}


def test_training_encoding_masks_the_prompt():
    tokenizer = data.build_tokenizer()
    ids, labels = data.encode_training(np.array([[123, 4567]]), tokenizer.get_vocab())
    assert tokenizer.decode(ids[0]) == "0123+4567=04690\n"
    assert labels[0].tolist()[:10] == [-100] * 10
    assert tokenizer.decode(labels[0, 10:]) == "04690\n"


def test_tokenizer_boundary_is_clean():
    """lm-eval encodes context + continuation together and splits at the context's length; one token per
    character makes that split exact, and no special token is ever added."""
    tokenizer = AutoTokenizer.from_pretrained(MODELS[0]["directory"])
    context, choice = "0123+4567=", "04690\n"
    whole = tokenizer(context + choice).input_ids
    assert whole[:10] == tokenizer(context).input_ids == tokenizer(context, add_special_tokens=False).input_ids
    assert tokenizer.decode(whole[10:]) == choice
    assert tokenizer(" x").input_ids == [tokenizer.convert_tokens_to_ids(" "), tokenizer.unk_token_id]


def test_mc_distractors_by_hand():
    # 58 + 67 = 125 → "00125"; dropped units carry: 115; adjacent swaps of differing digits; ±1 digit edits
    choices, target = data.mc_choices(58, 67, np.random.default_rng(0))
    assert choices[target] == "00125\n"
    assert "00115\n" in choices
    assert all(sum(x != y for x, y in zip(c, "00125\n")) in (1, 2) for c in choices if c != "00125\n")


def test_lr_schedule_by_hand():
    # 100 steps: warm-up 5 steps (lr * (step+1)/5), then cosine from lr to 0.1 lr over the 95 remaining steps
    assert lr_at(0, 100, 1.0) == pytest.approx(0.2)
    assert lr_at(4, 100, 1.0) == pytest.approx(1.0)
    assert lr_at(5, 100, 1.0) == pytest.approx(1.0)
    assert lr_at(5 + 95 // 2, 100, 1.0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 47 / 95)))
    assert lr_at(100, 100, 1.0) == pytest.approx(0.1)


def test_reduced_train_ladder_is_deterministic(tmp_path):
    micro = (
        LadderSize("micro-a", d_model=8, n_layers=1, n_heads=2, d_ff=16, steps=20, lr=3e-3, batch_size=32),
        LadderSize("micro-b", d_model=16, n_layers=1, n_heads=2, d_ff=32, steps=20, lr=3e-3, batch_size=32),
    )
    calls = []
    first = train_ladder(tmp_path / "a", seed=3, sizes=micro, threads=1, progress=lambda *a: calls.append(a))
    second = train_ladder(tmp_path / "b", seed=3, sizes=micro, threads=1)
    other = train_ladder(tmp_path / "c", seed=4, sizes=micro[:1], threads=1)
    assert len(calls) == 40 and calls[0][:3] == ("micro-a", 0, 20)
    assert [m["sha256"] for m in first["models"]] == [m["sha256"] for m in second["models"]]
    assert other["models"][0]["sha256"] != first["models"][0]["sha256"]
    manifest = load_manifest(tmp_path / "a")
    # non-embedding: 4*8²+3*8*16+2*8+8 = 664 → "664"; 4*16²+3*16*32+2*16+16 = 2608 → "3k"
    assert [m["name"] for m in manifest["models"]] == ["micro-a-664", "micro-b-3k"]
    assert [m["non_embedding_params"] for m in manifest["models"]] == [664, 2608]
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["models"][0]["directory"] == "micro-a-664"
    for entry in manifest["models"]:
        model = AutoModelForCausalLM.from_pretrained(entry["directory"])
        assert sum(p.numel() for p in model.parameters()) == entry["params"]
        cfg = entry["config"]
        assert count_parameters(model)[1] == _llama_non_embedding(cfg["d_model"], 1, cfg["d_ff"])
    shipped_mc = load_jsonl(ADDITION_MC_TASK).items
    assert load_jsonl(tmp_path / "a" / manifest["tasks"]["multiple_choice"]).items == shipped_mc


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="sizes"):
        train_ladder(tmp_path, sizes=())
    with pytest.raises(ValueError, match="manifest.json"):
        load_manifest(tmp_path / "missing")


def test_default_sizes_are_the_shipped_ladder_and_grow():
    assert [s.name for s in DEFAULT_SIZES] == [m["name"].rsplit("-", 1)[0] for m in MODELS]
    counts = [_llama_non_embedding(s.d_model, s.n_layers, s.d_ff) for s in DEFAULT_SIZES]
    assert all(b > a for a, b in zip(counts, counts[1:]))
