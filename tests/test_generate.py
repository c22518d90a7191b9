"""Greedy generation: batched + left-padded + cached decoding equals a plain one-prompt argmax loop, and the stop
rules (stop sequence, EOS, max_new_tokens) cut where a hand trace says they should."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import torch
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from logprob.config import ModelSpec, ScoreConfig
from logprob.generate import COLUMNS, generate_items
from logprob.model import LoadedModel, load_model
from logprob.tasks import Item, load_bigbench
from logprob.tokenize import encode_pair
from metrics.schema import GENERATIONS
from metrics.text import edit_distances
from tests.conftest import FAMILIES, train_tokenizer

torch.set_num_threads(1)

CONTEXTS = [
    "Question: What is",
    "The quick brown fox jumps over the lazy dog.\nAnswer:",
    "A",
    "Zwölf Boxkämpfer jagen Viktor",
    "Question: 2 + 2 = ?\nAnswer: 4. Question: What is the capital",
    "fox",
]


@pytest.fixture(scope="module", params=["gpt_neox", "llama", "gpt2"])
def loaded(request, tiny_model_dir) -> LoadedModel:
    """GPT-NeoX and Llama (rotary: a constant position shift cancels) and GPT-2 (learned absolute positions, so a
    wrong position id under left padding changes its output); the Llama tokenizer prepends BOS."""
    return load_model(ModelSpec(tiny_model_dir(request.param), device="cpu", dtype="float32"))


def plain_greedy(model, prompt: list[int], max_new_tokens: int, eos: int) -> list[int]:
    """Reference decoder: full forward of the unpadded sequence each step, argmax at the last position."""
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            out.append(nxt)
            ids.append(nxt)
            if nxt == eos:
                break
    return out


def _items(contexts):
    items = [Item(f"g{k}", ctx, references=("Paris", " eight")) for k, ctx in enumerate(contexts)]
    items.insert(2, Item("mc", "Pick:", choices=(" a", " b"), target=(0,)))  # multiple choice: skipped
    return items


@pytest.mark.parametrize("budget", [None, 60])  # one left-padded batch of all prompts; several smaller batches
def test_batched_equals_plain_loop(loaded, budget):
    config = ScoreConfig(token_budget=budget, max_new_tokens=7, stop_sequences=())
    calls = []
    out = generate_items(loaded, _items(CONTEXTS), config, calls.append)

    assert out.schema == pl.Schema(COLUMNS)
    assert out["item_id"].to_list() == [f"g{k}" for k in range(len(CONTEXTS))]  # item order, "mc" skipped
    assert sum(calls) == len(CONTEXTS)
    assert (len(calls) == 1) == (budget is None)
    tok = loaded.tokenizer
    for row, ctx in zip(out.iter_rows(named=True), CONTEXTS, strict=True):
        expected = plain_greedy(loaded.model, tok(ctx).input_ids, 7, tok.eos_token_id)
        body = expected[:-1] if expected[-1] == tok.eos_token_id else expected
        assert row["generated_token_ids"] == body, ctx
        assert row["n_generated_tokens"] == len(expected)
        assert row["prediction"] == tok.decode(body)
        assert row["prediction_token_ids"] == encode_pair(tok, ctx, row["prediction"])[1]
        assert row["n_truncated"] == 0
        assert row["stop_reason"] == ("eos" if expected[-1] == tok.eos_token_id else "max_new_tokens")


def test_reference_ids_follow_boundary_rule(loaded):
    """Each reference is a continuation of the context: enc(ctx + ref) after enc(ctx)'s length; a trailing space of
    the context moves into the continuation."""
    tok = loaded.tokenizer
    ctx = "Question: What is the capital of France?\nAnswer:"
    item = Item("x", ctx + " ", references=("Paris", "Lyon"))
    out = generate_items(loaded, [item], ScoreConfig(max_new_tokens=2))
    n_ctx = len(tok(ctx).input_ids)
    expected = [tok(ctx + " " + ref).input_ids[n_ctx:] for ref in ("Paris", "Lyon")]
    assert out["reference_token_ids"].to_list() == [expected]
    assert out["references"].to_list() == [["Paris", "Lyon"]]


def test_left_truncation_keeps_the_end_and_warns(loaded, caplog):
    tok = loaded.tokenizer
    ids = tok(CONTEXTS[1]).input_ids
    assert len(ids) > 8
    config = ScoreConfig(max_length=12, max_new_tokens=4, stop_sequences=())
    with caplog.at_level(logging.WARNING, logger="logprob.generate"):
        out = generate_items(loaded, [Item("t", CONTEXTS[1], references=("x",))], config)
    assert "truncated from the left" in caplog.text
    expected = plain_greedy(loaded.model, ids[-8:], 4, tok.eos_token_id)  # 12 - 4 prompt tokens kept
    assert out["n_generated_tokens"][0] == len(expected)
    assert out["generated_token_ids"][0].to_list() == [t for t in expected if t != tok.eos_token_id]
    assert out["n_truncated"][0] == len(ids) - 8


def test_tokenizer_left_untouched(loaded):
    tok = loaded.tokenizer
    before = (tok.padding_side, tok.pad_token_id, tok.truncation_side)
    generate_items(loaded, _items(CONTEXTS[:3]), replace(ScoreConfig(), max_new_tokens=2))
    assert (tok.padding_side, tok.pad_token_id, tok.truncation_side) == before


# A scripted model over a character tokenizer, so that every generated token is known in advance: the next token is a
# fixed successor of the last input token. "c\n" is one token, so a stop sequence "\n" can fall inside a token.
CHARS = ["<e>", "Q", ":", " ", "a", "b", "c", "\n", "x", "e", "c\n", "d"]
SUCCESSOR = {"a": "b", "b": "c", "c": "\n", "\n": "x", "x": "x", "e": "<e>", "d": "c\n"}


class SuccessorLM(torch.nn.Module):
    """logits = one-hot of SUCCESSOR[last input token] (else "x"); a causal LM's call signature and output fields.
    With `oom_above` rows or more in a batch it raises CUDA's out-of-memory error."""

    def __init__(self, oom_above: int | None = None):
        super().__init__()
        self.table = torch.tensor([CHARS.index(SUCCESSOR.get(c, "x")) for c in CHARS])
        self.oom_above = oom_above
        self.batch_rows: list[int] = []

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                logits_to_keep=0):
        if cache is None:
            self.batch_rows.append(input_ids.shape[0])
        if self.oom_above is not None and input_ids.shape[0] > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        nxt = self.table[input_ids[:, -1:]]  # (B, 1)
        return SimpleNamespace(logits=torch.nn.functional.one_hot(nxt, len(CHARS)).float(), cache="kv")


