"""Scorer throughput and model FLOP utilisation on one CUDA GPU, bfloat16, against lm-eval's HFLM.

    .venv/bin/python benchmarks/gpu.py --out benchmarks/RESULTS.md          # about 5 minutes on an H200

Steps, each written to `--out` as soon as it finishes (a `timeout` kill keeps what was done):

1. bfloat16 check: a Pythia-70m-shaped random model scored by scalelens in bfloat16 on the GPU against float32 on
   the CPU, on the quick workloads of `throughput.py`: summed log-probs within `BF16_RTOL` relative, and the
   is_greedy agreement rate (bfloat16 may flip a near tie, so a rate, not an equality).
2. Peak: the bfloat16 matmul rate measured here (a loop of large square matmuls), the denominator of MFU.
3. Throughput: Pythia-1.4b- and 6.9b-shaped GPT-NeoX models with random bfloat16 weights, built directly on the GPU
   (no checkpoint on disk), scored by scalelens and, where lm_eval is installed, by `HFLM.loglikelihood` on the
   workloads (a), (b), (c) of `throughput.py`, enlarged.
4. Data-parallel scaling (a machine with several GPUs): the Pythia-1.4b shape saved as a checkpoint, workload (a)
   with `--dp-items` items as a task file, and the whole `scalelens score` command timed alone (one GPU) and under
   `torchrun --nproc_per_node N` (N = `--dp-procs`, default every GPU). Reported: wall time of each command, the
   scoring time (from `run.json`: the slowest rank's seconds), the speed-up and efficiency (speed-up / N) of both,
   the tokens of the least and most loaded rank, and the agreement of the two score tables (bfloat16, as in step 1).

MFU = 2·N·tokens / seconds / peak (Kaplan et al. 2020, arXiv:2001.08361, section 2.1: a forward pass costs about
2N FLOPs per token; attention's sequence-length term is ignored, small at these lengths). N counts every matmul
weight a full forward pass uses: all parameters minus the input embedding, which is a lookup; tokens are counted as
in `throughput.py` (context + continuation, lm-eval's encoding). It is model FLOPs utilisation: work a method skips
(the output head at context positions, a shared context) still counts as done, as in the PaLM paper's definition.

Without CUDA the script stops with a message; `--device cpu` runs the same logic on tiny shapes (numbers
meaningless) so it can be checked on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402  (sibling script: workloads, checkpoint, agreement, markdown sections)

#: bfloat16 has 8 significant bits (relative spacing 2**-8 ≈ 0.004); errors of many tokens partly cancel in a sum.
BF16_RTOL = 0.05
#: Fraction of requests whose is_greedy must match float32 for the check to pass.
GREEDY_AGREEMENT_MIN = 0.95

SHAPES = {
    # EleutherAI/pythia-1.4b and pythia-6.9b config.json (vocab 50,304, rotary on a quarter of each head, untied).
    "1.4b": dict(tp.PYTHIA_70M, hidden_size=2048, num_hidden_layers=24, num_attention_heads=16,
                 intermediate_size=8192),
    "6.9b": dict(tp.PYTHIA_70M, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                 intermediate_size=16384),
    # for --device cpu: checks the logic only
    "tiny": dict(tp.PYTHIA_70M, vocab_size=4096, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=256),  # fmt: skip
}
#: GPU workload sizes (items for (a) and (c), requests for (b), (b) length range): about 4× throughput.py's FULL.
GPU_SIZES = (480, 160, (200, 400))
CPU_SIZES = (8, 4, (40, 60))
#: Items of workload (a) for the data-parallel step: enough that every one of 8 GPUs scores for seconds, not
#: milliseconds (about 1.9M tokens).
DP_ITEMS_GPU, DP_ITEMS_CPU = 15360, 24


def mfu(matmul_params: int, tokens: int, seconds: float, peak_flops: float) -> float:
    """Model FLOP utilisation: 2·N·tokens / seconds / peak.

    >>> mfu(matmul_params=10**9, tokens=1000, seconds=2.0, peak_flops=10**12)  # 2e12 FLOPs in 2 s of a 1e12 peak
    1.0
    """
    if seconds <= 0 or peak_flops <= 0:
        raise ValueError(f"seconds and peak_flops: expected > 0, got {seconds} and {peak_flops}")
    return 2 * matmul_params * tokens / seconds / peak_flops


def matmul_params(model) -> int:
    """Parameters a full forward pass multiplies with: all, minus the input embedding (a table lookup)."""
    inp = {id(p) for p in model.get_input_embeddings().parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in inp)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak(device, sizes: Sequence[int], iters: int) -> float:
    """The best bfloat16 matmul rate (FLOP/s) over square sizes: 2·n³ per product, after one warm-up product."""
    import torch

    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        a @ b
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - t0))
        del a, b
    return best


def bf16_agreement(f32: list[tuple[float, bool]], bf16: list[tuple[float, bool]]) -> dict:
    """Largest relative |Δ| of summed log-probs, the share within BF16_RTOL, and the is_greedy agreement rate.

    >>> r = bf16_agreement([(-10.0, False), (-4.0, True)], [(-10.5, False), (-4.0, False)])
    >>> r["max_rel"], r["within"], r["greedy_agree"]
    (0.05, 1.0, 0.5)
    """
    if len(f32) != len(bf16) or not f32:
        raise ValueError(f"results: expected two equal, non-empty lists, got {len(f32)} and {len(bf16)}")
    rel = [abs(b - a) / max(abs(a), 1e-12) for (a, _), (b, _) in zip(f32, bf16, strict=True)]
    return {
        "max_rel": max(rel),
        "within": sum(r <= BF16_RTOL + 1e-12 for r in rel) / len(rel),
        "greedy_agree": sum(ga == gb for (_, ga), (_, gb) in zip(f32, bf16, strict=True)) / len(rel),
        "n": len(rel),
    }


def scalelens_runner(loaded):
    from logprob.config import ScoreConfig
    from logprob.score import score_items

    def run(w: tp.Workload) -> list[tuple[float, bool]]:
        return tp.scalelens_results(score_items(loaded, w.to_items(), ScoreConfig()), w)

    return run


def lm_eval_runner(model, tokenizer, batch_size: int):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)

    def run(w: tp.Workload) -> list[tuple[float, bool]]:
        reqs = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(w.requests())]
        return [(float(lp), bool(g)) for lp, g in lm.loglikelihood(reqs, disable_tqdm=True)]

    return run


def timed(run, w: tp.Workload, device) -> tuple[list[tuple[float, bool]], float, float]:
    """(results, seconds, peak accelerator memory in GiB, NaN on CPU) of one call, after a warm-up on 8 items."""
    import torch

    run(tp.Workload("warmup", "", w.items[:8], w.generative))  # kernels chosen, caches allocated: not timed
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    results = run(w)
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return results, seconds, peak


def random_model(shape: dict, device, seed: int = tp.SEED):
    """A GPT-NeoX of `shape` with random bfloat16 weights, allocated on `device` directly."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(**shape, bos_token_id=0, eos_token_id=0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = GPTNeoXForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def loaded_in_memory(model, tokenizer, name: str):
    """A `LoadedModel` around a model built in memory: what `load_model` returns, minus the disk round trip."""
    from logprob.model import LoadedModel, count_parameters, max_length_of

    total, non_embedding = count_parameters(model)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, revision=None, device=model.device,
                       dtype=next(model.parameters()).dtype, params=total, non_embedding_params=non_embedding,
                       max_length=max_length_of(model.config, tokenizer))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------


