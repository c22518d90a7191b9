"""scalelens log-probs and greedy flags equal lm-evaluation-harness's (HFLM.loglikelihood) on the same tiny models."""

from __future__ import annotations

import logging

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from logprob.config import ModelSpec, ScoreConfig
from logprob.model import load_model
from logprob.score import score_items
from logprob.tasks import Item
from logprob.tokenize import encode_pair
from tests.conftest import CORPUS

LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)  # well over 64 tokens

ITEMS = [
    Item("ordinary", "Question: What is the capital of France?\nAnswer:", (" Paris", " Lyon", " Marseille", " 4"),
         (0,)),
    Item("empty", "", ("Paris", " The quick", "<|endoftext|>Once"), (0,)),
    Item("space", "Once upon a time there was a ", ("model", "fox", " dog", "\tcafé"), (1,)),
    Item("unicode", "A naïve café serves crème", (" brûlée 🙂", "🚀👍", " jalapeño", "日本語"), (0,)),
    Item("long", LONG, (" The", " naïve café 🙂 and more words here"), (1,)),
    Item("generative", "Zwölf Boxkämpfer jagen", references=(" Viktor quer", " über den")),
]


def greedy_items(path: str, n: int = 2) -> list[Item]:
    """Items whose first choice is the model's own greedy continuation (1-3 tokens), so is_greedy is exercised.

    Random weights may prefer padded vocabulary ids or byte fragments that do not survive decode → encode; contexts
    (prefixes of the training corpus) are tried until `n` continuations re-encode to exactly the generated tokens.
    """
    lm = load_model(ModelSpec(path, device="cpu", dtype="float32"))
    found = []
    for k, context in enumerate(w for text in CORPUS[:5] for w in _prefixes(text)):
        ids = lm.tokenizer(context, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out = lm.model.generate(ids, max_new_tokens=1 + k % 3, do_sample=False)[0, ids.shape[1]:].tolist()
        text = lm.tokenizer.decode(out)
        if text.strip() and encode_pair(lm.tokenizer, context, text)[1] == out:
            found.append(Item(f"greedy{k}", context, (text, " fox" if text != " fox" else " dog"), (0,)))
        if len(found) == n:
            return found
    raise AssertionError("no context with a greedy continuation that survives decode → encode")


def _prefixes(text: str) -> list[str]:
    words = text.split(" ")
    return [" ".join(words[:i]) for i in range(2, len(words))]


@pytest.mark.parametrize("family", ["gpt_neox", "llama", "gpt2"])
def test_loglikelihood_matches_lm_eval(tiny_model_dir, family, caplog):
    path = tiny_model_dir(family)
    items = [*ITEMS, *greedy_items(path)]
    pairs = [(item.context, cont) for item in items for cont in item.continuations]

    hflm = HFLM(pretrained=path, device="cpu", dtype="float32", batch_size=3)
    expected = hflm.loglikelihood(
        [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=0) for pair in pairs],
        disable_tqdm=True)

    loaded = load_model(ModelSpec(path, device="cpu", dtype="float32"))
    with caplog.at_level(logging.WARNING, logger="logprob.tokenize"):
        scores = score_items(loaded, items, ScoreConfig(token_budget=300))
    assert "truncated from the left" in caplog.text  # the long context exceeded the 64-token maximum

    assert scores.height == len(pairs)
    for row, (logprob, greedy), pair in zip(scores.iter_rows(named=True), expected, pairs, strict=True):
        assert row["logprob"] == pytest.approx(logprob, abs=1e-4), pair
        assert row["is_greedy"] == greedy, pair
    assert any(greedy for _, greedy in expected)  # the comparison covered a greedy continuation
