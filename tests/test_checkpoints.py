"""Ladders of checkpoints: `--model ID@REVISION` through an offline Hugging Face cache holding one model under two
revisions, the step column, ladder files and named ladders, every model checked before any scoring with every
problem in one line, and a model that fails to load later: reported, the rest scored, `report` naming it."""

from __future__ import annotations

import json
import shutil
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

import logprob.model
from logprob import preflight
from logprob.checkpoints import parse_step, parse_tokens, read_ladder_file
from logprob.cli import main
from logprob.fingerprint import model_fingerprint
from logprob.ladder import ADDITION_MC_TASK, LADDER_DIR
from logprob.model import ModelLoadError

M0, M1, M2 = (LADDER_DIR / name for name in ("ladder-00-1k", "ladder-01-4k", "ladder-02-19k"))
REPO_ID = "scalelens-test/tiny"
#: The cache's two revisions of REPO_ID: a training step each, with a checkpoint of the shipped ladder behind it.
REVISIONS = {"step1000": ("1" * 40, M0), "step2000": ("2" * 40, M1)}


@pytest.fixture
def task(tmp_path) -> Path:
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(ADDITION_MC_TASK.read_text().splitlines(True)[:4]))
    return path


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """A Hugging Face cache in a temporary folder, laid out as huggingface_hub writes it
    (models--ORG--NAME/snapshots/COMMIT/..., refs/REVISION holding the commit), used offline."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    repo = cache / f"models--{REPO_ID.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    for revision, (commit, source) in REVISIONS.items():
        shutil.copytree(source, repo / "snapshots" / commit)
        (repo / "refs" / revision).write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def score(capsys, *args) -> tuple[int, str, str]:
    code = main(["score", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def no_load(monkeypatch):
    monkeypatch.setattr(logprob.model, "load_model", lambda spec: pytest.fail(f"loaded {spec.name_or_path}"))


# ---------------------------------------------------------------------------------------------------- ID@REVISION


def test_two_revisions_of_one_hub_model_offline(hub, task, tmp_path, capsys):
    out, local = tmp_path / "run", tmp_path / "local"
    code, _, err = score(capsys, "--model", f"{REPO_ID}@step1000", "--model", f"{REPO_ID}@step2000", "--task", task,
                         "--out", out)
    assert code == 0, err
    got = pl.read_parquet(out / "scores.parquet")
    assert score(capsys, "--model", M0, "--model", M1, "--task", task, "--out", local)[0] == 0
    want = pl.read_parquet(local / "scores.parquet")
    models = got.group_by("model", maintain_order=True).agg(pl.col("revision", "step", "model_fingerprint").first())
    assert models.rows() == [(f"{REPO_ID}@step1000", "step1000", 1000, model_fingerprint(M0)),
                             (f"{REPO_ID}@step2000", "step2000", 2000, model_fingerprint(M1))]
    assert got["logprob"].equals(want["logprob"])  # each revision is the checkpoint its ref points to
    assert got["tokens_seen"].null_count() == got.height  # an unknown model: no tokens per step known


def test_tokens_seen_from_a_known_models_tokens_per_step(hub, task, tmp_path, capsys, monkeypatch):
    fake_ladders(monkeypatch, [KnownModel(REPO_ID, "fake", 1192, 100, None, "test", 10**9, 2_097_152)])
    assert score(capsys, "--model", f"{REPO_ID}@step2000", "--task", task, "--out", tmp_path / "run")[0] == 0
    got = pl.read_parquet(tmp_path / "run" / "scores.parquet")
    assert set(got["tokens_seen"]) == {2000 * 2_097_152}  # Pythia's 1,024 sequences × 2,048 tokens per step


def test_a_named_ladder_at_a_revision_has_seen_that_steps_tokens(hub, task, tmp_path, capsys, monkeypatch):
    fake_ladders(monkeypatch, [KnownModel(REPO_ID, "fake", 1192, 100, None, "test", 10**9, 2_097_152)])
    assert score(capsys, "--ladder", "fake", "--revision", "step2000", "--task", task, "--out", tmp_path / "run")[0] == 0
    got = pl.read_parquet(tmp_path / "run" / "scores.parquet")
    assert set(got["tokens_seen"]) == {2000 * 2_097_152}  # not the final checkpoint's 10^9


@pytest.mark.parametrize(("args", "needle"), [
    (["--model", "./ckpt@step3"], "./ckpt is a local directory, which has no revisions; drop @step3"),
    (["--model", f"{M0}@main"], "is a local directory, which has no revisions"),
    (["--model", f"{REPO_ID}@step1000", "--revision", "step2000"], "already names revision step1000"),
    (["--model", f"{REPO_ID}@"], "expected ID@REVISION with both parts"),
    (["--model", f"{REPO_ID}@step3000"], "not in the Hugging Face cache at revision step3000"),
])
def test_revision_mistakes_are_one_line(args, needle, hub, task, tmp_path, capsys, no_load):
    code, _, err = score(capsys, *args, "--task", task, "--out", tmp_path / "out")
    assert code == 2 and needle in one_line(err)
    assert not (tmp_path / "out").exists()


def test_step_and_tokens_from_revisions_and_folder_names():
    assert parse_step("step143000") == 143000  # Pythia
    assert parse_step("stage1-step928646-tokens3896B") == 928646  # OLMo 2
    assert parse_tokens("stage1-step928646-tokens3896B") == 3_896_000_000_000
    assert parse_step("checkpoint-2500") == 2500  # a Hugging Face Trainer folder
    assert parse_step("main") is None and parse_step("steps") is None and parse_step("v1.0-step") is None
    assert parse_tokens("tokens1.5T") == 1_500_000_000_000


# ---------------------------------------------------------------------------------------------------- ladders


def test_ladder_file_of_checkpoints_with_labels(hub, task, tmp_path, capsys):
    ladder = tmp_path / "steps.toml"
    ladder.write_text(f'id = "{REPO_ID}"\nrevisions = ["step1000", "step2000"]\nlabels = ["tiny-1k", "tiny-2k"]\n')
    assert score(capsys, "--ladder", ladder, "--task", task, "--out", tmp_path / "run")[0] == 0
    got = pl.read_parquet(tmp_path / "run" / "scores.parquet")
    rows = got.group_by("model", maintain_order=True).agg(pl.col("revision", "step").first()).rows()
    assert rows == [("tiny-1k", "step1000", 1000), ("tiny-2k", "step2000", 2000)]


def test_ladder_file_of_model_tables_with_local_paths(task, tmp_path, capsys):
    folder = tmp_path / "ladders"
    shutil.copytree(M0, folder / "ckpts" / "checkpoint-500")
    ladder = folder / "mine.toml"
    ladder.write_text(f'[[model]]\nid = "./ckpts/checkpoint-500"\n\n[[model]]\nid = "{M1}"\nlabel = "bigger"\n'
                      "step = 7\ntokens_seen = 1234\n")
    assert score(capsys, "--ladder", ladder, "--task", task, "--out", tmp_path / "run")[0] == 0
    got = pl.read_parquet(tmp_path / "run" / "scores.parquet")
    rows = got.group_by("model", maintain_order=True).agg(pl.col("step", "tokens_seen").first()).rows()
    assert rows == [("checkpoint-500", 500, None), ("bigger", 7, 1234)]  # the folder name's step; the file's values


@pytest.mark.parametrize(("text", "needle"), [
    ('[[model]]\nid = "a/b"\nrevsion = "x"\n', "model 1: unknown field 'revsion'"),
    ('[[model]]\nrevision = "x"\n', "model 1: field 'id' must be"),
    ('[[model]]\nid = "a/b"\nstep = -3\n', "field 'step' must be a whole number >= 0"),
    ('id = "a/b"\n', "needs revisions"),
    ('ids = ["a/b", "c/d"]\nlabels = ["x"]\n', "1 labels for 2 models"),
    ('ids = ["a/b"]\n[[model]]\nid = "c/d"\n', "give exactly one of"),
    ('models = ["a/b"]\n', "unknown key 'models'"),
    ('ids = [\n', "not valid TOML"),
    ('name = "empty"\n', "found none"),
])
def test_ladder_file_mistakes_are_one_line_naming_file_and_field(text, needle, task, tmp_path, capsys, no_load):
    ladder = tmp_path / "bad.toml"
    ladder.write_text(text)
    code, _, err = score(capsys, "--ladder", ladder, "--task", task, "--out", tmp_path / "out")
    line = one_line(err)
    assert code == 2 and needle in line and "bad.toml" in line


def test_ladder_file_forms_read_by_hand(tmp_path):
    ladder = tmp_path / "l.toml"
    ladder.write_text('ids = ["EleutherAI/pythia-70m", "EleutherAI/pythia-160m"]\n')
    assert [(e.name_or_path, e.revision, e.label) for e in read_ladder_file(ladder)] == [
        ("EleutherAI/pythia-70m", None, None), ("EleutherAI/pythia-160m", None, None)]


@dataclass(frozen=True)
class KnownModel:
    """The shape of metrics.ladders.KnownModel (issue 9)."""

    hub_id: str
    ladder: str
    params: int
    non_embedding_params: int
    config: dict | None
    source: str
    training_tokens: int | None
    tokens_per_step: int | None


def fake_ladders(monkeypatch, models: list[KnownModel]) -> None:
    """Stand in for metrics.ladders (`ladder(name)`, `known_model(id)`): ValueError listing the known names."""
    module = types.ModuleType("metrics.ladders")

    def ladder(name):
        found = tuple(m for m in models if m.ladder == name)
        if not found:
            names = sorted({m.ladder for m in models})
            raise ValueError(f"unknown ladder {name!r}; known ladders: {', '.join(names)}")
        return found

    module.ladder = ladder
    module.known_model = lambda model_id: next((m for m in models if m.hub_id == model_id), None)
    monkeypatch.setitem(sys.modules, "metrics.ladders", module)


def test_named_ladder(hub, task, tmp_path, capsys, monkeypatch):
    other = "scalelens-test/other"
    repo = hub / f"models--{other.replace('/', '--')}"
    shutil.copytree(M2, repo / "snapshots" / ("3" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("3" * 40)
    (hub / f"models--{REPO_ID.replace('/', '--')}" / "refs" / "main").write_text("2" * 40)
    fake_ladders(monkeypatch, [KnownModel(REPO_ID, "fake", 4432, 100, None, "test", 10**9, None),
                               KnownModel(other, "fake", 18984, 100, None, "test", 3 * 10**9, None)])
    assert score(capsys, "--ladder", "fake", "--task", task, "--out", tmp_path / "run")[0] == 0
    got = pl.read_parquet(tmp_path / "run" / "scores.parquet")
    rows = got.group_by("model", maintain_order=True).agg(pl.col("tokens_seen").first()).rows()
    assert rows == [(REPO_ID, 10**9), (other, 3 * 10**9)]  # final checkpoints: their training tokens
    code, _, err = score(capsys, "--ladder", "nope", "--task", task, "--out", tmp_path / "other")
    assert code == 2 and "--ladder nope: unknown ladder 'nope'; known ladders: fake" in one_line(err)


def test_named_ladder_without_the_table_of_known_ladders(task, tmp_path, capsys, monkeypatch, no_load):
    monkeypatch.setitem(sys.modules, "metrics.ladders", None)  # as before issue 9: import fails
    code, _, err = score(capsys, "--ladder", "pythia", "--task", task, "--out", tmp_path / "out")
    assert code == 2 and "no table of named ladders" in one_line(err)


# ---------------------------------------------------------------------------------------------------- fail early


def test_stored_params_by_hand():
    assert preflight.stored_params(M0) == sum(t.numel() for t in load_file(M0 / "model.safetensors").values())


def test_a_ladder_with_unreachable_models_is_refused_before_any_scoring(task, tmp_path, capsys, monkeypatch,
                                                                        no_load):
    pickled = shutil.copytree(M0, tmp_path / "pickled")
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    # 40,000 bytes free: M0 (1,192 parameters × 4 bytes) fits, M2 (18,984 × 4 = 75,936 bytes) does not
    monkeypatch.setattr(preflight, "device_memory", lambda spec: ("the CPU", 40_000))
    ladder = tmp_path / "ladder.toml"
    ladder.write_text(f'ids = ["{M0}", "nosuch-org/nosuch-model", "{pickled}", "{M2}"]\n')
    code, _, err = score(capsys, "--ladder", ladder, "--task", task, "--out", tmp_path / "out")
    line = one_line(err)
    assert code == 2 and line.startswith("scalelens: error: 3 problems with the models of this run")
    assert "(1) --model nosuch-org/nosuch-model: no such local directory, and not in the Hugging Face cache" in line
    assert f"(2) --model {pickled}: has only pickle weights" in line
    assert f"(3) --model {M2}: its weights need about 0.0 GiB (18,984 parameters × 4 bytes, float32)" in line
    assert str(M0) not in line
    assert not (tmp_path / "out").exists()


def test_the_fit_estimate_shares_cpu_memory_among_the_processes_of_a_machine(monkeypatch):
    monkeypatch.setattr(preflight, "device_memory", lambda spec: ("the CPU", 100_000))
    model = preflight.resolve_model(logprob.model.ModelSpec(str(M2), device="cpu"))  # 75,936 bytes of float32
    assert preflight.fit_problem(model, "float32", local_processes=1) is None
    assert "per process (2 processes on this machine)" in preflight.fit_problem(model, "float32", local_processes=2)
    assert preflight.fit_problem(model, "bfloat16", local_processes=2) is None  # 37,968 bytes


def test_a_model_that_fails_to_load_later_is_reported_and_the_rest_scored(task, tmp_path, capsys, monkeypatch):
    real = logprob.model.load_model

    def m1_fails(spec):
        if Path(spec.name_or_path).name == M1.name:
            raise ModelLoadError(f"--model {spec.name_or_path}: could not load the model (OSError: disk error)")
        return real(spec)

    monkeypatch.setattr(logprob.model, "load_model", m1_fails)
    out = tmp_path / "run"
    code, _, err = score(capsys, "--model", M0, "--model", M1, "--model", M2, "--task", task, "--out", out)
    assert code == 3
    last = [line for line in err.splitlines() if line.startswith("scalelens:")]
    assert len(last) == 1 and "1 model(s) could not be loaded" in last[0] and "disk error" in last[0]
    assert set(pl.read_parquet(out / "scores.parquet")["model"]) == {M0.name, M2.name}
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "partial"
    assert [(m["model"], m["status"]) for m in record["models"]] == [(M0.name, "scored"), (M1.name, "failed"),
                                                                      (M2.name, "scored")]
    assert main(["report", str(out), "--bootstrap", "20", "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert f"missing: {M1.name}: the last `scalelens score` on this folder could not load it" in printed
    monkeypatch.setattr(logprob.model, "load_model", real)  # fixed: the same command adds it, and nothing is missing
    assert score(capsys, "--model", M0, "--model", M1, "--model", M2, "--task", task, "--out", out)[0] == 0
    assert main(["report", str(out), "--bootstrap", "20", "--no-figures"]) == 0
    assert "missing:" not in capsys.readouterr().out
