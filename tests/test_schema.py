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
    [("n", [1.0, 2.0], "Float64"), ("n", ["1", "2"], "String"), ("x", [1, 2], "Int64"), ("name", [1, 2], "Int64"),
     ("ids", [[1], [2]], "List(Int64)"), ("n", [True, False], "Boolean")],
)
def test_real_type_errors_are_refused(column, values, found):
    with pytest.raises(ValueError, match=rf"toy: column .{column}. must have dtype .*, found {re.escape(found)}$"):
        validate(frame(**{column: values}), SCHEMA, "toy")


def test_float64_is_not_narrowed_to_float32():
    with pytest.raises(ValueError, match="column 'lp' must have dtype Float32, found Float64"):
        validate(pl.DataFrame({"lp": [0.1]}), {"lp": pl.Float32}, "toy")


def test_missing_columns_are_listed():
    with pytest.raises(ValueError, match=r"toy: missing column\(s\) \['name'\]"):
        validate(frame().drop("name"), SCHEMA, "toy")
