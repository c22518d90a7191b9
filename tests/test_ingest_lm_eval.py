"""`scalelens analyze` on lm-evaluation-harness output folders (current layout, `--log_samples`).

Fixtures: tests/fixtures/lm-eval-samples, an unchanged copy of shared/data/lm-eval-samples (three tiny GPT-NeoX
models run by lm_eval 0.4.13 on a 30-item, 4-choice task; see its SOURCE.md). The references are lm-eval's own
numbers in those files: the `acc,none` / `acc_norm,none` of each results file and the `acc` / `acc_norm` of each
sample line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from logprob.cli import main
from metrics.bootstrap import BootstrapConfig
from metrics.ingest import AnalyzeConfig, analyze, read_inputs

FIXTURES = Path(__file__).parent / "fixtures" / "lm-eval-samples"
MODELS = ("tiny-32x1", "tiny-64x2", "tiny-128x3")
QUICK = AnalyzeConfig(bootstrap=BootstrapConfig(n_resamples=50))


def lm_eval_results(model: str) -> dict:
    (path,) = (FIXTURES / model).glob("results_*.json")
    return json.loads(path.read_text())


def lm_eval_samples(model: str) -> list[dict]:
    (path,) = (FIXTURES / model).glob("samples_*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """The done-when command on the three shared folders, figures included (run once for the module)."""
    out = tmp_path_factory.mktemp("analyze") / "out"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        from logprob import cli

        width = cli.console.width
        cli.console.width = 200  # one note per line in the captured text
        cli.console.file = buffer
        try:
            code = main(["analyze", *(str(FIXTURES / m) for m in MODELS), "--out", str(out), "--bootstrap", "50"])
        finally:
            cli.console.file = None
            cli.console.width = width
    return code, out, buffer.getvalue()


def test_analyze_writes_scores_metrics_emergence_and_figures(cli_run):
    code, out, printed = cli_run
    assert code == 0
    for name in ("scores.parquet", "metrics.parquet", "emergence.parquet", "models.parquet", "item_metrics.parquet"):
        assert (out / name).is_file(), name
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "toy_mc_metrics.png" in figures and "toy_mc_logprob_gap.png" in figures
    scores = pl.read_parquet(out / "scores.parquet")
    assert scores.height == 3 * 30 * 4  # models × documents × choices
    emergence = pl.read_parquet(out / "emergence.parquet")
    assert emergence.filter(pl.col("metric") == "multiple_choice_grade")["n_models"].to_list() == [3]
    assert "read " in printed and "lm-eval samples" in printed


def test_grade_and_acc_norm_equal_lm_evals_acc_and_acc_norm_for_every_model(cli_run):
    _, out, _ = cli_run
    metrics = pl.read_parquet(out / "metrics.parquet")
    for model in MODELS:
        reported = lm_eval_results(model)["results"]["toy_mc"]
        name = lm_eval_results(model)["model_name"]
        mine = dict(metrics.filter(pl.col("model") == name).select("metric", "mean").iter_rows())
        assert mine["multiple_choice_grade"] == pytest.approx(reported["acc,none"], abs=1e-12)
        assert mine["acc_norm"] == pytest.approx(reported["acc_norm,none"], abs=1e-12)


def test_per_item_grade_and_acc_norm_equal_lm_evals_per_sample_fields(cli_run):
    _, out, _ = cli_run
    items = pl.read_parquet(out / "item_metrics.parquet")
    for model in MODELS:
        name = lm_eval_results(model)["model_name"]
        mine = {(r["item_id"], r["metric"]): r["value"] for r in items.filter(pl.col("model") == name).iter_rows(
            named=True)}
        for sample in lm_eval_samples(model):
            item = str(sample["doc_id"])
            assert mine[(item, "multiple_choice_grade")] == sample["acc"], (model, item)
            assert mine[(item, "acc_norm")] == sample["acc_norm"], (model, item)


def test_per_token_metrics_are_unavailable_not_zero(cli_run):
    _, out, printed = cli_run
    metrics = pl.read_parquet(out / "metrics.parquet")
    for metric in ("logprob_target_per_token", "per_token_accuracy"):
        rows = metrics.filter(pl.col("metric") == metric)
        assert rows.height == 3
        assert rows["mean"].null_count() == 3 and rows["ci_low"].null_count() == 3
        assert rows["n_items"].to_list() == [0, 0, 0]
    assert "unavailable without per-token log-probs: logprob_target_per_token, per_token_accuracy" in printed
    # every metric summed log-probabilities allow is there with a mean for every model
    for metric in ("logprob_target", "margin", "prob_target_among_choices", "brier_score", "target_rank",
                   "prob_target_vocab", "prob_choices_vocab", "exact_match_greedy"):
        assert metrics.filter(pl.col("metric") == metric)["mean"].null_count() == 0, metric


def test_vocabulary_mass_comes_from_the_summed_log_likelihoods():
    """prob_target_vocab of one document is exp of lm-eval's log-likelihood of its gold continuation."""
    inputs = read_inputs([FIXTURES / "tiny-32x1"], QUICK)
    result, _ = analyze(inputs, QUICK)
    sample = lm_eval_samples("tiny-32x1")[0]
    gold = int(sample["target"])
    expected = float(sample["filtered_resps"][gold][0])
    items = result.item_metrics.filter((pl.col("item_id") == str(sample["doc_id"])))
    value = dict(items.select("metric", "value").iter_rows())
    import math

    assert value["logprob_target"] == pytest.approx(expected, abs=1e-12)
    assert value["prob_target_vocab"] == pytest.approx(math.exp(expected), rel=1e-12)


