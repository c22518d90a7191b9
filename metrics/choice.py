"""Score table → per-item metrics: the same log-probabilities read under sharp and smooth metrics.

One row of the score table is one (model, task, item, choice). Every metric here is a polars expression over the
choices of one item (`group_by` on `ITEM_KEYS`), so no Python runs per row.

Choosing among several targets: the *best target* is the target with the highest summed log-probability, ties going
to the lowest choice index; `logprob_target`, `logprob_target_per_token` and `per_token_accuracy` all describe that
one target. Generative items store their references as choices (every one a target), so "best reference" is the
same rule.

Zero-token continuations (n_tokens 0) are kept: their log-probability is 0 (the empty string has probability 1
given any context), so sums and softmaxes stay defined, while the per-token metrics (`logprob_target_per_token`,
`per_token_accuracy`) are null because a mean over no tokens has no value. `acc_norm` is null for an item in which
any choice has zero characters, since its length-normalised score is undefined.
"""

from __future__ import annotations

import polars as pl

from metrics.schema import GENERATIVE, ITEM_KEYS, ITEM_METRICS, MULTIPLE_CHOICE, SCORES, validate

MULTIPLE_CHOICE_METRICS: tuple[str, ...] = (
    "multiple_choice_grade",
    "acc_norm",
    "exact_match_greedy",
    "logprob_target",
    "logprob_target_per_token",
    "logprob_best_distractor",
    "margin",
    "prob_target_among_choices",
    "brier_score",
    "classification_loss",
    "target_rank",
    "reciprocal_rank",
    "per_token_accuracy",
)
GENERATIVE_METRICS: tuple[str, ...] = (
    "logprob_target",
    "logprob_target_per_token",
    "per_token_accuracy",
    "exact_match_greedy",
    "predicted_exact_match",
)

_lp = pl.col("logprob")
_target = pl.col("is_target")


def _check_scores(scores: pl.DataFrame) -> None:
    """Reject score tables whose per-item structure would make a metric silently wrong."""
    validate(scores, SCORES, "scores")
    kinds = set(scores["item_kind"].unique().to_list())
    if not kinds <= {MULTIPLE_CHOICE, GENERATIVE}:
        raise ValueError(f"scores: column 'item_kind' must be {MULTIPLE_CHOICE!r} or {GENERATIVE!r}, found {kinds}")
    for column in ("logprob", "n_tokens", "n_chars", "is_target", "is_greedy", "choice"):
        if scores[column].null_count():
            raise ValueError(f"scores: column '{column}' has {scores[column].null_count()} null value(s)")
    if (scores["n_tokens"] < 0).any():
        raise ValueError("scores: column 'n_tokens' must be >= 0")
    bad_len = scores.filter(
        (pl.col("token_ranks").list.len() != pl.col("n_tokens"))
        | (pl.col("token_logprobs").list.len() != pl.col("n_tokens"))
    )
    if bad_len.height:
        row = bad_len.row(0, named=True)
        raise ValueError(
            f"scores: 'token_logprobs'/'token_ranks' length must equal 'n_tokens'; item {row['item_id']!r} choice "
            f"{row['choice']} has n_tokens {row['n_tokens']} and {len(row['token_ranks'])} ranks"
        )
    per_item = scores.group_by(ITEM_KEYS).agg(
        pl.col("item_kind").n_unique().alias("kinds"),
        _target.any().alias("has_target"),
        _target.all().alias("all_target"),
        pl.col("item_kind").first(),
        pl.col("choice").n_unique().alias("distinct"),
        pl.len().alias("rows"),
    )
    checks = [
        (pl.col("kinds") > 1, "mixes item kinds"),
        (~pl.col("has_target"), "has no target (is_target all false)"),
        ((pl.col("item_kind") == GENERATIVE) & ~pl.col("all_target"), "is generative but has a non-target reference"),
        (pl.col("distinct") != pl.col("rows"), "repeats a choice index"),
    ]
    for condition, problem in checks:
        bad = per_item.filter(condition)
        if bad.height:
            row = bad.row(0, named=True)
            raise ValueError(
                f"scores: item {row['item_id']!r} of task {row['task']!r}, model {row['model']!r} {problem}"
            )


def _best_target(column: str) -> pl.Expr:
    """`column` of the best target: highest log-probability among targets, ties to the lowest choice index.

    Rows are sorted by choice within each item before aggregation, so `first()` is the lowest index.
    """
    best = _lp.filter(_target).max()
    return pl.col(column).filter(_target & (_lp == best)).first()


def _argmax_is_target(score: pl.Expr) -> pl.Expr:
    """1.0 if the highest-`score` choice is a target, ties to the lowest choice index (rows sorted by choice)."""
    winner = _target.sort_by(score, descending=True, maintain_order=True).first()
    return winner.cast(pl.Float64)


