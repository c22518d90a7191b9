"""A ladder along training: checkpoints of one model are analysed along their step, in step order."""

from __future__ import annotations

import math

import polars as pl
import pytest

from metrics.analysis import analyse, scale_axis
from metrics.bootstrap import BootstrapConfig
from metrics.schema import SCORES


def checkpoint_scores(steps: dict[str, int | None], p_right: dict[str, float]) -> pl.DataFrame:
    """A two-choice task of 20 items, scored by checkpoints of one model (equal sizes) at the given steps."""
    rows = []
    for model, step in steps.items():
        for i in range(20):
            right = i < round(20 * p_right[model])
            for choice in (0, 1):
                target = choice == 0
                lp = math.log(0.9 if target == right else 0.1)
                rows.append({"model": model, "params": 100, "non_embedding_params": 50, "task": "t",
                             "item_id": f"i{i:02d}", "item_kind": "multiple_choice", "choice": choice,
                             "choice_text": f" {choice}", "is_target": target, "logprob": lp, "n_tokens": 1,
                             "token_logprobs": [lp], "token_ranks": [1 if lp > -1 else 2], "is_greedy": lp > -1,
                             "n_chars": 2, "n_bytes": 2, "target_score": None, "n_truncated": 0, "step": step})
    return pl.DataFrame(rows, schema={**SCORES, "step": pl.Int64})


def test_checkpoints_of_one_model_are_ordered_by_step_not_by_name():
    # by name, "m@step10000" sorts before "m@step900"; along training it comes after
    steps = {"m@step100": 100, "m@step900": 900, "m@step10000": 10000}
    scores = checkpoint_scores(steps, {"m@step100": 0.2, "m@step900": 0.5, "m@step10000": 0.95})
    result = analyse(scores, bootstrap=BootstrapConfig(n_resamples=50))
    grade = result.metrics.filter(pl.col("metric") == "multiple_choice_grade").sort("x")
    assert grade["x_axis"].unique().to_list() == ["step"]
    assert grade["model"].to_list() == ["m@step100", "m@step900", "m@step10000"]
    assert grade["x"].to_list() == [100.0, 900.0, 10000.0]
    assert grade["mean"].to_list() == pytest.approx([0.2, 0.5, 0.95])
    row = result.emergence.filter(pl.col("metric") == "multiple_choice_grade").row(0, named=True)
    assert row["x_axis"] == "step" and row["improvement"] == pytest.approx(0.75)


def test_sizes_stay_the_axis_of_a_size_ladder_and_a_missing_step_is_named():
    scores = checkpoint_scores({"a": None, "b": None}, {"a": 0.5, "b": 0.5})
    assert scale_axis(scores)[0] == "non_embedding_params"
    with pytest.raises(ValueError, match="--x step: unknown for model"):
        scale_axis(scores, "step")
