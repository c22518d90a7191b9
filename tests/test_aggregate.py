"""aggregate / bootstrap: means by hand, intervals against a plain index-gather bootstrap, reproducibility."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from metrics.aggregate import METRICS_TABLE, aggregate, corpus_aggregate
from metrics.bootstrap import BootstrapConfig, bootstrap_means, percentile_interval, resample_counts
from metrics.schema import ITEM_METRICS

ROOT = Path(__file__).resolve().parents[1]


def items(values_by_metric, model="m", task="t", ne=50, signature=""):
    rows = []
    for metric, values in values_by_metric.items():
        for i, v in enumerate(values):
            rows.append({"model": model, "params": ne * 2, "non_embedding_params": ne, "task": task,
                         "item_id": f"i{i:02d}", "metric": metric, "value": v, "signature": signature})
    return pl.DataFrame(rows, schema=ITEM_METRICS)


VALUES = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]  # mean 0.7


def test_mean_n_items_kind_direction():
    out = aggregate(items({"multiple_choice_grade": VALUES, "brier_score": [0.2, None, 0.4] + [0.3] * 7}),
                    BootstrapConfig(n_resamples=100))
    assert out.schema == pl.Schema(METRICS_TABLE)
    grade = out.filter(pl.col("metric") == "multiple_choice_grade").row(0, named=True)
    assert grade["mean"] == pytest.approx(0.7) and grade["n_items"] == 10
    assert (grade["taxonomy"], grade["kind"], grade["direction"]) == ("discontinuous", "sharp", "higher")
    brier = out.filter(pl.col("metric") == "brier_score").row(0, named=True)
    assert brier["mean"] == pytest.approx((0.2 + 0.4 + 0.3 * 7) / 9) and brier["n_items"] == 9  # null left out
    assert (brier["taxonomy"], brier["kind"], brier["direction"]) == ("continuous", "smooth", "lower")
    assert grade["signature"] == "ci:percentile|bs:100|conf:0.95|seed:0"


def test_item_signature_travels_with_the_mean():
    frame = pl.concat([items({"bleu": [10.0, 30.0]}, signature="tok:char"), items({"margin": [1.0, 2.0]})])
    out = aggregate(frame, BootstrapConfig(n_resamples=10))
    sig = dict(out.select("metric", "signature").iter_rows())
    assert sig == {"bleu": "tok:char|ci:percentile|bs:10|conf:0.95|seed:0", "margin": "ci:percentile|bs:10|conf:0.95|seed:0"}
    mixed = frame.with_columns(pl.when(pl.col("item_id") == "i01").then(pl.lit("tok:13a")).otherwise("signature")
                               .alias("signature"))
    with pytest.raises(ValueError, match="mixes settings"):
        aggregate(mixed, BootstrapConfig(n_resamples=10))


def test_int32_and_float32_columns_are_accepted():
    frame = items({"margin": [1.0, 2.0, 6.0]})
    narrow = frame.with_columns(pl.col("params", "non_embedding_params").cast(pl.Int32), pl.col("value").cast(pl.Float32))
    a = aggregate(frame, BootstrapConfig(n_resamples=20))
    b = aggregate(narrow, BootstrapConfig(n_resamples=20))
    assert b.schema == pl.Schema(METRICS_TABLE) and a.equals(b)


def test_interval_matches_plain_index_bootstrap():
    config = BootstrapConfig(n_resamples=500, confidence=0.9, seed=3)
    out = aggregate(items({"margin": VALUES}), config).row(0, named=True)
    # independent reference: gather resampled items by index and average, same random stream
    rng = np.random.default_rng([3, zlib.crc32(b"t")])
    draws = rng.integers(0, 10, size=(500, 10))  # (B, n)
    replicates = np.asarray(VALUES)[draws].mean(axis=1)  # (B,)
    assert out["ci_low"] == pytest.approx(np.quantile(replicates, 0.05))
    assert out["ci_high"] == pytest.approx(np.quantile(replicates, 0.95))
    assert out["ci_low"] <= out["mean"] <= out["ci_high"]
    assert out["ci_low"] < out["ci_high"]


def test_reproducible_and_seed_sensitive():
    frame = items({"margin": [float(x) for x in range(10)], "brier_score": [x / 10 for x in range(10)]})
    a = aggregate(frame, BootstrapConfig(n_resamples=200, seed=1))
    b = aggregate(frame.sample(fraction=1.0, shuffle=True, seed=5), BootstrapConfig(n_resamples=200, seed=1))
    c = aggregate(frame, BootstrapConfig(n_resamples=200, seed=2))
    assert a.sort("metric").equals(b.sort("metric"))  # row order of the input does not matter
    assert not a.sort("metric")["ci_low"].equals(c.sort("metric")["ci_low"])


def test_metrics_of_one_model_share_resamples():
    # brier_score = margin / 10 on every item, so with shared resamples its interval is exactly margin's / 10
    frame = items({"margin": [float(x) for x in range(10)], "brier_score": [x / 10 for x in range(10)]})
    out = aggregate(frame, BootstrapConfig(n_resamples=200, seed=4))
    margin = out.filter(pl.col("metric") == "margin").row(0, named=True)
    brier = out.filter(pl.col("metric") == "brier_score").row(0, named=True)
    assert brier["ci_low"] == pytest.approx(margin["ci_low"] / 10)
    assert brier["ci_high"] == pytest.approx(margin["ci_high"] / 10)


def test_models_and_tasks_are_separate_groups():
    frame = pl.concat([items({"margin": [1.0, 3.0]}, model="a", ne=10), items({"margin": [5.0, 7.0]}, model="b", ne=20),
                       items({"margin": [0.0, 0.0]}, model="a", task="u", ne=10)])
    out = aggregate(frame, BootstrapConfig(n_resamples=50)).sort("model", "task")
    assert out.select("model", "task", "mean").rows() == [("a", "t", 2.0), ("a", "u", 0.0), ("b", "t", 6.0)]
    assert out["non_embedding_params"].to_list() == [10, 10, 20]


def test_all_null_metric():
    out = aggregate(items({"per_token_accuracy": [None, None]}), BootstrapConfig(n_resamples=10)).row(0, named=True)
    assert out["mean"] is None and out["ci_low"] is None and out["ci_high"] is None and out["n_items"] == 0


def test_aggregate_errors():
    with pytest.raises(ValueError, match="not in metrics.registry"):
        aggregate(items({"made_up": [1.0]}), BootstrapConfig(n_resamples=10))
    dup = pl.concat([items({"margin": [1.0]}), items({"margin": [2.0]})])
    with pytest.raises(ValueError, match="duplicated"):
        aggregate(dup, BootstrapConfig(n_resamples=10))
    with pytest.raises(ValueError, match="column 'value' must have dtype Float64, found String"):
        aggregate(items({"margin": [1.0]}).with_columns(pl.col("value").cast(pl.String)))


@pytest.mark.parametrize(
    "kwargs", [{"n_resamples": 0}, {"confidence": 1.0}, {"confidence": 0.0}, {"seed": -1}, {"n_resamples": 2.5}]
)
def test_bootstrap_config_validation(kwargs):
    with pytest.raises(ValueError, match="BootstrapConfig"):
        BootstrapConfig(**kwargs)


def test_resample_counts_rows_sum_to_n_and_are_stable():
    config = BootstrapConfig(n_resamples=7, seed=11)
    a = resample_counts(5, config, "task")
    assert a.shape == (7, 5) and (a.sum(axis=1) == 5).all()
    assert (a == resample_counts(5, config, "task")).all()
    assert not (a == resample_counts(5, config, "other task")).all()


def test_bootstrap_means_and_percentile_by_hand():
    values = np.array([[1.0, np.nan], [2.0, 4.0], [6.0, 8.0]])  # (n=3, M=2)
    counts = np.array([[1, 1, 1], [3, 0, 0], [0, 1, 2]])  # (B=3, n)
    means = bootstrap_means(values, counts)
    assert means[:, 0].tolist() == [3.0, 1.0, pytest.approx(14 / 3)]
    assert means[0, 1] == 6.0 and np.isnan(means[1, 1]) and means[2, 1] == pytest.approx(20 / 3)
    low, high = percentile_interval(np.array([[0.0, np.nan], [10.0, np.nan]]), 0.5)
    assert (low[0], high[0]) == (2.5, 7.5) and np.isnan(low[1]) and np.isnan(high[1])


def test_corpus_aggregate_recomputes_ratio_of_sums():
    stats = pl.DataFrame({"model": ["m"] * 3, "params": [2] * 3, "non_embedding_params": [1] * 3, "task": ["t"] * 3,
                          "item_id": ["a", "b", "c"], "hit": [1, 0, 5], "total": [1, 4, 5]})
    ratio = lambda s: float(s[0] / s[1])  # noqa: E731 - a ratio of sums is not a mean of ratios
    config = BootstrapConfig(n_resamples=300, seed=9)
    row = corpus_aggregate(stats, ["hit", "total"], ratio, "corpus_bleu", config, "toy:1").row(0, named=True)
    assert row["mean"] == pytest.approx(6 / 10)  # the mean of item ratios would be (1 + 0 + 1) / 3
    assert row["signature"] == "toy:1|ci:percentile|bs:300|conf:0.95|seed:9"
    # independent reference: the same seeded stream, items gathered by index and their statistics summed
    draws = np.random.default_rng([9, zlib.crc32(b"t")]).integers(0, 3, size=(300, 3))  # (B, n) item indices
    hits, totals = np.array([1, 0, 5]), np.array([1, 4, 5])
    replicates = hits[draws].sum(axis=1) / totals[draws].sum(axis=1)  # (B,)
    assert row["ci_low"] == pytest.approx(np.quantile(replicates, 0.025))
    assert row["ci_high"] == pytest.approx(np.quantile(replicates, 0.975))
    with pytest.raises(ValueError, match="missing statistic"):
        corpus_aggregate(stats, ["hits"], ratio, "corpus_bleu", config)


def test_corpus_aggregate_keeps_formulations_of_one_task_apart():
    stats = pl.DataFrame({"model": ["m"] * 4, "params": [2] * 4, "non_embedding_params": [1] * 4, "task": ["t"] * 4,
                          "formulation": ["direct", "direct", "3-shot", "3-shot"], "item_id": ["a", "b", "a", "b"],
                          "hit": [1, 0, 3, 2], "total": [2, 2, 4, 4]})
    ratio = lambda s: float(s[0] / s[1])  # noqa: E731
    out = corpus_aggregate(stats, ["hit", "total"], ratio, "corpus_bleu", BootstrapConfig(n_resamples=20))
    assert dict(out.select("formulation", "mean").iter_rows()) == {"direct": 1 / 4, "3-shot": 5 / 8}


def test_importing_every_metrics_module_leaves_torch_out():
    code = (
        "import importlib, pkgutil, sys, metrics\n"
        "for m in pkgutil.iter_modules(metrics.__path__):\n"
        "    importlib.import_module('metrics.' + m.name)\n"
        "loaded = sorted(n for n in sys.modules if n.startswith('metrics.'))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.strip().split(","))
    expected = {"metrics.choice", "metrics.text", "metrics.aggregate", "metrics.bootstrap", "metrics.emergence",
                "metrics.registry", "metrics.schema"}
    assert expected <= loaded


def test_empty_item_metrics():
    out = aggregate(pl.DataFrame(schema=ITEM_METRICS))
    assert out.height == 0 and out.schema == pl.Schema(METRICS_TABLE)
