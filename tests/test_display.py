"""Printed tables never cut a number, at any console width; a resolution-limited B is printed as a bound."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest
from rich.console import Console

import logprob.cli
from logprob.display import blocks
from metrics.analysis import analyse_curves
from metrics.bootstrap import BootstrapConfig
from metrics.curves import item_curves
from metrics.numbers import format_interval, format_sig

SIZES = [1_048, 4_144, 18_552, 25_228, 32_928, 51_400]


@pytest.fixture(scope="module")
def analysis():
    rng = np.random.default_rng(0)
    exact = np.zeros((6, 40))
    for j, k in enumerate([0, 0, 1, 30, 39, 40]):
        exact[j, :k] = 1.0
    margin = np.array([-3.21, -2.1, -1.05, 2.5, 4.0, 5.75])[:, None] + rng.normal(scale=0.3, size=(6, 40))
    rows = []
    for metric, values in (("exact_match", exact), ("margin", margin)):
        for j, size in enumerate(SIZES):
            rows += [{"model": f"ladder-{j:02d}-with-a-long-name", "params": size * 2, "non_embedding_params": size,
                      "task": "arith", "item_id": f"i{i:02d}", "metric": metric, "value": float(v), "signature": ""}
                     for i, v in enumerate(values[j])]
    table = pl.DataFrame(rows)
    return analyse_curves(item_curves(table, BootstrapConfig(n_resamples=200)), table)


def printed(analysis, width, monkeypatch) -> str:
    buffer = io.StringIO()
    monkeypatch.setattr(logprob.cli, "console", Console(file=buffer, width=width, color_system=None, markup=False))
    logprob.cli.print_analysis(analysis)
    return buffer.getvalue().replace("\u00a0", " ")  # the narrow layout keeps an interval on one line with NBSPs


@pytest.mark.parametrize("width", [40, 60, 80, 120, 250])
def test_no_number_is_cut_at_any_width(analysis, width, monkeypatch):
    out = printed(analysis, width, monkeypatch)
    assert "…" not in out
    for r in analysis.metrics.iter_rows(named=True):  # every mean and its interval, exactly as formatted
        assert format_sig(r["mean"]) in out
        assert format_interval(r["ci_low"], r["ci_high"]) in out
    for r in analysis.emergence.iter_rows(named=True):
        assert format_interval(r["linearity_ci_low"], r["linearity_ci_high"]) in out
    lines = out.splitlines()
    if width >= 80:
        assert max(len(line.rstrip()) for line in lines) <= width


def test_resolution_limited_b_is_a_bound_and_the_verdict_names_its_rule(analysis, monkeypatch):
    exact = analysis.emergence.filter(pl.col("metric") == "exact_match").row(0, named=True)
    assert exact["resolution_limited"] is True
    out = printed(analysis, 200, monkeypatch)
    assert f"≥ {format_sig(exact['breakthroughness_bound'])} ‡" in out
    assert "resolution-limited" in out and "Rule:" in out
    assert "is the jump made by the metric" in out


def test_blocks_fit_the_width_and_repeat_the_key_column():
    header = ["metric", "a" * 10, "b" * 10, "c" * 10]
    rows = [["m", "1.00", "2.00", "3.00"]]
    # widths: metric 6 + 3 = 9, each other column 10 + 3 = 13; base = 9 + 1 = 10
    assert blocks(header, rows, n_keys=1, width=36) == [[0, 1, 2], [0, 3]]
    assert blocks(header, rows, n_keys=1, width=10) == [[0, 1], [0, 2], [0, 3]]  # one column per block at least
    assert blocks(header, rows, n_keys=1, width=200) == [[0, 1, 2, 3]]
