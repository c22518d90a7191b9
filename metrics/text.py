"""Generations → per-item string metrics (exact match, BLEU, chrF, edit distances) and corpus BLEU/chrF.

This is the one module with per-row Python: string metrics have no columnar form. BLEU and chrF keep sacrebleu's
per-item sufficient statistics (`text_statistics`), so a corpus score is computed from summed statistics and its
bootstrap resamples items and re-sums (`corpus_text_metrics`, via `metrics.aggregate.corpus_aggregate`).
sacrebleu has no public API for per-segment statistics, so the calls use its statistic methods
(`_extract_corpus_statistics`, `_compute_score_from_stats`), the same pair its own bootstrap uses. They are private,
so pyproject.toml pins sacrebleu's major version (`>=2.4,<3`) and tests/test_metrics_text.py pins the results to
the public `sacrebleu.corpus_bleu`/`corpus_chrf`/`sentence_bleu`: a change inside sacrebleu fails a test instead of
changing a number.

Every item row carries its settings in `signature`, as sacrebleu prints them beside a score: sacrebleu's signature
for sentence BLEU and chrF (tokeniser, casing, smoothing, effective order, reference count, version),
`ExactMatchConfig.signature()` for exact match, "evaluate:<module name>" for an evaluate module's outputs, and ""
for the edit distances, which have no setting.

`evaluate` is imported by the caller, never here: importing it imports torch, and `metrics` must stay torch-free.
"""

from __future__ import annotations

import logging
import numbers
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl
from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import BLEU, CHRF

from metrics.aggregate import METRICS_TABLE, corpus_aggregate
from metrics.bootstrap import BootstrapConfig
from metrics.schema import GENERATIONS, ITEM_KEYS, ITEM_METRICS, validate

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- exact match


@dataclass(frozen=True)
class ExactMatchConfig:
    """Normalisation before comparing strings, in Hugging Face evaluate's `exact_match` order: delete every match of
    each regex in `regexes_to_ignore`, then lower-case, then delete `string.punctuation`, then delete digits."""

    ignore_case: bool = False
    ignore_punctuation: bool = False
    ignore_numbers: bool = False
    regexes_to_ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.regexes_to_ignore, str):
            raise ValueError("ExactMatchConfig.regexes_to_ignore must be a tuple of patterns, found a single string")
        for pattern in self.regexes_to_ignore:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"ExactMatchConfig.regexes_to_ignore: invalid pattern {pattern!r}: {err}") from err

    def normalise(self, text: str) -> str:
        """Apply the configured normalisation.

        >>> ExactMatchConfig(ignore_case=True, ignore_punctuation=True).normalise("Hello, World!")
        'hello world'
        """
        for pattern in self.regexes_to_ignore:
            text = re.sub(pattern, "", text)
        if self.ignore_case:
            text = text.lower()
        if self.ignore_punctuation:
            text = text.translate(str.maketrans("", "", string.punctuation))
        if self.ignore_numbers:
            text = text.translate(str.maketrans("", "", string.digits))
        return text

    def signature(self) -> str:
        """Every setting as `name:value`, joined by "|" (the `signature` of exact-match rows).

        >>> ExactMatchConfig(ignore_case=True).signature()
        'ignore_case:True|ignore_punctuation:False|ignore_numbers:False|regexes_to_ignore:()'
        """
        return "|".join(f"{k}:{v}" for k, v in asdict(self).items())


def _check_generations(generations: pl.DataFrame) -> pl.DataFrame:
    """Validate (and width-coerce) a generations table; returns it."""
    generations = validate(generations, GENERATIONS, "generations")
    for column in ("prediction", "references", "reference_answers"):
        if generations[column].null_count():
            raise ValueError(f"generations: column '{column}' has {generations[column].null_count()} null value(s)")
    one_null = generations.filter(pl.col("prediction_token_ids").is_null() != pl.col("reference_token_ids").is_null())
    if one_null.height:
        raise ValueError(f"generations: item {one_null['item_id'][0]!r}: 'prediction_token_ids' and "
                         "'reference_token_ids' must be both given or both null (null: no token ids)")
    bad = generations.filter(
        (pl.col("references").list.len() == 0)
        | (pl.col("reference_token_ids").is_not_null()
           & (pl.col("references").list.len() != pl.col("reference_token_ids").list.len()))
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"generations: item {row['item_id']!r} needs >= 1 reference and one 'reference_token_ids' list per "
            f"reference; found {len(row['references'])} references and {len(row['reference_token_ids'] or [])} id "
            "lists"
        )
    dup = generations.group_by(ITEM_KEYS).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"generations: duplicated (model, task, item_id), e.g. {dup.row(0, named=True)}")
    return generations


