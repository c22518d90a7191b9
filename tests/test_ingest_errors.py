"""Every bad input to `scalelens analyze` is one line naming the file and the field (exit 2), and nothing is written:
all inputs are read and checked before the output folder is touched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from logprob.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = FIXTURES / "lm-eval-samples"
PYTHIA = FIXTURES / "pythia-evals"


def run(capsys, inputs: list[Path], out: Path, *options: str) -> str:
    code = main(["analyze", *(str(p) for p in inputs), "--out", str(out), "--bootstrap", "10", "--no-figures",
                 *options])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not out.exists(), "nothing may be written when an input is bad"
    assert err.startswith("scalelens: error: ") and err.count("\n") == 1, err
    return err


def copy_model(tmp_path: Path, model: str, name: str | None = None) -> Path:
    target = tmp_path / (name or model)
    shutil.copytree(SAMPLES / model, target)
    return target


def edit_samples(folder: Path, change) -> Path:
    (path,) = folder.glob("samples_*.jsonl")
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    change(docs)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def test_a_file_that_is_neither_format(tmp_path, capsys):
    path = tmp_path / "notes.json"
    path.write_text('{"hello": "world"}')
    err = run(capsys, [path], tmp_path / "out")
    assert str(path) in err and "neither an lm-eval results file" in err


def test_a_samples_file_without_per_choice_log_likelihoods(tmp_path, capsys):
    folder = copy_model(tmp_path, "tiny-32x1")

    def drop(docs):
        docs[3]["filtered_resps"] = [["-1.5"], ["-2.0"], ["-3.0"], ["-4.0"]]  # a number each, no is_greedy pair

    path = edit_samples(folder, drop)
    err = run(capsys, [folder], tmp_path / "out")
    assert str(path) in err and "line 4: field 'filtered_resps'" in err and "per-choice log-likelihoods" in err


def test_a_model_with_no_size(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("model,metric,value\nmy-own-model,acc,0.5\n")
    err = run(capsys, [path], tmp_path / "out")
    assert "model 'my-own-model'" in err and str(path) in err and "--sizes" in err


def test_one_curve_mixing_shot_counts(tmp_path, capsys):
    data = json.loads((PYTHIA / "410m_step143000.json").read_text())
    data["config"]["num_fewshot"] = 5
    five_shot = tmp_path / "410m_5shot.json"
    five_shot.write_text(json.dumps(data))
    err = run(capsys, [PYTHIA / "70m_step143000.json", five_shot], tmp_path / "out")
    assert str(five_shot) in err and "n-shot" in err and "one curve cannot mix" in err


def test_one_curve_mixing_documents(tmp_path, capsys):
    folder = copy_model(tmp_path, "tiny-64x2")

    def other_doc(docs):
        docs[0]["doc_hash"] = "0" * 64

    path = edit_samples(folder, other_doc)
    err = run(capsys, [SAMPLES / "tiny-32x1", folder], tmp_path / "out")
    assert str(path) in err and "doc_hash" in err and "one curve cannot mix tasks" in err


def test_the_same_model_twice(tmp_path, capsys):
    again = tmp_path / "copy_of_70m.json"
    shutil.copy(PYTHIA / "70m_step143000.json", again)
    err = run(capsys, [PYTHIA / "70m_step143000.json", again], tmp_path / "out")
    assert str(again) in err and "EleutherAI/pythia-v1.1-70m@step143000" in err and "same model twice" in err


def test_the_same_model_twice_in_a_table(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("model,params,metric,value\na,10,acc,0.5\na,10,acc,0.6\n")
    err = run(capsys, [path], tmp_path / "out")
    assert str(path) in err and "column 'model'" in err and "same model twice" in err


def test_item_level_and_aggregate_input_cannot_share_a_curve(tmp_path, capsys):
    results_only = tmp_path / "results_only"
    results_only.mkdir()
    (source,) = (SAMPLES / "tiny-128x3").glob("results_*.json")
    shutil.copy(source, results_only / source.name)
    err = run(capsys, [SAMPLES / "tiny-32x1", results_only], tmp_path / "out")
    assert "task 'toy_mc'" in err and "item-level and aggregate" in err


@pytest.mark.parametrize(("table", "column"), [
    ("model,params,metric,value,n_items\na,10,acc,0.5,4.7\n", "n_items"),  # a cast would make it 4, silently
    ("model,params,metric,value\na,1000.5,acc,0.5\n", "params"),
])
def test_a_fractional_count_in_a_table(tmp_path, capsys, table, column):
    path = tmp_path / "t.csv"
    path.write_text(table)
    err = run(capsys, [path], tmp_path / "out")
    assert f"{path}: column '{column}': model 'a':" in err and "is not a whole number" in err


def test_a_direction_for_a_name_the_input_does_not_have(tmp_path, capsys):
    path = tmp_path / "t.csv"  # log_foo is the input's own name, not the log of a perplexity-like 'foo'
    path.write_text("model,params,metric,value\na,10,log_foo,0.5\nb,100,log_foo,0.4\n")
    err = run(capsys, [path], tmp_path / "out", "--direction", "foo=lower")
    assert "--direction foo: no metric of that name" in err


@pytest.mark.parametrize(("options", "expected"), [
    (("--x", "pile_loss"), "--x pile_loss: no such per-model column"),
    (("--direction", "ppl"), "--direction ppl: expected METRIC=lower"),
    (("--direction", "nonexistent=lower"), "--direction nonexistent: no metric of that name"),
])
def test_bad_options_are_one_line_too(tmp_path, capsys, options, expected):
    err = run(capsys, [PYTHIA], tmp_path / "out", *options)
    assert expected in err


def test_a_scored_run_folder_is_not_overwritten(tmp_path, capsys):
    import polars as pl

    from metrics.schema import PROVENANCE

    out = tmp_path / "run"
    out.mkdir()
    pl.DataFrame({name: ["x"] for name in PROVENANCE}).write_parquet(out / "scores.parquet")
    code = main(["analyze", str(PYTHIA), "--out", str(out), "--no-figures"])
    err = capsys.readouterr().err
    assert code == 2 and "holds a `scalelens score` run" in err
    assert sorted(p.name for p in out.iterdir()) == ["scores.parquet"]
