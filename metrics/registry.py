"""Every metric scalelens computes: its kind (sharp or smooth), which direction is better, a one-line definition
and the source it follows.

`aggregate` copies kind and direction from here into the metric table, `emergence` orients curves by direction,
and the README's metric table is generated from `METRIC_REGISTRY`, so each definition is written as a sentence for
readers. A *sharp* metric jumps between a few values per item (all-or-nothing); a *smooth* one moves continuously
with the model's probabilities, which is the distinction Schaeffer et al. (2023) use to ask whether emergence is a
property of the model or of the metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

SHARP = "sharp"
SMOOTH = "smooth"
HIGHER = "higher"
LOWER = "lower"

LM_EVAL = "EleutherAI lm-evaluation-harness, lm_eval/api/task.py (acc, acc_norm)"
BIG_BENCH = "Srivastava et al. 2022, BIG-bench (arXiv:2206.04615), bigbench/api/task_metrics.py"
SCHAEFFER = "Schaeffer, Miranda & Koyejo 2023, Are Emergent Abilities of Large Language Models a Mirage? (arXiv:2304.15004)"
BRIER = "Brier 1950, Verification of forecasts expressed in terms of probability; BIG-bench multiple-choice Brier score"
HF_EXACT_MATCH = "Hugging Face evaluate, metrics/exact_match"
SACREBLEU_BLEU = "Papineni et al. 2002, BLEU; computed with sacrebleu (Post 2018)"
SACREBLEU_CHRF = "Popović 2015, chrF; computed with sacrebleu (Post 2018)"
LEVENSHTEIN = "Levenshtein 1966; computed with rapidfuzz (Wagner & Fischer 1974 recurrence)"


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means and how to read it: `kind` is "sharp" or "smooth", `direction` "higher" or "lower"."""

    kind: str
    direction: str
    definition: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in (SHARP, SMOOTH):
            raise ValueError(f"MetricInfo.kind must be {SHARP!r} or {SMOOTH!r}, found {self.kind!r}")
        if self.direction not in (HIGHER, LOWER):
            raise ValueError(f"MetricInfo.direction must be {HIGHER!r} or {LOWER!r}, found {self.direction!r}")


_REGISTRY: dict[str, MetricInfo] = {
    # --- multiple choice, from the score table (metrics/choice.py) ---
    "multiple_choice_grade": MetricInfo(
        SHARP, HIGHER,
        "1 if the choice with the highest summed log-probability is a target, else 0; ties go to the lowest choice index.",
        f"{LM_EVAL} (acc); {BIG_BENCH} (multiple_choice_grade, which breaks exact ties pseudorandomly)",
    ),
    "acc_norm": MetricInfo(
        SHARP, HIGHER,
        "Multiple-choice grade after dividing each choice's log-probability by its length in characters.",
        LM_EVAL,
    ),
    "exact_match_greedy": MetricInfo(
        SHARP, HIGHER,
        "1 if every token of some target (or reference) is the model's top-ranked token given the tokens before it, "
        "i.e. greedy decoding would reproduce it.",
        f"{LM_EVAL} (is_greedy)",
    ),
    "logprob_target": MetricInfo(
        SMOOTH, HIGHER,
        "Summed log-probability of the target continuation given the context; with several targets, the best one.",
        SCHAEFFER,
    ),
    "logprob_target_per_token": MetricInfo(
        SMOOTH, HIGHER,
        "The best target's summed log-probability divided by its number of tokens; null for a zero-token target.",
        SCHAEFFER,
    ),
    "logprob_best_distractor": MetricInfo(
        SMOOTH, LOWER,
        "Highest summed log-probability among the non-target choices; lower means the distractors are less tempting.",
        BIG_BENCH,
    ),
    "margin": MetricInfo(
        SMOOTH, HIGHER,
        "Best target's log-probability minus the best distractor's: positive exactly when a target wins outright.",
        BIG_BENCH,
    ),
    "prob_target_among_choices": MetricInfo(
        SMOOTH, HIGHER,
        "Probability mass on the targets after a softmax over the choices' summed log-probabilities.",
        BIG_BENCH,
    ),
    "brier_score": MetricInfo(
        SMOOTH, LOWER,
        "Sum over choices of (softmax probability − 1 if target else 0)²; 0 is a perfect, confident answer.",
        BRIER,
    ),
    "classification_loss": MetricInfo(
        SMOOTH, LOWER,
        "Negative log of the probability on the targets among the choices (cross-entropy of the choice softmax).",
        SCHAEFFER,
    ),
    "target_rank": MetricInfo(
        SMOOTH, LOWER,
        "1 plus the number of choices whose log-probability is strictly higher than the best target's "
        "(ties count in the target's favour).",
        BIG_BENCH,
    ),
    "reciprocal_rank": MetricInfo(
        SMOOTH, HIGHER,
        "1 / target_rank: 1 when a target is (jointly) ranked first, 1/2 when one choice beats it, and so on.",
        "Voorhees 1999, TREC-8 question answering track (mean reciprocal rank)",
    ),
    "per_token_accuracy": MetricInfo(
        SMOOTH, HIGHER,
        "Share of the best target's tokens that are the model's top-ranked token, teacher-forced; "
        "null for a zero-token target.",
        SCHAEFFER,
    ),
    # --- generative, teacher-forced on the references (metrics/choice.py) ---
    "predicted_exact_match": MetricInfo(
        SMOOTH, HIGHER,
        "Probability that the model produces the best reference token for token, exp(summed log-probability) "
        "= Π_t p(token_t); the smooth counterpart of exact match.",
        SCHAEFFER,
    ),
    # --- generative, from greedy generations (metrics/text.py) ---
    "exact_match": MetricInfo(
        SHARP, HIGHER,
        "1 if the greedy generation equals any reference after the configured normalisation, else 0.",
        HF_EXACT_MATCH,
    ),
    "bleu": MetricInfo(
        SMOOTH, HIGHER,
        "Sentence BLEU (0–100) of the generation against its references, with effective n-gram order.",
        SACREBLEU_BLEU,
    ),
    "chrf": MetricInfo(
        SMOOTH, HIGHER,
        "Sentence chrF (0–100): character n-gram F-score of the generation against its best reference.",
        SACREBLEU_CHRF,
    ),
    "corpus_bleu": MetricInfo(
        SMOOTH, HIGHER,
        "Corpus BLEU (0–100) from n-gram statistics summed over items; not the mean of sentence BLEU.",
        SACREBLEU_BLEU,
    ),
    "corpus_chrf": MetricInfo(
        SMOOTH, HIGHER,
        "Corpus chrF (0–100) from character n-gram statistics summed over items.",
        SACREBLEU_CHRF,
    ),
    "token_edit_distance": MetricInfo(
        SMOOTH, LOWER,
        "Fewest token insertions, deletions and substitutions turning the generation into the closest reference.",
        LEVENSHTEIN,
    ),
    "token_edit_distance_norm": MetricInfo(
        SMOOTH, LOWER,
        "Token edit distance divided by the closest reference's length in tokens; null for an empty reference.",
        LEVENSHTEIN,
    ),
    "char_edit_distance": MetricInfo(
        SMOOTH, LOWER,
        "Fewest character insertions, deletions and substitutions turning the generation into the closest reference.",
        LEVENSHTEIN,
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
