"""Synthetic multi-digit addition: problems, the held-out split, the character tokenizer and the task files.

Why addition: the answer is several tokens long (one token per digit), and every digit must be right for the
answer to be right, so a sharp metric (exact match) multiplies per-digit errors while a smooth one (per-token
log-probability or accuracy) does not. That is the mechanism behind many reported "emergent" jumps
(Schaeffer et al. 2023, "Are Emergent Abilities of Large Language Models a Mirage?").

Formats (one problem, a = 123, b = 4567):

- operands have 3 or 4 digits (the digit count is drawn uniformly, then the number), written zero-padded to
  4 digits; the sum is written zero-padded to 5 digits. Fixed width puts every digit at a fixed position, which
  small transformers learn far faster than ragged numbers (measured while designing this: a 0.8M-parameter
  model reached 90 % exact match after 500 steps with fixed width, 0 % with a ragged answer).
- training sequence: ``"0123+4567=04690\\n"`` (always 16 tokens), one token per character, no BOS; the loss
  covers the answer ``"04690\\n"`` only (the prompt is masked), so the models learn to end it with a newline.
- ``tasks/addition_mc.jsonl``: ``{"id": "add-0000", "context": "0123+4567=", "choices": [four 5-digit sums,
  each followed by "\\n"], "target": i}``. The trailing newline is part of every choice because the models were
  trained to emit it; with a character tokenizer, context + choice encoded together split cleanly at the
  context's token count (lm-eval's boundary rule). Distractors: the sum with one carry dropped, two adjacent
  differing digits swapped, one digit changed by ±1; all are 5 digits with a leading 0 or 1, like real sums.
- ``tasks/addition_gen.jsonl``: ``{"id": "add-0000", "context": "0123+4567=", "references": ["04690"]}``. No
  trailing newline: greedy generation stops at "\\n" and the stop string is not part of the generated text.

The held-out problems (`heldout_problems`) are excluded from training by their (a, b) pair (`is_heldout`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

DATA_SEED = 1234
HELDOUT_SIZE = 400
MIN_DIGITS, MAX_DIGITS = 3, 4
ANSWER_DIGITS = MAX_DIGITS + 1
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
CHARACTERS = tuple("0123456789+= \n")
SEQ_LEN = 2 * MAX_DIGITS + ANSWER_DIGITS + 3  # "dddd+dddd=ddddd\n" = 16 tokens
N_CHOICES = 4


def prompt(a: int, b: int) -> str:
    """The context shown to the model.

    >>> prompt(123, 4567)
    '0123+4567='
    """
    return f"{a:0{MAX_DIGITS}d}+{b:0{MAX_DIGITS}d}="


def answer(a: int, b: int) -> str:
    """The reference answer, zero-padded to 5 digits, without the trailing newline.

    >>> answer(123, 4567)
    '04690'
    """
    return f"{a + b:0{ANSWER_DIGITS}d}"


def sample_problems(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random problems as an (n, 2) int64 array: each operand's digit count uniform in {3, 4}, then the number
    uniform among numbers of that many digits (so 3-digit operands are as common as 4-digit ones)."""
    digits = rng.integers(MIN_DIGITS, MAX_DIGITS + 1, size=(n, 2))  # (n, 2)
    low, high = 10 ** (digits - 1), 10**digits  # (n, 2) each
    return low + (rng.random((n, 2)) * (high - low)).astype(np.int64)  # (n, 2)


def heldout_problems(seed: int = DATA_SEED, n: int = HELDOUT_SIZE) -> list[tuple[int, int]]:
    """The evaluation problems: n distinct (a, b) pairs from their own seeded stream, in draw order."""
    rng = np.random.default_rng([seed, 0])
    pairs: dict[tuple[int, int], None] = {}
    while len(pairs) < n:
        for a, b in sample_problems(rng, n).tolist():
            if len(pairs) < n:
                pairs[(a, b)] = None
    return list(pairs)


def pair_keys(pairs: np.ndarray) -> np.ndarray:
    """One int64 key per (a, b) row, so membership tests are vectorised: a * 10**MAX_DIGITS + b.

    >>> pair_keys(np.array([[123, 4567]])).tolist()
    [1234567]
    """
    return pairs[:, 0] * 10**MAX_DIGITS + pairs[:, 1]  # (n,)


def is_heldout(pairs: np.ndarray, heldout: list[tuple[int, int]]) -> np.ndarray:
    """Boolean mask over the rows of an (n, 2) array: is this (a, b) pair one of the held-out problems?
    Order matters: 4567+123 is a different problem from 123+4567.

    >>> is_heldout(np.array([[123, 4567], [4567, 123]]), [(123, 4567)]).tolist()
    [True, False]
    """
    return np.isin(pair_keys(pairs), pair_keys(np.asarray(heldout, dtype=np.int64).reshape(-1, 2)))


