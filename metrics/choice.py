"""Score table → per-item metrics: the same log-probabilities read under sharp and smooth metrics.

One row of the score table is one (model, task, item, choice). Every metric here is a polars expression over the
choices of one item (`group_by` on `ITEM_KEYS`), so no Python runs per row.

Choosing among several targets: the *best target* is the target with the highest summed log-probability, ties going
to the lowest choice index; `logprob_target`, `logprob_target_per_token` and `per_token_accuracy` all describe that
one target. Generative items store their references as choices (every one a target), so "best reference" is the
same rule.

Zero-token continuations (n_tokens 0) are kept: their log-probability is 0 (the empty string has probability 1
given any context), so sums and softmaxes stay defined, while the per-token metrics (`logprob_target_per_token`,
`per_token_accuracy`, `token_accuracy_pow_len`) are null because a mean over no tokens has no value.

acc_norm follows lm-evaluation-harness (`ConfigurableTask.process_results`): lm-eval scores the continuation
`target_delimiter + choice` (" 99" for the choice "99") but divides its log-likelihood by `len(choice)`, the length
in characters *without* the delimiter. A score table holds only the continuation, so here the delimiter is the
continuation's leading whitespace and the normaliser is `len(choice_text.lstrip())`, computed from `choice_text`
(so tables scored elsewhere, e.g. lm-eval's own `arg_1`, get the same rule). "Whitespace" is Unicode White_Space
(polars `strip_chars_start`), which is Python's `str.lstrip` set except the four ASCII separators U+001C–U+001F.
Whitespace that begins a choice itself cannot be told from a delimiter and is not counted either. When some choice of an item has no character
left (empty or all whitespace), lm-eval would divide by zero; scalelens leaves acc_norm null for that item.

Scores without per-token data (a table built from lm-evaluation-harness samples, which keep only each
continuation's summed log-likelihood and is_greedy) leave `n_tokens`, `token_logprobs` and `token_ranks` null, all
three together. The metrics that need them (`PER_TOKEN_METRICS`) are then null for that item: undefined, not 0, so a
metric undefined on every item reaches the metric table with a null mean and interval and n_items 0. Every other
metric needs only the summed log-probabilities, is_greedy and the choice texts.

Graded items (BIG-bench `target_scores`, the score table's `target_score` column) also get `bigbench_grade`, the
credit of the choice with the highest log-probability. BIG-bench's `multiple_choice_grade` breaks an exact tie in
log-probability pseudorandomly: it hashes the bytes of the item's log-probability array (sha256) and takes that hash
modulo the number of tied choices. scalelens gives a tie to the lowest choice index instead, the rule of its
`multiple_choice_grade` and of lm-eval's `np.argmax`: the hash depends on the float width and exact bits of the
log-probabilities (float32 token scores summed in float64 here), so reproducing it would tie a number to storage
details. The two differ only on exactly tied items.
"""

from __future__ import annotations

import polars as pl

from metrics.schema import GENERATIVE, ITEM_KEYS, ITEM_METRICS, MULTIPLE_CHOICE, SCORES, validate

MULTIPLE_CHOICE_METRICS: tuple[str, ...] = (
    "multiple_choice_grade",
    "acc_norm",
    "bigbench_grade",
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
    "prob_target_vocab",
    "prob_choices_vocab",
    "prob_distractors_vocab",
)
GENERATIVE_METRICS: tuple[str, ...] = (
    "logprob_target",
    "logprob_target_per_token",
    "per_token_accuracy",
    "exact_match_greedy",
    "prob_reference",
    "token_accuracy_pow_len",
)
#: Metrics that need the per-token columns (n_tokens, token_logprobs, token_ranks); null where those are null.
PER_TOKEN_METRICS: tuple[str, ...] = ("logprob_target_per_token", "per_token_accuracy", "token_accuracy_pow_len")
#: Emitted only for items whose every choice has a `target_score`.
GRADED_METRICS: tuple[str, ...] = ("bigbench_grade",)

_lp = pl.col("logprob")
_target = pl.col("is_target")