def _item_rows(
    generations: pl.DataFrame, columns: Mapping[str, Sequence[float | None]], signatures: Mapping[str, str]
) -> pl.DataFrame:
    """Per-item values (one list per metric, aligned with `generations` rows) → ITEM_METRICS long rows, each metric
    with its `signatures[metric]`."""
    wide = generations.select(ITEM_KEYS).with_columns(
        pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items()
    )
    out = wide.unpivot(on=list(columns), index=ITEM_KEYS, variable_name="metric", value_name="value")
    out = out.with_columns(pl.col("metric").replace_strict(dict(signatures), return_dtype=pl.String).alias("signature"))
    return validate(out.sort(ITEM_KEYS, maintain_order=True), ITEM_METRICS, "item_metrics")


def exact_match(generations: pl.DataFrame, config: ExactMatchConfig = ExactMatchConfig()) -> pl.DataFrame:
    """`exact_match` per item: 1.0 if the normalised prediction equals any normalised reference answer (ITEM_METRICS;
    the reference answers are the references themselves, or for a chain-of-thought task their final answers).

    >>> g = pl.DataFrame({"model": ["m"], "params": [2], "non_embedding_params": [1], "task": ["t"],
    ...     "item_id": ["i"], "prediction": ["Paris!"], "n_generated_tokens": [1], "generated_token_ids": [[5]],
    ...     "prediction_token_ids": [[5]], "references": [["paris", "Lyon"]], "reference_token_ids": [[[5], [6]]],
    ...     "stop_reason": ["eos"], "n_truncated": [0]})
    >>> exact_match(g, ExactMatchConfig(ignore_case=True, ignore_punctuation=True))["value"].to_list()
    [1.0]
    """
    generations = _check_generations(generations)
    values = [
        float(any(config.normalise(pred) == config.normalise(ref) for ref in refs))
        for pred, refs in zip(generations["prediction"], generations["reference_answers"])
    ]
    return _item_rows(generations, {"exact_match": values}, {"exact_match": config.signature()})


# ------------------------------------------------------------------------------------------------- BLEU and chrF


@dataclass(frozen=True)
class BleuConfig:
    """sacrebleu BLEU settings. Sentence BLEU uses `effective_order=True` (sacrebleu's advice for single
    sentences); corpus BLEU uses the standard full order. Defaults are sacrebleu's: 13a tokeniser, mixed case,
    exponential smoothing (Chen & Cherry 2014, method 3), n-grams up to 4 (Papineni et al. 2002)."""

    tokenize: str = "13a"
    lowercase: bool = False
    smooth_method: str = "exp"
    smooth_value: float | None = None
    max_ngram_order: int = 4

    def metric(self, effective_order: bool) -> BLEU:
        return BLEU(
            lowercase=self.lowercase,
            tokenize=self.tokenize,
            smooth_method=self.smooth_method,
            smooth_value=self.smooth_value,
            max_ngram_order=self.max_ngram_order,
            effective_order=effective_order,
        )

    def stat_columns(self) -> list[str]:
        """sacrebleu's statistic order: hyp_len, ref_len, matches_1..N, totals_1..N (prefixed `bleu_`)."""
        orders = range(1, self.max_ngram_order + 1)
        return [
            "bleu_hyp_len",
            "bleu_ref_len",
            *(f"bleu_matches_{n}" for n in orders),
            *(f"bleu_totals_{n}" for n in orders),
        ]


@dataclass(frozen=True)
class ChrfConfig:
    """sacrebleu chrF settings; defaults are chrF (Popović 2015): character 6-grams, β = 2, no word n-grams
    (word_order=2 gives chrF++, Popović 2017)."""

    char_order: int = 6
    word_order: int = 0
    beta: int = 2
    lowercase: bool = False
    whitespace: bool = False
    eps_smoothing: bool = False

    def metric(self) -> CHRF:
        return CHRF(
            char_order=self.char_order,
            word_order=self.word_order,
            beta=self.beta,
            lowercase=self.lowercase,
            whitespace=self.whitespace,
            eps_smoothing=self.eps_smoothing,
        )

    def stat_columns(self) -> list[str]:
        """sacrebleu's statistic order: (hyp, ref, match) counts per character order, then per word order."""
        orders = [f"char{n}" for n in range(1, self.char_order + 1)]
        orders += [f"word{n}" for n in range(1, self.word_order + 1)]
        return [f"chrf_{order}_{part}" for order in orders for part in ("hyp", "ref", "match")]


