"""The scratchpad ladder: its format by hand, its task file, held-out exclusion, reproducible training, and shipped
weights that match their manifest. Expected values are worked out by hand or recomputed here independently of the
training code.

Tests named `test_data_*` are data checks: they read the shipped manifests, weights and task files and test what
those record, so they fail when the shipped data change, not when code breaks."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from logprob.config import ModelSpec, ScoreConfig
from logprob.generate import generate_items
from logprob.ladder import (
    ADDITION_GEN_TASK,
    ADDITION_SCRATCHPAD_GEN_TASK,
    LADDER_DIR,
    SCRATCHPAD_LADDER_DIR,
    data,
    load_manifest,
    scratchpad,
    train,
    train_ladder,
)
from logprob.ladder.train import DEFAULT_SIZES, SCRATCHPAD_SIZES, LadderSize
from logprob.model import count_parameters, load_model
from logprob.tasks import load_jsonl

MANIFEST = load_manifest(SCRATCHPAD_LADDER_DIR)
MODELS = MANIFEST["models"]
DIRECT = load_manifest(LADDER_DIR)
MICRO = LadderSize("micro", d_model=8, n_layers=1, n_heads=2, d_ff=16, steps=12, lr=3e-3, batch_size=16)


def _check_working(context: str, written: str) -> str:
    """An independent reading of a scratchpad target: every group's operand digits are the prompt's, units first,
    its carry in is the previous group's carry out (0 for the units), its total is their sum, and the answer after
    ';' is the last total followed by the earlier sum digits, most significant first. Returns the answer."""
    a, b = re.fullmatch(r"(\d{4})\+(\d{4})=", context).groups()
    groups, answer = re.fullmatch(r"((?:\d{5}\|){4});(\d{5})", written).groups()
    carry = 0
    sums = []
    for i, group in enumerate(groups.split("|")[:4]):
        x, y, c, total = int(group[0]), int(group[1]), int(group[2]), int(group[3:5])
        assert (group[0], group[1]) == (a[3 - i], b[3 - i]), (context, written)
        assert c == carry and total == x + y + c, (context, written)
        carry, sums = total // 10, [total % 10] + sums
    assert answer == str(carry) + "".join(map(str, sums)), (context, written)  # sums: most significant first
    return answer


def test_scratchpad_format_by_hand():
    # 123 + 4567: 3+7+0 = 10, 2+6+1 = 09, 1+5+0 = 06, 0+4+0 = 04 → 04690
    assert scratchpad.target(123, 4567) == "37010|26109|15006|04004|;04690"
    # 9999 + 9999: a carry out of every column, 9+9+0 = 18, then 9+9+1 = 19 three times → 19998
    assert scratchpad.target(9999, 9999) == "99018|99119|99119|99119|;19998"
    # 1234 + 4321: no carry anywhere → 05555
    assert scratchpad.target(1234, 4321) == "41005|32005|23005|14005|;05555"
    # 100 + 900: the only carry comes out of the hundreds and ends as the thousands digit → 01000
    assert scratchpad.target(100, 900) == "00000|00000|19010|00101|;01000"
    # 9999 + 1: one carry rippling through every column → 10000
    assert scratchpad.target(9999, 1) == "91010|90110|90110|90110|;10000"
    tokenizer = scratchpad.build_tokenizer()
    ids, labels = scratchpad.encode_training(np.array([[123, 4567]]), tokenizer.get_vocab())
    assert ids.shape == labels.shape == (1, 41)
    assert tokenizer.decode(ids[0]) == "0123+4567=37010|26109|15006|04004|;04690\n"
    assert labels[0, :10].tolist() == [-100] * 10
    assert tokenizer.decode(labels[0, 10:]) == "37010|26109|15006|04004|;04690\n"  # working, answer, newline learned


def test_final_answer_follows_from_the_scratchpad():
    for a, b in [(123, 4567), (9999, 9999), (1234, 4321), (100, 900), (9999, 1), (5005, 4995)]:
        written = scratchpad.target(a, b)
        assert _check_working(data.prompt(a, b), written) == f"{a + b:05d}"
        assert scratchpad.answer_from_scratchpad(written) == f"{a + b:05d}"
    # read mechanically off a scratchpad that is wrong: the answer is what the working says, not the true sum
    assert scratchpad.answer_from_scratchpad("37010|26109|15007|04004|") == "04790"


def test_answer_extraction_by_hand():
    assert re.fullmatch(scratchpad.ANSWER_PATTERN, ";04690")
    assert scratchpad.extract_answer("37010|26109|15006|04004|;04690") == "04690"
    assert scratchpad.extract_answer("37010|26109|15006|04004|;04690|;11111\n") == "04690"  # the first one
    assert scratchpad.extract_answer("37010|26109|15006|04004|;0469") is None  # four digits only
    assert scratchpad.extract_answer("37010|26109|\n;04690") is None  # after the newline: not part of the answer
    assert scratchpad.extract_answer("37010|26109|15006|04004|04690") is None  # no ";"


def test_tokenizer_covers_every_character_of_the_format():
    tokenizer = scratchpad.build_tokenizer()
    direct = data.build_tokenizer()
    for item in load_jsonl(ADDITION_SCRATCHPAD_GEN_TASK).items:
        text = item.context + item.references[0] + "\n"
        ids = tokenizer(text).input_ids
        assert tokenizer.unk_token_id not in ids and len(ids) == len(text) == 41
        assert tokenizer.decode(ids) == text
    # the characters both formats share keep their ids; "|" and ";" come after them
    assert {t: i for t, i in direct.get_vocab().items()}.items() <= tokenizer.get_vocab().items()
    assert len(tokenizer) == len(direct) + 2 == 20
    assert tokenizer("|;").input_ids == [18, 19]


def test_training_stream_of_the_scratchpad_family_holds_no_heldout_pair(tmp_path, monkeypatch):
    """Every problem the scratchpad family's training loop encodes is checked against the held-out pairs."""
    seen = []

    def recording(pairs, vocab):
        seen.append(pairs.copy())
        return scratchpad.encode_training(pairs, vocab)

    monkeypatch.setattr(train, "SCRATCHPAD", replace(train.SCRATCHPAD, encode=recording))
    train_ladder(tmp_path, sizes=(replace(MICRO, steps=40, batch_size=64),), threads=1, scratchpad=True)
    pairs = np.concatenate(seen)  # (2560, 2)
    assert pairs.shape == (40 * 64, 2)
    assert not set(map(tuple, pairs.tolist())) & set(data.heldout_problems())


