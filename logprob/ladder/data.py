"""Synthetic multi-digit addition: problems, the held-out split, the character tokenizer and the task files.

Why addition: the answer is several tokens long (one token per digit), and every digit must be right for the
answer to be right, so a sharp metric (exact match) multiplies per-digit errors while a smooth one (per-token
log-probability or accuracy) does not. That is the mechanism behind many reported "emergent" jumps
(Schaeffer et al. 2023, "Are Emergent Abilities of Large Language Models a Mirage?").

Formats (one problem, a = 123, b = 4567):

- training sequence: ``"123+4567=4690\\n"``, one token per character, no BOS; the loss covers the answer
  ``"4690\\n"`` only (the prompt is masked), so the models learn to end the answer with a newline.
- operands: 3 or 4 digits (the digit count is drawn uniformly, then the number), no leading zeros; the sum has
  3 to 5 digits, so the answer is 4–6 tokens including the newline (5–6 for almost all problems).
- ``tasks/addition_mc.jsonl``: ``{"id": "add-0000", "context": "123+4567=", "choices": [four sums, each
  followed by "\\n"], "target": i}``. The trailing newline is part of every choice because the models were
  trained to emit it; with a character tokenizer, context + choice encoded together split cleanly at the
  context's token count (lm-eval's boundary rule). Distractors: one digit changed by ±1, the sum with one carry
  dropped, two adjacent digits swapped; all have the correct sum's length and no leading zero.
- ``tasks/addition_gen.jsonl``: ``{"id": "add-0000", "context": "123+4567=", "references": ["4690"]}``. No
  trailing newline: greedy generation stops at "\\n" and the stop string is not part of the generated text.

The held-out problems (`heldout_problems`) are excluded from training by their (a, b) pair (`is_heldout`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

DATA_SEED = 1234
HELDOUT_SIZE = 400
MIN_DIGITS, MAX_DIGITS = 3, 4
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
CHARACTERS = tuple("0123456789+= \n")
SEQ_LEN = 16  # longest sequence: "9999+9999=19998\n"
N_CHOICES = 4


def prompt(a: int, b: int) -> str:
    """The context shown to the model.

    >>> prompt(123, 4567)
    '123+4567='
    """
    return f"{a:0{MAX_DIGITS}d}+{b:0{MAX_DIGITS}d}="


def answer(a: int, b: int) -> str:
    """The reference answer, without the trailing newline.

    >>> answer(123, 4567)
    '4690'
    """
    return f"{a + b:0{MAX_DIGITS + 1}d}"


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
    """One int64 key per (a, b) row, so membership tests are vectorised: a * 10**MAX_DIGITS + b."""
    return pairs[:, 0] * 10**MAX_DIGITS + pairs[:, 1]  # (n,)


def is_heldout(pairs: np.ndarray, heldout: list[tuple[int, int]]) -> np.ndarray:
    """Boolean mask over the rows of an (n, 2) array: is this (a, b) pair one of the held-out problems?

    >>> is_heldout(np.array([[123, 4567], [4567, 123]]), [(123, 4567)]).tolist()
    [True, False]
    """
    return np.isin(pair_keys(pairs), pair_keys(np.asarray(heldout, dtype=np.int64).reshape(-1, 2)))


def training_batches(seed: int, batch_size: int, heldout: list[tuple[int, int]]):
    """Infinite stream of (batch_size, 2) problem arrays, fresh random problems every step, never a held-out pair."""
    rng = np.random.default_rng([seed, 1])
    while True:
        pairs = sample_problems(rng, 2 * batch_size)  # (2B, 2)
        pairs = pairs[~is_heldout(pairs, heldout)][:batch_size]  # (B, 2); a 2B draw loses a few rows at most
        if len(pairs) == batch_size:
            yield pairs


def build_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character (digits, '+', '=', space, newline) plus pad/bos/eos/unk; no special token is added
    on encoding, so `tokenizer(text).input_ids` is the characters' ids whatever `add_special_tokens` says.

    >>> tok = build_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("12+3=").input_ids)
    ['1', '2', '+', '3', '=']
    """
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")  # every character its own word
    backend.decoder = decoders.Fuse()  # decode joins characters without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
        model_max_length=SEQ_LEN * 4,
    )


def encode_training(pairs: np.ndarray, vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2) problems → input ids (B, SEQ_LEN), right-padded, and labels (B, SEQ_LEN): the answer's ids
    (newline included) and -100 on prompt and padding, in the HF convention (labels[t] is the token at t; the
    model shifts them itself)."""
    ids = np.full((len(pairs), SEQ_LEN), vocab["<pad>"], dtype=np.int64)  # (B, T)
    labels = np.full((len(pairs), SEQ_LEN), -100, dtype=np.int64)  # (B, T)
    for row, (a, b) in enumerate(pairs.tolist()):
        context, target = prompt(a, b), answer(a, b) + "\n"
        tokens = [vocab[c] for c in context + target]
        ids[row, : len(tokens)] = tokens
        labels[row, len(context) : len(tokens)] = tokens[len(context) :]
    return ids, labels


def _dropped_carry(a: int, b: int) -> int | None:
    """The sum with its lowest carry forgotten (the carry into the next digit is not added), or None if the
    problem has no carry. 58 + 67 = 125; dropping the first carry (8 + 7 = 15) gives 115."""
    place = 1
    while place <= max(a, b):
        if (a // place) % 10 + (b // place) % 10 >= 10:
            return a + b - 10 * place
        place *= 10
    return None


def mc_choices(a: int, b: int, rng: np.random.Generator) -> tuple[list[str], int]:
    """Four distinct same-length answers (each + "\\n"): the correct sum and three close distractors, shuffled;
    returns (choices, index of the correct one)."""
    correct = answer(a, b)
    candidates = []
    dropped = _dropped_carry(a, b)
    if dropped is not None:
        candidates.append(str(dropped))
    swap = int(rng.integers(len(correct) - 1))
    candidates.append(correct[:swap] + correct[swap + 1] + correct[swap] + correct[swap + 2 :])
    for _ in range(100):  # one digit ±1: plenty of these exist, so this fills the remaining slots
        pos, step = int(rng.integers(len(correct))), int(rng.choice([-1, 1]))
        candidates.append(correct[:pos] + str((int(correct[pos]) + step) % 10) + correct[pos + 1 :])
    distractors: list[str] = []
    for c in candidates:
        if len(c) == len(correct) and c[0] != "0" and c != correct and c not in distractors:
            distractors.append(c)
    choices = [correct] + distractors[: N_CHOICES - 1]
    order = rng.permutation(N_CHOICES)
    return [choices[i] + "\n" for i in order], int(np.argmax(order == 0))


def write_tasks(directory: Path, seed: int = DATA_SEED) -> tuple[Path, Path]:
    """Write addition_mc.jsonl and addition_gen.jsonl from the held-out problems; returns their paths."""
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
