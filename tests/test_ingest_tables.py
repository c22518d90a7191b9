"""`scalelens analyze table.csv --out DIR` on plain tables: the indices equal the formulas on the table's values,
any integer/float width is accepted, and the scale axis, directions and transforms do what they say."""

from __future__ import annotations

import math

import polars as pl
import pytest

from logprob.cli import main
from metrics.bootstrap import BootstrapConfig
from metrics.ingest import AnalyzeConfig, analyze, read_inputs

QUICK = AnalyzeConfig(bootstrap=BootstrapConfig(n_resamples=50))
#: Four models, a sudden accuracy and a steady loss; sizes 10^3 … 10^6.
TABLE = """model,params,metric,value,stderr
a,1000,acc,0.25,0.01
b,10000,acc,0.27,0.01
c,100000,acc,0.30,0.012
d,1000000,acc,0.80,0.01
a,1000,ppl,20.0,0.5
b,10000,ppl,10.0,0.4
c,100000,ppl,5.0,0.2
d,1000000,ppl,2.5,0.1
"""


def test_csv_emergence_table_has_the_formulas_l_and_b(tmp_path, capsys):
    path = tmp_path / "results.csv"
    path.write_text(TABLE)
    out = tmp_path / "out"
    assert main(["analyze", str(path), "--out", str(out), "--bootstrap", "50", "--no-figures"]) == 0
    emergence = pl.read_parquet(out / "emergence.parquet")
    acc = emergence.filter(pl.col("metric") == "acc").row(0, named=True)
    # steps 0.02, 0.03, 0.50; I = 0.55; L = I / sqrt((0.02² + 0.03² + 0.5²) / 3); B = I / sqrt(median d²) = I / 0.03
    assert acc["linearity"] == pytest.approx(0.55 / math.sqrt((0.02**2 + 0.03**2 + 0.5**2) / 3), rel=1e-9)
    assert acc["breakthroughness"] == pytest.approx(0.55 / 0.03, rel=1e-9)
    assert acc["task"] == "results"  # no task column: the file's name
    # ppl is lower-is-better and indexed on ln: −ln 20, −ln 10, −ln 5, −ln 2.5 rise by ln 2 per step, so L = B = 3
    log = emergence.filter(pl.col("metric") == "log_ppl").row(0, named=True)
    assert log["direction"] == "lower"
    assert log["linearity"] == pytest.approx(3.0, rel=1e-9) and log["breakthroughness"] == pytest.approx(3.0)
    printed = capsys.readouterr().out
    assert "log_ppl" in printed and "indexed on log-perplexity" in printed


def test_int32_and_float32_parquet_table_is_converted_not_refused(tmp_path):
    narrow = pl.read_csv(TABLE.encode()).with_columns(
        pl.col("params").cast(pl.Int32), pl.col("value").cast(pl.Float32), pl.col("stderr").cast(pl.Float32))
    path = tmp_path / "narrow.parquet"
    narrow.write_parquet(path)
    inputs = read_inputs([path], QUICK)
    assert inputs.models.schema["params"] == pl.Int64
    result, _ = analyze(inputs, QUICK)
    acc = result.emergence.filter(pl.col("metric") == "acc").row(0, named=True)
    # the same formulas on the Float32 values (0.27 and 0.30 are not exact in Float32)
    y = narrow.filter(pl.col("metric") == "acc")["value"].cast(pl.Float64).to_list()
    d = [y[1] - y[0], y[2] - y[1], y[3] - y[2]]
    assert acc["breakthroughness"] == pytest.approx((y[3] - y[0]) / sorted(abs(v) for v in d)[1], rel=1e-9)


def test_a_per_model_column_can_be_the_axis_and_reversed(tmp_path):
    """Pre-training loss as the axis (Du et al. 2024): lower loss is further along, so --x-reverse orders the models
    by 1/loss, and the axis name says so."""
    table = pl.read_csv(TABLE.encode()).filter(pl.col("metric") == "acc").with_columns(
        pl.col("model").replace_strict({"a": 3.0, "b": 2.7, "c": 2.4, "d": 2.1}, return_dtype=pl.Float64)
        .alias("pile_loss"))
    path = tmp_path / "t.csv"
    table.write_csv(path)
    config = AnalyzeConfig(x="pile_loss", x_reverse=True, bootstrap=BootstrapConfig(n_resamples=20))
    inputs = read_inputs([path], config)
    result, _ = analyze(inputs, config)
    rows = result.metrics.filter(pl.col("metric") == "acc")
    assert rows["model"].to_list() == ["a", "b", "c", "d"]
    assert rows["x"].to_list() == pytest.approx([1 / 3.0, 1 / 2.7, 1 / 2.4, 1 / 2.1])
    assert rows["x_axis"].unique().to_list() == ["1/pile_loss"]


def test_compute_axis_is_six_n_d_from_a_sizes_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(TABLE.replace("params", "size_ignored"))  # sizes come from --sizes only
    sizes = tmp_path / "sizes.csv"
    sizes.write_text("model,params,non_embedding_params,training_tokens\na,1500,1000,20000\nb,12000,10000,200000\n"
                     "c,110000,100000,2000000\nd,1100000,1000000,20000000\n")
    config = AnalyzeConfig(x="compute", sizes=sizes, bootstrap=BootstrapConfig(n_resamples=20))
    inputs = read_inputs([path], config)
    assert dict(inputs.models.select("model", "compute").iter_rows()) == {
        "a": 6 * 1000 * 20000, "b": 6 * 10000 * 200000, "c": 6 * 100000 * 2000000, "d": 6 * 1000000 * 20000000}
    assert all(s.startswith("--sizes") for s in inputs.models["size_source"])
    result, _ = analyze(inputs, config)
    assert result.metrics["x_unit"].unique().to_list() == ["FLOPs"]


def test_direction_option_and_above_chance(tmp_path):
    table = pl.read_csv(TABLE.encode()).with_columns(
        pl.when(pl.col("metric") == "ppl").then(pl.lit("loss")).otherwise(pl.col("metric")).alias("metric"),
        pl.lit(4).alias("n_choices"))
    path = tmp_path / "t.csv"
    table.write_csv(path)
    config = AnalyzeConfig(directions={"loss": "lower"}, above_chance=True,
                           bootstrap=BootstrapConfig(n_resamples=20))
    inputs = read_inputs([path], config)
    result, _ = analyze(inputs, config)
    means = {(r["model"], r["metric"]): r for r in result.metrics.iter_rows(named=True)}
    assert means[("d", "loss")]["direction"] == "lower"
    # (0.8 − 1/4) / (1 − 1/4) = 0.7333…; at chance (0.25) it is 0
    assert means[("d", "acc_above_chance")]["mean"] == pytest.approx((0.8 - 0.25) / 0.75)
    assert means[("a", "acc_above_chance")]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert "transform:(y-1/k)/(1-1/k)|k:4" in means[("a", "acc_above_chance")]["signature"]


def test_a_table_model_named_with_its_revision_is_that_checkpoint(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("model,metric,value\n" + "".join(f"EleutherAI/pythia-{size}@step3000,acc,0.{k}\n"
                                                    for k, size in enumerate(("70m", "160m", "410m"), 3)))
    models = read_inputs([path], QUICK).models
    # Pythia: 1,024 sequences × 2,048 tokens per step (Biderman et al. 2023); not the final checkpoint's 300B
    assert set(models["step"]) == {3000} and set(models["training_tokens"]) == {3000 * 1024 * 2048}
    assert set(models["revision"]) == {"step3000"}