def _check_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """Reject score tables whose per-item structure would make a metric silently wrong; returns the validated
    (width-coerced) table."""
    scores = validate(scores, SCORES, "scores")
    kinds = set(scores["item_kind"].unique().to_list())
    if not kinds <= {MULTIPLE_CHOICE, GENERATIVE}:
        raise ValueError(f"scores: column 'item_kind' must be {MULTIPLE_CHOICE!r} or {GENERATIVE!r}, found {kinds}")
    for column in ("logprob", "n_chars", "is_target", "is_greedy", "choice", "choice_text"):
        if scores[column].null_count():
            raise ValueError(f"scores: column '{column}' has {scores[column].null_count()} null value(s)")
    token_nulls = pl.col("n_tokens").is_null().cast(pl.Int8) + pl.col("token_logprobs").is_null().cast(pl.Int8) \
        + pl.col("token_ranks").is_null().cast(pl.Int8)
    partial = scores.filter(token_nulls.is_between(1, 2))
    if partial.height:
        row = partial.row(0, named=True)
        raise ValueError(
            f"scores: item {row['item_id']!r} choice {row['choice']}: 'n_tokens', 'token_logprobs' and 'token_ranks' "
            "must be all given or all null (null: no per-token data)"
        )
    if (scores["n_tokens"] < 0).any():
        raise ValueError("scores: column 'n_tokens' must be >= 0")
    if (~scores["target_score"].drop_nulls().is_finite()).any():
        raise ValueError("scores: column 'target_score' must be finite where given")
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
        pl.col("target_score").null_count().alias("ungraded"),
    )
    checks = [
        (pl.col("kinds") > 1, "mixes item kinds"),
        (~pl.col("has_target"), "has no target (is_target all false)"),
        ((pl.col("item_kind") == GENERATIVE) & ~pl.col("all_target"), "is generative but has a non-target reference"),
        (pl.col("distinct") != pl.col("rows"), "repeats a choice index"),
        ((pl.col("ungraded") > 0) & (pl.col("ungraded") < pl.col("rows")),
         "has a 'target_score' for some choices but not all (give every choice one, or none)"),
        ((pl.col("item_kind") == GENERATIVE) & (pl.col("ungraded") < pl.col("rows")),
         "is generative but has a 'target_score' (graded scores are for multiple-choice items)"),
    ]
    for condition, problem in checks:
        bad = per_item.filter(condition)
        if bad.height:
            row = bad.row(0, named=True)
            raise ValueError(
                f"scores: item {row['item_id']!r} of task {row['task']!r}, model {row['model']!r} {problem}"
            )
    return scores


def _best_target(column: str) -> pl.Expr:
    """`column` of the best target: highest log-probability among targets, ties to the lowest choice index.

    Rows are sorted by choice within each item before aggregation, so `first()` is the lowest index.
    """
    best = _lp.filter(_target).max()
    return pl.col(column).filter(_target & (_lp == best)).first()


def _at_argmax(column: pl.Expr, score: pl.Expr) -> pl.Expr:
    """`column` of the highest-`score` choice, ties to the lowest choice index (rows sorted by choice, stable sort)."""
    return column.sort_by(score, descending=True, maintain_order=True).first()


def _token_accuracy(ranks: pl.Expr) -> pl.Expr:
    """Share of rank-1 tokens in a list of token ranks; null for an empty list."""
    return ranks.list.eval(pl.element() == 1).list.mean()


def _multiple_choice(scores: pl.DataFrame) -> pl.DataFrame:
    """One wide row per multiple-choice item with every metric in `MULTIPLE_CHOICE_METRICS`."""
    shifted = _lp - _lp.max()  # ≤ 0 over the item: exp cannot overflow
    log_z = shifted.exp().sum().log()  # log Σ_k exp(lp_k − max)
    log_z_target = shifted.filter(_target).exp().sum().log()
    q = (shifted - log_z).exp()  # softmax over the item's choices
    q_distractors = q.filter(~_target)
    norm_len = pl.col("choice_text").str.strip_chars_start().str.len_chars()  # lm-eval's len(choice), module doc
    norm = _lp / norm_len
    best_target_lp = _lp.filter(_target).max()
    best_distractor = _lp.filter(~_target).max()
    n_tokens = _best_target("n_tokens")
    ranks = _best_target("token_ranks")
    graded = pl.col("target_score").is_not_null().all()
    # Vocabulary probabilities: exp of log-probabilities ≤ 0 cannot overflow, and the result is a probability in
    # linear space, so no max-shift is needed (a value below float64's range is 0 to within float64 anyway).
    wide = scores.group_by(ITEM_KEYS, maintain_order=True).agg(
        _at_argmax(_target, _lp).cast(pl.Float64).alias("multiple_choice_grade"),
        pl.when(norm_len.min() > 0).then(_at_argmax(_target, norm).cast(pl.Float64)).alias("acc_norm"),
        pl.when(graded).then(_at_argmax(pl.col("target_score"), _lp)).alias("bigbench_grade"),
        (_target & pl.col("is_greedy")).any().cast(pl.Float64).alias("exact_match_greedy"),
        best_target_lp.alias("logprob_target"),
        pl.when(n_tokens > 0).then(best_target_lp / n_tokens).alias("logprob_target_per_token"),
        best_distractor.alias("logprob_best_distractor"),
        (best_target_lp - best_distractor).alias("margin"),
        (log_z_target - log_z).exp().alias("prob_target_among_choices"),
        # (1 − Σ_{k∈T} q_k)² + Σ_{k∉T} q_k², with 1 − Σ_{k∈T} q_k computed as Σ_{k∉T} q_k (no cancellation)
        (q_distractors.sum() ** 2 + (q_distractors**2).sum()).alias("brier_score"),
        (log_z - log_z_target).alias("classification_loss"),
        (1 + (_lp > best_target_lp).sum()).cast(pl.Float64).alias("target_rank"),
        (1 / (1 + (_lp > best_target_lp).sum())).cast(pl.Float64).alias("reciprocal_rank"),
        _token_accuracy(ranks).alias("per_token_accuracy"),
        best_target_lp.exp().alias("prob_target_vocab"),
        _lp.exp().sum().alias("prob_choices_vocab"),
        _lp.filter(~_target).exp().sum().alias("prob_distractors_vocab"),
    )
    return wide


