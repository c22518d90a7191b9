"""Every metric scalelens computes: its place in Schaeffer et al.'s taxonomy, its kind (sharp or smooth), which
direction is better, a one-line definition and the source it follows.

`aggregate` copies taxonomy, kind and direction from here into the metric table, `emergence` orients curves by
direction, and the README's metric table is `metric_table_markdown()` of this registry (tests/test_readme.py checks
that the two are the same text), so each definition is written as a sentence for readers.

Taxonomy (Schaeffer, Miranda & Koyejo 2023, section 2 and figure 2, who ask whether emergence is a property of the
model or of the metric); the reason each metric sits where it does:

- *discontinuous*: a step function of the model's scores, 0 or 1 per item (or a graded credit picked by an argmax).
  Its value changes only when an argmax or a string comparison flips, so steady progress in the probabilities shows
  as nothing and then a jump. Multiple-choice grade, acc_norm, BIG-bench's graded grade, both exact matches.
- *nonlinear*: continuous in the per-token probabilities, but a product or power of them across the answer. A
  per-token probability p that rises steadily gives p^L, which stays near 0 and then climbs steeply: the paper's
  own example, exact match ≈ p^L. Π p of the reference (`prob_reference`), per-token accuracy^L, the probabilities
  of whole continuations under the vocabulary (a multi-token continuation's probability is a product of per-token
  probabilities; Schaeffer et al. 2024 track them to explain downstream jumps), and BLEU, whose score is a
  geometric mean (a product) of n-gram precisions.
- *continuous*: moves in proportion to per-token progress: sums and means of log-probabilities (margin included),
  the probability among the choices and the scores built from it (Brier score, cross-entropy; Schaeffer et al.
  list the Brier score as their continuous multiple-choice metric), per-token accuracy, chrF (an arithmetic mean of
  character n-gram F-scores), and edit distances (linear in the number of wrong tokens, the paper's token edit
  distance). The choices' rank and reciprocal rank are step functions per item like the grade, but with as many
  levels as choices rather than two; they are counted here with the graded, continuous side.

`kind` is derived from the taxonomy: discontinuous and nonlinear metrics are *sharp*, continuous ones *smooth*.
Verdicts compare sharp with smooth, so a nonlinear metric such as Π p is never read as the smooth counterpart of
exact match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

DISCONTINUOUS = "discontinuous"
NONLINEAR = "nonlinear"
CONTINUOUS = "continuous"
TAXONOMIES = (DISCONTINUOUS, NONLINEAR, CONTINUOUS)
SHARP = "sharp"
SMOOTH = "smooth"
HIGHER = "higher"
LOWER = "lower"

LM_EVAL = "EleutherAI lm-evaluation-harness, lm_eval/api/task.py (acc, acc_norm)"
BIG_BENCH = "Srivastava et al. 2022, BIG-bench (arXiv:2206.04615), bigbench/api/task_metrics.py"
SCHAEFFER = "Schaeffer, Miranda & Koyejo 2023, Are Emergent Abilities of Large Language Models a Mirage? (arXiv:2304.15004)"
SCHAEFFER_2024 = (
    "Schaeffer et al. 2024, Why Has Predicting Downstream Capabilities of Frontier AI Models with Scale Remained "
    "Elusive? (arXiv:2406.04391)"
)
BRIER = "Brier 1950, Verification of forecasts expressed in terms of probability (multi-class form)"
HF_EXACT_MATCH = "Hugging Face evaluate, metrics/exact_match"
SACREBLEU_BLEU = "Papineni et al. 2002, BLEU; computed with sacrebleu (Post 2018)"
SACREBLEU_CHRF = "Popović 2015, chrF; computed with sacrebleu (Post 2018)"
LEVENSHTEIN = "Levenshtein 1966; computed with rapidfuzz (Wagner & Fischer 1974 recurrence)"
CHAIN_OF_THOUGHT = ("Wei et al. 2022, Chain-of-thought prompting elicits reasoning in large language models "
                    "(arXiv:2201.11903); Nye et al. 2021, Show your work (arXiv:2112.00114)")


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means and how to read it: `taxonomy` is "discontinuous", "nonlinear" or "continuous" (module
    docstring), `direction` "higher" or "lower"; `kind` ("sharp" or "smooth") follows from the taxonomy.

    >>> MetricInfo(NONLINEAR, HIGHER, "Π p", "paper").kind
    'sharp'
    """

    taxonomy: str
    direction: str
    definition: str
    source: str

    def __post_init__(self) -> None:
        if self.taxonomy not in TAXONOMIES:
            raise ValueError(f"MetricInfo.taxonomy must be one of {TAXONOMIES}, found {self.taxonomy!r}")
        if self.direction not in (HIGHER, LOWER):
            raise ValueError(f"MetricInfo.direction must be {HIGHER!r} or {LOWER!r}, found {self.direction!r}")

    @property
    def kind(self) -> str:
        """"sharp" for discontinuous and nonlinear metrics, "smooth" for continuous ones."""
        return SMOOTH if self.taxonomy == CONTINUOUS else SHARP