def training_batches(seed: int, batch_size: int, heldout: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """Infinite stream of (batch_size, 2) problem arrays, fresh random problems every step, never a held-out pair."""
    rng = np.random.default_rng([seed, 1])
    while True:
        pairs = sample_problems(rng, 2 * batch_size)  # (2B, 2)
        pairs = pairs[~is_heldout(pairs, heldout)][:batch_size]  # (B, 2); a 2B draw loses a few rows at most
        if len(pairs) == batch_size:
            yield pairs


def build_tokenizer(characters: tuple[str, ...] = CHARACTERS, max_length: int = 4 * SEQ_LEN) -> PreTrainedTokenizerFast:
    """One token per character (by default digits, '+', '=', space, newline) plus pad/bos/eos/unk, in that order
    after the four special tokens. No special token is added on encoding, so `tokenizer(text).input_ids` is the
    characters' ids whatever `add_special_tokens` says.

    >>> tok = build_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("12+3=").input_ids)
    ['1', '2', '+', '3', '=']
    """
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + tuple(characters))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")  # every character its own word
    backend.decoder = decoders.Fuse()  # decoding joins characters without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
        model_max_length=max_length,
    )


def encode_training(pairs: np.ndarray, vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2) problems → input ids (B, SEQ_LEN) and labels (B, SEQ_LEN): the answer's ids (newline included) and
    -100 on the prompt, in the HF convention (labels[t] is the token at t; the model shifts them itself)."""
    text = "".join(prompt(a, b) + answer(a, b) + "\n" for a, b in pairs.tolist())
    return encode_text(text, len(pairs), SEQ_LEN, SEQ_LEN - ANSWER_DIGITS - 1, vocab, CHARACTERS)


def encode_text(
    text: str, rows: int, seq_len: int, prompt_len: int, vocab: dict[str, int], characters: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """`rows` fixed-width sequences of `seq_len` characters, concatenated in `text` → ids (rows, seq_len) and labels
    (rows, seq_len) with the first `prompt_len` positions -100 (the prompt is not learned).

    >>> chars = tuple("0123456789=")
    >>> ids, labels = encode_text("12=345=6", 2, 4, 3, {c: i for i, c in enumerate(chars)}, chars)
    >>> ids.tolist(), labels.tolist()
    ([[1, 2, 10, 3], [4, 5, 10, 6]], [[-100, -100, -100, 3], [-100, -100, -100, 6]])
    """
    lookup = np.zeros(128, dtype=np.int64)  # ASCII code → token id
    for char in characters:
        lookup[ord(char)] = vocab[char]
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).reshape(rows, seq_len)  # (B, T)
    ids = lookup[codes]  # (B, T)
    labels = ids.copy()  # (B, T)
    labels[:, :prompt_len] = -100  # the prompt "dddd+dddd=" is not learned
    return ids, labels


def _dropped_carry(a: int, b: int) -> int | None:
    """The sum with its lowest carry forgotten, or None if the problem has no carry.

    58 + 67 = 125; the units carry (8 + 7 = 15) is not added to the tens, giving 115.

    >>> _dropped_carry(58, 67), _dropped_carry(12, 34)
    (115, None)
    """
    place = 1
    while place <= max(a, b):
        if (a // place) % 10 + (b // place) % 10 >= 10:
            return a + b - 10 * place
        place *= 10
    return None


def mc_choices(a: int, b: int, rng: np.random.Generator) -> tuple[list[str], int]:
    """Four distinct answers (5 digits + "\\n", leading digit 0 or 1): the correct sum and three close
    distractors (dropped carry, swapped adjacent digits, one digit ±1), shuffled; returns (choices, target)."""
    correct = answer(a, b)
    candidates = []
    dropped = _dropped_carry(a, b)
    if dropped is not None:
        candidates.append(f"{dropped:0{ANSWER_DIGITS}d}")
    swaps = [i for i in range(ANSWER_DIGITS - 1) if correct[i] != correct[i + 1]]
    if swaps:
        i = swaps[int(rng.integers(len(swaps)))]
        candidates.append(correct[:i] + correct[i + 1] + correct[i] + correct[i + 2 :])
    for _ in range(100):  # one digit ±1: plenty of these exist, so this fills the remaining slots
        pos, step = int(rng.integers(ANSWER_DIGITS)), int(rng.choice([-1, 1]))
        candidates.append(correct[:pos] + str((int(correct[pos]) + step) % 10) + correct[pos + 1 :])
    distractors: list[str] = []
    for c in candidates:
        if c[0] in "01" and c != correct and c not in distractors:
            distractors.append(c)
    choices = [correct] + distractors[: N_CHOICES - 1]
    order = rng.permutation(N_CHOICES)  # order[k] = which of `choices` goes to slot k
    return [choices[k] + "\n" for k in order], int(np.flatnonzero(order == 0)[0])


def write_tasks(directory: Path, seed: int = DATA_SEED) -> tuple[Path, Path]:
    """Write addition_mc.jsonl and addition_gen.jsonl from the held-out problems; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2])
    mc_lines, gen_lines = [], []
    for i, (a, b) in enumerate(heldout_problems(seed)):
        choices, target = mc_choices(a, b, rng)
        item_id = f"add-{i:04d}"
        mc_lines.append({"id": item_id, "context": prompt(a, b), "choices": choices, "target": target})
        gen_lines.append({"id": item_id, "context": prompt(a, b), "references": [answer(a, b)]})
    paths = directory / "addition_mc.jsonl", directory / "addition_gen.jsonl"
    for path, lines in zip(paths, (mc_lines, gen_lines)):
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return paths