def _scripted(max_length: int = 64, oom_above: int | None = None) -> LoadedModel:
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(CHARS)}, merges=[("c", "\n")]))
    tok.decoder = decoders.Fuse()
    return LoadedModel(model=SuccessorLM(oom_above), tokenizer=PreTrainedTokenizerFast(tokenizer_object=tok,
                                                                                        eos_token="<e>"),
                       name="scripted", revision=None, device=torch.device("cpu"), dtype=torch.float32, params=0,
                       non_embedding_params=0, max_length=max_length)


def _ids(text: str) -> list[int]:
    return [CHARS.index(c) for c in text]


def test_stop_rules_by_hand():
    items = [
        Item("stop", "Q: a", references=("bc",)),      # generates b, c, "\n" -> cut before "\n"
        Item("max", "Q: x", references=("x",)),        # x forever -> max_new_tokens
        Item("eos", "Q: e", references=("e",)),        # EOS at once -> empty prediction
        Item("straddle", "Q: ad", references=("c",)),  # "c\n" holds the stop -> "c" in text, not in ids
    ]
    config = ScoreConfig(max_new_tokens=5, stop_sequences=("\n",))
    out = generate_items(_scripted(), items, config)
    rows = {r["item_id"]: r for r in out.iter_rows(named=True)}

    assert out["item_id"].to_list() == ["stop", "max", "eos", "straddle"]
    assert (rows["stop"]["prediction"], rows["stop"]["n_generated_tokens"]) == ("bc", 3)
    assert rows["stop"]["generated_token_ids"] == _ids("bc")
    assert rows["stop"]["stop_reason"] == "stop_sequence"
    assert (rows["max"]["prediction"], rows["max"]["n_generated_tokens"]) == ("xxxxx", 5)
    assert rows["max"]["stop_reason"] == "max_new_tokens"
    assert (rows["eos"]["prediction"], rows["eos"]["n_generated_tokens"]) == ("", 1)
    assert (rows["eos"]["generated_token_ids"], rows["eos"]["stop_reason"]) == ([], "eos")
    assert (rows["straddle"]["prediction"], rows["straddle"]["n_generated_tokens"]) == ("c", 1)
    assert (rows["straddle"]["generated_token_ids"], rows["straddle"]["stop_reason"]) == ([], "stop_sequence")
    assert rows["straddle"]["prediction_token_ids"] == _ids("c")  # "c" re-encoded after the context
    # boundary rule on the char tokenizer: "Q: a" + "bc" -> context Q,:,space,a; continuation b,c
    assert rows["stop"]["reference_token_ids"] == [_ids("bc")]


def test_multi_char_stop_and_earliest_of_several():
    """Stop "c\\nx" completes only at the 4th token; with stops ("x", "bc") the earliest occurrence ("bc") wins."""
    item = Item("s", "Q: a", references=("b",))
    out = generate_items(_scripted(), [item], ScoreConfig(max_new_tokens=8, stop_sequences=("c\nx",)))
    assert out.drop("references", "reference_token_ids").row(0, named=True) == {
        "item_id": "s", "prediction": "b", "n_generated_tokens": 4, "generated_token_ids": _ids("b"),
        "prediction_token_ids": _ids("b"), "stop_reason": "stop_sequence", "n_truncated": 0,
        # a plain answer: the generation is the prediction, and no answer is read out of it
        "generation": "b", "answer_extracted": None, "reference_answers": ["b"], "answer_logprob": None,
        "answer_n_tokens": None}
    out = generate_items(_scripted(), [item], ScoreConfig(max_new_tokens=8, stop_sequences=("x", "bc")))
    assert (out["prediction"][0], out["n_generated_tokens"][0]) == ("", 2)


