"""Tables as text: a pyarrow Table (the answer of ``builder telemetry sql``) as aligned
columns for people, RFC 4180 CSV, or a JSON array of objects, whatever types its columns
hold (DuckDB's DECIMAL, INTERVAL, BLOB, maps, lists and structs, dates Python cannot hold).

Text from builds reaches a terminal escaped, as in every report
(:func:`telemetry.text.printable`); what a script reads holds the exact values, but for
a leading ``'`` on CSV text a spreadsheet would run as a formula, as in the export
(:func:`telemetry.text.spreadsheet_text`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, cast, get_args

from telemetry.errors import TelemetryError

if TYPE_CHECKING:  # the command line offers TableFormat: importing this loads no pyarrow
    import pyarrow as pa

TableFormat: TypeAlias = Literal["table", "csv", "json"]
TABLE_FORMATS: Final[tuple[TableFormat, ...]] = get_args(TableFormat)


class UnshowableValue(TelemetryError):
    """A column holds values that none of the formats can show."""


def render(result: pa.Table, format: TableFormat, *, terminal: bool = False) -> str:
    """A table (a query's answer) as aligned columns for people (``table``), RFC 4180 CSV
    with a header, or a JSON array of objects. Times are UTC in ISO 8601 (``Z`` when the
    column has a time zone); a NULL is ``NULL`` in the table, an empty CSV cell and JSON's
    ``null``. A CSV cell of text (or a column name) that a spreadsheet would run as a formula
    gets a leading ``'``, as in the export; numbers stay as they are.

    Text from builds reaches people through :func:`telemetry.text.printable`: always in
    the table, and in CSV and JSON when ``terminal`` (JSON as its own escapes, the same
    values).

    >>> import pyarrow as pa
    >>> print(render(pa.table({"target": ["//a:b"], "runs": [3]}), "table"), end="")
    target  runs
    ------  ----
    //a:b      3
    """
    from telemetry.text import json_for_terminal

    if format == "table":
        return _table(result)
    if format == "csv":
        return _csv(result, terminal=terminal)
    if format == "json":
        document = _json(result)
        return json_for_terminal(document) if terminal else document
    raise TelemetryError(f"unknown format {format!r}; choose one of {', '.join(TABLE_FORMATS)}")


def _columns(result: pa.Table) -> list[list[object]]:
    names = result.column_names
    return [_values(name, column) for name, column in zip(names, result.columns, strict=True)]


def _values(name: str, column: pa.ChunkedArray) -> list[object]:
    import pyarrow as pa

    try:
        return column.to_pylist(maps_as_pydicts="strict")  # type: ignore[no-any-return]
    except (OverflowError, ValueError):
        pass
    try:  # a date Python cannot hold (before the year 1, DuckDB's infinity): Arrow's text
        return column.cast(pa.string()).to_pylist()  # type: ignore[no-any-return]
    except pa.ArrowException:
        raise UnshowableValue(
            f"the column {name!r} holds values that cannot be shown; "
            "cast it to text (VARCHAR in SQL) first"
        ) from None


def _table(result: pa.Table) -> str:
    import pyarrow.types as types

    from telemetry.text import printable

    if not result.num_columns:  # a statement that answers nothing
        return ""
    names = [printable(name) for name in result.column_names]
    cells = [
        [printable(_text(value, null="NULL")) for value in column] for column in _columns(result)
    ]
    right = [
        types.is_integer(f.type) or types.is_floating(f.type) or types.is_decimal(f.type)
        for f in result.schema
    ]
    widths = [
        max([_width(name), *(_width(cell) for cell in column)])
        for name, column in zip(names, cells, strict=True)
    ]
    lines = [
        _line(names, widths, [False] * len(names)),
        _line(["-" * w for w in widths], widths, right),
    ]
    lines += [_line(list(row), widths, right) for row in zip(*cells, strict=True)]
    return "".join(line + "\n" for line in lines)


def _line(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> str:
    padded = [
        " " * (w - _width(c)) + c if r else c + " " * (w - _width(c))
        for c, w, r in zip(cells, widths, right, strict=True)
    ]
    return "  ".join(padded).rstrip()


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: two for a wide (CJK) character, none for a
    combining one."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _csv(result: pa.Table, *, terminal: bool) -> str:
    import pyarrow.types as types

    from telemetry.text import printable, spreadsheet_text

    if not result.num_columns:
        return ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    clean: Callable[[str], str] = printable if terminal else str
    # Names too: a PIVOT names its columns after values from builds.
    writer.writerow([clean(spreadsheet_text(name)) for name in result.column_names])
    # Text is guarded as the export guards it, and only text: a number keeps its sign, and
    # so does a time Python cannot hold, which comes as Arrow's text ("-0001-01-01").
    guarded = [not types.is_temporal(field.type) for field in result.schema]
    for row in zip(*_columns(result), strict=True):
        cells = [_text(value, null="") for value in row]
        writer.writerow(
            [
                clean(spreadsheet_text(cell) if guard and isinstance(value, str | bytes) else cell)
                for cell, value, guard in zip(cells, row, guarded, strict=True)
            ]
        )
    return buffer.getvalue()


def _json(result: pa.Table) -> str:
    keys = [json.dumps(name, ensure_ascii=False) for name in _unique(result.column_names)]
    objects = [
        "  {" + ", ".join(f"{k}: {_json_value(v)}" for k, v in zip(keys, row, strict=True)) + "}"
        for row in zip(*_columns(result), strict=True)
    ]
    return "[\n" + ",\n".join(objects) + "\n]\n" if objects else "[]\n"


def _unique(names: Iterable[str]) -> list[str]:
    """Column names as JSON keys: a repeated one (``select 1 as a, 2 as a``) numbered, so
    that no value is lost to a parser that keeps the last of equal keys."""
    seen: set[str] = set()
    unique = []
    for name in names:
        key, n = name, 0
        while key in seen:
            n += 1
            key = f"{name}_{n}"
        seen.add(key)
        unique.append(key)
    return unique


def _text(value: object, *, null: str) -> str:
    """A value as one cell of text: nested values as their JSON."""
    if value is None:
        return null
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict) or (isinstance(value, tuple) and not _is_interval(value)):
        return _json_value(value)
    return _scalar(value)


def _json_value(value: object) -> str:
    """A value as JSON: numbers as numbers (a DECIMAL's digits as they are), a map or a
    struct as an object, and any other value as the string :func:`_scalar` makes of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float | Decimal) and _finite(value)):
        return _scalar(value)
    if isinstance(value, dict):
        pairs = (
            f"{json.dumps(str(k), ensure_ascii=False)}: {_json_value(v)}" for k, v in value.items()
        )
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list) or (isinstance(value, tuple) and not _is_interval(value)):
        return "[" + ", ".join(_json_value(v) for v in value) + "]"
    return json.dumps(value if isinstance(value, str) else _scalar(value), ensure_ascii=False)