def _generative(scores: pl.DataFrame) -> pl.DataFrame:
    """One wide row per generative item with every metric in `GENERATIVE_METRICS` (references are the choices)."""
    best_lp = _lp.max()  # every reference is a target
    n_tokens = _best_target("n_tokens")
    accuracy = _token_accuracy(_best_target("token_ranks"))
    return scores.group_by(ITEM_KEYS, maintain_order=True).agg(
        best_lp.alias("logprob_target"),
        pl.when(n_tokens > 0).then(best_lp / n_tokens).alias("logprob_target_per_token"),
        accuracy.alias("per_token_accuracy"),
        pl.col("is_greedy").any().cast(pl.Float64).alias("exact_match_greedy"),
        best_lp.exp().alias("prob_reference"),
        pl.when(n_tokens > 0).then(accuracy.pow(n_tokens.cast(pl.Float64))).alias("token_accuracy_pow_len"),
    )


def _long(wide: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """Wide per-item metrics → ITEM_METRICS long rows (metric order as in `names`). Graded metrics keep only the
    items that have graded scores (their value is never null there). Nothing here has a setting: signature ""."""
    long = wide.unpivot(on=list(names), index=ITEM_KEYS, variable_name="metric", value_name="value")
    return long.filter(~pl.col("metric").is_in(GRADED_METRICS) | pl.col("value").is_not_null()).with_columns(
        pl.col("value").cast(pl.Float64), pl.lit("").alias("signature")
    )


def choice_metrics(scores: pl.DataFrame) -> pl.DataFrame:
    """Per-item metrics (ITEM_METRICS, long) for every item of the score table.

    Multiple-choice items get `MULTIPLE_CHOICE_METRICS` (`bigbench_grade` only when graded), generative items
    `GENERATIVE_METRICS`. A value is null where the metric is undefined for that item (zero-token target, no
    distractor, a choice with no character for acc_norm).

    Definitions (lp_k is choice k's summed log-probability, q_k the softmax of lp over the item's choices, T the set
    of targets): grade = 1[argmax_k lp_k ∈ T] (lm-eval acc, whose np.argmax also takes the lowest index on a tie);
    acc_norm the same on lp_k / len(choice_text_k.lstrip()) (lm-eval acc_norm, module docstring);
    bigbench_grade = target_score of argmax_k lp_k (module docstring for ties);
    prob_target_among_choices = Σ_{k∈T} q_k;
    brier_score = (Σ_{k∈T} q_k − 1)² + Σ_{k∉T} q_k² (Brier 1950 with the targets merged into one class: a perfect
    answer scores 0 with any number of targets; with one target this is Σ_k (q_k − 1[k∈T])², lm-eval's per-item
    brier_score); classification_loss = −log Σ_{k∈T} q_k;
    target_rank = 1 + #{k : lp_k > max_{t∈T} lp_t} (a distractor tied with the best target does not push it down,
    so target_rank can be 1 while the grade, which breaks ties by choice index, is 0);
    prob_target_vocab = exp(max_{t∈T} lp_t), prob_choices_vocab = Σ_k exp(lp_k), prob_distractors_vocab =
    Σ_{k∉T} exp(lp_k) (Schaeffer et al. 2024: probabilities under the whole vocabulary, not renormalised);
    prob_reference = exp(max over references of lp) = Π_t p_t and token_accuracy_pow_len = a^L with a the best
    reference's per_token_accuracy and L its token count (Schaeffer et al. 2023's p^L).
    exact_match_greedy is 1 if any target/reference is greedy (every token rank 1), because greedy decoding then
    reproduces that reference whichever reference is likeliest.

    >>> import math
    >>> row = dict(model="m", params=10, non_embedding_params=5, task="t", item_id="i", item_kind="multiple_choice",
    ...            token_logprobs=[], token_ranks=[], n_tokens=0, n_bytes=1, n_chars=1, is_greedy=False,
    ...            target_score=None, n_truncated=0)
    >>> rows = [dict(row, choice=k, choice_text=str(k), is_target=k in (0, 1), logprob=math.log(p))
    ...         for k, p in enumerate([0.5, 0.3, 0.2])]
    >>> out = choice_metrics(pl.DataFrame(rows, schema=SCORES))
    >>> round(out.filter(pl.col("metric") == "brier_score")["value"][0], 6)  # (0.8 − 1)² + 0.2²
    0.08
    """
    scores = _check_scores(scores)
    ordered = scores.sort([*ITEM_KEYS, "choice"])
    parts = [
        _long(_multiple_choice(ordered.filter(pl.col("item_kind") == MULTIPLE_CHOICE)), MULTIPLE_CHOICE_METRICS),
        _long(_generative(ordered.filter(pl.col("item_kind") == GENERATIVE)), GENERATIVE_METRICS),
    ]
    out = pl.concat(parts).select(list(ITEM_METRICS)).sort(ITEM_KEYS, maintain_order=True)
    return validate(out, ITEM_METRICS, "item_metrics")