def test_sizes_come_from_lm_evals_model_num_parameters_and_say_so(cli_run):
    _, out, printed = cli_run
    models = pl.read_parquet(out / "models.parquet")
    for model in MODELS:
        results = lm_eval_results(model)
        row = models.filter(pl.col("model") == results["model_name"]).row(0, named=True)
        assert row["params"] == results["config"]["model_num_parameters"]
        assert row["non_embedding_params"] is None
        assert "lm-eval model_num_parameters" in row["size_source"]
        # no non-embedding count anywhere, so the default axis falls back to total parameters and says so
        assert row["x_axis"] == "params" and row["x"] == row["params"]
    assert "scale axis: params" in printed
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert set(metrics["x_axis"].to_list()) == {"params"} and set(metrics["x_unit"].to_list()) == {"parameters"}


def test_a_samples_file_alone_takes_its_model_from_the_results_file_beside_it():
    (path,) = (FIXTURES / "tiny-64x2").glob("samples_*.jsonl")
    inputs = read_inputs([path], QUICK)
    assert inputs.scores["model"].unique().to_list() == ["models/tiny-64x2"]
    assert inputs.models["params"].to_list() == [362240]


def _write_generate_until(folder: Path, model: str, n_params: int, predictions: list[str]) -> None:
    """A generate_until output folder in lm-eval 0.4's layout (written here: the shared data has no generative
    task). Three documents, references '4', 'Paris', and ['blue', 'azure']."""
    folder.mkdir(parents=True)
    stamp = "2026-11-29T10-00-00.000000"
    targets = ["4", "Paris", ["blue", "azure"]]
    with open(folder / f"samples_toy_gen_{stamp}.jsonl", "w") as f:
        for k, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
            f.write(json.dumps({
                "doc_id": k, "doc": {"q": f"question {k}"}, "target": target,
                "arguments": {"gen_args_0": {"arg_0": f"Q{k}:", "arg_1": {"until": ["\n"], "do_sample": False}}},
                "resps": [[prediction]], "filtered_resps": [prediction], "filter": "none",
                "metrics": ["exact_match"], "doc_hash": f"h{k}", "exact_match": 0.0,
            }) + "\n")
    (folder / f"results_{stamp}.json").write_text(json.dumps({
        "results": {"toy_gen": {"alias": "toy_gen", "exact_match,none": 0.0, "exact_match_stderr,none": 0.0}},
        "configs": {"toy_gen": {"output_type": "generate_until"}}, "n-shot": {"toy_gen": 0},
        "versions": {"toy_gen": 1.0}, "model_name": model,
        "config": {"model": "hf", "model_args": {"pretrained": model}, "model_num_parameters": n_params},
    }))


