"""Data parallel scoring: the rank plan, the protocol between ranks (two ranks simulated as two threads of this
process, fast), and two real CPU processes under torchrun on the gloo backend (slow: marked, and still run by
default). Every table is compared with one process's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import pytest

import logprob.model
import logprob.score
from logprob import run
from logprob.config import ModelSpec, ScoreConfig
from logprob.distributed import World, generation_costs, launched_size, plan_shares, scoring_costs
from logprob.ladder import ADDITION_GEN_TASK, ADDITION_MC_TASK, LADDER_DIR
from logprob.model import ModelLoadError
from logprob.tasks import Item, Task, load_task

M0, M1, M2 = (LADDER_DIR / name for name in ("ladder-00-1k", "ladder-01-4k", "ladder-02-19k"))
REPO = Path(__file__).resolve().parents[1]
#: Columns that must be bit-identical whatever the number of processes; the log-probs are compared at 1e-5.
FLOAT_COLUMNS = ("logprob", "token_logprobs")


# ---------------------------------------------------------------------------------------------------- the plan


def test_plan_by_hand():
    # costs 9, 7, 5, 3, 2 longest first: 9 → r0, 7 → r1, 5 → r1 (7 < 9), 3 → r0 (9 < 12), 2 → r0 (tie: lower rank)
    assert plan_shares([5, 9, 2, 7, 3], 2) == [[1, 2, 4], [0, 3]]
    assert plan_shares([5, 9, 2, 7, 3], 1) == [[0, 1, 2, 3, 4]]
    assert plan_shares([4, 4], 3) == [[0], [1], []]  # the third rank gets nothing (and must not hang: below)
    assert plan_shares([], 2) == [[], []]


@pytest.mark.parametrize("seed", range(20))
def test_plan_puts_every_piece_on_one_rank_and_balances_tokens(seed):
    rng = np.random.default_rng(seed)
    n_ranks = int(rng.integers(1, 9))
    costs = rng.integers(1, 500, size=int(rng.integers(0, 200))).tolist()
    shares = plan_shares(costs, n_ranks)
    assert len(shares) == n_ranks
    assert sorted(i for s in shares for i in s) == list(range(len(costs)))  # each piece exactly once
    loads = [sum(costs[i] for i in s) for s in shares]
    # the greedy rule's guarantee: the most loaded rank got its last piece while it was the least loaded one
    assert max(loads) - min(loads) <= max(costs, default=0)
    assert plan_shares(costs, n_ranks) == shares  # the same on every rank: no randomness, no timing


class Chars:
    """A toy tokenizer: one token per character (ids are code points), BOS 1."""

    bos_token_id, eos_token_id = 1, 2

    def decode(self, ids):
        return "<s>"

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


def test_piece_costs_by_hand():
    items = [Item("a", "Q: 1+1 ", choices=("2", "30"), target=0), Item("b", "xy", references=(" z",))]
    # a: the trailing space moves to each continuation: context "Q: 1+1" (6) + " 2" (2) + " 30" (3) = 11;
    # b: "xy" (2) + " z" (2) = 4; with max_length 4 every part is capped at 4: 4 + 2 + 3 = 9
    assert scoring_costs(Chars(), items, max_length=100) == [11, 4]
    assert scoring_costs(Chars(), items, max_length=4) == [9, 4]
    # generation: the prompt as written (7 and 2 characters) plus max_new_tokens 5, the prompt capped at 10 - 5
    assert generation_costs(Chars(), items, max_length=10, max_new_tokens=5) == [10, 7]


def test_launched_size_reads_the_launchers_variables():
    assert launched_size({"WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == 4
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    assert launched_size({}) == 1


def test_rows_from_ranks_are_put_back_in_item_order():
    task = Task("t", (Item("q", "c", choices=("a", "b"), target=0), Item("p", "c", choices=("a",), target=0),
                      Item("r", "c", references=("x",))))
    unit = run.Unit(None, task, "h", True, True)

    def rows(ids, choices):
        return pl.DataFrame({"item_id": ids, "choice": choices}, schema={"item_id": pl.String, "choice": pl.Int32})

    rank0 = (rows(["p", "r"], [0, 0]), pl.DataFrame({"item_id": ["r"]}))
    rank1 = (rows(["q", "q"], [1, 0]), None)  # a share without generative items
    scores, gens = run._in_item_order(unit, [rank0, rank1])
    assert scores.rows() == [("q", 0), ("q", 1), ("p", 0), ("r", 0)]  # the task's item order, then choices
    assert gens["item_id"].to_list() == ["r"]


# ---------------------------------------------------------------------------------------------------- two ranks
# as two threads of this process: the same protocol, collectives through a barrier


class Exchange:
    """Collectives for ranks running as threads: every rank puts its object, waits, reads all of them."""

    def __init__(self, size: int) -> None:
        self.barrier = threading.Barrier(size, timeout=60)  # a protocol mismatch breaks the barrier, never hangs
        self.slots: list = [None] * size

    def swap(self, rank: int, obj) -> list:
        self.slots[rank] = obj
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()
        return out


@dataclass(frozen=True)
class ThreadWorld(World):
    exchange: Exchange | None = None

    def broadcast(self, obj):
        return self.exchange.swap(self.rank, obj)[0]

    def gather(self, obj):
        out = self.exchange.swap(self.rank, obj)
        return out if self.is_main else None

    def all_gather(self, obj):
        return self.exchange.swap(self.rank, obj)


@pytest.fixture(autouse=True)
def one_load_at_a_time(monkeypatch):
    """transformers' loading is not thread-safe (two threads loading at once left a tied head untied), so thread
    ranks load one after the other; real ranks are processes."""
    real, lock = logprob.model.load_model, threading.Lock()

    def load(spec):
        with lock:
            return real(spec)

    monkeypatch.setattr(logprob.model, "load_model", load)


def in_threads(size: int, target) -> list:
    """target(world) on `size` thread ranks; each rank's return value or exception, in rank order."""
    exchange = Exchange(size)
    out: list = [None] * size

    def body(rank):
        try:
            out[rank] = target(ThreadWorld(rank, size, 0, size, "cpu", "threads", exchange))
        except BaseException as e:  # noqa: BLE001 - returned for the test to inspect
            out[rank] = e

    threads = [threading.Thread(target=body, args=(r,), name=f"rank{r}") for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


@pytest.fixture
def tasks(tmp_path) -> tuple[Path, Path, Path]:
    """mc.jsonl (6 multiple-choice items), gen.jsonl (3 generative items), one.jsonl (1 generative item)."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    gen_lines = ADDITION_GEN_TASK.read_text().splitlines(True)
    (folder / "mc.jsonl").write_text("".join(ADDITION_MC_TASK.read_text().splitlines(True)[:6]))
    (folder / "gen.jsonl").write_text("".join(gen_lines[:3]))
    (folder / "one.jsonl").write_text(gen_lines[3])
    return folder / "mc.jsonl", folder / "gen.jsonl", folder / "one.jsonl"


CONFIG = ScoreConfig(max_new_tokens=6)


def assert_same_table(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Row for row: every column equal, the log-probs within 1e-5 (a rank's passes hold other neighbours)."""
    assert got.columns == want.columns and got.height == want.height
    exact = [c for c in got.columns if c not in FLOAT_COLUMNS]
    assert got.select(exact).equals(want.select(exact))
    if "logprob" in got.columns:
        np.testing.assert_allclose(got["logprob"].to_numpy(), want["logprob"].to_numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(got["token_logprobs"].explode().to_numpy(),
                                   want["token_logprobs"].explode().to_numpy(), atol=1e-5, rtol=0)


def test_two_ranks_write_what_one_process_writes(tasks, tmp_path):
    mc, gen, _ = tasks
    loaded = [load_task(p) for p in (mc, gen)]
    specs = [ModelSpec(str(M0), device="cpu"), ModelSpec(str(M1), device="cpu")]
    ref, out = tmp_path / "one-process", tmp_path / "two-ranks"
    run.score_models(specs, loaded, ref, CONFIG)
    results = in_threads(2, lambda world: run.score_models(specs, loaded, out, CONFIG, world=world))
    assert not any(isinstance(r, BaseException) for r in results), results
    for name in ("scores", "generations"):  # row for row, in the same order
        assert_same_table(pl.read_parquet(out / f"{name}.parquet"), pl.read_parquet(ref / f"{name}.parquet"))
    record = json.loads((out / "run.json").read_text())
    assert record["world_size"] == 2 and record["status"] == "done"
    rows = [json.loads(line) for path in (mc, gen) for line in path.read_text().splitlines()]
    # every choice and every reference is scored, and every generative item generated once
    n_requests = sum(len(r.get("choices", [])) + len(r.get("references", [])) + ("references" in r) for r in rows)
    for model in record["models"]:
        assert min(r["requests"] for r in model["ranks"]) > 0 and min(r["tokens"] for r in model["ranks"]) > 0
        assert sum(r["requests"] for r in model["ranks"]) == n_requests
    assert [r["requests"] for r in record["ranks"]] == [sum(m["ranks"][k]["requests"] for m in record["models"])
                                                        for k in (0, 1)]


def test_a_rank_with_nothing_to_do_does_not_hang_the_others(tasks, tmp_path):
    _, _, one = tasks
    specs, loaded = [ModelSpec(str(M0), device="cpu")], [load_task(one)]
    ref, out = tmp_path / "one-process", tmp_path / "two-ranks"
    run.score_models(specs, loaded, ref, CONFIG)
    results = in_threads(2, lambda world: run.score_models(specs, loaded, out, CONFIG, world=world))
    assert not any(isinstance(r, BaseException) for r in results), results
    for name in ("scores", "generations"):
        assert_same_table(pl.read_parquet(out / f"{name}.parquet"), pl.read_parquet(ref / f"{name}.parquet"))
    ranks = json.loads((out / "run.json").read_text())["models"][0]["ranks"]
    assert [(r["requests"], r["tokens"] > 0) for r in ranks] == [(2, True), (0, False)]  # one item: scored, generated


def test_an_error_on_one_rank_stops_every_rank_with_its_line(tasks, tmp_path, monkeypatch):
    mc, _, _ = tasks
    real = logprob.score.score_items

    def fails_on_rank1(*args, **kwargs):
        if threading.current_thread().name == "rank1":
            raise ValueError("item 'x': something only rank 1 saw")
        return real(*args, **kwargs)

    monkeypatch.setattr(logprob.score, "score_items", fails_on_rank1)
    results = in_threads(2, lambda w: run.score_models([ModelSpec(str(M0), device="cpu")], [load_task(mc)],
                                                       tmp_path / "out", CONFIG, world=w))
    assert all(isinstance(r, run.RankFailed) for r in results), results
    assert {str(r) for r in results} == {"item 'x': something only rank 1 saw"}
    assert not (tmp_path / "out" / "scores.parquet").exists()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "stopped"


def test_a_model_one_rank_cannot_load_is_skipped_by_every_rank(tasks, tmp_path, monkeypatch):
    mc, _, _ = tasks
    real = logprob.model.load_model

    def rank1_cannot_load_m1(spec):
        if threading.current_thread().name == "rank1" and Path(spec.name_or_path).name == M1.name:
            raise ModelLoadError(f"--model {spec.name_or_path}: could not load the model (out of memory)")
        return real(spec)

    monkeypatch.setattr(logprob.model, "load_model", rank1_cannot_load_m1)
    specs = [ModelSpec(str(m), device="cpu") for m in (M0, M1, M2)]
    results = in_threads(2, lambda w: run.score_models(specs, [load_task(mc)], tmp_path / "out", CONFIG, world=w))
    assert all(isinstance(r, run.ModelsFailed) for r in results), results
    assert [label for label, _ in results[0].result.failed] == [M1.name]
    assert set(pl.read_parquet(tmp_path / "out" / "scores.parquet")["model"]) == {M0.name, M2.name}
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [m["status"] for m in record["models"]] == ["scored", "failed", "scored"]
    assert record["status"] == "partial" and "out of memory" in record["models"][1]["error"]


# ---------------------------------------------------------------------------------------------------- processes


def torchrun(args: list, *, script: Path | None = None, **popen) -> subprocess.Popen:
    """`torchrun --standalone --nproc_per_node 2` of the scalelens command (or of `script`), two CPU processes."""
    target = [str(script)] if script else ["-m", "logprob.cli"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *target, "score",
           *map(str, args)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def finished(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


@pytest.mark.slow
def test_two_processes_under_torchrun_write_the_table_of_one_process(tasks, tmp_path):
    mc, gen, one = tasks
    args = ["--task", mc, "--task", gen, "--task", one, "--max-new-tokens", 6, "--device", "cpu"]
    ref, out = tmp_path / "one-process", tmp_path / "two-processes"
    specs = [ModelSpec(str(M0), device="cpu"), ModelSpec(str(M1), device="cpu")]
    loaded = [load_task(p) for p in (mc, gen, one)]
    run.score_models(specs[1:], loaded[:2], out, CONFIG)  # so two processes resume a one-process folder, and M1 has
    proc = torchrun(["--model", M0, "--model", M1, *args, "--out", out])  # a single item left: rank 1 idles on it
    run.score_models(specs, loaded, ref, CONFIG)  # meanwhile, the reference in this process
    code, printed, err = finished(proc)
    assert code == 0, err
    assert printed.count("wrote") == 1  # rank 0 alone speaks
    for name, keys in (("scores", ["model", "task", "item_id", "choice"]), ("generations", ["model", "task", "item_id"])):
        got, want = pl.read_parquet(out / f"{name}.parquet"), pl.read_parquet(ref / f"{name}.parquet")
        m0 = pl.col("model") == M0.name
        assert_same_table(got.filter(m0), want.filter(m0))  # the model scored by two processes: in the same order
        assert_same_table(got.sort(keys), want.sort(keys))  # M1: its earlier rows, then the new task's
    record = json.loads((out / "run.json").read_text())
    assert (record["world_size"], record["backend"], record["device"]) == (2, "gloo", "cpu")
    m0, m1 = record["models"]
    assert min(r["tokens"] for r in m0["ranks"]) > 0 and min(r["requests"] for r in m0["ranks"]) > 0
    assert [r["requests"] for r in m1["ranks"]] == [2, 0]  # an idle rank, and the run finished
    assert [r["tokens"] for r in record["ranks"]] == [m0["ranks"][k]["tokens"] + m1["ranks"][k]["tokens"]
                                                      for k in (0, 1)]


HANG_AFTER_FIRST_WRITE = """
import sys, time
import logprob.run as run
real = run.write_parquet_atomic
def then_hang(frame, path):
    real(frame, path)
    print("written", flush=True)
    time.sleep(300)
run.write_parquet_atomic = then_hang
from logprob.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_killed_two_process_run_resumes(tasks, tmp_path):
    mc, _, _ = tasks
    script = tmp_path / "hang.py"
    script.write_text(HANG_AFTER_FIRST_WRITE)
    out, ref = tmp_path / "run", tmp_path / "reference"
    args = ["--model", M0, "--model", M1, "--task", mc, "--device", "cpu", "--out", out]
    proc = torchrun(args, script=script)
    try:
        assert proc.stdout.readline().strip() == "written", proc.stderr.read() if proc.poll() is not None else ""
    finally:  # kill -9 the launcher and both ranks (torchrun starts each rank in a session of its own)
        for child in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            child.send_signal(signal.SIGKILL)
        proc.communicate()
    assert pl.read_parquet(out / "scores.parquet")["model"].unique().to_list() == [M0.name]
    proc = torchrun(args)
    run.score_models([ModelSpec(str(m), device="cpu") for m in (M0, M1)], [load_task(mc)], ref, CONFIG)
    code, _, err = finished(proc)
    assert code == 0, err
    assert_same_table(pl.read_parquet(out / "scores.parquet"), pl.read_parquet(ref / "scores.parquet"))
    record = json.loads((out / "run.json").read_text())
    assert [m["status"] for m in record["models"]] == ["reused", "scored"] and record["world_size"] == 2


def test_one_process_forms_no_process_group(tasks, tmp_path, monkeypatch):
    """Started alone, scoring joins nothing: no launcher variables, no process group, no PartialState."""
    import torch.distributed as dist

    from logprob.cli import main

    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    mc, _, _ = tasks
    assert main(["score", "--model", str(M0), "--task", str(mc), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert not dist.is_initialized()
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (record["world_size"], record["backend"], record["device"]) == (1, None, "cpu")
