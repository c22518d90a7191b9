"""Addition written with a scratchpad: the column-by-column working before the answer, for the ladder's second family.

Nye et al. 2021, "Show your work: scratchpads for intermediate computation with language models"
(arXiv:2112.00114), train models to write the intermediate steps of an algorithm before its result; for addition,
the digits of each column, the carry and the column's sum, least significant digit first. Here the same idea in a
fixed-width character format, short enough that the whole ladder trains on a laptop (see `train.py`).

Format (a = 123, b = 4567; the prompt is the direct task's, `data.prompt`):

    0123+4567=37010|26109|15006|04004|;04690\\n

- after the prompt, one 5-character group per column, units first: the column's digit of a, its digit of b, the
  carry into the column (0 for the units), then the column's two-digit total a_i + b_i + carry_in, i.e. the carry
  out followed by the sum digit. Each group ends with "|". Here 3+7+0 = 10, 2+6+1 = 09, 1+5+0 = 06, 0+4+0 = 04.
- then ";" and the answer in the direct task's format (5 digits, zero-padded), then "\\n". The answer follows
  mechanically from the scratchpad (`answer_from_scratchpad`): the last column's total (carry out, sum digit)
  followed by the sum digits of the other columns from the most significant down.
- every problem is 41 tokens (10 prompt + 24 scratchpad + ";" + 5 answer + "\\n"); the carry into a column is
  the carry out of the group before it, so every step reads only its own column and the group to its left.

The task file `tasks/addition_scratchpad_gen.jsonl` holds the direct task's 400 held-out problems with the same
ids: `{"id": "add-0000", "context": "0123+4567=", "references": ["37010|26109|15006|04004|;04690"]}` (no newline:
generation stops at "\\n"). `ANSWER_PATTERN` extracts the final answer from a generation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerFast

from logprob.ladder import data

#: The direct task's characters plus the group end "|" and the answer marker ";", appended so that every character
#: the two formats share keeps its token id.
CHARACTERS = data.CHARACTERS + ("|", ";")
GROUP = 6  # "abcCs|": digit of a, digit of b, carry in, carry out, sum digit, group end
SCRATCHPAD_LEN = data.MAX_DIGITS * GROUP  # 24
TARGET_LEN = SCRATCHPAD_LEN + 1 + data.ANSWER_DIGITS  # 30: scratchpad, ";", answer (the newline not counted)
PROMPT_LEN = 2 * data.MAX_DIGITS + 2  # "dddd+dddd=" = 10
SEQ_LEN = PROMPT_LEN + TARGET_LEN + 1  # 41 tokens with the closing newline
#: The final answer in a generation cut at its first newline: the five digits after the first ";". Like the direct
#: task's exact match, whatever follows those five digits is not judged.
ANSWER_PATTERN = r";(\d{5})"


def scratchpad(a: int, b: int) -> str:
    """The column-by-column working, units first (module docstring).

    >>> scratchpad(123, 4567)
    '37010|26109|15006|04004|'
    >>> scratchpad(9999, 1)
    '91010|90110|90110|90110|'
    """
    groups, carry = [], 0
    for place in range(data.MAX_DIGITS):
        x, y = (a // 10**place) % 10, (b // 10**place) % 10
        total = x + y + carry
        groups.append(f"{x}{y}{carry}{total:02d}|")
        carry = total // 10
    return "".join(groups)


def target(a: int, b: int) -> str:
    """What the model writes after the prompt: scratchpad, ";", answer (the closing newline not included).

    >>> target(123, 4567)
    '37010|26109|15006|04004|;04690'
    """
    return scratchpad(a, b) + ";" + data.answer(a, b)


def answer_from_scratchpad(text: str) -> str:
    """The answer a scratchpad implies, read off it mechanically: the last group's two-digit total, then the sum
    digit of each earlier group from the most significant down.

    >>> answer_from_scratchpad('37010|26109|15006|04004|')
    '04690'
    """
    groups = text.split("|")[: data.MAX_DIGITS]
    return groups[-1][3:5] + "".join(g[4] for g in reversed(groups[:-1]))


def extract_answer(generation: str) -> str | None:
    """The final answer of a generation (cut at its first newline) by `ANSWER_PATTERN`, or None when it has none.

    >>> extract_answer('37010|26109|15006|04004|;04690\\n'), extract_answer('37010|2610'), extract_answer(';123\\n;12345')
    ('04690', None, None)
    """
    found = re.search(ANSWER_PATTERN, generation.split("\n", 1)[0])
    return None if found is None else found.group(1)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """`data.build_tokenizer` over `CHARACTERS`: one token per character, ids 0-17 as in the direct ladder's.

    >>> build_tokenizer().convert_ids_to_tokens(build_tokenizer()("10|;").input_ids)
    ['1', '0', '|', ';']
    """
    return data.build_tokenizer(CHARACTERS, max_length=4 * SEQ_LEN)


def encode_training(pairs: np.ndarray, vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2) problems → input ids (B, SEQ_LEN) and labels (B, SEQ_LEN): scratchpad, answer and newline are learned,
    the prompt is -100 (HF convention, as `data.encode_training`)."""
    text = "".join(data.prompt(a, b) + target(a, b) + "\n" for a, b in pairs.tolist())
    return data.encode_text(text, len(pairs), SEQ_LEN, PROMPT_LEN, vocab, CHARACTERS)


def write_task(directory: Path, seed: int = data.DATA_SEED) -> Path:
    """Write addition_scratchpad_gen.jsonl (the held-out problems, ids as in the direct task files); returns its
    path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        {"id": f"add-{i:04d}", "context": data.prompt(a, b), "references": [target(a, b)]}
        for i, (a, b) in enumerate(data.heldout_problems(seed))
    ]
    path = directory / "addition_scratchpad_gen.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