def test_out_of_memory_halves_the_batch(caplog):
    """A model that cannot take more than 2 rows: the 4 equal prompts (width 4 + 2) are re-planned until they fit."""
    loaded = _scripted(oom_above=2)
    items = [Item(f"i{k}", "Q: a", references=("b",)) for k in range(4)]
    with caplog.at_level(logging.WARNING, logger="logprob.generate"):
        out = generate_items(loaded, items, ScoreConfig(token_budget=24, max_new_tokens=2, stop_sequences=()))
    assert "out of memory" in caplog.text
    assert loaded.model.batch_rows == [4, 2, 2]  # budget 24 -> 4 rows (OOM), budget 12 -> 2 + 2
    assert out["prediction"].to_list() == ["bc"] * 4


def test_bad_settings_and_no_generative_items():
    loaded = _scripted(max_length=5)
    item = Item("s", "Q: a", references=("b",))
    with pytest.raises(ValueError, match="max_length"):
        generate_items(loaded, [item], ScoreConfig(max_new_tokens=5))
    with pytest.raises(ValueError, match="stop_sequences"):
        generate_items(loaded, [item], ScoreConfig(max_new_tokens=2, stop_sequences=("",)))
    empty = generate_items(loaded, [Item("mc", "Q", choices=("a",), target=(0,))], ScoreConfig())
    assert empty.height == 0 and empty.schema == pl.Schema(COLUMNS)


# A model that writes a given answer: a GPT-2-style byte-level BPE tokenizer (trained as in tests/conftest.py) and a
# scripted model emitting the answer's own tokens, then EOS, whatever the prompt.
EMOJI_MOVIE = Path(__file__).parent / "fixtures" / "bigbench" / "emoji_movie" / "task.json"


class ScriptLM(torch.nn.Module):
    """Emits `script[k]` at generation step k (one row), as logits; a causal LM's call signature and output fields."""

    def __init__(self, script: list[int], vocab: int):
        super().__init__()
        self.script, self.vocab, self.step = script, vocab, 0

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                logits_to_keep=0):
        self.step = 0 if cache is None else self.step + 1
        token = torch.tensor([[self.script[min(self.step, len(self.script) - 1)]]] * input_ids.shape[0])  # (B, 1)
        return SimpleNamespace(logits=torch.nn.functional.one_hot(token, self.vocab).float(), cache="kv")


def test_bpe_generation_equal_to_its_reference_has_token_edit_distance_zero():
    spec = FAMILIES["gpt2"]
    tok = train_tokenizer(spec["bos"], spec["eos"], spec["adds_bos"])
    item = next(it for it in load_bigbench(EMOJI_MOVIE).items if it.kind == "generative")
    assert item.context.endswith("\nA: ")  # BIG-bench's prompt keeps the space the answer follows
    reference = item.references[0]
    # what a model writes after "A: ": the answer's tokens with no leading space (encoded on its own)
    answer_ids = tok(reference, add_special_tokens=False).input_ids
    loaded = LoadedModel(model=ScriptLM([*answer_ids, tok.eos_token_id], len(tok)), tokenizer=tok, name="script",
                         revision=None, device=torch.device("cpu"), dtype=torch.float32, params=0,
                         non_embedding_params=0, max_length=512)
    out = generate_items(loaded, [item], ScoreConfig(max_new_tokens=len(answer_ids) + 1))
    row = out.row(0, named=True)
    assert row["prediction"] == reference and row["stop_reason"] == "eos"
    assert row["generated_token_ids"] == answer_ids
    # the reference, by the boundary rule, starts with the prompt's space: the model's own tokens differ from it
    assert row["reference_token_ids"][0] != answer_ids
    # the comparable ids: the prediction encoded by the same rule as the reference
    assert row["prediction_token_ids"] == row["reference_token_ids"][0]
    gens = out.with_columns(model=pl.lit("script"), params=pl.lit(0), non_embedding_params=pl.lit(0),
                            task=pl.lit("emoji_movie"), formulation=pl.lit("default"))
    distances = edit_distances(gens.select(list(GENERATIONS)))
    value = dict(zip(distances["metric"], distances["value"]))
    assert value["token_edit_distance"] == 0.0 and value["char_edit_distance"] == 0.0
    # what the distance was when the model's own tokens were compared with the references
    own = edit_distances(gens.with_columns(pl.col("generated_token_ids").alias("prediction_token_ids"))
                         .select(list(GENERATIONS)))
    assert dict(zip(own["metric"], own["value"]))["token_edit_distance"] >= 1.0
