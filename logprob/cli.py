"""The `scalelens` command. The only module that prints; everything it shows comes from the library's tables."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sacrebleu.metrics import BLEU

from logprob.config import DEVICES, DTYPES, ModelSpec, ScoreConfig, parse_max_memory
from logprob.preflight import one_line

console = Console(markup=False)  # names such as "addition_gen [direct]" are text, never style tags
err_console = Console(stderr=True, markup=False)


# ----------------------------------------------------------------------------------------------------------------------
# progress


@contextmanager
def model_progress():
    """A rich progress bar per model; yields a `run.ProgressFactory`."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:

        def factory(info):
            desc = f"[{info.index + 1}/{info.n_models}] {info.model}"
            if info.world_size > 1 and not info.skipped:
                desc += f" (rank 0's share; {info.world_size} processes)"
            if info.skipped:
                bar.add_task(f"{desc} (already scored: same checkpoint, tasks, settings)", total=info.n_requests,
                             completed=info.n_requests)
                return lambda n: None
            task_id = bar.add_task(desc, total=info.n_requests)
            return lambda n: bar.advance(task_id, n)

        yield factory


# ----------------------------------------------------------------------------------------------------------------------
# commands


def _score_config(args) -> ScoreConfig:
    return ScoreConfig(token_budget=args.token_budget, max_length=args.max_length, max_new_tokens=args.max_new_tokens)


def _specs(args) -> list[ModelSpec]:
    """--ladder's models, then each --model (ID@REVISION split off), with the run's loading options."""
    from logprob.checkpoints import LadderEntry, read_ladder, split_revision
    from logprob.preflight import is_local_path

    entries = read_ladder(args.ladder) if args.ladder else []
    entries += [LadderEntry(*split_revision(m, is_local_path)) for m in args.model or []]
    if not entries:
        raise ValueError("--model / --ladder: give the models to score (--model ID[@REVISION] or PATH, repeatable; "
                         "or --ladder NAME or FILE.toml)")
    max_memory = parse_max_memory(args.max_memory)
    specs = []
    for e in entries:
        revision = e.revision
        if args.revision is not None:
            if revision is not None and revision != args.revision:
                raise ValueError(f"--revision {args.revision}: model {e.name_or_path} already names revision "
                                 f"{revision}; give each model's revision once")
            revision = args.revision
        specs.append(ModelSpec(
            name_or_path=e.name_or_path, revision=revision, device=args.device, dtype=args.dtype,
            trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle, device_map=args.device_map,
            max_memory=max_memory, label=e.label, step=e.step, tokens_seen=e.tokens_seen,
        ))
    return specs


#: Exit status of a run that scored every model it could load, but not all (README, "Exit codes").
EXIT_PARTIAL = 3


def cmd_score(args) -> int:
    from logprob.distributed import join, leave

    world = join(args.device, args.device_map)  # alone: no import, no cost; under torchrun: the process group
    code = _score(args, world)
    leave(world)  # every rank finished: leave the group together (an error above ends every rank alike)
    return code


def _score(args, world) -> int:
    from logprob.run import open_run
    from logprob.tasks import load_task

    if not world.is_main:  # rank 0 alone speaks: its progress, warnings and errors stand for the run
        import transformers

        args.quiet = True
        logging.getLogger().setLevel(logging.ERROR)
        transformers.utils.logging.disable_progress_bar()
    if not args.out.strip():
        raise ValueError("--out: empty path; name the output folder")
    config = _score_config(args)  # option ranges, then tasks, then models and folder: all before any model loads
    specs = _specs(args)
    if world.size > 1:
        specs = [dataclasses.replace(s, device=world.device) for s in specs]
    tasks = [load_task(Path(t)) for t in args.task]
    if args.formulations:  # every task posed every way asked, each a unit of its own
        from logprob.formulations import render, resolve

        formulations = resolve(args.formulations)
        tasks = [render(t, f) for t in tasks for f in formulations]
    out = Path(args.out)
    with open_run(specs, tasks, out, config, generate=not args.no_generate, restart=args.restart,
                  world=world) as run:
        if world.is_main:
            with model_progress() as progress:
                result = run.execute(progress)
        else:
            result = run.execute()
    if result.failed:
        if world.is_main:
            names = "; ".join(f"{label} ({reason})" for label, reason in result.failed)
            print(f"scalelens: error: {len(result.failed)} model(s) could not be loaded and are missing from the "
                  f"tables: {names}; the other models were scored (see {out / 'run.json'}); fix them and rerun the "
                  "same command to add them", file=sys.stderr)
        return EXIT_PARTIAL
    if not world.is_main:
        return 0
    if result.n_computed == 0:
        console.print(f"nothing to do: every model and task is already scored in {out} with the same checkpoints, "
                      f"task files and settings; next: scalelens report {args.out}")
        return 0
    console.print(
        f"wrote {out / 'scores.parquet'} ({result.scores.height} rows)"
        + (f" and generations.parquet ({result.generations.height} rows)" if result.generations.height else "")
        + f"; next: scalelens report {args.out}"
    )
    return 0


