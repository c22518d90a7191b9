"""The lm-eval boundary rule, case by case, on a hand-made BPE whose encodings can be worked out on paper.

Vocabulary: <s>=0 </s>=1 a=2 b=3 c=4 x=5 ' '=6 ab=7, one merge (a, b) → ab, no pre-tokenizer (spaces are tokens).
"""

from __future__ import annotations

import logging

import pytest
from tokenizers import Tokenizer, models, processors
from transformers import PreTrainedTokenizerFast

from logprob.tasks import Item
from logprob.tokenize import build_requests, encode_pair, prefix_token_id, truncate_left

VOCAB = {"<s>": 0, "</s>": 1, "a": 2, "b": 3, "c": 4, "x": 5, " ": 6, "ab": 7}


def hand_tokenizer(adds_bos: bool, bos: str | None = "<s>") -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(VOCAB, [("a", "b")]))
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token="</s>")


def test_plain_split():
    assert encode_pair(hand_tokenizer(False), "x a", " b") == ([5, 6, 2], [6, 3])


def test_trailing_whitespace_moves_to_continuation():
    # "x a " + "b" → context "x a", continuation " b": the space is scored as part of the continuation
    assert encode_pair(hand_tokenizer(False), "x a ", "b") == ([5, 6, 2], [6, 3])
    assert encode_pair(hand_tokenizer(False), "x  ", "c") == ([5], [6, 6, 4])


def test_merge_across_boundary_keeps_context_encoding():
    # enc("xabc") = x ab c; enc("xa") = x a; continuation = whole[2:] = [c]. The model reads x a c (lm-eval does too).
    assert encode_pair(hand_tokenizer(False), "xa", "bc") == ([5, 2], [4])


def test_bos_added_by_tokenizer_is_part_of_both_encodings():
    assert encode_pair(hand_tokenizer(True), "x a", " b") == ([0, 5, 6, 2], [6, 3])


def test_context_starting_with_bos_text_gets_no_second_bos():
    assert encode_pair(hand_tokenizer(True), "<s>x", "a") == ([0, 5], [2])


def test_empty_context_uses_bos_then_eos():
    assert encode_pair(hand_tokenizer(True), "", "x a") == ([0], [5, 6, 2])  # no special tokens on the continuation
    assert encode_pair(hand_tokenizer(False, bos=None), "", "x") == ([1], [5])  # no BOS: EOS is the prefix
    assert prefix_token_id(hand_tokenizer(False, bos=None)) == 1


def test_empty_context_continuation_starting_with_prefix_token():
    # the continuation's own first token is the prefix: it becomes the context instead of a second BOS
    assert encode_pair(hand_tokenizer(False), "", "<s>xa") == ([0], [5, 2])


def test_truncate_left_keeps_max_length_plus_one_tokens():
    # ctx 1..6, cont 7 8 9, max_length 5: keep the last 6 of 1..9 → ctx 4 5 6; the model reads 4 5 6 7 8 (5 tokens)
    assert truncate_left([1, 2, 3, 4, 5, 6], [7, 8, 9], 5) == (4, 5, 6)
    assert truncate_left([1, 2], [7], 5) == (1, 2)
    assert truncate_left([1, 2], [7, 8, 9, 10, 11], 5) == (2,)  # continuation of exactly max_length: one context token
    with pytest.raises(ValueError, match="continuation: 6 tokens exceed max_length 5"):
        truncate_left([1], [1, 2, 3, 4, 5, 6], 5)


def test_build_requests_order_truncation_and_warning(caplog):
    items = [Item("i", "x a x a", (" b", "c"), (0,)), Item("g", "", references=("x",))]
    with caplog.at_level(logging.WARNING, logger="logprob.tokenize"):
        requests = build_requests(hand_tokenizer(False), items, max_length=4)
    assert [(r.item_index, r.choice) for r in requests] == [(0, 0), (0, 1), (1, 0)]
    # "x a x a" = 5 6 2 6 5 6 2 (7 tokens); " b" = 6 3: keep 5 - 2 = 3 context tokens → 5 6 2, 4 cut
    assert requests[0].context_ids == (5, 6, 2) and requests[0].continuation_ids == (6, 3)
    assert requests[0].n_truncated == 4
    # "x a x a" + "c": no merge (a c), continuation [c]: keep 4 context tokens → 6 5 6 2
    assert requests[1].context_ids == (6, 5, 6, 2) and requests[1].continuation_ids == (4,)
    assert requests[2].context_ids == (0,) and requests[2].continuation_ids == (5,)
    assert "2 of 3 requests exceed max_length 4" in caplog.text


def test_build_requests_rejects_overlong_and_empty_continuations():
    with pytest.raises(ValueError, match="item 'i' choice 0: continuation has 3 tokens, more than max_length 2"):
        build_requests(hand_tokenizer(False), [Item("i", "x", (" abc",), (0,))], max_length=2)
    with pytest.raises(ValueError, match="item 'm' choice 0: continuation 'b' has no tokens"):
        build_requests(hand_tokenizer(False), [Item("m", "xa", ("b",), (0,))], max_length=8)  # x a|b → x ab
    with pytest.raises(ValueError, match="max_length"):
        build_requests(hand_tokenizer(False), [], max_length=0)
    with pytest.raises(ValueError, match="item 'w': context '  ' has no tokens once its trailing whitespace moves"):
        build_requests(hand_tokenizer(False), [Item("w", "  ", ("x",), (0,))], max_length=8)