_REGISTRY: dict[str, MetricInfo] = {
    # --- multiple choice, from the score table (metrics/choice.py) ---
    "multiple_choice_grade": MetricInfo(
        DISCONTINUOUS, HIGHER,
        "1 if the choice with the highest summed log-probability is a target, else 0; ties go to the lowest choice index.",
        f"{LM_EVAL} (acc); {BIG_BENCH} (multiple_choice_grade, which breaks exact ties pseudorandomly)",
    ),
    "acc_norm": MetricInfo(
        DISCONTINUOUS, HIGHER,
        "Multiple-choice grade after dividing each choice's log-probability by its length in characters, leading "
        "whitespace (lm-eval's target delimiter) not counted; null when a choice has no other character.",
        LM_EVAL,
    ),
    "bigbench_grade": MetricInfo(
        DISCONTINUOUS, HIGHER,
        "Graded credit (BIG-bench target_scores) of the choice with the highest summed log-probability, ties to the "
        "lowest choice index; only for items with graded scores.",
        f"{BIG_BENCH} (multiple_choice_grade, which breaks exact ties pseudorandomly)",
    ),
    "exact_match_greedy": MetricInfo(
        DISCONTINUOUS, HIGHER,
        "1 if every token of some target (or reference) is the model's top-ranked token given the tokens before it, "
        "i.e. greedy decoding would reproduce it.",
        f"{LM_EVAL} (is_greedy)",
    ),
    "logprob_target": MetricInfo(
        CONTINUOUS, HIGHER,
        "Summed log-probability of the target continuation given the context; with several targets, the best one.",
        SCHAEFFER,
    ),
    "logprob_target_per_token": MetricInfo(
        CONTINUOUS, HIGHER,
        "The best target's summed log-probability divided by its number of tokens; null for a zero-token target.",
        SCHAEFFER,
    ),
    "logprob_best_distractor": MetricInfo(
        CONTINUOUS, LOWER,
        "Highest summed log-probability among the non-target choices; lower means the distractors are less tempting.",
        BIG_BENCH,
    ),
    "margin": MetricInfo(
        CONTINUOUS, HIGHER,
        "Best target's log-probability minus the best distractor's: positive exactly when a target wins outright.",
        BIG_BENCH,
    ),
    "prob_target_among_choices": MetricInfo(
        CONTINUOUS, HIGHER,
        "Probability mass on the targets after a softmax over the choices' summed log-probabilities.",
        BIG_BENCH,
    ),
    "brier_score": MetricInfo(
        CONTINUOUS, LOWER,
        "(1 − softmax probability on the targets)² + Σ over distractors of their softmax probability²: the targets "
        "merged into one class, so 0 is a perfect, confident answer whatever the number of targets.",
        f"{BRIER}; equal to lm-eval's brier_score for one target",
    ),
    "classification_loss": MetricInfo(
        CONTINUOUS, LOWER,
        "Negative log of the probability on the targets among the choices (cross-entropy of the choice softmax).",
        SCHAEFFER,
    ),
    "target_rank": MetricInfo(
        CONTINUOUS, LOWER,
        "1 plus the number of choices whose log-probability is strictly higher than the best target's "
        "(ties count in the target's favour).",
        BIG_BENCH,
    ),
    "reciprocal_rank": MetricInfo(
        CONTINUOUS, HIGHER,
        "1 / target_rank: 1 when a target is (jointly) ranked first, 1/2 when one choice beats it, and so on.",
        "Voorhees 1999, TREC-8 question answering track (mean reciprocal rank)",
    ),
    "per_token_accuracy": MetricInfo(
        CONTINUOUS, HIGHER,
        "Share of the best target's tokens that are the model's top-ranked token, teacher-forced; "
        "null for a zero-token target.",
        SCHAEFFER,
    ),
    "prob_target_vocab": MetricInfo(
        NONLINEAR, HIGHER,
        "exp(logprob_target): probability of the best target continuation under the whole vocabulary, not "
        "renormalised over the choices.",
        SCHAEFFER_2024,
    ),
    "prob_choices_vocab": MetricInfo(
        NONLINEAR, HIGHER,
        "Σ over choices of exp(summed log-probability): the probability mass the model puts on the listed choices "
        "(above 1 only when one choice is a prefix of another).",
        SCHAEFFER_2024,
    ),
    "prob_distractors_vocab": MetricInfo(
        NONLINEAR, LOWER,
        "Σ over non-target choices of exp(summed log-probability): the mass on wrong choices; 0 without distractors.",
        SCHAEFFER_2024,
    ),
    # --- generative, teacher-forced on the references (metrics/choice.py) ---
    "prob_reference": MetricInfo(
        NONLINEAR, HIGHER,
        "Probability that the model produces the best reference token for token, exp(summed log-probability) "
        "= Π_t p(token_t).",
        SCHAEFFER,
    ),
    "token_accuracy_pow_len": MetricInfo(
        NONLINEAR, HIGHER,
        "per_token_accuracy of the best reference raised to its number of tokens L: the p^L prediction of exact "
        "match from per-token accuracy; null for a zero-token reference.",
        SCHAEFFER,
    ),
    # --- generative, from greedy generations (metrics/text.py) ---
    "exact_match": MetricInfo(
        DISCONTINUOUS, HIGHER,
        "1 if the greedy generation equals any reference after the configured normalisation, else 0.",
        HF_EXACT_MATCH,
    ),
    "bleu": MetricInfo(
        NONLINEAR, HIGHER,
        "Sentence BLEU (0–100) of the generation against its references, with effective n-gram order: a geometric "
        "mean of n-gram precisions.",
        SACREBLEU_BLEU,
    ),
    "chrf": MetricInfo(
        CONTINUOUS, HIGHER,
        "Sentence chrF (0–100): character n-gram F-score of the generation against its best reference.",
        SACREBLEU_CHRF,
    ),
    "corpus_bleu": MetricInfo(
        NONLINEAR, HIGHER,
        "Corpus BLEU (0–100) from n-gram statistics summed over items; not the mean of sentence BLEU.",
        SACREBLEU_BLEU,
    ),
    "corpus_chrf": MetricInfo(
        CONTINUOUS, HIGHER,
        "Corpus chrF (0–100) from character n-gram statistics summed over items.",
        SACREBLEU_CHRF,
    ),
    "token_edit_distance": MetricInfo(
        CONTINUOUS, LOWER,
        "Fewest token insertions, deletions and substitutions turning the generation into the closest reference, "
        "both encoded as continuations of the context.",
        LEVENSHTEIN,
    ),
    "token_edit_distance_norm": MetricInfo(
        CONTINUOUS, LOWER,
        "Token edit distance divided by the closest reference's length in tokens; null for an empty reference.",
        LEVENSHTEIN,
    ),
    "char_edit_distance": MetricInfo(
        CONTINUOUS, LOWER,
        "Fewest character insertions, deletions and substitutions turning the generation into the closest reference.",
        LEVENSHTEIN,
    ),
    # --- chain of thought, from generations read with an answer regex (metrics/text.py, logprob/reasoning.py) ---
    # a 0/1 indicator per item, like exact match: discontinuous
    "answer_extracted": MetricInfo(
        DISCONTINUOUS, HIGHER,
        "1 if the formulation's answer regex found a final answer in the generation, else 0 (an extraction "
        "failure); chain-of-thought items only.",
        CHAIN_OF_THOUGHT,
    ),
    # a summed log-probability, like logprob_target: continuous
    "logprob_answer_after_reasoning": MetricInfo(
        CONTINUOUS, HIGHER,
        "Log-probability of the best reference answer given the prompt and the model's own generated reasoning up "
        "to where its answer starts (all of it when none was found); chain-of-thought items only.",
        CHAIN_OF_THOUGHT,
    ),
    "logprob_answer_after_reasoning_per_token": MetricInfo(
        CONTINUOUS, HIGHER,
        "logprob_answer_after_reasoning divided by the answer's number of tokens; null for a zero-token answer.",
        CHAIN_OF_THOUGHT,
    ),
}