def _evaluate_modules(specs: Sequence[str]):
    """`PATH[:lower]` → (evaluate modules, how to read their outputs). Outputs count as smooth metrics."""
    if not specs:
        return [], {}
    import evaluate

    modules, directions = [], {}
    for spec in specs:
        path, _, direction = spec.partition(":")
        direction = direction or "higher"
        if direction not in ("higher", "lower"):
            raise ValueError(f"--evaluate-module {spec}: expected PATH or PATH:lower / PATH:higher")
        if not Path(path).exists():
            raise FileNotFoundError(f"--evaluate-module {path}: no such local module script (hub modules need a network)")
        module = evaluate.load(path)
        modules.append(module)
        directions[module.name] = (direction, path)
    return modules, directions


def cmd_report(args) -> int:
    from metrics.analysis import analyse_folder
    from metrics.schema import GENERATIONS_FILE
    from metrics.text import BleuConfig

    if args.bootstrap < 1:
        raise ValueError(f"--bootstrap: expected a positive number of resamples, got {args.bootstrap}")
    if args.slices < 2:
        raise ValueError(f"--slices: expected at least 2 difficulty slices, got {args.slices}")

    generations = Path(args.dir) / GENERATIONS_FILE
    if args.evaluate_module and not generations.exists():
        raise FileNotFoundError(
            f"--evaluate-module: {generations} does not exist; evaluate modules score generated text, so score a "
            "task with generative items without --no-generate first"
        )
    modules, directions = _evaluate_modules(args.evaluate_module)
    result = analyse_folder(
        Path(args.dir),
        n_resamples=args.bootstrap,
        seed=args.seed,
        figures=not args.no_figures,
        bleu=BleuConfig(tokenize=args.bleu_tokenize),
        n_slices=args.slices,
        x=args.x,
        extra_modules=modules,
        extra_directions=directions,
    )
    print_analysis(result)
    _print_missing(Path(args.dir))
    return 0


def cmd_analyze(args) -> int:
    from metrics.bootstrap import BootstrapConfig
    from metrics.ingest import AnalyzeConfig, analyze_inputs
    from metrics.ingest.directions import parse_directions
    from metrics.text import BleuConfig

    if not args.out.strip():
        raise ValueError("--out: empty path; name the output folder")
    config = AnalyzeConfig(
        x=args.x, x_reverse=args.x_reverse, directions=parse_directions(args.direction),
        above_chance=args.above_chance, sizes=Path(args.sizes) if args.sizes else None,
        bootstrap=BootstrapConfig(n_resamples=args.bootstrap, seed=args.seed),
        bleu=BleuConfig(tokenize=args.bleu_tokenize),
    )
    result, inputs, notes = analyze_inputs([Path(p) for p in args.inputs], Path(args.out), config,
                                           figures=not args.no_figures)
    for line in inputs.formats:
        console.print(f"read {line}", highlight=False)
    print_analysis(result)
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    return 0


def _print_missing(folder: Path) -> None:
    """Name each model the folder's last `scalelens score` could not load (run.json): it is missing above."""
    from logprob.record import failed_models, read_run_record

    for label, reason in failed_models(read_run_record(folder)):
        console.print(f"missing: {label}: the last `scalelens score` on this folder could not load it ({reason}); "
                      "the tasks that run named have no results of it above", highlight=False, soft_wrap=True)


