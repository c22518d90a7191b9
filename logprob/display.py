"""Tables and verdicts for people, built from the analysis tables; `cli` prints what this returns.

Numbers are never cut. Each table is laid out for the console's width (the terminal's, or `COLUMNS`, or 80 when
output is piped): the key columns (metric, kind) repeat in every block, and the other columns are dealt into as
many blocks as it takes for each block to fit, the way pandas wraps a wide frame. Every cell is measured before
the table is drawn and its column is given at least that width, so a terminal never squeezes a number into "0.9…".
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

import polars as pl
from rich import box
from rich.table import Table
from rich.text import Text

from metrics.numbers import (
    format_breakthroughness,
    format_count,
    format_interval,
    format_sig,
    format_with_interval,
)
from metrics.schema import DEFAULT_FORMULATION, curve_label

#: Characters a column costs beyond its text in a rich table with a simple box: padding and the separator.
COLUMN_OVERHEAD = 3
#: Joins the bounds of an interval in the stacked layout, so a line is never broken inside "[low, high]".
NBSP = "\u00a0"
SHARP_STYLE = "magenta"
SMOOTH_STYLE = "cyan"


def _width(text: str) -> int:
    return max((len(line) for line in text.split("\n")), default=0)


def blocks(header: Sequence[str], rows: Sequence[Sequence[str]], n_keys: int, width: int) -> list[list[int]]:
    """Column indices of each block: the first `n_keys` columns in every block, the others dealt out in order so
    that each block's measured width fits `width` (a column wider than the console gets a block of its own).

    >>> blocks(["k", "aaaa", "bbbb", "cccc"], [["x", "1", "2", "3"]], n_keys=1, width=19)  # 5 + 7 + 7 fit 19
    [[0, 1, 2], [0, 3]]
    """
    return _blocks(_needs(header, rows), n_keys, width)


def _needs(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's content width: its widest header line or cell."""
    return [max(_width(h), *(_width(r[j]) for r in rows)) for j, h in enumerate(header)]


def _block_width(needs: Sequence[int], columns: Sequence[int]) -> int:
    """A table's width on the console: its columns with their padding and rules."""
    return sum(needs[j] + COLUMN_OVERHEAD for j in columns) + 1


def _blocks(needs: Sequence[int], n_keys: int, width: int) -> list[list[int]]:
    widths = [need + COLUMN_OVERHEAD for need in needs]
    keys = list(range(n_keys))
    base = sum(widths[:n_keys]) + 1
    out: list[list[int]] = []
    current: list[int] = []
    used = base
    for j in range(n_keys, len(needs)):
        if current and used + widths[j] > width:
            out.append(keys + current)
            current, used = [], base
        current.append(j)
        used += widths[j]
    if current or not out:
        out.append(keys + current)
    return out


def stacked(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], styles: Sequence[str | None],
            n_keys: int, width: int) -> Text:
    """The same cells one per line, for a console too narrow for even one column beside the keys: each row's keys,
    then '  column: cell' lines, wrapped at spaces only (a number is never split by the layout).

    >>> print(stacked("t", ["metric", "model a"], [["em", "0.5 [0.4, 0.6]"]], [None], 1, 30).plain.replace(NBSP, " "))
    t
    em
      model a: 0.5 [0.4, 0.6]
    """
    text = Text(title + "\n")
    for row, style in zip(rows, styles, strict=True):
        text.append(" ".join(" ".join(row[j].split()) for j in range(n_keys)) + "\n", style=style)
        for j in range(n_keys, len(header)):
            cell = re.sub(r"\[([^\]]*)\]", lambda m: "[" + m.group(1).replace(" ", NBSP) + "]", " ".join(row[j].split()))
            line = f"{' '.join(header[j].split())}: {cell}"  # an interval stays on one line
            text.append(textwrap.fill(line, width=max(width, 20), initial_indent="  ", subsequent_indent="    ",
                                      break_long_words=False, break_on_hyphens=False) + "\n", style=style)
    text.rstrip()
    return text


