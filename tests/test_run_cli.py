"""End to end through the `scalelens` command: score a ladder of tiny local models on real BIG-bench items, report,
resume after a crash, and refuse bad input with one clear line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPTNeoXConfig

from logprob import run
from logprob.cli import main
from logprob.config import ModelSpec, ScoreConfig
from logprob.tasks import load_task
from metrics.schema import EMERGENCE, GENERATIONS, METRICS, SCORES, validate

FIXTURES = Path(__file__).parent / "fixtures" / "bigbench"
WIDTHS = (8, 16, 32)  # three sizes: a ladder


@pytest.fixture(scope="module")
def ladder(tmp_path_factory, tiny_model_dir) -> list[str]:
    """Three GPT-NeoX models of growing width sharing one tokenizer, saved like hub checkpoints."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir("gpt_neox"))
    dirs = []
    for i, width in enumerate(WIDTHS):
        torch.manual_seed(i)
        config = GPTNeoXConfig(
            vocab_size=len(tokenizer), hidden_size=width, num_hidden_layers=1 + i, num_attention_heads=4,
            intermediate_size=2 * width, max_position_embeddings=256, tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        path = tmp_path_factory.mktemp(f"neox-{width}")
        AutoModelForCausalLM.from_config(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        dirs.append(str(path))
    return dirs


@pytest.fixture(scope="module")
def small_task(tmp_path_factory) -> Path:
    """The first six emoji_movie examples: multiple-choice and generative items from a real BIG-bench file."""
    data = json.loads((FIXTURES / "emoji_movie" / "task.json").read_text(encoding="utf-8"))
    data["examples"] = data["examples"][:6]
    path = tmp_path_factory.mktemp("task") / "task.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_score_then_report_produces_every_table(ladder, small_task, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["score", *sum((["--model", m] for m in ladder), []), "--task", str(small_task), "--out", str(out),
            "--max-new-tokens", "4"]
    assert main(args) == 0
    scores = validate(pl.read_parquet(out / "scores.parquet"), SCORES, "scores")
    gens = validate(pl.read_parquet(out / "generations.parquet"), GENERATIONS, "generations")
    task = load_task(small_task)
    n_rows = sum(len(it.continuations) for it in task.items)
    assert scores.height == len(ladder) * n_rows
    assert gens.height == len(ladder) * sum(it.kind == "generative" for it in task.items)
    assert scores["model"].unique().sort().to_list() == sorted(Path(m).name for m in ladder)
    sizes = scores.group_by("model").agg(pl.col("non_embedding_params").first()).sort("non_embedding_params")
    assert sizes["model"].to_list() == [Path(m).name for m in ladder]  # widths grow, so does the count
    # BIG-bench's graded target_scores travel per choice, straight from the task file; nothing was truncated
    examples = json.loads(small_task.read_text(encoding="utf-8"))["examples"]
    graded = scores.filter(pl.col("item_kind") == "multiple_choice").sort("model", "item_id", "choice")
    expected = [v for ex in examples for v in ex["target_scores"].values()] * len(ladder)
    assert graded["target_score"].to_list() == expected
    assert scores.filter(pl.col("item_kind") == "generative")["target_score"].null_count() == gens.height
    assert set(scores["n_truncated"]) == {0} and set(gens["n_truncated"]) == {0}

    assert main(["report", str(out), "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    assert "breakthroughness" in printed and "multiple_choice_grade" in printed
    metrics = validate(pl.read_parquet(out / "metrics.parquet"), METRICS, "metrics")
    emergence = validate(pl.read_parquet(out / "emergence.parquet"), EMERGENCE, "emergence")
    grade = metrics.filter(pl.col("metric") == "multiple_choice_grade").sort("non_embedding_params")
    assert grade.height == len(ladder) and grade["n_items"].to_list() == [6] * len(ladder)
    assert set(emergence["n_models"].to_list()) == {len(ladder)}
    assert {"exact_match", "bleu", "token_edit_distance", "bigbench_grade"} <= set(metrics["metric"].to_list())
    assert set(metrics["taxonomy"]) == {"discontinuous", "nonlinear", "continuous"}
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == [
        f"emoji_movie_{kind}.png" for kind in
        ("generative", "item_correlations", "logprob_gap", "metrics", "sharp_vs_smooth", "slices")]
    assert "is the jump made by the metric" in printed

    # An extra metric from a local `evaluate` module script, read with lower-is-better as asked.
    module = Path(__file__).parent / "fixtures" / "evaluate_modules" / "char_overlap.py"
    assert main(["report", str(out), "--bootstrap", "20", "--no-figures", "--evaluate-module", f"{module}:lower"]) == 0
    extra = pl.read_parquet(out / "metrics.parquet").filter(pl.col("metric").str.starts_with("char_overlap_"))
    assert set(extra["metric"]) == {"char_overlap_overlap", "char_overlap_length"}
    assert set(extra["direction"]) == {"lower"} and set(extra["kind"]) == {"smooth"}
    assert extra.height == 2 * len(ladder)
    assert main(["report", str(out), "--evaluate-module", f"{module}:sideways"]) == 2
    capsys.readouterr()
    no_generations = tmp_path / "no-generations"
    no_generations.mkdir()
    (no_generations / "scores.parquet").write_bytes((out / "scores.parquet").read_bytes())
    assert main(["report", str(no_generations), "--evaluate-module", str(module)]) == 2
    assert "generations.parquet does not exist" in capsys.readouterr().err


def test_scores_match_a_plain_forward_pass(ladder, small_task, tmp_path):
    """The stored logprob of a choice equals one full forward pass over context + continuation, done here."""
    scores, _ = run.score_models([ModelSpec(ladder[1], device="cpu")], [load_task(small_task)], tmp_path,
                                 generate=False)
    row = scores.filter((pl.col("item_id") == "2/mc") & (pl.col("choice") == 3)).row(0, named=True)
    task = load_task(small_task)
    item = next(it for it in task.items if it.item_id == "2/mc")
    tokenizer = AutoTokenizer.from_pretrained(ladder[1])
    model = AutoModelForCausalLM.from_pretrained(ladder[1], dtype=torch.float32).eval()
    # lm-eval's rule by hand: the context's trailing space moves to the continuation.
    context, continuation = item.context.rstrip(" "), " " + item.choices[3]
    ctx = tokenizer(context)["input_ids"]
    whole = tokenizer(context + continuation)["input_ids"]
    with torch.no_grad():
        logp = model(torch.tensor([whole])).logits[0].log_softmax(-1)  # (T, V)
    expected = sum(logp[t - 1, whole[t]].item() for t in range(len(ctx), len(whole)))
    assert row["n_tokens"] == len(whole) - len(ctx)
    assert math.isclose(row["logprob"], expected, abs_tol=1e-4)


def test_resume_keeps_finished_models_and_skips_them(ladder, small_task, tmp_path, monkeypatch):
    import logprob.model

    task = [load_task(small_task)]
    specs = [ModelSpec(m, device="cpu") for m in ladder]
    real_load = logprob.model.load_model

    def crash_on_third(spec):  # a run that dies while loading its third model
        if Path(spec.name_or_path) == Path(ladder[2]).resolve():
            raise RuntimeError("out of memory")
        return real_load(spec)

    monkeypatch.setattr(logprob.model, "load_model", crash_on_third)
    with pytest.raises(RuntimeError):
        run.score_models(specs, task, tmp_path, generate=False)
    kept = pl.read_parquet(tmp_path / "scores.parquet")
    assert kept["model"].unique().sort().to_list() == sorted(Path(m).name for m in ladder[:2])

    loaded_now = []
    monkeypatch.setattr(logprob.model, "load_model", lambda spec: loaded_now.append(spec) or real_load(spec))
    skipped = []
    run.score_models(specs, task, tmp_path, generate=False,
                     progress=lambda info: skipped.append((info.model, info.skipped)) or (lambda n: None))
    assert [Path(s.name_or_path) for s in loaded_now] == [Path(ladder[2]).resolve()]  # only the missing model
    assert [flag for _, flag in skipped] == [True, True, False]
    after = pl.read_parquet(tmp_path / "scores.parquet")
    for name in (Path(m).name for m in ladder[:2]):
        assert after.filter(pl.col("model") == name).equals(kept.filter(pl.col("model") == name))
    assert after["model"].n_unique() == 3


def test_resume_refuses_other_settings(ladder, small_task, tmp_path):
    task = [load_task(small_task)]
    spec = [ModelSpec(ladder[0], device="cpu")]
    run.score_models(spec, task, tmp_path, ScoreConfig(max_length=128), generate=False)
    with pytest.raises(ValueError, match="other settings"):
        run.score_models(spec, task, tmp_path, ScoreConfig(max_length=64), generate=False)


def test_bad_task_file_fails_before_loading_any_model(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "context": "x", "choices": ["1", "2"], "target": 0}\n{"id": "b", "context": "y"}\n')
    code = main(["score", "--model", str(tmp_path / "never-loaded"), "--task", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("scalelens: error:")
    assert "bad.jsonl" in err and "line 2" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [["score", "--help"], ["report", "--help"], ["demo", "--help"],
                                  ["ladder", "train", "--help"], ["--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: scalelens" in capsys.readouterr().out


def test_report_on_an_empty_folder_says_what_is_missing(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no score table here" in capsys.readouterr().err


def test_formulations_file_poses_jsonl_and_bigbench_tasks_each_way(ladder, small_task, tmp_path, capsys):
    """`score --formulations FILE`: a JSONL task with k-shot exemplars from a pool, a BIG-bench task k-shot from its
    own examples, and the task as written; every table keys its rows by (task, formulation) and every statistic is
    computed per (task, formulation, metric)."""
    rows = [{"id": f"q{i}", "context": f"{i}+{i}=", "choices": [f" {2 * i}", f" {2 * i + 1}"], "target": 0}
            for i in range(4)]
    sums = tmp_path / "sums.jsonl"
    sums.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps({"id": f"p{i}", "context": f"{i}+1=", "choices": [f" {i + 1}", " 0"],
                                          "target": 0}) for i in range(10, 14)) + "\n")
    forms = tmp_path / "forms.toml"
    forms.write_text('[[formulation]]\nname = "default"\n'
                     '[[formulation]]\nname = "2-shot"\nshots = 2\nseed = 1\n'
                     f'pool = "{pool.name}"\n')
    bb = tmp_path / "bb.toml"  # BIG-bench k-shot draws from the task's own examples: no pool
    bb.write_text('[[formulation]]\nname = "2-shot"\nshots = 2\nseed = 1\n')
    out = tmp_path / "run"
    assert main(["score", "--model", ladder[0], "--model", ladder[1], "--model", ladder[2], "--task", str(sums),
                 "--formulations", str(forms), "--out", str(out), "--no-generate"]) == 0
    assert main(["score", "--model", ladder[0], "--model", ladder[1], "--model", ladder[2], "--task",
                 str(small_task), "--formulations", "default", "--formulations", str(bb), "--out", str(out),
                 "--no-generate"]) == 0
    scores = validate(pl.read_parquet(out / "scores.parquet"), SCORES, "scores")
    keys = scores.select("task", "formulation").unique().sort("task", "formulation").rows()
    assert keys == [("emoji_movie", "2-shot"), ("emoji_movie", "default"), ("sums", "2-shot"), ("sums", "default")]
    # the same items posed two ways score differently, and the first run's rows stayed when the second added a task
    per_form = scores.filter(pl.col("task") == "sums").group_by("formulation").agg(pl.col("logprob").sum())
    assert per_form["logprob"].n_unique() == 2
    assert main(["report", str(out), "--bootstrap", "30", "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert "sums [2-shot]" in printed and "emoji_movie [2-shot]" in printed
    emergence = validate(pl.read_parquet(out / "emergence.parquet"), EMERGENCE, "emergence")
    grade = emergence.filter(pl.col("metric") == "multiple_choice_grade").select("task", "formulation")
    assert sorted(grade.rows()) == keys
