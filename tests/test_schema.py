"""metrics.schema.validate: widths are coerced (and the coerced frame returned), real type errors are refused."""

from __future__ import annotations

import re

import polars as pl
import pytest

from metrics.schema import validate

SCHEMA = {"n": pl.Int32, "x": pl.Float64, "ids": pl.List(pl.List(pl.Int32)), "name": pl.String}


def frame(**overrides):
    data = {"n": [1, 2], "x": [0.5, 1.5], "ids": [[[1, 2], [3]], [[]]], "name": ["a", "b"]}
    data.update(overrides)
    return pl.DataFrame(data)


@pytest.mark.parametrize(
    ("column", "dtype"),
    [("n", pl.UInt8), ("n", pl.Int64), ("n", pl.UInt64), ("x", pl.Float32), ("ids", pl.List(pl.List(pl.Int64))),
     ("ids", pl.List(pl.List(pl.UInt16)))],
)
def test_compatible_widths_become_the_schema_dtype(column, dtype):
    given = frame().with_columns(pl.col(column).cast(dtype))
    out = validate(given.with_columns(extra=pl.lit(7)), SCHEMA, "toy")
    assert out.select(list(SCHEMA)).schema == pl.Schema(SCHEMA)
    assert out.select(list(SCHEMA)).equals(frame().cast(SCHEMA))  # same values, schema widths
    assert out["extra"].to_list() == [7, 7]  # extra columns kept as they are


def test_all_null_column_takes_the_schema_dtype():
    out = validate(frame(x=[None, None]), SCHEMA, "toy")
    assert out.schema["x"] == pl.Float64 and out["x"].null_count() == 2


def test_values_that_do_not_fit_are_named():
    with pytest.raises(ValueError, match=r"toy: column 'n' has values that do not fit dtype Int32 \(found Int64\)"):
        validate(frame(n=[1, 2**40]), SCHEMA, "toy")
    with pytest.raises(ValueError, match="column 'n' has values that do not fit"):
        validate(frame(n=[-1, 2]).with_columns(pl.col("n").cast(pl.Int8)), {"n": pl.UInt8}, "toy")
    with pytest.raises(ValueError, match="column 'ids' has values that do not fit"):
        validate(frame(ids=[[[2**40]], [[]]]), SCHEMA, "toy")


@pytest.mark.parametrize(
    ("column", "values", "found"),
    [("n", [1.0, 2.0], "Float64"), ("n", ["1", "2"], "String"), ("x", ["1", "2"], "String"),
     ("name", [1, 2], "Int64"), ("ids", [[1], [2]], "List(Int64)"), ("n", [True, False], "Boolean"),
     ("x", [True, False], "Boolean")],
)
def test_real_type_errors_are_refused(column, values, found):
    with pytest.raises(ValueError, match=rf"toy: column .{column}. must have dtype .*, found {re.escape(found)}$"):
        validate(frame(**{column: values}), SCHEMA, "toy")


@pytest.mark.parametrize(
    ("given", "schema", "expected"),
    [
        # integers where floats are stored: converted to the float they stand for (issue 9)
        (pl.Series("v", [1, -3], dtype=pl.Int32), pl.Float64, [1.0, -3.0]),
        (pl.Series("v", [7], dtype=pl.UInt8), pl.Float32, [7.0]),
        # Float64 where Float32 is stored: rounded to the nearest Float32 (0.1 is 0.100000001490116… in Float32)
        (pl.Series("v", [0.1, -2.5]), pl.Float32, [0.10000000149011612, -2.5]),
        (pl.Series("v", [[0.1], [-2.5, 1.0]]), pl.List(pl.Float32), [[0.10000000149011612], [-2.5, 1.0]]),
        (pl.Series("v", [[1, 2]], dtype=pl.List(pl.Int16)), pl.List(pl.Float32), [[1.0, 2.0]]),
    ],
)
def test_numeric_kinds_and_widths_are_converted_not_refused(given, schema, expected):
    out = validate(given.to_frame(), {"v": schema}, "toy")
    assert out.schema["v"] == schema
    assert out["v"].to_list() == expected


def test_int32_and_float32_tables_go_through_the_metrics_api():
    """A score table written with narrower widths than scalelens stores (Int32 sizes, Float32 log-probs, Int64
    choice indices) is accepted by choice_metrics and gives the numbers of its hand computation: choice 0 has the
    highest log-probability and is the target, so the grade is 1, and the margin is −1 − (−2) = 1."""
    from metrics.choice import choice_metrics

    rows = pl.DataFrame({
        "model": ["m", "m"], "params": pl.Series([10, 10], dtype=pl.Int32),
        "non_embedding_params": pl.Series([5, 5], dtype=pl.UInt32), "task": ["t", "t"], "item_id": ["i", "i"],
        "item_kind": ["multiple_choice"] * 2, "choice": pl.Series([0, 1], dtype=pl.Int64), "choice_text": [" a", " b"],
        "is_target": [True, False], "logprob": pl.Series([-1.0, -2.0], dtype=pl.Float32),
        "n_tokens": pl.Series([1, 1], dtype=pl.Int64), "token_logprobs": [[-1.0], [-2.0]],
        "token_ranks": pl.Series([[1], [2]], dtype=pl.List(pl.Int64)), "is_greedy": [True, False],
        "n_chars": pl.Series([2, 2], dtype=pl.Int16), "n_bytes": pl.Series([2, 2], dtype=pl.Int16),
        "target_score": pl.Series([None, None], dtype=pl.Float32), "n_truncated": pl.Series([0, 0], dtype=pl.Int8),
    })
    out = dict(choice_metrics(rows).select("metric", "value").iter_rows())
    assert out["multiple_choice_grade"] == 1.0
    assert out["margin"] == 1.0


def test_missing_columns_are_listed():
    with pytest.raises(ValueError, match=r"toy: missing column\(s\) \['name'\]"):
        validate(frame().drop("name"), SCHEMA, "toy")