def _segment_statistics(metric: BLEU | CHRF, generations: pl.DataFrame) -> list[list[int]]:
    """sacrebleu's per-segment statistics for every row; items may have different numbers of references
    (sacrebleu's reference streams padded with None)."""
    refs = generations["reference_answers"].to_list()
    if not refs:
        return []
    n_streams = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(n_streams)]
    return metric._extract_corpus_statistics(generations["prediction"].to_list(), streams)


def _statistics(metric: BLEU | CHRF, generations: pl.DataFrame, n_columns: int) -> np.ndarray:
    """`_segment_statistics` as an (n, n_columns) int64 matrix."""
    stats = np.array(_segment_statistics(metric, generations), dtype=np.int64)
    return stats.reshape(generations.height, n_columns)  # (n, S)


def _signature(metric: BLEU | CHRF) -> str:
    """sacrebleu's signature; the metric must have seen references (it reports their count)."""
    return metric.get_signature().format()


def text_statistics(
    generations: pl.DataFrame, bleu: BleuConfig = BleuConfig(), chrf: ChrfConfig = ChrfConfig()
) -> pl.DataFrame:
    """Per-item sufficient statistics of BLEU and chrF: the item keys plus `bleu.stat_columns()` and
    `chrf.stat_columns()` (Int64), in sacrebleu's order. Summing any subset of rows and scoring the sum is the
    corpus score of that subset."""
    return _statistics_table(_check_generations(generations), bleu, chrf)[0]


def _statistics_table(generations: pl.DataFrame, bleu: BleuConfig, chrf: ChrfConfig) -> tuple[pl.DataFrame, BLEU, CHRF]:
    """`text_statistics` of checked generations, and the corpus BLEU and chrF metrics that extracted them (which
    have now seen the references their signatures report)."""
    bleu_metric, chrf_metric = bleu.metric(effective_order=False), chrf.metric()
    bleu_stats = _statistics(bleu_metric, generations, len(bleu.stat_columns()))  # (n, 2 + 2N)
    chrf_stats = _statistics(chrf_metric, generations, len(chrf.stat_columns()))  # (n, 3 × orders)
    columns = {
        **{name: bleu_stats[:, j] for j, name in enumerate(bleu.stat_columns())},
        **{name: chrf_stats[:, j] for j, name in enumerate(chrf.stat_columns())},
    }
    stats = generations.select(ITEM_KEYS).with_columns(pl.Series(k, v, dtype=pl.Int64) for k, v in columns.items())
    return stats, bleu_metric, chrf_metric


def bleu_score(bleu: BleuConfig, effective_order: bool):
    """Score function: summed BLEU statistics (hyp_len, ref_len, matches…, totals…) → BLEU in [0, 100]."""
    metric = bleu.metric(effective_order=effective_order)

    def score(stats: np.ndarray) -> float:
        return float(metric._compute_score_from_stats([int(x) for x in stats]).score)

    return score


def chrf_score(chrf: ChrfConfig):
    """Score function: summed chrF statistics → chrF in [0, 100]."""
    metric = chrf.metric()

    def score(stats: np.ndarray) -> float:
        return float(metric._compute_score_from_stats([int(x) for x in stats]).score)

    return score


