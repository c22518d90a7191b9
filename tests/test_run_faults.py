"""The faults users make with `scalelens score`, each on the shipped ladder models: every case ends with correct
tables (checked against a clean run or the task file) or a non-zero exit with one line and no traceback.

Cases: an edited task, another checkpoint under the same name, new settings, a second task, a second writer and a
dead one, a duplicate task, an unwritable folder, too little space, a full disk, corrupt tables, mistyped model
paths, a pickle the safe loader refuses, Ctrl-C, kill -9 then resume, --restart, and a token budget change."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

import logprob.model
from logprob import preflight, run
from logprob.cli import main
from logprob.config import ModelSpec, ScoreConfig
from logprob.fingerprint import model_fingerprint
from logprob.ladder import ADDITION_GEN_TASK, ADDITION_MC_TASK, LADDER_DIR
from logprob.lock import LOCK_FILE, FolderBusy, FolderLock
from logprob.tasks import Item, Task, load_task
from metrics.folder import FolderError, read_run_folder

M0, M1, M2 = (LADDER_DIR / name for name in ("ladder-00-1k", "ladder-01-4k", "ladder-02-19k"))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tasks(tmp_path) -> Path:
    """A folder holding mc.jsonl (6 multiple-choice items) and gen.jsonl (3 generative items) of the ladder's tasks,
    a private copy per test so a test may edit them."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "mc.jsonl").write_text("".join(ADDITION_MC_TASK.read_text().splitlines(True)[:6]))
    (folder / "gen.jsonl").write_text("".join(ADDITION_GEN_TASK.read_text().splitlines(True)[:3]))
    return folder


@pytest.fixture
def no_load(monkeypatch):
    """Fail the test if any model is loaded: the refusal must come before work."""

    def refuse(spec):
        raise AssertionError(f"a model was loaded: {spec.name_or_path}")

    monkeypatch.setattr(logprob.model, "load_model", refuse)


