"""`scalelens demo`: the shipped ladders on the shipped arithmetic tasks, end to end, offline.

Same stages as a user's run (score → report), on checkpoints that live in the package, so the whole argument —
a sharp metric jumps where a smooth one of the same outputs rises steadily — can be seen in a couple of minutes.

Two formulations of the same 400 held-out problems, each answered by the ladder trained for it: `direct` (the
direct ladder writes the five-digit sum at once; also scored as a multiple-choice task) and `scratchpad` (the
scratchpad ladder writes the column-by-column working first, Nye et al. 2021, and the final answer is read out of
its generation by the pattern `;(\d{5})`, logprob/reasoning.py). Both share the task name `addition_gen` and the
item ids, so the tables put them side by side per (task, formulation).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from logprob.config import ModelSpec, ScoreConfig
from logprob.ladder import (
    ADDITION_GEN_TASK,
    ADDITION_MC_TASK,
    ADDITION_SCRATCHPAD_GEN_TASK,
    LADDER_DIR,
    SCRATCHPAD_LADDER_DIR,
    load_manifest,
)
from logprob.ladder.scratchpad import ANSWER_PATTERN
from logprob.run import ProgressFactory, score_models
from logprob.tasks import Task, load_jsonl
from metrics.analysis import Analysis, analyse_folder
from metrics.numbers import format_breakthroughness, format_count, format_interval, format_sig
from metrics.schema import curve_label
from metrics.text import BleuConfig

#: Answers are at most 5 digits plus the newline that ends them.
DEMO_CONFIG = ScoreConfig(max_new_tokens=8)
#: A scratchpad answer is 31 tokens with its newline (four 5-character columns, ';', five digits, '\n').
SCRATCHPAD_NEW_TOKENS = 40
#: An answer is one "word" (a number), so word-level BLEU would equal exact match; character n-grams make BLEU
#: the graded string similarity it is meant to be here. The setting travels in the metric table's signature.
DEMO_BLEU = BleuConfig(tokenize="char")


@dataclass(frozen=True)
class DemoResult:
    analysis: Analysis
    summary: str


def ladder_specs(ladder_dir: Path = LADDER_DIR) -> list[ModelSpec]:
    """The shipped checkpoints, smallest first, loaded on the CPU in float32 like any local checkpoint."""
    manifest = load_manifest(ladder_dir)
    models = sorted(manifest["models"], key=lambda m: m["non_embedding_params"])
    return [ModelSpec(str(ladder_dir / m["directory"]), device="cpu", dtype="float32") for m in models]


def _first(tasks: list[Task], n_items: int | None) -> list[Task]:
    if n_items is None:
        return tasks
    if n_items < 1:
        raise ValueError(f"--items: expected a positive number of items, got {n_items}")
    return [replace(t, items=t.items[:n_items]) for t in tasks]


def demo_tasks(n_items: int | None = None) -> list[Task]:
    """The direct ladder's tasks: multiple choice, and the generative task in the `direct` formulation."""
    gen = replace(load_jsonl(ADDITION_GEN_TASK), formulation="direct")
    return _first([load_jsonl(ADDITION_MC_TASK), gen], n_items)


def scratchpad_tasks(n_items: int | None = None) -> list[Task]:
    """The scratchpad ladder's task: the same problems (task name and ids of the direct generative task) in the
    `scratchpad` formulation, its final answer read by ANSWER_PATTERN."""
    task = load_jsonl(ADDITION_SCRATCHPAD_GEN_TASK, task_name=ADDITION_GEN_TASK.stem)  # load_jsonl's default name
    return _first([replace(task, formulation="scratchpad", answer_regex=ANSWER_PATTERN,
                           max_new_tokens=SCRATCHPAD_NEW_TOKENS)], n_items)


def run_demo(
    out_dir: Path,
    *,
    progress: ProgressFactory | None = None,
    n_items: int | None = None,
    n_resamples: int = 1000,
    ladder_dir: Path = LADDER_DIR,
    scratchpad_dir: Path = SCRATCHPAD_LADDER_DIR,
    restart: bool = False,
) -> DemoResult:
    """Score, generate, analyse and draw; every table and figure lands in `out_dir`. The direct ladder answers the
    direct formulation and the scratchpad ladder the scratchpad one, into one folder."""
    score_models(ladder_specs(ladder_dir), demo_tasks(n_items), out_dir, DEMO_CONFIG, progress=progress,
                 restart=restart)
    score_models(ladder_specs(scratchpad_dir), scratchpad_tasks(n_items), out_dir, DEMO_CONFIG, progress=progress)
    analysis = analyse_folder(out_dir, n_resamples=n_resamples, bleu=DEMO_BLEU)
    return DemoResult(analysis, headline(analysis))


#: The smooth metric the headline compares with: Schaeffer et al.'s per-token log-probability of the answer.
HEADLINE_SMOOTH = "logprob_target_per_token"
#: The sharp metrics a headline prefers, in order: the all-or-nothing answers a jump is usually seen in.
HEADLINE_SHARP = {"exact_match": 0, "exact_match_greedy": 1, "multiple_choice_grade": 2}