def test_generate_until_samples_give_text_metrics_and_no_token_distance(tmp_path):
    _write_generate_until(tmp_path / "a", "org/small", 1000, ["5", "London", "red"])
    _write_generate_until(tmp_path / "b", "org/medium", 10000, ["4", "Lyon", "green"])
    _write_generate_until(tmp_path / "c", "org/large", 100000, ["4", "Paris", "azure"])
    inputs = read_inputs([tmp_path], QUICK)
    assert inputs.scores.is_empty() and inputs.generations.height == 9
    result, notes = analyze(inputs, QUICK)
    means = {(r["model"], r["metric"]): r["mean"] for r in result.metrics.iter_rows(named=True)}
    # exact match by hand: small 0/3, medium 1/3, large 3/3 ("azure" is the second reference)
    assert means[("org/small", "exact_match")] == 0.0
    assert means[("org/medium", "exact_match")] == pytest.approx(1 / 3)
    assert means[("org/large", "exact_match")] == 1.0
    # character edit distance to the closest reference, by hand: "5"→"4" 1; "London"→"Paris" 6 (no letter in
    # common: 5 substitutions and a deletion); "red"→"blue" 4 and "red"→"azure" 4 (r, e in common but d after them
    # cannot align: 2 insertions, 1 insertion or substitution, 1 deletion), so 4
    assert means[("org/small", "char_edit_distance")] == pytest.approx((1 + 6 + 4) / 3)
    assert means[("org/small", "token_edit_distance")] is None
    assert any("unavailable without token ids: token_edit_distance" in n for n in notes)
    assert means[("org/large", "chrf")] == pytest.approx(100.0)


def test_a_local_config_json_completes_lm_evals_count_with_the_non_embedding_one(tmp_path):
    """tiny-32x1 is a GPT-NeoX with hidden size 32, one layer, vocabulary 2048 (SOURCE.md). Counted from those
    hyperparameters, 2·2048·32 embedding + 12·32² + 13·32 per layer + 2·32 final norm = 143,840 parameters, which
    is lm-eval's own model_num_parameters; the non-embedding part, 12,768, comes from the config.json that lm-eval's
    relative model path `models/tiny-32x1` names (here beside the results folder)."""
    folder = tmp_path / "run"
    shutil.copytree(FIXTURES / "tiny-32x1", folder / "tiny-32x1")
    config = folder / "models" / "tiny-32x1" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"model_type": "gpt_neox", "hidden_size": 32, "num_hidden_layers": 1,
                                  "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 2048,
                                  "tie_word_embeddings": False}))
    inputs = read_inputs([folder / "tiny-32x1"], QUICK)
    row = inputs.models.row(0, named=True)
    assert row["params"] == 143_840 == lm_eval_results("tiny-32x1")["config"]["model_num_parameters"]
    assert row["non_embedding_params"] == 12 * 32**2 + 13 * 32 + 2 * 32 == 12_768
    assert "lm-eval model_num_parameters" in row["size_source"]
    assert inputs.x == "non_embedding_params"  # every model (the one) has a non-embedding count now


def test_loglikelihood_samples_are_generative_items_whose_greedy_flag_is_lm_evals_acc(tmp_path):
    """A loglikelihood task (LAMBADA-like: one continuation per document) in lm-eval 0.4's layout, written here.
    lm-eval's acc there is is_greedy, so exact_match_greedy must equal the mean of the flags; logprob_target is the
    log-likelihood itself."""
    responses = {"org/a": [("-3.5", "False"), ("-0.25", "True")], "org/b": [("-1.0", "True"), ("-0.5", "True")],
                 "org/c": [("-0.2", "True"), ("-0.1", "True")]}
    for k, (model, rows) in enumerate(responses.items()):
        folder = tmp_path / model.replace("/", "__")
        folder.mkdir()
        stamp = f"2026-11-29T10-00-0{k}.000000"
        with open(folder / f"samples_toy_ll_{stamp}.jsonl", "w") as f:
            for doc, (ll, greedy) in enumerate(rows):
                f.write(json.dumps({"doc_id": doc, "target": " word", "arguments": {
                    "gen_args_0": {"arg_0": f"text {doc}", "arg_1": " word"}}, "resps": [[[ll, greedy]]],
                    "filtered_resps": [[ll, greedy]], "acc": float(greedy == "True")}) + "\n")
        (folder / f"results_{stamp}.json").write_text(json.dumps({
            "results": {"toy_ll": {"acc,none": 0.0}}, "configs": {"toy_ll": {"output_type": "loglikelihood"}},
            "model_name": model, "config": {"model_args": {"pretrained": model}, "model_num_parameters": 10 ** (k + 3)},
        }))
    inputs = read_inputs([tmp_path], QUICK)
    result, _ = analyze(inputs, QUICK)
    means = {(r["model"], r["metric"]): r["mean"] for r in result.metrics.iter_rows(named=True)}
    assert means[("org/a", "exact_match_greedy")] == 0.5 and means[("org/b", "exact_match_greedy")] == 1.0
    assert means[("org/a", "logprob_target")] == pytest.approx((-3.5 - 0.25) / 2)
    assert means[("org/a", "token_accuracy_pow_len")] is None  # per-token: unavailable