def test_reduced_scratchpad_training_is_reproducible(tmp_path):
    first = train_ladder(tmp_path / "a", seed=3, sizes=(MICRO,), threads=1, scratchpad=True)
    second = train_ladder(tmp_path / "b", seed=3, sizes=(MICRO,), threads=1, scratchpad=True)
    direct = train_ladder(tmp_path / "c", seed=3, sizes=(MICRO,), threads=1)
    digest = hashlib.sha256((tmp_path / "a" / "micro-664" / "model.safetensors").read_bytes()).hexdigest()
    assert first["models"][0]["sha256"] == second["models"][0]["sha256"] == digest
    assert direct["models"][0]["sha256"] != digest  # another task, so other weights from the same seed
    assert first["family"] == "scratchpad" and direct["family"] == "direct"
    assert first["tasks"] == {"generative": "tasks/addition_scratchpad_gen.jsonl"}
    written = load_jsonl(tmp_path / "a" / "tasks" / "addition_scratchpad_gen.jsonl").items
    assert written == load_jsonl(ADDITION_SCRATCHPAD_GEN_TASK).items
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "micro-664")
    assert model.config.vocab_size == 20 and count_parameters(model) == (664 + 20 * 8, 664)
    assert set(first["models"][0]["heldout"]) == set(first["heldout_metrics"])


def test_cli_trains_the_scratchpad_family(tmp_path, monkeypatch):
    import logprob.ladder
    from logprob.cli import main

    calls = []
    monkeypatch.setattr(logprob.ladder, "train_ladder", lambda out, **kw: calls.append((out, kw)) or {"models": []})
    assert main(["ladder", "train", "--scratchpad", "--out", str(tmp_path)]) == 0
    assert main(["ladder", "train", "--out", str(tmp_path)]) == 0
    assert [kw["scratchpad"] for _, kw in calls] == [True, False]
    assert calls[0][1]["threads"] == 1 and calls[0][0] == tmp_path