def score(capsys, *args) -> tuple[int, str, str]:
    code = main(["score", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    """The whole of stderr is one error line (a refusal before any work)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("scalelens: error: ")
    return lines[0]


def last_line(err: str) -> str:
    """After work has started, progress bars may precede it, but the message is one line and the last."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("scalelens:")] == lines[-1:], err
    return lines[-1]


def table(folder: Path, name: str = "scores") -> pl.DataFrame:
    return pl.read_parquet(folder / f"{name}.parquet")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------- content


def test_edited_task_is_rescored_not_kept(tasks, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    before = table(out)
    rows = jsonl(tasks / "mc.jsonl")
    for row in rows:  # move every target to the next choice
        row["target"] = (row["target"] + 1) % len(row["choices"])
    (tasks / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    assert "ladder-00-1k × mc: rescoring: the task file changed" in caplog.text
    after = table(out).sort("item_id", "choice")
    expected = {(r["id"], c): c == r["target"] for r in rows for c in range(len(r["choices"]))}
    assert {(i, c): t for i, c, t in after.select("item_id", "choice", "is_target").iter_rows()} == expected
    # contexts and choices are unchanged, so are the log-probs; only the task's hash moved
    assert after["logprob"].equals(before.sort("item_id", "choice")["logprob"])
    assert after["task_hash"].n_unique() == 1 and after["task_hash"][0] != before["task_hash"][0]


def test_edited_task_refused_while_an_unnamed_model_holds_the_old_version(tasks, tmp_path, capsys):
    out = tmp_path / "run"
    assert score(capsys, "--model", M0, "--model", M1, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    saved = (out / "scores.parquet").read_bytes()
    rows = jsonl(tasks / "mc.jsonl")
    rows[0]["context"] = "1111+2222="
    (tasks / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)
    line = error_line(err)
    assert code == 2 and "ladder-01-4k" in line and "--restart" in line
    assert (out / "scores.parquet").read_bytes() == saved


def test_same_name_checkpoint_from_another_directory_is_scored(tasks, tmp_path, capsys, caplog):
    other = tmp_path / "run2" / "ladder-00-1k"  # another checkpoint (the 4k model's weights) under the 1k's name
    shutil.copytree(M1, other)
    out, ref = tmp_path / "run", tmp_path / "reference"
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    first = table(out)
    assert score(capsys, "--model", other, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    assert "ladder-00-1k × mc: rescoring: the checkpoint differs" in caplog.text
    assert score(capsys, "--model", other, "--task", tasks / "mc.jsonl", "--out", ref)[0] == 0
    now, clean = table(out), table(ref)
    assert now.drop("model_source").equals(clean.drop("model_source"))  # as if scored alone
    assert now["model_fingerprint"][0] == model_fingerprint(M1) != first["model_fingerprint"][0]


def test_other_checkpoint_refused_while_its_old_results_would_stay(tasks, tmp_path, capsys):
    other = tmp_path / "run2" / "ladder-00-1k"
    shutil.copytree(M1, other)
    out = tmp_path / "run"
    both = ("--task", tasks / "mc.jsonl", "--task", tasks / "gen.jsonl", "--no-generate")
    assert score(capsys, "--model", M0, *both, "--out", out)[0] == 0
    code, _, err = score(capsys, "--model", other, "--task", tasks / "mc.jsonl", "--out", out)
    line = error_line(err)
    assert code == 2 and "ladder-00-1k" in line and "gen" in line and "--task" in line


def test_generations_of_a_rescored_model_are_dropped_under_no_generate(tasks, tmp_path, capsys, caplog):
    other = tmp_path / "run2" / "ladder-00-1k"
    shutil.copytree(M1, other)
    out = tmp_path / "run"
    assert score(capsys, "--model", M0, "--task", tasks / "gen.jsonl", "--out", out, "--max-new-tokens", 6)[0] == 0
    assert table(out, "generations").height == len(jsonl(tasks / "gen.jsonl"))
    assert score(capsys, "--model", other, "--task", tasks / "gen.jsonl", "--out", out, "--no-generate")[0] == 0
    assert "dropping generations of ladder-00-1k × gen" in caplog.text
    scores, gens = read_run_folder(out)
    assert gens.height == 0 and set(scores["model_fingerprint"]) == {model_fingerprint(M1)}


@pytest.mark.parametrize("writes", [1, 2, 3])
def test_a_run_stopped_after_any_write_leaves_one_version_of_everything(writes, tasks, tmp_path, capsys,
                                                                        monkeypatch):
    """Rescoring an edited task for two models takes three writes (the old rows retired, then each model); a run
    stopped after any of them leaves a folder `report` can read, and the rerun equals a clean run."""
    out, ref = tmp_path / "run", tmp_path / "clean"
    args = ("--model", M0, "--model", M1, "--task", tasks / "mc.jsonl", "--task", tasks / "gen.jsonl",
            "--max-new-tokens", 6)
    assert score(capsys, *args, "--out", out)[0] == 0
    rows = jsonl(tasks / "mc.jsonl")
    rows[0]["context"] = "1111+2222="
    (tasks / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    real, done = run.write_parquet_atomic, []

    def stop_after(frame, path):
        real(frame, path)
        done.append(path.name)
        if len(done) == writes:
            raise KeyboardInterrupt

    monkeypatch.setattr(run, "write_parquet_atomic", stop_after)
    assert score(capsys, *args, "--out", out)[0] == 130
    read_run_folder(out)  # no FolderError: one checkpoint per model, one version per task, one set of settings
    monkeypatch.setattr(run, "write_parquet_atomic", real)
    assert score(capsys, *args, "--out", out)[0] == 0
    assert score(capsys, *args, "--out", ref)[0] == 0
    for name, keys in (("scores", ["model", "task", "item_id", "choice"]), ("generations", ["model", "task", "item_id"])):
        assert table(out, name).sort(keys).equals(table(ref, name).sort(keys))  # row order differs: models rescored


def test_new_settings_are_refused_not_mixed(tasks, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    saved = (out / "scores.parquet").read_bytes()
    monkeypatch.setattr(logprob.model, "load_model", lambda spec: pytest.fail("loaded a model"))
    code, _, err = score(capsys, "--model", M1, "--task", tasks / "mc.jsonl", "--out", out, "--max-length", 8)
    line = error_line(err)
    assert code == 2 and "max_length: None vs 8" in line and "--restart" in line
    assert (out / "scores.parquet").read_bytes() == saved


def test_token_budget_change_does_not_block_a_resume(tasks, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out, "--token-budget", 64)[0] == 0
    saved = (out / "scores.parquet").read_bytes()
    monkeypatch.setattr(logprob.model, "load_model", lambda spec: pytest.fail("loaded a model"))
    code, printed, _ = score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out, "--token-budget", 4096)
    assert code == 0 and "nothing to do" in printed
    assert (out / "scores.parquet").read_bytes() == saved


def test_second_task_and_second_model_keep_what_was_there(tasks, tmp_path, capsys):
    out = tmp_path / "run"
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    first = table(out)
    assert score(capsys, "--model", M0, "--task", tasks / "gen.jsonl", "--out", out, "--max-new-tokens", 6)[0] == 0
    assert score(capsys, "--model", M1, "--task", tasks / "gen.jsonl", "--out", out, "--max-new-tokens", 6)[0] == 0
    now = table(out)
    assert now.filter(pl.col("task") == "mc").equals(first)
    n_mc = sum(len(r["choices"]) for r in jsonl(tasks / "mc.jsonl"))
    n_gen = sum(len(r["references"]) for r in jsonl(tasks / "gen.jsonl"))
    counts = dict(((m, t), n) for m, t, n in now.group_by("model", "task").len().iter_rows())
    assert counts == {("ladder-00-1k", "mc"): n_mc, ("ladder-00-1k", "gen"): n_gen, ("ladder-01-4k", "gen"): n_gen}
    assert table(out, "generations").height == 2 * len(jsonl(tasks / "gen.jsonl"))


@pytest.mark.parametrize("case", ["same file twice", "same file name", "same items"])
def test_duplicate_task_refused_before_any_folder_exists(case, tasks, tmp_path, capsys, no_load):
    other = tmp_path / "other"
    other.mkdir()
    if case == "same file twice":
        second = tasks / "mc.jsonl"
    elif case == "same file name":
        second = other / "mc.jsonl"
        second.write_text((tasks / "gen.jsonl").read_text())
    else:
        second = other / "copy.jsonl"
        second.write_text((tasks / "mc.jsonl").read_text())
    code, _, err = score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--task", second, "--out", tmp_path / "o")
    line = error_line(err)
    assert code == 2 and "--task" in line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------- one writer

HOLD_LOCK = """
import sys
from pathlib import Path
from logprob.lock import FolderLock
with FolderLock(Path(sys.argv[1]), "scalelens score (another run)"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_second_writer_refused_and_a_dead_writer_blocks_nothing(tasks, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)
        line = error_line(err)
        assert code == 2 and f"pid {holder.pid}" in line and "another scalelens run" in line
        assert not (out / "scores.parquet").exists()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
        holder.wait()
    assert (out / LOCK_FILE).exists()
    code, _, _ = score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)
    assert code == 0 and table(out).height == sum(len(r["choices"]) for r in jsonl(tasks / "mc.jsonl"))
    assert not (out / LOCK_FILE).exists()


def test_the_lock_names_its_holder_and_goes_with_it(tmp_path):
    with FolderLock(tmp_path, "scalelens score --out here"):
        with pytest.raises(FolderBusy, match=f"pid {os.getpid()}: scalelens score --out here"):
            FolderLock(tmp_path).__enter__()
    assert not (tmp_path / LOCK_FILE).exists()
    with FolderLock(tmp_path):  # free again
        pass


# ---------------------------------------------------------------------------------------------------- the folder


@pytest.mark.parametrize("where", ["under a file", "read-only file system"])
def test_unwritable_output_folder_refused_before_any_model_loads(where, tasks, tmp_path, capsys, no_load):
    if where == "under a file":  # cannot be created, even by root
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    else:  # exists, but no file can be created in it, even by root
        out = Path("/proc")
    code, _, err = score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)
    line = error_line(err)
    assert code == 2 and f"--out {out}" in line and ("cannot create" in line or "cannot write" in line)


def test_too_little_free_space_refused_before_any_model_loads(tasks, tmp_path, capsys, monkeypatch, no_load):
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=1000))
    code, _, err = score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", tmp_path / "run")
    line = error_line(err)
    assert code == 2 and "MiB free" in line


def test_empty_out_and_bad_numbers_refused_at_once(tasks, tmp_path, capsys, monkeypatch, no_load):
    monkeypatch.chdir(tmp_path)
    base = ["--model", M0, "--task", tasks / "mc.jsonl"]
    for extra, needle in ((["--out", ""], "--out"), (["--out", "o", "--max-length", "0"], "--max-length"),
                          (["--out", "o", "--token-budget", "0"], "--token-budget"),
                          (["--out", "o", "--max-new-tokens", "0"], "--max-new-tokens"),
                          (["--out", "o", "--device", "cuda:abc"], "--device")):
        code, _, err = score(capsys, *base, *extra)
        assert code == 2 and needle in error_line(err)
    assert list(tmp_path.iterdir()) == [tmp_path / "tasks"]  # nothing written anywhere


def test_space_estimate_by_hand():
    task = Task("t", (Item("a", "1+1=", choices=("2", "22"), target=0), Item("b", "2+2=", references=("4",))))
    # per continuation: 256 overhead + 2 × its bytes + 8 × (bytes + 1) tokens; per generative item with generation:
    # 256 + 5 × reference bytes + 16 × max_new_tokens
    scores = (256 + 2 + 16) + (256 + 4 + 24) + (256 + 2 + 16)
    generations = 256 + 5 + 16 * 3
    config = ScoreConfig(max_new_tokens=3)
    assert preflight.estimate_unit_bytes(task, config, scores=True, generations=True) == scores + generations
    assert preflight.estimate_unit_bytes(task, config, scores=True, generations=False) == scores
    assert preflight.estimate_unit_bytes(task, config, scores=False, generations=False) == 0


def test_free_space_is_needed_only_for_what_is_left_to_score(tasks, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    size = (out / "scores.parquet").stat().st_size
    just_enough = size + preflight.SPARE_BYTES  # a rewrite holds the old table and the new one
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=just_enough))
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0  # nothing to write
    code, _, err = score(capsys, "--model", M1, "--task", tasks / "mc.jsonl", "--out", out)
    assert code == 2 and "MiB free" in error_line(err)


def test_full_disk_while_writing_is_one_line_and_leaves_the_table_intact(tasks, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    saved = (out / "scores.parquet").read_bytes()

    def disk_full(self, path, *args, **kwargs):  # what polars raises on ENOSPC (seen writing to /dev/full)
        Path(path).write_bytes(saved[:100])
        raise pl.exceptions.ComputeError("parquet: File out of specification: underlying IO error: "
                                         "No space left on device (os error 28)")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)
    code, _, err = score(capsys, "--model", M1, "--task", tasks / "mc.jsonl", "--out", out)
    assert code == 2 and "the disk is full" in last_line(err)
    assert (out / "scores.parquet").read_bytes() == saved
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "scores.parquet"]  # no temporary file, no lock
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "stopped" and "the disk is full" in record["error"]


@pytest.mark.parametrize("name", ["scores", "generations"])
def test_corrupt_table_is_one_line_and_restart_repairs_it(name, tasks, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = ("--model", M0, "--task", tasks / "gen.jsonl", "--out", out, "--max-new-tokens", 6)
    assert score(capsys, *args)[0] == 0
    clean = {n: table(out, n) for n in ("scores", "generations")}
    path = out / f"{name}.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a full disk or a bad copy

    real_load = logprob.model.load_model
    monkeypatch.setattr(logprob.model, "load_model", lambda spec: pytest.fail("loaded a model"))
    code, _, err = score(capsys, *args)
    line = error_line(err)
    assert code == 2 and f"{name}.parquet" in line and "truncated or corrupt" in line and "--restart" in line
    with pytest.raises(FolderError, match="truncated or corrupt"):
        read_run_folder(out)
    assert main(["report", str(out), "--no-figures", "--bootstrap", "10"]) == 2  # report says the same, in one line
    line = error_line(capsys.readouterr().err)
    assert f"{name}.parquet" in line and "truncated or corrupt" in line

    monkeypatch.setattr(logprob.model, "load_model", real_load)
    assert score(capsys, *args, "--restart")[0] == 0
    scores, gens = read_run_folder(out)
    assert scores.equals(clean["scores"]) and gens.equals(clean["generations"])


def test_restart_discards_every_model_of_the_folder(tasks, tmp_path, capsys):
    out, ref = tmp_path / "run", tmp_path / "reference"
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    assert score(capsys, "--model", M1, "--task", tasks / "mc.jsonl", "--out", out, "--max-length", 8, "--restart")[0] == 0
    assert score(capsys, "--model", M1, "--task", tasks / "mc.jsonl", "--out", ref, "--max-length", 8)[0] == 0
    assert table(out).equals(table(ref))


# ---------------------------------------------------------------------------------------------------- models


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _pickle_only(tmp_path: Path, blocked: bool) -> Path:
    path = _copy(M0, tmp_path / "pickled")
    state = load_file(path / "model.safetensors")
    if blocked:
        state["extra"] = Opaque()  # an object torch's weights-only unpickler refuses
    torch.save(state, path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()
    return path


class Opaque:
    pass


def _mistyped(case: str, tmp_path: Path, monkeypatch) -> tuple[list, str]:
    monkeypatch.chdir(tmp_path)
    if case == "relative typo beside its folder":
        (tmp_path / "models").mkdir()
        _copy(M0, tmp_path / "models" / "ladder-00-1k")
        return ["models/ladder-typo"], "no such directory (checkpoints in models: ladder-00-1k)"
    if case == "absolute path that does not exist":
        return [str(tmp_path / "nope" / "ladder")], "no such directory"
    if case == "hub id not in the cache (offline)":
        return ["nosuch-org/nosuch-model"], "not in the Hugging Face cache"
    if case == "neither a path nor a hub id":
        return ["bad id!"], "neither an existing directory nor a hub id"
    if case == "empty directory":
        (tmp_path / "empty").mkdir()
        return ["empty"], "no config.json"
    if case == "a file":
        (tmp_path / "model.safetensors").write_bytes(b"x")
        return ["./model.safetensors"], "not a directory"
    if case == "pickle weights only":
        return [str(_pickle_only(tmp_path, blocked=False))], "--allow-pickle"
    if case == "truncated safetensors":
        path = _copy(M0, tmp_path / "truncated")
        (path / "model.safetensors").write_bytes((M0 / "model.safetensors").read_bytes()[:3000])
        return [str(path)], "model.safetensors: truncated"
    if case == "no tokenizer":
        path = _copy(M0, tmp_path / "no-tokenizer")
        (path / "tokenizer.json").unlink()
        return [str(path)], "no tokenizer files"
    if case == "revision on a local folder":
        return [str(M0), "--revision", "main"], "--revision main: applies to hub ids"
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "relative typo beside its folder", "absolute path that does not exist", "hub id not in the cache (offline)",
    "neither a path nor a hub id", "empty directory", "a file", "pickle weights only", "truncated safetensors",
    "no tokenizer", "revision on a local folder",
])
def test_mistyped_or_incomplete_model_refused_before_any_model_loads(case, tasks, tmp_path, capsys, monkeypatch,
                                                                      no_load):
    model, needle = _mistyped(case, tmp_path, monkeypatch)
    code, _, err = score(capsys, "--model", *model, "--task", tasks / "mc.jsonl", "--out", tmp_path / "out")
    line = error_line(err)
    assert code == 2 and needle in line
    assert not (tmp_path / "out").exists()


def test_pickle_refused_by_the_weights_only_loader_is_one_line(tasks, tmp_path, capsys):
    path = _pickle_only(tmp_path, blocked=True)
    code, _, err = score(capsys, "--model", path, "--allow-pickle", "--task", tasks / "mc.jsonl", "--out",
                         tmp_path / "out")
    assert code == 3 and "weights-only" in last_line(err)  # a model that fails to load: reported, the run goes on


def test_hub_id_found_in_the_cache_offline(tasks, tmp_path, capsys, monkeypatch):
    """A hub id resolves through the Hugging Face cache, with no network, and is fingerprinted by its files."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--scalelens-test--tiny"
    _copy(M0, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    out, ref = tmp_path / "run", tmp_path / "reference"
    assert score(capsys, "--model", "scalelens-test/tiny", "--task", tasks / "mc.jsonl", "--out", out)[0] == 0
    assert score(capsys, "--model", M0, "--task", tasks / "mc.jsonl", "--out", ref)[0] == 0
    hub, local = table(out), table(ref)
    assert set(hub["model"]) == {"scalelens-test/tiny"} and set(hub["model_fingerprint"]) == set(local["model_fingerprint"])
    assert hub["logprob"].equals(local["logprob"])


def test_hub_unreachable_is_one_line(tasks, tmp_path, capsys, monkeypatch, no_load):
    import huggingface_hub.constants

    def no_network(repo_id, revision):
        raise ConnectionError("Failed to resolve 'huggingface.co'\n(several more lines)")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(preflight, "hub_model_info", no_network)
    code, _, err = score(capsys, "--model", "nosuch-org/nosuch-model", "--task", tasks / "mc.jsonl", "--out",
                         tmp_path / "out")
    line = error_line(err)
    assert code == 2 and "the hub cannot be reached (Failed to resolve 'huggingface.co')" in line


def test_unknown_characters_are_warned_about(tmp_path, caplog):
    task = tmp_path / "letters.jsonl"
    task.write_text('{"id": "a", "context": "12+34=", "choices": ["46", "4é6", "4ß6"], "target": 0}\n')
    run.score_models([ModelSpec(str(M0), device="cpu")], [load_task(task)], tmp_path / "out", generate=False)
    warnings = [r.getMessage() for r in caplog.records if "no token for" in r.getMessage()]
    assert len(warnings) == 1
    assert "ladder-00-1k" in warnings[0] and "2 character(s)" in warnings[0] and "'ßé'" in warnings[0]


def test_utf8_bom_task_files_are_read(tmp_path):
    bom = "\ufeff"
    (tmp_path / "a.jsonl").write_text(bom + '{"id": "q", "context": "1+1=", "choices": ["2", "3"], "target": 0}\n',
                                      encoding="utf-8")
    (tmp_path / "task.json").write_text(bom + json.dumps({"name": "b", "examples": [
        {"input": "1+1", "target_scores": {"2": 1, "3": 0}}]}), encoding="utf-8")
    assert load_task(tmp_path / "a.jsonl").items[0].item_id == "q"  # not "\ufeffq", nor a refusal
    assert load_task(tmp_path / "task.json").items[0].choices == ("2", "3")


# ---------------------------------------------------------------------------------------------------- signals

#: Runs the CLI with table writes patched: AFTER_WRITE hangs once the first table is written (the run is then killed
#: with SIGKILL); DURING_WRITE hangs while the temporary file exists (the run then gets SIGINT).
AFTER_WRITE = """
import sys, time, torch
torch.set_num_threads(1)
import logprob.run as run
real = run.write_parquet_atomic
def then_hang(frame, path):
    real(frame, path)
    print("written", flush=True)
    time.sleep(120)
run.write_parquet_atomic = then_hang
from logprob.cli import main
sys.exit(main(sys.argv[1:]))
"""
DURING_WRITE = """
import sys, time, torch
torch.set_num_threads(1)
import polars as pl
real = pl.DataFrame.write_parquet
def hang(self, path, *args, **kwargs):
    real(self, path, *args, **kwargs)
    print("writing", flush=True)
    time.sleep(120)
pl.DataFrame.write_parquet = hang
from logprob.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start(script: str, args: list) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, "score", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_exits_130_with_one_line_and_leaves_no_temporary_file_or_lock(tasks, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model", M0, "--task", tasks / "mc.jsonl", "--out", out]
    proc = _start(DURING_WRITE, args)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert [p.name for p in out.glob(".scores.parquet.tmp-*")]  # caught mid-write
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert last_line(err).startswith("scalelens: interrupted")
    # no table (the first write was cut), no temporary file, no lock; run.json says the run was stopped
    assert [p.name for p in out.iterdir()] == ["run.json"]
    assert json.loads((out / "run.json").read_text())["status"] == "stopped"
    assert score(capsys, *args)[0] == 0 and table(out).height == sum(len(r["choices"]) for r in jsonl(tasks / "mc.jsonl"))


def test_kill_9_then_resume_equals_a_clean_run(tasks, tmp_path, capsys):
    out, ref = tmp_path / "run", tmp_path / "clean"
    args = ["--model", M0, "--model", M1, "--model", M2, "--task", tasks / "mc.jsonl", "--task", tasks / "gen.jsonl",
            "--max-new-tokens", 6]
    proc = _start(AFTER_WRITE, [*args, "--out", out])
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert table(out)["model"].unique().to_list() == ["ladder-00-1k"]  # the first model's scores were saved
    (out / ".scores.parquet.tmp-999999").write_bytes(b"left by a killed run")
    assert score(capsys, *args, "--out", out)[0] == 0
    assert score(capsys, *args, "--out", ref)[0] == 0
    for name in ("scores", "generations"):
        assert table(out, name).equals(table(ref, name))
    assert sorted(p.name for p in out.iterdir()) == ["generations.parquet", "run.json", "scores.parquet"]