#: Read-only view of every built-in metric; metrics added at run time (`text.extra_metric`) are described by the
#: caller and passed to `aggregate` as `extra_info`, so this mapping never changes.
METRIC_REGISTRY: Mapping[str, MetricInfo] = MappingProxyType(_REGISTRY)


def metric_info(name: str, extra_info: Mapping[str, MetricInfo] | None = None) -> MetricInfo:
    """Look a metric up in `extra_info` first, then the built-in registry.

    >>> metric_info("brier_score").direction
    'lower'
    """
    if extra_info and name in extra_info:
        return extra_info[name]
    if name in METRIC_REGISTRY:
        return METRIC_REGISTRY[name]
    raise ValueError(
        f"metric {name!r} is not in metrics.registry.METRIC_REGISTRY; describe it with a MetricInfo in extra_info"
    )


def metric_table_markdown(registry: Mapping[str, MetricInfo] = METRIC_REGISTRY) -> str:
    """The README's metric table: one Markdown row per metric, in registry order.

    >>> print(metric_table_markdown({"m": MetricInfo(CONTINUOUS, LOWER, "A loss.", "A paper")}))
    | metric | taxonomy | kind | better | definition | source |
    | --- | --- | --- | --- | --- | --- |
    | `m` | continuous | smooth | lower | A loss. | A paper |
    """
    lines = ["| metric | taxonomy | kind | better | definition | source |", "| --- | --- | --- | --- | --- | --- |"]
    for name, info in registry.items():
        cells = [f"`{name}`", info.taxonomy, info.kind, info.direction, info.definition, info.source]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