def test_scratchpad_sizes_are_the_direct_sizes():
    assert [replace(s, name="") for s in SCRATCHPAD_SIZES] == [replace(s, name="") for s in DEFAULT_SIZES]
    assert [s.name for s in SCRATCHPAD_SIZES] == [f"scratchpad-{i:02d}" for i in range(len(DEFAULT_SIZES))]


def test_data_task_file_is_the_direct_problems_with_working():
    direct = load_jsonl(ADDITION_GEN_TASK).items
    written = load_jsonl(ADDITION_SCRATCHPAD_GEN_TASK).items
    assert len(written) == len(direct) == 400
    for d, s in zip(direct, written):
        assert (s.item_id, s.context) == (d.item_id, d.context)
        assert _check_working(s.context, s.references[0]) == d.references[0]


@pytest.mark.parametrize("entry", MODELS, ids=[m["name"] for m in MODELS])
def test_data_shipped_scratchpad_model_matches_manifest(entry):
    directory = Path(entry["directory"])
    assert directory.parent == SCRATCHPAD_LADDER_DIR
    model = AutoModelForCausalLM.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert model.dtype == torch.float32 and model.config.vocab_size == entry["config"]["vocab_size"] == 20
    digest = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    assert digest == entry["sha256"]
    assert count_parameters(model) == (entry["params"], entry["non_embedding_params"])
    assert tokenizer.convert_ids_to_tokens(tokenizer("0123+4567=37010|;").input_ids) == list("0123+4567=37010|;")


def test_data_scratchpad_ladder_is_the_direct_ladder_retrained():
    """Same rungs (architecture, non-embedding parameters, steps, batch, learning rate), seeds and held-out size;
    both families' weights together within 30 MB."""
    assert len(MODELS) == len(DIRECT["models"]) == 8
    for s, d in zip(MODELS, DIRECT["models"]):
        assert s["name"] == d["name"].replace("ladder", "scratchpad")
        assert {k: v for k, v in s["config"].items() if k != "vocab_size"} == {
            k: v for k, v in d["config"].items() if k != "vocab_size"
        }
        for key in ("non_embedding_params", "train_steps", "batch_size", "learning_rate"):
            assert s[key] == d[key], key
        assert s["params"] == d["params"] + 2 * s["config"]["d_model"]  # two more embedding rows: "|" and ";"
    for key in ("data_seed", "train_seed", "heldout_size", "threads"):
        assert MANIFEST[key] == DIRECT[key], key
    assert (MANIFEST["family"], DIRECT["family"]) == ("scratchpad", "direct")
    assert MANIFEST["answer_pattern"] == scratchpad.ANSWER_PATTERN
    assert (SCRATCHPAD_LADDER_DIR / MANIFEST["tasks"]["generative"]).resolve() == ADDITION_SCRATCHPAD_GEN_TASK
    weights = [Path(m["directory"]) / "model.safetensors" for m in MODELS + DIRECT["models"]]
    assert sum(w.stat().st_size for w in weights) <= 30 * 2**20


def test_data_greedy_generation_reproduces_recorded_exact_match():
    """scalelens's own generation (KV cache, left padding, stop at the newline) on the shipped task file, answers
    extracted by the pattern, against the training code's recorded exact match (argmax without a cache)."""
    items = load_jsonl(ADDITION_SCRATCHPAD_GEN_TASK).items
    config = ScoreConfig(max_new_tokens=32)
    for entry in MODELS:
        loaded = load_model(ModelSpec(entry["directory"], device="cpu", dtype="float32"))
        predictions = generate_items(loaded, items, config)["prediction"].to_list()
        answers = [re.search(r";(\d{5})", p) for p in predictions]
        exact = np.mean([m is not None and m[1] == item.references[0][-5:] for m, item in zip(answers, items)])
        strict = np.mean([re.search(r";(\d{5})$", p) is not None and p[-5:] == i.references[0][-5:]
                          for p, i in zip(predictions, items)])
        whole = np.mean([p == item.references[0] for p, item in zip(predictions, items)])
        assert exact == pytest.approx(entry["heldout"]["exact_match"], abs=1e-6), entry["name"]
        assert strict == pytest.approx(exact, abs=1e-6), entry["name"]  # tasks/README.md says so
        assert whole == pytest.approx(entry["heldout"]["generation_matches_reference"], abs=1e-6), entry["name"]