def print_analysis(result) -> None:
    """Per task: the metric table, the emergence table with its notes, and the sharp-against-smooth verdicts; then
    where everything was written."""
    from logprob.display import emergence_notes, emergence_tables, metric_tables, verdict_lines

    width = console.width
    for task, formulation in result.metrics.select("task", "formulation").unique(maintain_order=True).iter_rows():
        for table in metric_tables(result.metrics, task, width, formulation):
            console.print(table)
        for table in emergence_tables(result.emergence, task, width, result.trends, result.fits, formulation):
            console.print(table)
        console.print(emergence_notes(result.emergence, task, width, formulation), highlight=False)
        console.print()
        console.print(verdict_lines(result.comparisons, task, width, formulation), highlight=False)
        console.print()
    tables = [p for p in result.written if p.suffix == ".parquet"]
    pngs = [p for p in result.written if p.suffix == ".png"]
    if result.written:
        folder = tables[0].parent if tables else pngs[0].parent
        console.print(f"wrote {len(tables)} tables ({', '.join(p.name for p in tables)}) to {folder}", highlight=False)
    if pngs:
        console.print(f"wrote {len(pngs)} figures to {pngs[0].parent}", highlight=False)


def cmd_demo(args) -> int:
    from logprob.demo import run_demo

    with model_progress() as progress:
        result = run_demo(Path(args.out), progress=progress, n_items=args.items, restart=args.restart)
    print_analysis(result.analysis)
    console.print(result.summary, highlight=False)
    return 0


def cmd_ladder_train(args) -> int:
    from logprob.ladder import train_ladder

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console) as bar:
        tasks: dict[str, int] = {}

        def progress(model: str, step: int, total: int, loss: float) -> None:
            if model not in tasks:
                tasks[model] = bar.add_task(model, total=total)
            bar.update(tasks[model], completed=step, description=f"{model} loss {loss:.3f}")

        manifest = train_ladder(Path(args.out), seed=args.seed, progress=progress, threads=args.threads,
                                scratchpad=args.scratchpad)
    console.print(f"wrote {len(manifest['models'])} models and manifest.json to {args.out}")
    return 0


