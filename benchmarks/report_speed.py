"""How long the analysis stage takes on a large ladder: the issue-8 target, measured, never asserted.

Two measurements in one run, on synthetic data built here (seeded; no model is run):

1. **Statistics engine**: 10 models × 20 metrics × 10,000 items, 1,000 bootstrap resamples, through
   `metrics.analysis.analyse_curves` (curves with paired replicates, metric intervals, emergence with index intervals
   and resolution, sharp-vs-smooth comparisons, trends, per-item correlations, difficulty slices, shape fits) and
   `write_analysis` (every table, and the figures). Half of the metrics are 0/1 scores, half continuous; each curve
   has a jump somewhere on the ladder. Target: under 30 s on 2 cores.
2. **Whole `scalelens report`** on a synthetic run folder of 10 models × 10,000 four-choice items (a score table
   with token columns and provenance, as `scalelens score` writes it): item metrics from the scores, then everything
   above. Wall time of the `report` command in a fresh process.

    .venv/bin/python benchmarks/report_speed.py --out benchmarks/RESULTS.md
    .venv/bin/python benchmarks/report_speed.py --quick        # 2,000 items, 200 resamples: a smoke run

Writes its section of RESULTS.md between `<!-- report:start -->` and `<!-- report:end -->`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metrics.analysis import analyse_curves, write_analysis  # noqa: E402
from metrics.bootstrap import BootstrapConfig  # noqa: E402
from metrics.curves import item_curves  # noqa: E402
from metrics.registry import METRIC_REGISTRY  # noqa: E402
from metrics.schema import ITEM_METRICS, PROVENANCE, SCORES, SCORES_FILE  # noqa: E402

SIZES = np.round(np.geomspace(1e6, 1e10, 10)).astype(np.int64)  # (n,) non-embedding parameters
TARGET_SECONDS = 30.0


def synthetic_item_metrics(n_items: int, rng: np.random.Generator) -> pl.DataFrame:
    """20 registry metrics over 10 models: the 10 sharp ones are 0/1 scores, the 10 smooth ones continuous; every
    curve is a logistic in log-size whose position varies with item difficulty."""
    sharp = [m for m, i in METRIC_REGISTRY.items() if i.kind == "sharp"][:10]
    smooth = [m for m, i in METRIC_REGISTRY.items() if i.kind == "smooth"][:10]
    t = np.linspace(0.0, 1.0, len(SIZES))  # (n,)
    difficulty = rng.random(n_items)  # (N,)
    frames = []
    for k, name in enumerate(sharp + smooth):
        centre = 0.3 + 0.05 * (k % 8)
        ability = 1 / (1 + np.exp(-12 * (t[:, None] - centre - 0.3 * (difficulty[None] - 0.5))))  # (n, N)
        if name in sharp:
            values = (rng.random(ability.shape) < ability).astype(np.float64)
        else:
            values = ability + rng.normal(scale=0.2, size=ability.shape)
        frames.append(pl.DataFrame({
            "model": np.repeat([f"m{j:02d}" for j in range(len(SIZES))], n_items),
            "params": np.repeat(SIZES * 2, n_items),
            "non_embedding_params": np.repeat(SIZES, n_items),
            "task": "bench",
            "formulation": "default",
            "item_id": np.tile([f"i{i:05d}" for i in range(n_items)], len(SIZES)),
            "metric": name,
            "value": values.reshape(-1),
            "signature": "",
        }))
    return pl.concat(frames).select(list(ITEM_METRICS)).cast(ITEM_METRICS)


def synthetic_run_folder(folder: Path, n_items: int, rng: np.random.Generator) -> None:
    """A score table of 4-choice items with 1–5-token continuations, as `scalelens score` writes it."""
    n_models, n_choices = len(SIZES), 4
    rows = n_models * n_items * n_choices
    ability = np.repeat(np.linspace(-2.0, 2.0, n_models), n_items * n_choices)  # (rows,)
    target = np.tile(np.arange(n_choices) == 0, n_models * n_items)  # (rows,) choice 0 is the answer
    n_tokens = rng.integers(1, 6, size=rows)
    offsets = np.concatenate([[0], np.cumsum(n_tokens)])
    token_lp = -np.abs(rng.normal(loc=1.5 - np.repeat(ability * target, n_tokens) * 0.6, size=offsets[-1]))
    token_rank = np.where(token_lp > -0.7, 1, rng.integers(2, 50, size=offsets[-1])).astype(np.int32)
    logprob = np.add.reduceat(token_lp, offsets[:-1])
    frame = pl.DataFrame({
        "model": np.repeat([f"m{j:02d}" for j in range(n_models)], n_items * n_choices),
        "params": np.repeat(SIZES * 2, n_items * n_choices),
        "non_embedding_params": np.repeat(SIZES, n_items * n_choices),
        "task": "bench_mc",
        "formulation": "default",
        "item_id": np.tile(np.repeat([f"i{i:05d}" for i in range(n_items)], n_choices), n_models),
        "item_kind": "multiple_choice",
        "choice": np.tile(np.arange(n_choices, dtype=np.int32), n_models * n_items),
        "choice_text": np.tile(np.array([" alpha", " beta", " gamma", " delta"]), n_models * n_items),
        "is_target": target,
        "logprob": logprob,
        "n_tokens": n_tokens.astype(np.int32),
        "token_logprobs": pl.Series(np.split(token_lp.astype(np.float32), offsets[1:-1])),
        "token_ranks": pl.Series(np.split(token_rank, offsets[1:-1])),
        "is_greedy": np.minimum.reduceat(token_rank, offsets[:-1]) == 1,
        "n_chars": np.tile(np.array([6, 5, 6, 6], dtype=np.int32), n_models * n_items),
        "n_bytes": np.tile(np.array([6, 5, 6, 6], dtype=np.int32), n_models * n_items),
        "target_score": None,
        "n_truncated": 0,
    })
    provenance = {"model_source": pl.col("model"), "revision": pl.lit(None, pl.String), "dtype": pl.lit("float32"),
                  "model_fingerprint": pl.lit("synthetic") + pl.col("model"), "task_hash": pl.lit("synthetic"),
                  "score_config": pl.lit(json.dumps({"benchmark": "report_speed"})), "step": pl.lit(None),
                  "tokens_seen": pl.lit(None), "token_budget": pl.lit(2048)}
    frame = frame.with_columns(**provenance)
    frame.select(list({**SCORES, **PROVENANCE})).cast({**SCORES, **PROVENANCE}).write_parquet(folder / SCORES_FILE)


def measure(n_items: int, n_resamples: int, workdir: Path) -> dict:
    rng = np.random.default_rng(0)
    items = synthetic_item_metrics(n_items, rng)
    t0 = time.perf_counter()
    curves = item_curves(items, BootstrapConfig(n_resamples=n_resamples))
    result = analyse_curves(curves, items)
    t1 = time.perf_counter()
    write_analysis(result, workdir / "engine", figures=False)
    t2 = time.perf_counter()
    write_analysis(result, workdir / "engine_figs", figures=True)
    t3 = time.perf_counter()

    folder = workdir / "run"
    folder.mkdir()
    synthetic_run_folder(folder, n_items, rng)
    command = [sys.executable, "-m", "logprob.cli", "report", str(folder), "--bootstrap", str(n_resamples)]
    t4 = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    t5 = time.perf_counter()
    if done.returncode != 0:
        raise SystemExit(f"report failed: {done.stderr.strip().splitlines()[-1:]}")
    n_metrics = pl.read_parquet(folder / "metrics.parquet")["metric"].n_unique()
    return {"n_items": n_items, "n_resamples": n_resamples, "n_models": len(SIZES),
            "engine_metrics": items["metric"].n_unique(), "engine_s": t1 - t0, "write_tables_s": t2 - t1,
            "write_with_figures_s": t3 - t2, "report_metrics": n_metrics, "report_s": t5 - t4}


def markdown(r: dict, note: str) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    engine_total = r["engine_s"] + r["write_with_figures_s"]
    met = "met" if engine_total < TARGET_SECONDS else "NOT met"
    return "\n".join([
        "Command: `.venv/bin/python benchmarks/report_speed.py --out benchmarks/RESULTS.md`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}, polars {pl.__version__}, numpy {np.__version__}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load average at the end {load}.",
        "",
        f"Synthetic data, {r['n_models']} models, {r['n_items']:,} items, {r['n_resamples']:,} bootstrap resamples.",
        "",
        "| stage | metrics | seconds |",
        "| --- | --- | --- |",
        f"| statistics engine: curves, intervals, emergence, comparisons, trends, correlations, slices, fits "
        f"| {r['engine_metrics']} | {r['engine_s']:.1f} |",
        f"| writing every table | {r['engine_metrics']} | {r['write_tables_s']:.1f} |",
        f"| writing every table and figure | {r['engine_metrics']} | {r['write_with_figures_s']:.1f} |",
        f"| whole `scalelens report` process on a 4-choice score table (item metrics from scores, everything above, "
        f"printed tables) | {r['report_metrics']} | {r['report_s']:.1f} |",
        "",
        f"Target (reported, not asserted): the statistics of {r['n_models']} models × {r['engine_metrics']} metrics × "
        f"{r['n_items']:,} items with {r['n_resamples']:,} resamples, tables and figures included, under "
        f"{TARGET_SECONDS:.0f} s: {engine_total:.1f} s — {met}.",
        *(["", note] if note else []),
    ])


def write_section(path: Path, text: str) -> None:
    start, end = "<!-- report:start -->", "<!-- report:end -->"
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text}\n{end}"
    new = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S) if start in old \
        else old.rstrip() + "\n\n## Analysis stage: `report_speed.py`\n\n" + block + "\n"
    path.write_text(new)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 items and 200 resamples")
    parser.add_argument("--out", type=Path, help="RESULTS.md to update")
    parser.add_argument("--note", default="", help="a line appended to the section")
    args = parser.parse_args(argv)
    n_items, n_resamples = (2000, 200) if args.quick else (10_000, 1000)
    with tempfile.TemporaryDirectory(prefix="scalelens-report-bench-") as tmp:
        result = measure(n_items, n_resamples, Path(tmp))
    text = markdown(result, args.note)
    print(text)
    if args.out:
        write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
