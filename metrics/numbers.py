"""Numbers for people: one formatter for every printed or drawn number, so tables and figures agree.

Nothing here is shortened with an ellipsis: a number is printed whole, with enough significant digits to compare
neighbouring models, and infinities and missing values get their own symbols.
"""

from __future__ import annotations

import math


def format_score(value: float | None, digits: int = 2) -> str:
    """`digits` decimals, ∞ for infinities (a breakthroughness can be one), n/a for null.

    >>> [format_score(v) for v in (2.0, float("inf"), -float("inf"), None, float("nan"))]
    ['2.00', '∞', '−∞', 'n/a', 'n/a']
    """
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}"


def format_sig(value: float | None, digits: int = 3) -> str:
    """`digits` significant digits without scientific notation for everyday magnitudes; ∞ and n/a as above.

    >>> [format_sig(v) for v in (400.0, 18.9015, 0.04516, -3.0, 123456.0, 1.2e-7, float("inf"), None)]
    ['400', '18.9', '0.0452', '-3.00', '123456', '1.20e-07', '∞', 'n/a']
    """
    if value is None or math.isnan(value) or math.isinf(value):
        return format_score(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits - 1:
        return f"{value:.0f}"
    if magnitude < -4:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits - 1 - magnitude}f}"


def format_interval(low: float | None, high: float | None, digits: int = 3) -> str:
    """'[low, high]' with `format_sig`, or '' when the interval is unknown.

    >>> format_interval(16.25, 22.9), format_interval(None, None), format_interval(100.0, float("inf"))
    ('[16.2, 22.9]', '', '[100, ∞]')
    """
    if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
        return ""
    return f"[{format_sig(low, digits)}, {format_sig(high, digits)}]"


def format_count(n: float | None) -> str:
    """A parameter or token count: 3 significant digits with k/M/B/T.

    >>> [format_count(n) for n in (1048, 787_328, 70_426_624, 1.2e12, 268)]
    ['1.05k', '787k', '70.4M', '1.2T', '268']
    """
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}" if isinstance(n, float) and not float(n).is_integer() else str(int(n))


def format_breakthroughness(row: dict) -> str:
    """B for people from an emergence row: '≥ bound' when resolution-limited (never a bare noise-floor number),
    else the value with its interval.

    >>> format_breakthroughness({"breakthroughness": 400.0, "resolution_limited": True,
    ...     "breakthroughness_bound": 89.2, "breakthroughness_ci_low": 100.0, "breakthroughness_ci_high": 400.0})
    '≥ 89.2 (resolution-limited)'
    >>> format_breakthroughness({"breakthroughness": 18.9, "resolution_limited": False,
    ...     "breakthroughness_bound": 17.0, "breakthroughness_ci_low": 15.8, "breakthroughness_ci_high": 22.9})
    '18.9 [15.8, 22.9]'
    """
    if row.get("resolution_limited"):
        return f"≥ {format_sig(row['breakthroughness_bound'])} (resolution-limited)"
    cell = format_sig(row.get("breakthroughness"))
    interval = format_interval(row.get("breakthroughness_ci_low"), row.get("breakthroughness_ci_high"))
    return f"{cell} {interval}".strip()


def format_with_interval(row: dict, name: str) -> str:
    """'value [low, high]' of column `name` and its `_ci_low`/`_ci_high` in a row.

    >>> format_with_interval({"linearity": 3.39, "linearity_ci_low": 3.1, "linearity_ci_high": 3.61}, "linearity")
    '3.39 [3.10, 3.61]'
    """
    interval = format_interval(row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high"))
    return f"{format_sig(row.get(name))} {interval}".strip()