#: Exit codes (README, "Exit codes"; EXIT_PARTIAL above). Anything else (1) is a bug: the traceback is shown, please
#: report it.
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 2, 130, 143


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanup (temporary files, the folder lock) runs as on Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit 2) rather than the whole usage text."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="scalelens",
        description="Is this jump in ability real, or is it the metric? Score a ladder of causal LMs once, "
        "then read the same outputs under sharp and smooth metrics.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="score tasks with a ladder of models → scores.parquet, generations.parquet")
    p.add_argument("--model", action="append", default=None,
                   help="hub id (ID@REVISION for one revision, e.g. EleutherAI/pythia-1.4b@step3000) or local "
                        "checkpoint directory; repeat per model")
    p.add_argument("--ladder", default=None, metavar="NAME|FILE",
                   help="a named ladder (pythia, gpt2, ...) or a ladder file (TOML: ids, revisions, labels); "
                        "--model adds models after it")
    p.add_argument("--task", action="append", required=True, help="task file (.jsonl or BIG-bench task.json); repeatable")
    p.add_argument("--formulations", action="append", default=[], metavar="NAME|FILE.toml",
                   help="pose every task each of these ways (a built-in name: default, letters, zero-shot-cot; or a "
                        "TOML file of [[formulation]] tables); repeatable; default: the tasks as written")
    p.add_argument("--out", required=True, help="output folder (reruns resume from it)")
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)} or cuda:N (default auto)")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--device-map", default=None, choices=["auto"],
                   help="auto: spread each model over the GPUs, then the CPU, then disk (accelerate's big-model "
                        "inference), for a model larger than one device")
    p.add_argument("--max-memory", action="append", default=None, metavar="DEVICE=SIZE[,...]",
                   help="with --device-map auto: the most each device holds, e.g. 0=70GiB,1=70GiB,cpu=200GiB")
    p.add_argument("--revision", default=None,
                   help="hub revision (branch, tag or commit) for every model that does not name its own")
    p.add_argument("--token-budget", type=int, default=None, help="tokens per forward pass (default: automatic)")
    p.add_argument("--max-length", type=int, default=None, help="truncate contexts on the left to this many tokens")
    p.add_argument("--max-new-tokens", type=int, default=ScoreConfig.max_new_tokens, help="greedy generation bound")
    p.add_argument("--no-generate", action="store_true", help="skip greedy generation on generative items")
    p.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own Python code (off by default)")
    p.add_argument("--allow-pickle", action="store_true", help="accept .bin (pickle) weights, not only safetensors")
    p.add_argument("--restart", action="store_true",
                   help="discard the folder's scores.parquet and generations.parquet (once the checks pass) and rescore")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("report", help="metrics and emergence tables (and figures) from a scored folder")
    p.add_argument("dir", help="folder written by `scalelens score`")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--slices", type=int, default=3,
                   help="difficulty slices: items cut into this many equal groups by difficulty (default 3)")
    p.add_argument("--x", default="auto", choices=("auto", "non_embedding_params", "params", "step", "tokens"),
                   help="scale axis: auto = step for checkpoints of one model (equal sizes, known steps), else "
                        "non-embedding parameters")
    p.add_argument("--no-figures", action="store_true", help="do not write PNG figures")
    p.add_argument(
        "--bleu-tokenize",
        default="13a",
        choices=sorted(BLEU.TOKENIZERS),
        help="sacrebleu tokenizer for BLEU (default 13a; 'char' for answers of one word, such as numbers)",
    )
    p.add_argument(
        "--evaluate-module",
        action="append",
        default=[],
        metavar="PATH[:lower]",
        help="a local HF evaluate module script applied to each generation (repeatable); ':lower' if lower is better",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("analyze", help="the same tables and figures as report, from results you already have: "
                       "lm-eval output folders, samples or results files, CSV/parquet tables")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="lm-eval output folder, results_*.json (either layout), samples_*.jsonl, or a table")
    p.add_argument("--out", required=True, help="output folder for the tables and figures")
    p.add_argument("--sizes", default=None, metavar="FILE",
                   help="CSV: model, params[, non_embedding_params, training_tokens, other per-model columns]")
    p.add_argument("--x", default="auto", metavar="AXIS",
                   help="scale axis: non_embedding_params, params, compute (6·N·D), tokens, step, or a numeric "
                        "per-model column (default auto: non_embedding_params when known for every model, else params)")
    p.add_argument("--x-reverse", action="store_true",
                   help="the axis grows the other way (e.g. a loss): use 1/value")
    p.add_argument("--direction", action="append", default=[], metavar="METRIC=lower",
                   help="which way is better for a metric of a results file or table (repeatable)")
    p.add_argument("--above-chance", action="store_true",
                   help="also show accuracies above chance, (acc − 1/k)/(1 − 1/k), where the number of choices k is known")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-figures", action="store_true", help="do not write PNG figures")
    p.add_argument("--bleu-tokenize", default="13a", choices=sorted(BLEU.TOKENIZERS),
                   help="sacrebleu tokenizer for BLEU of generate_until samples (default 13a)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("demo", help="score the built-in ladder on its arithmetic tasks: tables, summary and figures")
    p.add_argument("--out", default="scalelens-demo", help="output folder (default ./scalelens-demo)")
    p.add_argument("--items", type=int, default=None, help="score only the first N items of each task (quick look)")
    p.add_argument("--restart", action="store_true",
                   help="discard the folder's score tables and rescore (e.g. a folder from another scalelens version)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ladder", help="the built-in model ladder")
    ladder_sub = p.add_subparsers(dest="ladder_command", required=True)
    t = ladder_sub.add_parser("train", help="retrain the built-in ladder from scratch (seeded)")
    t.add_argument("--out", required=True, help="folder for the checkpoints and manifest.json")
    t.add_argument("--seed", type=int, default=0, help="training seed (the held-out problems keep their own seed)")
    t.add_argument("--threads", type=int, default=1, help="torch threads; the shipped ladder was trained with 1")
    t.add_argument("--scratchpad", action="store_true",
                   help="train the scratchpad family: the same sizes on addition with its column-by-column working "
                        "written before the answer")
    t.set_defaults(func=cmd_ladder_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        if not getattr(args, "quiet", False):  # under a launcher only rank 0 speaks
            print(f"scalelens: error: {one_line(exc)}", file=sys.stderr)  # one unwrapped line, whatever the width
        return EXIT_ERROR
    except (KeyboardInterrupt, Terminated) as exc:
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated"
        resume = "; finished models are saved, rerun the same command to resume" if args.command == "score" else ""
        if not getattr(args, "quiet", False):
            print(f"scalelens: {what}: no partial file was left behind{resume}", file=sys.stderr)
        return EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_TERMINATED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
