"""The one error every ingestion step raises: a bad input, said in one line that names the file and the field."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """An input scalelens cannot analyse. The message is one line: the file, the field (or line), what is wrong
    and, where there is one, what to do. The command line prints it and exits with status 2, having written
    nothing."""


def bad(path: Path | str, field: str, problem: str) -> InputError:
    """`InputError("<path>: <field>: <problem>")`.

    >>> str(bad("runs/r.json", "results", "not an object"))
    'runs/r.json: results: not an object'
    """
    return InputError(f"{path}: {field}: {problem}")