def render(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], styles: Sequence[str | None],
           n_keys: int, width: int, right: Sequence[bool] | None = None) -> list[Table | Text]:
    """One rich Table per block of columns (see `blocks`); every column at least as wide as its widest cell. When
    even a single column beside the keys is wider than the console, the cells are listed one per line instead
    (`stacked`), so no number is ever cropped."""
    right = right or [j >= n_keys for j in range(len(header))]
    needs = _needs(header, rows)
    parts = _blocks(needs, n_keys, width)
    if rows and any(_block_width(needs, columns) > width for columns in parts):
        return [stacked(title, header, rows, styles, n_keys, width)]
    tables = []
    for k, columns in enumerate(parts):
        suffix = f" ({k + 1}/{len(parts)})" if len(parts) > 1 else ""
        table = Table(title=title + suffix, title_justify="left", box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
        for j in columns:
            table.add_column(header[j], justify="right" if right[j] else "left", no_wrap=True, overflow="fold",
                             min_width=needs[j])
        for row, style in zip(rows, styles, strict=True):
            table.add_row(*(row[j] for j in columns), style=style)
        tables.append(table)
    return tables


def _select(frame: pl.DataFrame, task: str, formulation: str) -> pl.DataFrame:
    return frame.filter((pl.col("task") == task) & (pl.col("formulation") == formulation))


def _style(kind: str) -> str:
    return SHARP_STYLE if kind == "sharp" else SMOOTH_STYLE


def _axis_value(axis: str, value: float | None) -> str:
    """A model's place on the scale axis, for a column header: a count with k/M/B/T, "step N", or the number."""
    if axis == "step" and value is not None:
        return f"step {int(value)}"
    if axis in ("params", "non_embedding_params", "tokens", "compute"):
        return format_count(value)
    return format_sig(value)


def metric_tables(metrics: pl.DataFrame, task: str, width: int, formulation: str = DEFAULT_FORMULATION
                  ) -> list[Table | Text]:
    """Metrics (rows, sharp first) × models (columns, by size): mean over its 95% interval."""
    rows = _select(metrics, task, formulation)
    x = "x" if "x" in rows.columns else "non_embedding_params"  # the table's scale axis
    axis = rows["x_axis"][0] if "x_axis" in rows.columns and rows.height else "non_embedding_params"
    models = rows.select("model", x).unique().sort(x, "model")
    header = ["metric", *(f"{m}\n{_axis_value(axis, n)}" for m, n in models.iter_rows())]
    cells = {(r["metric"], r["model"]): r for r in rows.iter_rows(named=True)}
    body, styles = [], []
    described = rows.select("metric", "kind", "taxonomy", "direction").unique().sort("kind", "taxonomy", "metric")
    for metric, kind, taxonomy, direction in described.iter_rows():
        line = [f"{metric} {'↑' if direction == 'higher' else '↓'}\n  {kind}, {taxonomy}"]
        for model, _ in models.iter_rows():
            r = cells.get((metric, model))
            if r is not None and r["mean"] is None and r["n_items"] == 0:
                line.append("n/a\n(unavailable)")  # defined on no item: e.g. per-token metrics of lm-eval samples
                continue
            line.append("" if r is None else f"{format_sig(r['mean'])}\n"
                        f"{format_interval(r['ci_low'], r['ci_high']) or '(no interval)'}")
        body.append(line)
        styles.append(_style(kind))
    return render(f"{curve_label(task, formulation)}: mean over items, 95% bootstrap interval below", header, body, styles,
                  1, width)


def _trend_cell(row: dict | None) -> str:
    if row is None or row["spearman"] is None:
        return "n/a"
    cell = f"{row['trend']}\nρ {format_sig(row['spearman'], 2)} {format_interval(row['spearman_ci_low'], row['spearman_ci_high'], 2)}"
    if row["shape"]:
        cell += f"\n{row['shape']}"
    elif row["inverse_scaling"]:
        cell += "\ninverse scaling"
    return cell


def _fit_cell(row: dict | None) -> str:
    if row is None:
        return "n/a"
    if row["status"] != "ok":
        return row["status"]
    cell = f"{row['shape']} (w {row['aic_weight']:.2f})"
    if row["location"] is not None:
        where = "mid" if row["shape"] == "logistic" else "break"
        span = "not identified" if row["location_censored"] else \
            f"[{format_count(row['location_low'])}, {format_count(row['location_high'])}]"
        cell += f"\n{where} {format_count(row['location'])} {span}"
    return cell


def emergence_tables(emergence: pl.DataFrame, task: str, width: int, trends: pl.DataFrame | None = None,
                     fits: pl.DataFrame | None = None, formulation: str = DEFAULT_FORMULATION) -> list[Table | Text]:
    """Per metric: L and B with intervals (B as a bound when resolution-limited), the largest-step share and
    whether it beats steady change with the curve's noise, the trend, and the best-fitting shape."""
    rows = _select(emergence, task, formulation).sort("kind", "largest_step_share", descending=[False, True],
                                                        nulls_last=True)
    trend = {} if trends is None else {r["metric"]: r for r in _select(trends, task, formulation).filter(
        pl.col("slice") == "all").iter_rows(named=True)}
    best = {} if fits is None else {r["metric"]: r for r in _select(fits, task, formulation).sort(
        "best", descending=True).unique("metric", keep="first").iter_rows(named=True)}  # the best, else why none
    header = ["metric", "linearity L", "breakthroughness B", "largest step\nshare of change",
              "trend with scale", "best shape (AIC)"]
    body, styles = [], []
    for r in rows.iter_rows(named=True):
        share = format_with_interval(r, "largest_step_share")
        if r["concentrated"] is not None:
            share += "\n" + ("> " if r["concentrated"] else "≤ ") + \
                f"steady {format_sig(r['steady_share_threshold'], 2)}"
        step = f"\nat {r['largest_step_from']} → {r['largest_step_to']}" if r["largest_step_from"] else ""
        body.append([f"{r['metric']}\n  {r['kind']}, {r['taxonomy']}", format_with_interval(r, "linearity"),
                     format_breakthroughness(r).replace(" (resolution-limited)", " ‡"), share + step,
                     _trend_cell(trend.get(r["metric"])), _fit_cell(best.get(r["metric"]))])
        styles.append(_style(r["kind"]))
    return render(f"{curve_label(task, formulation)}: how each curve changes across the ladder (95% intervals)", header,
                  body, styles, 1, width)


def emergence_notes(emergence: pl.DataFrame, task: str, width: int, formulation: str = DEFAULT_FORMULATION) -> str:
    """The footnote that explains ‡, with the numbers of the first resolution-limited curve."""
    limited = _select(emergence, task, formulation).filter(pl.col("resolution_limited").fill_null(False))
    lines = ["L, B: BIG-bench linearity and breakthroughness. Largest-step share: the part of the whole change made "
             "in one step, '> steady' when it exceeds what a curve linear in log-scale would show with this curve's "
             "noise in 95% of resamples. Trend: Spearman's ρ with scale (rising/falling needs its interval away from 0 "
             "and a permutation p < 0.05 over the models)."]
    if limited.height:
        r = limited.row(0, named=True)
        lines.append(
            f"‡ resolution-limited: the median step is within the noise, so B is set by the item count, not the "
            f"models. E.g. {r['metric']}: median step {format_sig(r['median_step'])} ≤ 1.96 × resolution "
            f"{format_sig(r['resolution'])}, B = {format_sig(r['breakthroughness'])} as computed; the data support "
            f"only B ≥ {format_sig(r['breakthroughness_bound'])}.")
    return "\n".join(textwrap.fill(line, width=width, break_long_words=False, break_on_hyphens=False)
                     for line in lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def verdict_lines(comparisons: pl.DataFrame, task: str, width: int, formulation: str = DEFAULT_FORMULATION) -> str:
    """Per sharp metric: the verdict of its strictest pair (against the most concentrated smooth metric), the rule
    that gave it and the numbers behind it, then how the pairs with every smooth metric came out."""
    rows = _select(comparisons, task, formulation)
    name = curve_label(task, formulation)
    if rows.is_empty():
        return f"{name}: no sharp-against-smooth comparison (the task needs a sharp and a smooth metric)."
    out = [f"{name}: is the jump made by the metric, or do the models change too?"]
    for (sharp,), part in rows.group_by("sharp_metric", maintain_order=True):
        strict = part.filter(pl.col("strictest")).row(0, named=True)
        counts = part.group_by("verdict").len().sort("len", descending=True)
        tally = ", ".join(f"{v} ({n})" for v, n in counts.iter_rows())
        text = (
            f"{sharp}: {strict['verdict'].upper()} — against the most abrupt smooth metric, {strict['smooth_metric']}: "
            f"largest-step share {format_sig(strict['sharp_share'], 2)} vs {format_sig(strict['smooth_share'], 2)} "
            f"(steady change with noise: {format_sig(strict['sharp_threshold'], 2)} and "
            f"{format_sig(strict['smooth_threshold'], 2)}), difference {format_sig(strict['share_difference'], 2)} "
            f"{format_interval(strict['share_difference_ci_low'], strict['share_difference_ci_high'], 2)}"
            + (f"; {strict['comment']}" if strict["comment"] else "")
            + f". Rule: {strict['rule']}. Against all {part.height} smooth metrics: {tally}."
        )
        hidden = part.filter(pl.col("smooth_before_jump").is_not_null()).sort("smooth_before_jump", descending=True)
        if strict["jump_from"] is not None and hidden.height:
            h = hidden.row(0, named=True)
            text += (
                f" Before {sharp}'s largest step ({strict['jump_from']} → {strict['jump_to']}) it had made "
                f"{_percent(strict['sharp_before_jump'])} of its change; {h['smooth_metric']} had already made "
                f"{_percent(h['smooth_before_jump'])} "
                f"[{_percent(h['smooth_before_jump_ci_low'])}, {_percent(h['smooth_before_jump_ci_high'])}] of its own."
            )
        out.append(textwrap.fill(text, width=width, initial_indent="  ", subsequent_indent="    ",
                                 break_long_words=False, break_on_hyphens=False))
    return "\n".join(out)
