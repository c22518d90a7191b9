"""The demo on a reduced setting, and the shipped ladder measured through scalelens against its own manifest."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from logprob.config import ScoreConfig
from logprob.demo import demo_tasks, ladder_specs, run_demo
from logprob.ladder import ADDITION_GEN_TASK, load_manifest
from logprob.run import score_models
from logprob.tasks import load_jsonl
from metrics.analysis import analyse
from metrics.bootstrap import BootstrapConfig
from metrics.choice import choice_metrics
from metrics.numbers import format_breakthroughness, format_interval, format_sig
from metrics.schema import EMERGENCE, METRICS, PROVENANCE, validate


def test_demo_reduced_writes_tables_figures_and_summary(tmp_path):
    result = run_demo(tmp_path, n_items=12, n_resamples=50)
    for name in ("scores", "generations", "metrics", "emergence", "item_metrics", "comparisons", "trends", "fits",
                 "item_correlations", "slices"):
        assert (tmp_path / f"{name}.parquet").exists()
    metrics = validate(pl.read_parquet(tmp_path / "metrics.parquet"), METRICS, "metrics")
    emergence = validate(result.analysis.emergence, EMERGENCE, "emergence")
    n_models = len(load_manifest()["models"])
    # two formulations of the generative task, each answered by its own ladder of the same sizes
    exact = metrics.filter(pl.col("metric") == "exact_match")
    assert sorted(exact["formulation"].unique()) == ["direct", "scratchpad"]
    assert exact.group_by("formulation").len()["len"].to_list() == [n_models, n_models]
    assert exact["n_items"].to_list() == [12] * (2 * n_models)
    assert set(exact.filter(pl.col("formulation") == "scratchpad")["model"].str.slice(0, 10)) == {"scratchpad"}
    assert emergence.filter(pl.col("metric") == "exact_match").select("task", "formulation").sort("formulation").rows() \
        == [("addition_gen", "direct"), ("addition_gen", "scratchpad")]
    # the scratchpad's final answers were read out of its generations, and none was missed by the big models
    gens = pl.read_parquet(tmp_path / "generations.parquet").filter(pl.col("formulation") == "scratchpad")
    big = gens.filter(pl.col("model") == "scratchpad-07-787k")
    assert big["prediction"].to_list() == [refs[0] for refs in big["reference_answers"].to_list()]
    assert all(";" in g for g in big["generation"].to_list())  # the whole working is kept
    expected = [f"addition_gen_{form}_{kind}.png" for form in ("direct", "scratchpad")
                for kind in ("metrics", "sharp_vs_smooth", "item_correlations", "slices", "generative")]
    expected += [f"addition_mc_{kind}.png" for kind in ("metrics", "sharp_vs_smooth", "item_correlations", "slices",
                                                        "logprob_gap")]
    expected += ["addition_gen_formulations.png"]
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == sorted(expected)
    assert "addition_mc:" in result.summary and "addition_gen [direct]:" in result.summary
    assert "addition_gen [scratchpad]:" in result.summary and "formulations compared" in result.summary
    # 12 items: exact match sits at 0 for the four smallest models (median step 0, B = ∞ as computed); the headline
    # must give the bound the data support and say why, never the bare ∞
    direct = result.analysis.emergence.filter((pl.col("metric") == "exact_match")
                                              & (pl.col("formulation") == "direct")).row(0, named=True)
    assert direct["breakthroughness"] == math.inf and direct["resolution_limited"] is True
    assert "exact_match B ≥" in result.summary and "resolution-limited" in result.summary
    assert "exact_match B = ∞" not in result.summary
    # The demo's BLEU is character-level, and says so where the number is.
    bleu = metrics.filter(pl.col("metric") == "corpus_bleu")["signature"][0]
    assert "tok:char" in bleu


def test_demo_refuses_a_non_positive_item_count():
    with pytest.raises(ValueError, match="--items"):
        demo_tasks(0)


def test_scalelens_reproduces_the_ladder_manifest(tmp_path):
    """The ladder's training code measured held-out exact match, per-token accuracy and per-token log-prob with its
    own teacher-forced loop; the scorer and metrics, a separate implementation, must find the same numbers."""
    manifest = {m["name"]: m["heldout"] for m in load_manifest()["models"]}
    task = load_jsonl(ADDITION_GEN_TASK)
    scores, _ = score_models(ladder_specs(), [task], tmp_path, ScoreConfig(), generate=False)
    per_model = (
        choice_metrics(scores)
        .filter(pl.col("metric").is_in(["exact_match_greedy", "per_token_accuracy", "logprob_target_per_token"]))
        .group_by("model", "metric")
        .agg(pl.col("value").mean())
    )
    assert sorted(per_model["model"].unique().to_list()) == sorted(manifest)
    for model, metric, value in per_model.iter_rows():
        expected = manifest[model][
            {"exact_match_greedy": "exact_match", "per_token_accuracy": "token_accuracy",
             "logprob_target_per_token": "token_logprob"}[metric]
        ]
        assert math.isclose(value, expected, abs_tol=1e-4), (model, metric, value, expected)

    # The README's demo claims, recomputed from these scores with the demo's bootstrap (1,000 resamples, seed 0):
    # exact_match_greedy equals the generated exact match on this ladder (table in the README), so its statistics
    # are the ones quoted for exact match.
    result = analyse(scores.drop(PROVENANCE), bootstrap=BootstrapConfig())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = {r["metric"]: r for r in result.emergence.iter_rows(named=True)}
    exact, smooth = rows["exact_match_greedy"], rows["logprob_target_per_token"]
    assert exact["breakthroughness"] == pytest.approx(400.0) and exact["resolution_limited"] is True
    assert f"**B ≥ {exact['breakthroughness_bound']:.0f}**" in readme
    quoted = f"B = {format_breakthroughness(smooth)}"
    assert not smooth["resolution_limited"] and quoted in readme, quoted
    pair = result.comparisons.filter((pl.col("sharp_metric") == "exact_match_greedy")
                                     & (pl.col("smooth_metric") == "logprob_target_per_token")).row(0, named=True)
    quoted = (f"paired difference is {format_sig(pair['share_difference'], 2)} "
              f"{format_interval(pair['share_difference_ci_low'], pair['share_difference_ci_high'], 2)}")
    assert pair["verdict"] == "the models change too" and quoted in readme, quoted