def _finite(number: float | Decimal) -> bool:
    return number.is_finite() if isinstance(number, Decimal) else math.isfinite(number)


def _scalar(value: object) -> str:
    """A scalar as text: booleans in lower case, floats as Python writes them (``NaN`` and
    ``Infinity`` for the others), times in ISO 8601, bytes printable with ``\\xNN``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return _iso(value.astimezone(UTC).replace(tzinfo=None)) + "Z"
        return _iso(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _duration(0, value.days, (value.seconds * 1_000_000 + value.microseconds) * 1000)
    if _is_interval(value):
        months, days, nanoseconds = cast("tuple[int, int, int]", value)
        return _duration(months, days, nanoseconds)
    if isinstance(value, bytes):
        return "".join(chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02x}" for b in value)
    return str(value)


def _iso(moment: datetime) -> str:
    if moment.microsecond == 0:
        return moment.isoformat(timespec="seconds")
    if moment.microsecond % 1000 == 0:
        return moment.isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="microseconds")


def _is_interval(value: object) -> bool:
    import pyarrow as pa

    return isinstance(value, pa.MonthDayNano)


def _duration(months: int, days: int, nanoseconds: int) -> str:
    """An interval in ISO 8601: ``P1M2DT3H4M5.5S``, ``PT0S`` when it is none."""
    sign = "-" if nanoseconds < 0 else ""
    hours, rest = divmod(abs(nanoseconds), 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = (Decimal(rest) / 1_000_000_000).normalize()
    date_part = (f"{months}M" if months else "") + (f"{days}D" if days else "")
    time_part = "".join(
        f"{sign}{amount}{unit}" for amount, unit in ((hours, "H"), (minutes, "M")) if amount
    ) + (f"{sign}{seconds:f}S" if seconds else "")
    if not date_part and not time_part:
        return "PT0S"
    return "P" + date_part + ("T" + time_part if time_part else "")


__all__ = ["TABLE_FORMATS", "TableFormat", "UnshowableValue", "render"]