def data_parallel(tmp: Path, shape: str, n_items: int, n_procs: int, device, tokenizer_dir: Path) -> dict:
    """Step 4 (module docstring): one `scalelens score` process against `n_procs` under torchrun, same checkpoint,
    same task file; raises if either command fails."""
    import subprocess

    import polars as pl
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    path = tmp / f"pythia-{shape}-random"
    model = random_model(SHAPES[shape], device)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    w = tp.make_workloads(tokenizer, (n_items, 1, (8, 16)))["a"]
    task, _ = tp.write_task_files(w, tmp / "dp-task")
    on_gpu = device.type == "cuda"
    options = ["--no-generate", "--dtype", "bfloat16" if on_gpu else "float32", "--device", "cuda" if on_gpu else "cpu"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    rows, tables = [], []
    for n in (1, n_procs):
        out = tmp / f"dp-out-{n}"
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                     "-m", "logprob.cli"] if n > 1 else tp.scalelens_command())  # fmt: skip
        cmd = [*launcher, "score", "--model", str(path), "--task", str(task), "--out", str(out), *options]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=tp.REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        ranks = json.loads((out / "run.json").read_text())["models"][0]["ranks"]
        rows.append({"n": n, "wall": wall, "scoring": max(r["seconds"] for r in ranks),
                     "rank_tokens": [r["tokens"] for r in ranks], "command": shlex.join(cmd)})
        tables.append(pl.read_parquet(out / "scores.parquet"))
        print(f"data parallel: {n} process(es) done in {wall:.0f} s", file=sys.stderr, flush=True)
    one, many = ([(lp, g) for lp, g in t.select("logprob", "is_greedy").iter_rows()] for t in tables)
    return {"shape": shape, "items": n_items, "tokens": tp.lm_eval_token_count(tokenizer, w.requests()),
            "n": n_procs, "rows": rows, "agreement": bf16_agreement(one, many)}


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['gpu']}; {m['cpu']}; torch {m['torch']}, transformers {m['transformers']}, "
        f"lm_eval {m['lm_eval']}; {m['date']}.",
        "",
    ]
    if "bf16" in report:
        lines += [f"bfloat16 ({report['bf16']['device']}) vs float32 (CPU), Pythia-70m shape, quick workloads "
                  f"(pass: every summed log-prob within {BF16_RTOL:g} relative, is_greedy agreement ≥ "
                  f"{GREEDY_AGREEMENT_MIN:g}):", "",
                  "| workload | requests | max relative Δ | share within | is_greedy agreement |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name, r in report["bf16"]["workloads"].items():
            lines.append(f"| {name} | {r['n']} | {r['max_rel']:.2e} | {r['within']:.3f} | {r['greedy_agree']:.3f} |")
        lines += ["", f"bfloat16 check: {'PASS' if report['bf16']['ok'] else 'FAIL'}", ""]
    if "peak" in report:
        lines += [f"Measured bfloat16 matmul peak: {report['peak'] / 1e12:.3g} TFLOP/s.", ""]
    if report.get("runs"):
        lines += ["| model | workload | tokens | method | seconds | tokens/s | MFU | × lm-eval "
                  "| peak GiB (weights incl.) |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in report["runs"]:
            ratio = f"{r['lm_eval_seconds'] / r['seconds']:.2f}" if r.get("lm_eval_seconds") else "–"
            lines.append(
                f"| {r['model']} | ({r['workload']}) {r['description']} | {r['tokens']:,} | {r['method']} | "
                f"{r['seconds']:.2f} | {r['tokens'] / r['seconds']:,.0f} | {r['mfu']:.1%} | {ratio} | "
                f"{r['peak_gib']:.1f} |"
            )
        lines.append("")
    if report.get("dp"):
        dp = report["dp"]
        lines += [f"Data parallel: `{dp['shape']}` shape, workload (a) with {dp['items']:,} items ({dp['tokens']:,} "
                  f"tokens), `scalelens score --no-generate` alone and under `torchrun --nproc_per_node "
                  f"{dp['n']}`:", "",
                  "| processes | wall s (whole command) | scoring s (slowest rank) | speed-up wall | speed-up scoring "
                  "| efficiency scoring | tokens per rank, min–max (run.json: a context once per item) |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in dp["rows"]:
            lines.append(f"| {row['n']} | {row['wall']:.1f} | {row['scoring']:.2f} | "
                         f"{dp['rows'][0]['wall'] / row['wall']:.2f} | {dp['rows'][0]['scoring'] / row['scoring']:.2f} "
                         f"| {dp['rows'][0]['scoring'] / row['scoring'] / row['n']:.0%} | "
                         f"{min(row['rank_tokens']):,}–{max(row['rank_tokens']):,} |")
        agree = dp["agreement"]
        lines += ["", f"Tables of 1 and {dp['n']} processes: {agree['n']} rows, max relative Δ logprob "
                      f"{agree['max_rel']:.1e}, is_greedy agreement {agree['greedy_agree']:.3f}.", ""]
    for note in report["notes"]:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help="markdown file; its `gpu` section is (re)written after each step")
    p.add_argument("--json", type=Path, default=None, help="also write the raw numbers as JSON")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a logic check on tiny shapes")
    p.add_argument("--shapes", nargs="+", default=None, choices=list(SHAPES), help="default: 1.4b 6.9b (tiny on cpu)")
    p.add_argument("--lm-eval-batch", type=int, default=64, help="lm-eval batch size (default 64)")
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds; no further model or workload is started past it (default 420)")
    p.add_argument("--dp-procs", type=int, default=None,
                   help="processes for the data-parallel step (default: every GPU; 2 with --device cpu); 0 skips it")
    p.add_argument("--dp-items", type=int, default=None,
                   help=f"items of workload (a) for the data-parallel step (default {DP_ITEMS_GPU} on GPUs)")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local paths and in-memory models only: never wait on a network
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu.py: needs a CUDA device, and torch {torch.__version__} sees none "
              "(use --device cpu to check the logic on tiny shapes)", file=sys.stderr)  # fmt: skip
        return 2
    on_gpu = device.type == "cuda"
    shapes = args.shapes or (["1.4b", "6.9b"] if on_gpu else ["tiny"])
    has_lm_eval = importlib.util.find_spec("lm_eval") is not None
    start = time.perf_counter()
    import transformers
    from transformers import AutoTokenizer

    report = {
        "command": shlex.join(["python", "benchmarks/gpu.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "gpu": torch.cuda.get_device_name(device) if on_gpu else "no GPU (--device cpu: logic check only)",
            "cpu": tp.machine_cpu(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "lm_eval": __import__("lm_eval").__version__ if has_lm_eval else "not installed",
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        },
        "runs": [],
        "notes": [],
    }

    def save() -> None:
        text = render(report)
        if args.out:
            tp.write_section(args.out, "gpu", text)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1, default=str))

    with tempfile.TemporaryDirectory(prefix="scalelens-gpu-") as tmp:
        from logprob.config import ModelSpec
        from logprob.model import load_model

        torch.set_num_threads(min(8, torch.get_num_threads()))
        small = tp.build_checkpoint(Path(tmp) / "pythia-70m-random", tp.PYTHIA_70M)
        tokenizer = AutoTokenizer.from_pretrained(small)
        quick = {k: w for k, w in tp.make_workloads(tokenizer, tp.QUICK).items() if not w.generate}  # (a)–(c)

        # 1. bfloat16 on the device against float32 on the CPU
        ref = scalelens_runner(load_model(ModelSpec(str(small), device="cpu", dtype="float32")))
        test = scalelens_runner(load_model(ModelSpec(str(small), device=str(device), dtype="bfloat16")))
        stats = {name: bf16_agreement(ref(w), test(w)) for name, w in quick.items()}
        ok = all(s["within"] == 1.0 and s["greedy_agree"] >= GREEDY_AGREEMENT_MIN for s in stats.values())
        report["bf16"] = {"device": str(device), "workloads": stats, "ok": ok}
        save()
        print(render(report), flush=True)

        # 2. the denominator of MFU
        report["peak"] = measure_peak(device, (8192, 16384) if on_gpu else (256,), iters=20 if on_gpu else 3)
        save()

        # 3. big shapes: scalelens and lm-eval on the same requests
        workloads = {k: w for k, w in tp.make_workloads(tokenizer, GPU_SIZES if on_gpu else CPU_SIZES).items()
                     if not w.generate}  # scoring workloads (a)–(c)
        tokens = {name: tp.lm_eval_token_count(tokenizer, w.requests()) for name, w in workloads.items()}
        for shape in shapes:
            if time.perf_counter() - start > args.budget:
                report["notes"].append(f"{shape}: skipped, past the {args.budget:.0f} s budget")
                break
            model = random_model(SHAPES[shape], device)
            n_matmul = matmul_params(model)
            runners = {"scalelens": scalelens_runner(loaded_in_memory(model, tokenizer, f"pythia-{shape}-random"))}
            if has_lm_eval:
                # lm-eval sets a pad token on the tokenizer it is given: give it its own copy
                runners["lm-eval"] = lm_eval_runner(model, AutoTokenizer.from_pretrained(small), args.lm_eval_batch)
            for name, w in workloads.items():
                if time.perf_counter() - start > args.budget:
                    report["notes"].append(f"{shape} ({name}) and later: skipped, past the {args.budget:.0f} s budget")
                    break
                got = {}
                for method, run in runners.items():
                    results, seconds, peak_gib = timed(run, w, device)
                    got[method] = results
                    report["runs"].append({"model": f"pythia-{shape} (random)", "workload": name,
                                           "description": w.description, "tokens": tokens[name], "method": method + (
                                               f" (batch {args.lm_eval_batch})" if method == "lm-eval" else ""),
                                           "seconds": seconds, "peak_gib": peak_gib,
                                           "mfu": mfu(n_matmul, tokens[name], seconds, report["peak"])})  # fmt: skip
                if "lm-eval" in got:
                    lm_row = report["runs"][-1]
                    for row in report["runs"][-len(got):]:
                        row["lm_eval_seconds"] = lm_row["seconds"]
                    agree = bf16_agreement(got["lm-eval"], got["scalelens"])
                    report["notes"].append(
                        f"pythia-{shape} ({name}): scalelens vs lm-eval, both bfloat16: max relative Δ "
                        f"{agree['max_rel']:.1e}, is_greedy agreement {agree['greedy_agree']:.3f}")  # fmt: skip
                save()
                print(f"{shape} ({name}) done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            del runners, model
            gc.collect()
            if on_gpu:
                torch.cuda.empty_cache()
        # 4. data parallel: one process against N, whole commands
        n_procs = args.dp_procs if args.dp_procs is not None else (torch.cuda.device_count() if on_gpu else 2)
        if n_procs < 2:
            report["notes"].append(f"data parallel: skipped ({n_procs} process(es); it needs a machine with several "
                                   "GPUs, or --dp-procs N)")
        elif time.perf_counter() - start > args.budget:
            report["notes"].append(f"data parallel: skipped, past the {args.budget:.0f} s budget")
        else:
            shape = "1.4b" if on_gpu else "tiny"
            items = args.dp_items or (DP_ITEMS_GPU if on_gpu else DP_ITEMS_CPU)
            report["dp"] = data_parallel(Path(tmp), shape, items, n_procs, device, small)
            save()
    report["notes"].append(f"total wall time {time.perf_counter() - start:.0f} s")
    save()
    print(render(report))
    return 0 if report["bf16"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