def bleu_chrf(
    generations: pl.DataFrame, bleu: BleuConfig = BleuConfig(), chrf: ChrfConfig = ChrfConfig()
) -> pl.DataFrame:
    """Sentence `bleu` (effective order) and `chrf` per item, from the same statistics as the corpus scores
    (ITEM_METRICS), each row signed with sacrebleu's signature. Equal to sacrebleu's `sentence_bleu`/`sentence_chrf`
    under the same settings."""
    generations = _check_generations(generations)
    bleu_metric, chrf_metric = bleu.metric(effective_order=True), chrf.metric()
    bleu_matrix = _statistics(bleu_metric, generations, len(bleu.stat_columns()))  # (n, 2 + 2N)
    chrf_matrix = _statistics(chrf_metric, generations, len(chrf.stat_columns()))  # (n, 3 × orders)
    sentence_bleu, sentence_chrf = bleu_score(bleu, effective_order=True), chrf_score(chrf)
    signed = generations.height > 0  # sacrebleu's signature needs references it has seen
    return _item_rows(
        generations,
        {
            "bleu": [sentence_bleu(row) for row in bleu_matrix],
            "chrf": [sentence_chrf(row) for row in chrf_matrix],
        },
        {"bleu": _signature(bleu_metric) if signed else "", "chrf": _signature(chrf_metric) if signed else ""},
    )


@dataclass(frozen=True)
class CorpusMetric:
    """A corpus-level score: `score` of the per-item statistics in `columns`, summed; `signature` its settings."""

    metric: str
    columns: tuple[str, ...]
    score: Callable[[np.ndarray], float]
    signature: str


def corpus_metrics(
    generations: pl.DataFrame, bleu: BleuConfig = BleuConfig(), chrf: ChrfConfig = ChrfConfig()
) -> tuple[pl.DataFrame, list[CorpusMetric]]:
    """Per-item statistics (`text_statistics`) and the corpus BLEU and chrF computed from their sums."""
    stats, bleu_metric, chrf_metric = _statistics_table(_check_generations(generations), bleu, chrf)
    return stats, [
        CorpusMetric("corpus_bleu", tuple(bleu.stat_columns()), bleu_score(bleu, False), _signature(bleu_metric)),
        CorpusMetric("corpus_chrf", tuple(chrf.stat_columns()), chrf_score(chrf), _signature(chrf_metric)),
    ]


def corpus_text_metrics(
    generations: pl.DataFrame,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    bleu: BleuConfig = BleuConfig(),
    chrf: ChrfConfig = ChrfConfig(),
) -> pl.DataFrame:
    """`corpus_bleu` and `corpus_chrf` per (model, task) in METRICS_TABLE form: mean is the corpus score from summed
    item statistics, the interval a bootstrap over items that re-sums and rescores; `signature` carries sacrebleu's
    signature and the bootstrap's."""
    if generations.height == 0:
        _check_generations(generations)
        return pl.DataFrame(schema=METRICS_TABLE)
    stats, specs = corpus_metrics(generations, bleu, chrf)
    parts = [corpus_aggregate(stats, list(s.columns), s.score, s.metric, bootstrap, s.signature) for s in specs]
    return validate(pl.concat(parts), METRICS_TABLE, "metrics")


# ------------------------------------------------------------------------------------------------- edit distance