def _multiple_choice(scores: pl.DataFrame) -> pl.DataFrame:
    """One wide row per multiple-choice item with every metric in `MULTIPLE_CHOICE_METRICS`."""
    shifted = _lp - _lp.max()  # ≤ 0 over the item: exp cannot overflow
    log_z = shifted.exp().sum().log()  # log Σ_k exp(lp_k − max)
    log_z_target = shifted.filter(_target).exp().sum().log()
    q = (shifted - log_z).exp()  # softmax over the item's choices
    norm = pl.when(pl.col("n_chars") > 0).then(_lp / pl.col("n_chars"))
    best_target_lp = _lp.filter(_target).max()
    best_distractor = _lp.filter(~_target).max()
    n_tokens = _best_target("n_tokens")
    ranks = _best_target("token_ranks")
    wide = scores.group_by(ITEM_KEYS, maintain_order=True).agg(
        _argmax_is_target(_lp).alias("multiple_choice_grade"),
        pl.when(pl.col("n_chars").min() > 0).then(_argmax_is_target(norm)).alias("acc_norm"),
        (_target & pl.col("is_greedy")).any().cast(pl.Float64).alias("exact_match_greedy"),
        best_target_lp.alias("logprob_target"),
        pl.when(n_tokens > 0).then(best_target_lp / n_tokens).alias("logprob_target_per_token"),
        best_distractor.alias("logprob_best_distractor"),
        (best_target_lp - best_distractor).alias("margin"),
        (log_z_target - log_z).exp().alias("prob_target_among_choices"),
        ((q - _target.cast(pl.Float64)) ** 2).sum().alias("brier_score"),
        (log_z - log_z_target).alias("classification_loss"),
        (1 + (_lp > best_target_lp).sum()).cast(pl.Float64).alias("target_rank"),
        (1 / (1 + (_lp > best_target_lp).sum())).cast(pl.Float64).alias("reciprocal_rank"),
        ranks.list.eval(pl.element() == 1).list.mean().alias("per_token_accuracy"),
    )
    return wide


def _generative(scores: pl.DataFrame) -> pl.DataFrame:
    """One wide row per generative item with every metric in `GENERATIVE_METRICS` (references are the choices)."""
    best_lp = _lp.max()  # every reference is a target
    n_tokens = _best_target("n_tokens")
    return scores.group_by(ITEM_KEYS, maintain_order=True).agg(
        best_lp.alias("logprob_target"),
        pl.when(n_tokens > 0).then(best_lp / n_tokens).alias("logprob_target_per_token"),
        _best_target("token_ranks").list.eval(pl.element() == 1).list.mean().alias("per_token_accuracy"),
        pl.col("is_greedy").any().cast(pl.Float64).alias("exact_match_greedy"),
        best_lp.exp().alias("predicted_exact_match"),
    )


def _long(wide: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """Wide per-item metrics → ITEM_METRICS long rows (metric order as in `names`)."""
    return wide.unpivot(on=list(names), index=ITEM_KEYS, variable_name="metric", value_name="value").with_columns(
        pl.col("value").cast(pl.Float64)
    )


def choice_metrics(scores: pl.DataFrame) -> pl.DataFrame:
    """Per-item metrics (ITEM_METRICS, long) for every item of the score table.

    Multiple-choice items get `MULTIPLE_CHOICE_METRICS`, generative items `GENERATIVE_METRICS`. A value is null
    where the metric is undefined for that item (zero-token target, no distractor, empty choice text for acc_norm).

    Definitions (q_k is the softmax of the choices' summed log-probabilities lp_k, T the set of targets):
    grade = 1[argmax_k lp_k ∈ T] (lm-eval acc, whose np.argmax also takes the lowest index on a tie; BIG-bench's
    multiple_choice_grade breaks exact ties pseudorandomly, so the two can differ only on exactly tied items);
    acc_norm the same on
    lp_k / n_chars_k (lm-eval `acc_norm` divides by `len(choice)` in characters);
    prob_target_among_choices = Σ_{k∈T} q_k; brier_score = Σ_k (q_k − 1[k∈T])² (Brier 1950, summed over classes as
    in BIG-bench's multiple-choice Brier score); classification_loss = −log Σ_{k∈T} q_k;
    target_rank = 1 + #{k : lp_k > max_{t∈T} lp_t} (a distractor tied with the best target does not push it down,
    so target_rank can be 1 while the grade, which breaks ties by choice index, is 0);
    predicted_exact_match = exp(max over references of lp) = Π_t p_t (Schaeffer et al. 2023).
    exact_match_greedy is 1 if any target/reference is greedy (every token rank 1), because greedy decoding then
    reproduces that reference whichever reference is likeliest.

    >>> import math
    >>> row = dict(model="m", params=10, non_embedding_params=5, task="t", item_id="i", item_kind="multiple_choice",
    ...            token_logprobs=[], token_ranks=[], n_tokens=0, n_bytes=1, n_chars=1, is_greedy=False)
    >>> rows = [dict(row, choice=k, choice_text=str(k), is_target=k == 0, logprob=math.log(p))
    ...         for k, p in enumerate([0.5, 0.3, 0.2])]
    >>> out = choice_metrics(pl.DataFrame(rows, schema=SCORES))
    >>> round(out.filter(pl.col("metric") == "brier_score")["value"][0], 6)  # 0.5² + 0.3² + 0.2²
    0.38
    """
    _check_scores(scores)
    ordered = scores.sort([*ITEM_KEYS, "choice"])
    parts = [
        _long(_multiple_choice(ordered.filter(pl.col("item_kind") == MULTIPLE_CHOICE)), MULTIPLE_CHOICE_METRICS),
        _long(_generative(ordered.filter(pl.col("item_kind") == GENERATIVE)), GENERATIVE_METRICS),
    ]
    out = pl.concat(parts).select(list(ITEM_METRICS)).sort(ITEM_KEYS, maintain_order=True)
    return validate(out, ITEM_METRICS, "item_metrics")
