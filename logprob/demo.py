"""`scalelens demo`: the shipped ladder on the shipped arithmetic tasks, end to end, offline.

Same stages as a user's run (score → report), on checkpoints that live in the package, so the whole argument —
a sharp metric jumps where a smooth one of the same outputs rises steadily — can be seen in a couple of minutes.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from logprob.config import ModelSpec, ScoreConfig
from logprob.ladder import ADDITION_GEN_TASK, ADDITION_MC_TASK, LADDER_DIR, load_manifest
from logprob.run import ProgressFactory, score_models
from logprob.tasks import Task, load_jsonl
from metrics.analysis import Analysis, analyse_folder
from metrics.numbers import format_breakthroughness, format_interval, format_sig
from metrics.text import BleuConfig

#: Answers are at most 5 digits plus the newline that ends them.
DEMO_CONFIG = ScoreConfig(max_new_tokens=8)
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


def demo_tasks(n_items: int | None = None) -> list[Task]:
    tasks = [load_jsonl(ADDITION_MC_TASK), load_jsonl(ADDITION_GEN_TASK)]
    if n_items is None:
        return tasks
    if n_items < 1:
        raise ValueError(f"--items: expected a positive number of items, got {n_items}")
    return [replace(t, items=t.items[:n_items]) for t in tasks]


def run_demo(
    out_dir: Path,
    *,
    progress: ProgressFactory | None = None,
    n_items: int | None = None,
    n_resamples: int = 1000,
    ladder_dir: Path = LADDER_DIR,
    restart: bool = False,
) -> DemoResult:
    """Score, generate, analyse and draw; every table and figure lands in `out_dir`."""
    score_models(ladder_specs(ladder_dir), demo_tasks(n_items), out_dir, DEMO_CONFIG, progress=progress,
                 restart=restart)
    analysis = analyse_folder(out_dir, n_resamples=n_resamples, bleu=DEMO_BLEU)
    return DemoResult(analysis, headline(analysis))


#: The smooth metric the headline compares with: Schaeffer et al.'s per-token log-probability of the answer.
HEADLINE_SMOOTH = "logprob_target_per_token"


def headline(analysis: Analysis, width: int = 100) -> str:
    """Per task, the discontinuous metric with the largest B (else the sharp one) against the per-token log-prob of
    the same outputs: both B with their intervals (a bound where resolution-limited), and the paired verdict with
    its interval."""
    lines = []
    for task in analysis.emergence["task"].unique(maintain_order=True).to_list():
        rows = analysis.emergence.filter(pl.col("task") == task)
        # the all-or-nothing metrics first (exact match, grades): the headline is about their jump
        sharp = rows.filter(pl.col("kind") == "sharp").sort(
            pl.col("taxonomy") != "discontinuous", pl.col("breakthroughness"), descending=[False, True], nulls_last=True)
        smooth = rows.filter(pl.col("metric") == HEADLINE_SMOOTH)
        if sharp.is_empty() or smooth.is_empty():
            continue
        s, m = sharp.row(0, named=True), smooth.row(0, named=True)
        pair = analysis.comparisons.filter((pl.col("task") == task) & (pl.col("sharp_metric") == s["metric"])
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
        text = f"{task}: {s['metric']} {b_sharp}; {m['metric']} B = {format_breakthroughness(m)}."
        if pair.height:
            r = pair.row(0, named=True)
            text += (f" Largest-step share {format_sig(r['sharp_share'], 2)} vs {format_sig(r['smooth_share'], 2)}, "
                     f"paired difference {format_sig(r['share_difference'], 2)} "
                     f"{format_interval(r['share_difference_ci_low'], r['share_difference_ci_high'], 2)}: "
                     f"{r['verdict']}" + (f" ({r['comment']})" if r["comment"] else "") + ".")
            if r["jump_from"] is not None and r["smooth_before_jump"] is not None:
                text += (f" Before the jump ({r['jump_from']} → {r['jump_to']}) {s['metric']} had made "
                         f"{100 * r['sharp_before_jump']:.1f}% of its change and {m['metric']} "
                         f"{100 * r['smooth_before_jump']:.0f}% "
                         f"[{100 * r['smooth_before_jump_ci_low']:.0f}%, {100 * r['smooth_before_jump_ci_high']:.0f}%].")
        lines.append(textwrap.fill(text, width=width, subsequent_indent="  ", break_long_words=False,
                                   break_on_hyphens=False))
    return "\n".join(["Headline:", *lines]) if lines else ""