def levenshtein(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Fewest insertions, deletions and substitutions turning `a` into `b` (Levenshtein 1966), computed by
    rapidfuzz's Levenshtein distance (unit costs, the Wagner–Fischer recurrence D[i][j] = min(D[i-1][j] + 1,
    D[i][j-1] + 1, D[i-1][j-1] + [a_i ≠ b_j])). Works on strings and on token-id lists alike.

    >>> levenshtein("kitten", "sitting")
    3
    >>> levenshtein([1, 2, 3], [1, 3])
    1
    """
    return Levenshtein.distance(a, b)


def edit_distances(generations: pl.DataFrame) -> pl.DataFrame:
    """`token_edit_distance`, `token_edit_distance_norm` and `char_edit_distance` per item (ITEM_METRICS).

    Each distance is to the closest reference (smallest distance; ties to the first reference), taken separately for
    tokens (`prediction_token_ids` vs `reference_token_ids`) and characters (`prediction` vs `references`). The
    normalised token distance divides by the closest reference's token count, and is null when that reference has
    no tokens. `logprob.generate` writes the prediction's and the references' token ids by one rule (each text
    encoded as a continuation of the item's context), so a generation equal to a reference has token distance 0;
    a table built elsewhere must do the same for the token distances to mean edits. Without token ids (both id
    columns null, e.g. generations read from lm-evaluation-harness samples) the two token distances are null for
    that item: unavailable, not 0.
    """
    generations = _check_generations(generations)
    token, token_norm, char = [], [], []
    for pred_ids, ref_ids, pred, refs in zip(
        generations["prediction_token_ids"],
        generations["reference_token_ids"],
        generations["prediction"],
        generations["reference_answers"],
    ):
        if pred_ids is None:
            token.append(None)
            token_norm.append(None)
        else:
            pred_list = pred_ids.to_list()
            distances = [(levenshtein(pred_list, r), len(r)) for r in ref_ids.to_list()]
            best, ref_len = min(distances, key=lambda d: d[0])
            token.append(float(best))
            token_norm.append(best / ref_len if ref_len else None)
        char.append(float(min(levenshtein(pred, r) for r in refs)))
    names = ("token_edit_distance", "token_edit_distance_norm", "char_edit_distance")
    return _item_rows(generations, dict(zip(names, (token, token_norm, char))), dict.fromkeys(names, ""))


def text_metrics(
    generations: pl.DataFrame,
    exact: ExactMatchConfig = ExactMatchConfig(),
    bleu: BleuConfig = BleuConfig(),
    chrf: ChrfConfig = ChrfConfig(),
) -> pl.DataFrame:
    """Every built-in per-item text metric (exact_match, bleu, chrf, edit distances, and for chain-of-thought items
    the reasoning metrics) as ITEM_METRICS rows."""
    parts = [exact_match(generations, exact), bleu_chrf(generations, bleu, chrf), edit_distances(generations),
             reasoning_metrics(generations)]
    return pl.concat(parts).sort(ITEM_KEYS, maintain_order=True)


REASONING_METRICS = ("answer_extracted", "logprob_answer_after_reasoning", "logprob_answer_after_reasoning_per_token")


def reasoning_metrics(generations: pl.DataFrame) -> pl.DataFrame:
    """For items of a chain-of-thought task (an answer regex, `answer_extracted` not null; logprob.reasoning):
    `answer_extracted` (1 when the regex found a final answer in the generation), `logprob_answer_after_reasoning`
    (log-probability of the best reference answer after the model's own reasoning) and its per-token mean (null
    for a zero-token answer). No rows for other items."""
    generations = _check_generations(generations).filter(pl.col("answer_extracted").is_not_null())
    tokens = generations["answer_n_tokens"].to_list()
    logprob = generations["answer_logprob"].to_list()
    columns = {
        "answer_extracted": generations["answer_extracted"].cast(pl.Float64).to_list(),
        "logprob_answer_after_reasoning": logprob,
        "logprob_answer_after_reasoning_per_token": [lp / n if lp is not None and n else None
                                                     for lp, n in zip(logprob, tokens, strict=True)],
    }
    return _item_rows(generations, columns, dict.fromkeys(columns, ""))


# ----------------------------------------------------------------------------------------- any evaluate module


class EvaluationModuleLike(Protocol):
    """What `extra_metric` needs of an `evaluate.EvaluationModule` (typed structurally: importing evaluate would
    import torch)."""

    name: str

    def compute(self, *, predictions: list[str], references: list[list[str]]) -> Mapping[str, Any] | None: ...


def extra_metric(generations: pl.DataFrame, module: EvaluationModuleLike) -> pl.DataFrame:
    """Apply an HF `evaluate` module per item (predictions=[prediction], references=[references]) and keep its
    numeric outputs as metrics named `<module.name>_<key>` (ITEM_METRICS). Non-numeric outputs are skipped (logged).

    Describe the new metrics with `registry.MetricInfo` and pass them to `aggregate(..., extra_info=...)`.
    """
    generations = _check_generations(generations)
    if not hasattr(module, "compute") or not isinstance(getattr(module, "name", None), str):
        raise ValueError(f"extra_metric: module must be an evaluate.EvaluationModule, found {type(module).__name__}")
    columns: dict[str, list[float | None]] = {}
    for row, (pred, refs) in enumerate(zip(generations["prediction"], generations["reference_answers"])):
        result = module.compute(predictions=[pred], references=[refs.to_list()]) or {}
        for key, value in result.items():
            if isinstance(value, (bool, numbers.Real, np.bool_)):
                columns.setdefault(f"{module.name}_{key}", [None] * generations.height)[row] = float(value)
            else:
                logger.debug("extra_metric: %s output %r is not numeric; skipped", module.name, key)
    if not columns:
        raise ValueError(f"extra_metric: module {module.name!r} returned no numeric output")
    return _item_rows(generations, columns, dict.fromkeys(columns, f"evaluate:{module.name}"))