def headline(analysis: Analysis, width: int = 100) -> str:
    """Per task, the discontinuous metric with the largest B (else the sharp one) against the per-token log-prob of
    the same outputs: both B with their intervals (a bound where resolution-limited), and the paired verdict with
    its interval."""
    lines = []
    for task, formulation in analysis.emergence.select("task", "formulation").unique(maintain_order=True).iter_rows():
        rows = analysis.emergence.filter((pl.col("task") == task) & (pl.col("formulation") == formulation))
        # exact match (or the grade) first: the headline is about its jump; then the other all-or-nothing metrics
        first = pl.col("metric").replace_strict(HEADLINE_SHARP, default=len(HEADLINE_SHARP), return_dtype=pl.Int64)
        sharp = rows.filter(pl.col("kind") == "sharp").sort(
            first, pl.col("taxonomy") != "discontinuous", pl.col("breakthroughness"), descending=[False, False, True],
            nulls_last=True)
        smooth = rows.filter(pl.col("metric") == HEADLINE_SMOOTH)
        if sharp.is_empty() or smooth.is_empty():
            continue
        s, m = sharp.row(0, named=True), smooth.row(0, named=True)
        pair = analysis.comparisons.filter((pl.col("task") == task) & (pl.col("formulation") == formulation)
                                           & (pl.col("sharp_metric") == s["metric"])
                                           & (pl.col("smooth_metric") == m["metric"]))
        b_sharp = format_breakthroughness(s)
        if s["resolution_limited"]:
            items = s["median_step"] * s["n_items"]
            step = f"set by a median step of {format_sig(s['median_step'])}" if s["median_step"] else \
                "more than half of the steps are exactly 0"
            if s["median_step"] and abs(items - round(items)) < 1e-6:
                step += f": {round(items)} item{'s' if round(items) > 1 else ''} in {s['n_items']}"
            b_sharp = (f"B ≥ {format_sig(s['breakthroughness_bound'])}: resolution-limited (as computed B = "
                       f"{format_sig(s['breakthroughness'])}, {step})")
        else:
            b_sharp = f"B = {b_sharp}"
        text = f"{curve_label(task, formulation)}: {s['metric']} {b_sharp}; {m['metric']} B = {format_breakthroughness(m)}."
        if pair.height:
            r = pair.row(0, named=True)
            text += (f" Largest-step share {format_sig(r['sharp_share'], 2)} vs {format_sig(r['smooth_share'], 2)}, "
                     f"paired difference {format_sig(r['share_difference'], 2)} "
                     f"{format_interval(r['share_difference_ci_low'], r['share_difference_ci_high'], 2)}: "
                     f"{r['verdict']}" + (f"; {r['comment']}" if r["comment"] else "") + ".")
            if r["jump_from"] is not None and r["smooth_before_jump"] is not None:
                text += (f" Before the jump ({r['jump_from']} → {r['jump_to']}) {s['metric']} had made "
                         f"{100 * r['sharp_before_jump']:.1f}% of its change and {m['metric']} "
                         f"{100 * r['smooth_before_jump']:.0f}% "
                         f"[{100 * r['smooth_before_jump_ci_low']:.0f}%, {100 * r['smooth_before_jump_ci_high']:.0f}%].")
        lines.append(textwrap.fill(text, width=width, subsequent_indent="  ", break_long_words=False,
                                   break_on_hyphens=False))
    lines += [textwrap.fill(text, width=width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
              for text in formulation_lines(analysis)]
    return "\n".join(["Headline:", *lines]) if lines else ""


#: The exact-match levels at which the formulation comparison says a formulation "becomes right".
RIGHT_LEVELS = (0.5, 0.9)


def formulation_lines(analysis: Analysis, metric: str = "exact_match",
                      smooth: str = "per_token_accuracy") -> list[str]:
    """Per task posed several ways: the smallest model whose `metric` mean reaches each of RIGHT_LEVELS (with the
    lower end of its interval), and the fitted midpoints of `metric` and of `smooth` with their intervals, per
    formulation; when the smooth midpoints' intervals do not overlap, the smooth metric tells the formulations apart."""
    out = []
    metrics, fits = analysis.metrics, analysis.fits
    several = metrics.group_by("task").agg(pl.col("formulation").n_unique()).filter(pl.col("formulation") > 1)
    for task in several["task"].sort().to_list():
        parts, spans = [], {}
        for formulation in metrics.filter(pl.col("task") == task)["formulation"].unique(maintain_order=True):
            rows = metrics.filter((pl.col("task") == task) & (pl.col("formulation") == formulation)
                                  & (pl.col("metric") == metric)).sort("x")
            if rows.is_empty():
                continue
            reached = []
            for level in RIGHT_LEVELS:
                hit = rows.filter(pl.col("mean") >= level)
                reached.append(f"≥ {level} at {format_count(hit['x'][0])} (mean {hit['mean'][0]:.3f}, CI low "
                               f"{hit['ci_low'][0]:.3f})" if hit.height else f"never ≥ {level}")
            best = fits.filter((pl.col("task") == task) & (pl.col("formulation") == formulation) & pl.col("best"))
            where = []
            for name in (metric, smooth):
                fit = best.filter(pl.col("metric") == name)
                if fit.height and fit["location"][0] is not None and not fit["location_censored"][0]:
                    f = fit.row(0, named=True)
                    spans[(formulation, name)] = (f["location_low"], f["location_high"])
                    where.append(f"{name} midpoint {format_count(f['location'])} "
                                 f"[{format_count(f['location_low'])}, {format_count(f['location_high'])}]")
            parts.append(f"{formulation}: {metric} " + ", ".join(reached) + ("; " + "; ".join(where) if where else ""))
        text = f"{task}, formulations compared — " + " | ".join(parts) + "."
        ranges = [v for (f, name), v in spans.items() if name == smooth]
        if len(ranges) == 2:
            (a_lo, a_hi), (b_lo, b_hi) = ranges
            apart = a_hi < b_lo or b_hi < a_lo
            text += (f" The {smooth} midpoints' intervals "
                     + ("do not overlap: the smooth metric tells the formulations apart too."
                        if apart else "overlap: the smooth metric does not tell the formulations apart."))
        out.append(text)
    return out
