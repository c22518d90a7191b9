"""Which way is better for each aggregate metric, and the transforms applied before curves are measured.

**Direction** of a metric from results or a table, the first rule that applies: `--direction METRIC=lower|higher`;
the table's `direction` column; lm-eval's own `higher_is_better` in a current-layout results file; the known
names below (ppl, word_perplexity, byte_perplexity, bits_per_byte, brier_score, likelihood_difference,
pct_stereotype, ter are lower-is-better); otherwise higher-is-better, and the notes say it was assumed.

**Taxonomy** (Schaeffer et al. 2023, `metrics.registry`): the known lm-eval names below; any other metric is read
as continuous, and the notes say so.

**Transforms**, each recorded in the metric's name and in its `signature` (`transform:…`):

- *log-perplexity*: a perplexity-like metric (ppl, perplexity, word_perplexity, byte_perplexity) becomes
  `log_<name>` = ln(value), with standard error se/value (the delta method: d ln v / dv = 1/v). Perplexity is the
  exponential of a mean log-loss, so its raw curve is dominated by the smallest model: on the shared Pythia files
  (70M, 410M, 1.4B) LAMBADA perplexity falls 142.4 → 10.8 → 6.09, and 96.5% of the whole change is the first step.
  Its logarithm is the mean log-loss itself, on which a step means the same relative change at every size.
- *above chance* (`--above-chance`): acc, acc_norm (and, for samples, multiple_choice_grade) with k choices also get
  `<name>_above_chance` = (value − 1/k) / (1 − 1/k), standard error se / (1 − 1/k): 0 at chance, 1 when perfect.
  It needs k: the table's `n_choices` column, or the number of choices of each sample (applied per item there).
  An affine map leaves linearity and breakthroughness unchanged; it moves the zero to chance for reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl

from metrics.ingest.errors import InputError
from metrics.registry import CONTINUOUS, DISCONTINUOUS, HIGHER, LOWER, NONLINEAR, MetricInfo

LM_EVAL_SOURCE = "lm-evaluation-harness results (the mean and stderr as lm-eval reported them)"
#: Known lm-eval metric names: (taxonomy, direction, definition).
KNOWN: dict[str, tuple[str, str, str]] = {
    "acc": (DISCONTINUOUS, HIGHER, "lm-eval's accuracy: share of items whose most likely choice is correct."),
    "acc_norm": (DISCONTINUOUS, HIGHER, "lm-eval's accuracy with each choice's log-likelihood divided by its "
                 "length in characters."),
    "acc_mutual_info": (DISCONTINUOUS, HIGHER, "lm-eval's accuracy on log-likelihood minus the unconditional one."),
    "exact_match": (DISCONTINUOUS, HIGHER, "lm-eval's exact match of the generation with the reference."),
    "em": (DISCONTINUOUS, HIGHER, "Exact match of the answer."),
    "mcc": (DISCONTINUOUS, HIGHER, "Matthews correlation of the predicted labels."),
    "pct_stereotype": (DISCONTINUOUS, LOWER, "Share of pairs where the stereotyped sentence is the more likely."),
    "f1": (CONTINUOUS, HIGHER, "F1 of the answer's tokens against the reference."),
    "bleu": (NONLINEAR, HIGHER, "BLEU of the generation against the references."),
    "chrf": (CONTINUOUS, HIGHER, "chrF of the generation against the references."),
    "ter": (CONTINUOUS, LOWER, "Translation edit rate of the generation against the references."),
    "ppl": (CONTINUOUS, LOWER, "Perplexity."),
    "perplexity": (CONTINUOUS, LOWER, "Perplexity."),
    "word_perplexity": (CONTINUOUS, LOWER, "Perplexity per word."),
    "byte_perplexity": (CONTINUOUS, LOWER, "Perplexity per byte."),
    "bits_per_byte": (CONTINUOUS, LOWER, "Mean negative log2-likelihood per byte."),
    "brier_score": (CONTINUOUS, LOWER, "Brier score of the choice probabilities."),
    "likelihood_difference": (CONTINUOUS, LOWER, "Mean absolute log-likelihood difference of the sentence pairs."),
}
PERPLEXITY_LIKE = ("ppl", "perplexity", "word_perplexity", "byte_perplexity")
ACCURACY_LIKE = ("acc", "acc_norm", "multiple_choice_grade")
LOG_TRANSFORM = "transform:log, stderr by the delta method (se/value)"
ABOVE_CHANCE_TRANSFORM = "transform:(y-1/k)/(1-1/k)"
INTERVAL_FROM_STDERR = "interval:mean+stderr*z, parametric from the reported stderr"


def base_name(metric: str) -> str:
    """The metric without an lm-eval filter ('exact_match,strict-match' → 'exact_match')."""
    return metric.split(",", 1)[0]


def parse_directions(specs: Sequence[str]) -> dict[str, str]:
    """`--direction METRIC=lower|higher` options → {metric: direction}.

    >>> parse_directions(["ppl=lower", "score=higher"])
    {'ppl': 'lower', 'score': 'higher'}
    """
    out = {}
    for spec in specs:
        metric, sep, direction = spec.partition("=")
        if not sep or not metric.strip() or direction.strip() not in (HIGHER, LOWER):
            raise InputError(f"--direction {spec}: expected METRIC=lower or METRIC=higher")
        out[metric.strip()] = direction.strip()
    return out


def transform(rows: pl.DataFrame, above_chance: bool) -> tuple[pl.DataFrame, list[str]]:
    """Apply the transforms to aggregate rows (model, task, metric, mean, stderr, n_choices, …); adds `transform`
    and `raw_metric` (the metric's name as the input gave it, before a `log_` prefix or `_above_chance` suffix).

    Returns the rows and notes on what was (or could not be) transformed.
    """
    notes = []
    rows = rows.with_columns(pl.lit("").alias("transform"), pl.col("metric").alias("raw_metric"))
    perplexity = pl.col("metric").map_elements(base_name, return_dtype=pl.String).is_in(PERPLEXITY_LIKE)
    bad_ppl = rows.filter(perplexity & (pl.col("mean") <= 0))
    if bad_ppl.height:
        row = bad_ppl.row(0, named=True)
        raise InputError(f"model {row['model']!r}, task {row['task']!r}: {row['metric']} = {row['mean']} is not a "
                         "perplexity (must be > 0)")
    logged = rows.filter(perplexity)
    if logged.height:
        names = sorted(set(logged["metric"].to_list()))
        notes.append(f"indexed on log-perplexity: {', '.join(names)} → {', '.join('log_' + n for n in names)} "
                     "(perplexity is exp of a mean log-loss; its raw curve is set by the smallest model)")
    rows = rows.with_columns(
        pl.when(perplexity).then(pl.lit("log_") + pl.col("metric")).otherwise(pl.col("metric")).alias("metric"),
        pl.when(perplexity).then(pl.col("mean").log()).otherwise(pl.col("mean")).alias("mean"),
        pl.when(perplexity).then(pl.col("stderr") / pl.col("mean")).otherwise(pl.col("stderr")).alias("stderr"),
        pl.when(perplexity).then(pl.lit(LOG_TRANSFORM)).otherwise(pl.col("transform")).alias("transform"),
    )
    if above_chance:
        accuracy = pl.col("metric").map_elements(base_name, return_dtype=pl.String).is_in(ACCURACY_LIKE)
        known = rows.filter(accuracy & pl.col("n_choices").is_not_null())
        unknown = rows.filter(accuracy & pl.col("n_choices").is_null())
        if unknown.height:
            notes.append(f"above chance not shown for {', '.join(sorted(set(unknown['task'].to_list()))[:5])}: the "
                         "number of choices is unknown (give an n_choices column)")
        chance = 1.0 / pl.col("n_choices")
        rows = pl.concat([rows, known.with_columns(
            (pl.col("metric") + "_above_chance").alias("metric"),
            ((pl.col("mean") - chance) / (1 - chance)).alias("mean"),
            (pl.col("stderr") / (1 - chance)).alias("stderr"),
            (pl.lit(ABOVE_CHANCE_TRANSFORM + "|k:") + pl.col("n_choices").cast(pl.String)).alias("transform"),
        )])
    return rows, notes


def aggregate_info(rows: pl.DataFrame, overrides: Mapping[str, str]) -> tuple[dict[str, MetricInfo], list[str]]:
    """MetricInfo for every metric of the (transformed) aggregate rows: direction and taxonomy by the module's rules.

    `rows` has metric, raw_metric (`transform`), direction (table, may be null) and higher_is_better (lm-eval, may
    be null).
    """
    notes = []
    unknown_metrics = sorted(set(overrides) - set(rows["metric"].to_list()) - set(rows["raw_metric"].to_list()))
    if unknown_metrics:
        raise InputError(f"--direction {unknown_metrics[0]}: no metric of that name in the results or tables "
                         f"(metrics: {', '.join(sorted(set(rows['metric'].to_list()))[:8])})")
    info: dict[str, MetricInfo] = {}
    assumed, continuous = [], []
    for (metric,), part in rows.group_by("metric", maintain_order=True):
        raw = part["raw_metric"][0]
        base = base_name(raw)
        given = {d for d in part["direction"].drop_nulls().to_list()}
        lm_eval = {(HIGHER if b else LOWER) for b in part["higher_is_better"].drop_nulls().to_list()}
        if len(given) > 1 or len(lm_eval) > 1:
            raise InputError(f"metric {metric!r}: the inputs give it both directions; set one with "
                             f"--direction {raw}=lower or =higher")
        known = KNOWN.get(base)
        direction = overrides.get(raw) or overrides.get(metric) or next(iter(given), None) \
            or next(iter(lm_eval), None) or (known[1] if known else None)
        if direction is None:
            direction = HIGHER
            assumed.append(metric)
        taxonomy = known[0] if known else CONTINUOUS
        if known is None:
            continuous.append(metric)
        definition = known[2] if known else f"Metric {raw!r} as the input reports it."
        if metric != raw and metric.startswith("log_"):
            definition = f"Natural log of {raw} (the mean log-loss it exponentiates). {definition}"
        if metric.endswith("_above_chance"):
            definition = f"{definition} Rescaled above chance: (value − 1/k) / (1 − 1/k), k choices."
        info[metric] = MetricInfo(taxonomy, direction, definition, LM_EVAL_SOURCE)
    if assumed:
        notes.append(f"direction unknown, read as higher-is-better: {', '.join(assumed[:6])}"
                     f"{' …' if len(assumed) > 6 else ''} (set --direction METRIC=lower where lower is better)")
    if continuous:
        notes.append(f"taxonomy unknown, read as continuous (smooth): {', '.join(continuous[:6])}"
                     f"{' …' if len(continuous) > 6 else ''}")
    return info, notes


def signature(transform_name: str, n_shot: int | None) -> str:
    """The settings behind an aggregate metric's numbers.

    >>> signature("", 0)
    'interval:mean+stderr*z, parametric from the reported stderr|shots:0'
    """
    parts = [INTERVAL_FROM_STDERR, transform_name, "" if n_shot is None or math.isnan(n_shot) else f"shots:{n_shot}"]
    return "|".join(p for p in parts if p)
