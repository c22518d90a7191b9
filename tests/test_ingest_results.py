"""`scalelens analyze` on lm-eval results files: the old layout of the Pythia suite's published evals and the
current `results_*.json` layout, as aggregate input (mean and stderr per model).

Fixtures: tests/fixtures/pythia-evals (unchanged copies of three EleutherAI/pythia eval files, SOURCE.md there) and
tests/fixtures/lm-eval-samples (the results files of three tiny models). Every expected index below is computed by
hand, in the test, from numbers copied out of those files.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import polars as pl
import pytest

from metrics.bootstrap import BootstrapConfig
from metrics.ingest import AnalyzeConfig, analyze, read_inputs

FIXTURES = Path(__file__).parent / "fixtures"
PYTHIA = FIXTURES / "pythia-evals"
QUICK = AnalyzeConfig(bootstrap=BootstrapConfig(n_resamples=50))


def hand_indices(y: list[float]) -> tuple[float, float]:
    """BIG-bench's L and B of a rising 3-point curve, written out: I = y3 − y1, L = I / sqrt(mean d²),
    B = I / sqrt(median d²); with two steps the median of two squares is their mean, so L = B."""
    d1, d2 = y[1] - y[0], y[2] - y[1]
    improvement = max(y) - min(y)
    rms = math.sqrt((d1 * d1 + d2 * d2) / 2)
    return improvement / rms, improvement / rms


@pytest.fixture(scope="module")
def pythia():
    inputs = read_inputs([PYTHIA], QUICK)
    result, _ = analyze(inputs, QUICK)
    return inputs, result


def _row(result, task: str, metric: str) -> dict:
    return result.emergence.filter((pl.col("task") == task) & (pl.col("metric") == metric)).row(0, named=True)


@pytest.mark.parametrize(("task", "metric", "values"), [
    # zero-shot values of the 70M, 410M and 1.4B files, copied from the files
    ("arc_easy", "acc", [0.37373737373737376, 0.5210437710437711, 0.6064814814814815]),
    ("arc_easy", "acc_norm", [0.3501683501683502, 0.45791245791245794, 0.5391414141414141]),
    ("lambada_openai", "acc", [0.18455268775470599, 0.5162041529206287, 0.6161459344071415]),
    ("piqa", "acc", None),  # read from the files below: any task works the same way
])
def test_pythia_indices_equal_the_hand_computation(pythia, task, metric, values):
    _, result = pythia
    if values is None:
        values = [json.loads((PYTHIA / f"{size}_step143000.json").read_text())["results"][task][metric]
                  for size in ("70m", "410m", "1.4b")]
    linearity, breakthroughness = hand_indices(values)
    row = _row(result, task, metric)
    assert row["n_models"] == 3
    assert row["linearity"] == pytest.approx(linearity, rel=1e-12)
    assert row["breakthroughness"] == pytest.approx(breakthroughness, rel=1e-12)
    assert row["method"].startswith("parametric bootstrap from stderr")
    assert row["x_axis"] == "non_embedding_params" and row["x_unit"] == "parameters"


def test_lambada_perplexity_is_indexed_on_its_logarithm(pythia):
    """Raw LAMBADA perplexity 142.43 → 10.83 → 6.09 puts 96.5% of its change in the first step (the 70M model's 142
    alone sets the scale); the log-perplexity curve is what scalelens measures, with the transform recorded."""
    _, result = pythia
    ppl = [142.42891015470678, 10.828202624445215, 6.0857145325729105]  # 70M, 410M, 1.4B, from the files
    raw_share = (ppl[0] - ppl[1]) / (ppl[0] - ppl[2])
    assert raw_share == pytest.approx(0.9652, abs=1e-4)
    logs = [math.log(p) for p in ppl]
    oriented = [-v for v in logs]  # lower is better: BIG-bench orients the curve so that higher is better
    linearity, breakthroughness = hand_indices(oriented)
    row = _row(result, "lambada_openai", "log_ppl")
    assert row["direction"] == "lower"
    assert row["breakthroughness"] == pytest.approx(breakthroughness, rel=1e-12)
    assert row["largest_step_share"] == pytest.approx((logs[0] - logs[1]) / (logs[0] - logs[2]), rel=1e-12)
    assert result.emergence.filter(pl.col("metric") == "ppl").is_empty()  # the raw curve is not indexed
    metrics = result.metrics.filter((pl.col("task") == "lambada_openai") & (pl.col("metric") == "log_ppl"))
    assert metrics["mean"].to_list() == pytest.approx(logs, rel=1e-12)
    assert all("transform:log" in s and "parametric from the reported stderr" in s for s in metrics["signature"])


def test_pythia_sizes_come_from_the_known_ladder_under_the_eval_files_alias(pythia):
    inputs, _ = pythia
    row = inputs.models.filter(pl.col("model") == "EleutherAI/pythia-v1.1-70m@step143000").row(0, named=True)
    assert (row["params"], row["non_embedding_params"]) == (70_426_624, 18_915_328)  # the Pythia model card
    assert row["size_source"].startswith("known ladder pythia")
    assert row["revision"] == "step143000" and row["step"] == 143_000
    assert row["training_tokens"] == 143_000 * 1024 * 2048  # 299,892,736,000, the model card's count


def test_aggregate_intervals_come_from_the_stderr(tmp_path):
    """Current-layout results files alone (no samples): each metric's interval is mean ± 1.96·stderr up to
    bootstrap noise, and the signature says where it came from."""
    for model in ("tiny-32x1", "tiny-64x2", "tiny-128x3"):
        (source,) = (FIXTURES / "lm-eval-samples" / model).glob("results_*.json")
        shutil.copy(source, tmp_path / f"{model}_{source.name}")
    config = AnalyzeConfig(bootstrap=BootstrapConfig(n_resamples=4000))
    inputs = read_inputs([tmp_path], config)
    assert inputs.scores.is_empty() and set(inputs.aggregate["metric"].to_list()) == {"acc", "acc_norm"}
    result, _ = analyze(inputs, config)
    row = result.metrics.filter((pl.col("model") == "models/tiny-32x1") & (pl.col("metric") == "acc")).row(
        0, named=True)
    mean, stderr = 0.23333333333333334, 0.07854032324531725  # "acc,none", "acc_stderr,none" of tiny-32x1
    assert row["mean"] == mean
    assert row["ci_low"] == pytest.approx(mean - 1.959964 * stderr, abs=0.1 * stderr)
    assert row["ci_high"] == pytest.approx(mean + 1.959964 * stderr, abs=0.1 * stderr)
    assert row["n_items"] == 30  # n-samples.effective
    assert "parametric from the reported stderr" in row["signature"] and "shots:0" in row["signature"]


def _checkpoint(folder: Path, step: int, lambada_acc: float) -> Path:
    """The 70M eval file as if it were run at another checkpoint: revision=stepN and one changed number."""
    data = json.loads((PYTHIA / "70m_step143000.json").read_text())
    data["config"]["model_args"] = f"pretrained=EleutherAI/pythia-v1.1-70m,revision=step{step}"
    data["results"] = {"lambada_openai": dict(data["results"]["lambada_openai"], acc=lambada_acc)}
    path = folder / f"70m_step{step}.json"
    path.write_text(json.dumps(data))
    return path


def test_one_model_at_several_steps_is_a_ladder_along_training(tmp_path):
    for step, acc in ((0, 0.0), (1000, 0.02), (16000, 0.10), (143000, 0.18455268775470599)):
        _checkpoint(tmp_path, step, acc)
    for axis, expected in (("step", [1000.0, 16000.0, 143000.0]),
                           ("tokens", [s * 2_097_152.0 for s in (1000, 16000, 143000)]),
                           ("compute", [6.0 * 18_915_328 * s * 2_097_152 for s in (1000, 16000, 143000)])):
        config = AnalyzeConfig(x=axis, bootstrap=BootstrapConfig(n_resamples=20))
        inputs = read_inputs([tmp_path], config)
        # step 0 is the random initialisation: no place on a log axis, left out and said so
        assert inputs.models[axis].sort().to_list() == pytest.approx(expected, rel=1e-12)
        assert any("left out EleutherAI/pythia-v1.1-70m@step0" in n for n in inputs.notes)
        result, _ = analyze(inputs, config)
        row = result.emergence.filter(pl.col("metric") == "acc").row(0, named=True)
        assert row["breakthroughness"] == pytest.approx(hand_indices([0.02, 0.10, 0.18455268775470599])[1])
        assert row["x_axis"] == axis
        assert result.metrics["x_axis"].unique().to_list() == [axis]


def test_the_step_ladder_through_the_command_writes_the_axis_everywhere(tmp_path):
    from logprob.cli import main

    inputs = tmp_path / "evals"
    inputs.mkdir()
    for step, acc in ((0, 0.0), (1000, 0.02), (16000, 0.10), (143000, 0.18455268775470599)):
        _checkpoint(inputs, step, acc)
    out = tmp_path / "out"
    assert main(["analyze", str(inputs), "--x", "step", "--out", str(out), "--bootstrap", "20", "--no-figures"]) == 0
    models = pl.read_parquet(out / "models.parquet").sort("step")
    assert models["step"].to_list() == [1000, 16000, 143000]  # step 0 left out
    assert models["x"].to_list() == [1000.0, 16000.0, 143000.0] and set(models["x_unit"]) == {"steps"}
    for name in ("metrics.parquet", "emergence.parquet"):
        assert pl.read_parquet(out / name)["x_axis"].unique().to_list() == ["step"]
