"""Tables as text: a pyarrow or arro3 Table (the answer of ``builder telemetry sql``) as
aligned columns for people, RFC 4180 CSV, or a JSON array of objects, whatever types its
columns hold (DuckDB's DECIMAL, INTERVAL, BLOB, maps, lists and structs, dates Python cannot
hold).

An arro3 Table is read without loading pyarrow when arro3 gives each column's values as
pyarrow does (numbers, text, bytes, and dates and times Python holds, found type by type);
any other is read through pyarrow, so that the text is the same either way.

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
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, cast, get_args

from telemetry.errors import TelemetryError

if TYPE_CHECKING:  # the command line offers TableFormat: importing this loads no pyarrow
    import arro3.core
    import pyarrow as pa

TableFormat: TypeAlias = Literal["table", "csv", "json"]
TABLE_FORMATS: Final[tuple[TableFormat, ...]] = get_args(TableFormat)


class UnshowableValue(TelemetryError):
    """A column holds values that none of the formats can show."""


def render(
    result: pa.Table | arro3.core.Table, format: TableFormat, *, terminal: bool = False
) -> str:
    """A table (a query's answer) as aligned columns for people (``table``), RFC 4180 CSV
    with a header, or a JSON array of objects. Times are UTC in ISO 8601 (``Z`` when the
    column has a time zone); a NULL is ``NULL`` in the table, an empty CSV cell and JSON's
    ``null``. A CSV cell of text (or a column name) that a spreadsheet would run as a formula
    gets a leading ``'``, as in the export; numbers stay as they are.

    Text from builds reaches people through :func:`telemetry.text.printable`: always in
    the table, and in CSV and JSON when ``terminal`` (JSON as its own escapes, the same
    values).

    An arro3 Table gives the same text as a pyarrow Table of the same data; one of plain
    types (numbers, text, bytes, dates and times, lists and structs of the first three) is
    read without loading pyarrow.

    >>> import pyarrow as pa
    >>> print(render(pa.table({"target": ["//a:b"], "runs": [3]}), "table"), end="")
    target  runs
    ------  ----
    //a:b      3
    """
    from telemetry.text import json_for_terminal

    if format not in TABLE_FORMATS:
        raise TelemetryError(f"unknown format {format!r}; choose one of {', '.join(TABLE_FORMATS)}")
    answer = _answer(result)
    if format == "table":
        return _table(answer)
    if format == "csv":
        return _csv(answer, terminal=terminal)
    document = _json(answer)
    return json_for_terminal(document) if terminal else document


@dataclass(frozen=True, slots=True)
class _Answer:
    """A table's columns as Python values, with what the formats need of their types."""

    names: list[str]
    columns: list[list[object]]
    numbers: list[bool]  # integers, floats and decimals: to the right in the table
    times: list[bool]  # temporal: their text is Arrow's (a date Python cannot hold)


def _answer(result: pa.Table | arro3.core.Table) -> _Answer:
    # arro3 is optional (the duckdb extra): an arro3 Table means it is loaded already.
    arro3 = sys.modules.get("arro3.core")
    if arro3 is not None and isinstance(result, arro3.Table):
        answer = _from_arro3(result)
        if answer is not None:
            return answer
        import pyarrow as pa

        result = pa.table(result)  # through the Arrow C stream, types and all
    return _from_pyarrow(result)


def _from_pyarrow(result: pa.Table) -> _Answer:
    import pyarrow.types as types

    kinds = [field.type for field in result.schema]
    names = result.column_names
    return _Answer(
        names=names,
        columns=[_values(name, column) for name, column in zip(names, result.columns, strict=True)],
        numbers=[types.is_integer(t) or types.is_floating(t) or types.is_decimal(t) for t in kinds],
        times=[types.is_temporal(t) for t in kinds],
    )


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


# arro3's to_pylist against pyarrow's to_pylist(maps_as_pydicts="strict"), type by type.
# The same values whatever they hold (_exact): NULL, booleans, integers, floats (NaN and
# infinities too), text and bytes of every layout, and lists, structs and dictionaries of
# these. The same once checked (_arro3_values), so only as a column of their own: decimals,
# dates, and times, timestamps and durations to the microsecond. The rest is pyarrow's: a map
# comes as a list of pairs; an extension type (DuckDB's UUID as arrow.uuid) as its storage,
# where pyarrow makes its own values (a uuid.UUID); a nanosecond loses its last digits, where
# pyarrow writes the column as Arrow's text; a struct with two fields of one name keeps the
# last, which pyarrow refuses; a decimal of negative scale loses its exponent, and decimal32
# and decimal64 are no decimals to arro3's DataType; an interval, a list view and a run-end
# encoded array are beyond arro3's to_pylist, and a union's members beyond its DataType.
_EXTENSION: Final = b"ARROW:extension:name"
_DECIMAL_SCALE: Final = re.compile(r"<Decimal(?:128|256)\(\d+, (\d+)\)>")
# The widest decimal: arro3 writes no more digits than the precision, and so drops the last
# digits of a value beyond it (DuckDB's HUGEINT is a DECIMAL(38, 0) of up to 39 digits).
_WIDEST: Final = 76
# The fixed offsets pyarrow reads as such; any other zone is a name for zoneinfo.
_FIXED_OFFSET: Final = re.compile(r"[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]")


def _from_arro3(result: arro3.core.Table) -> _Answer | None:
    """The answer as arro3 reads it, or None when pyarrow would read one of its columns
    otherwise."""
    from arro3.core import DataType

    fields = [result.field(i) for i in range(result.num_columns)]
    if not all(_exact(field) or _checkable(field) for field in fields):
        return None
    columns = []
    for field, column in zip(fields, result.columns, strict=True):
        values = _arro3_values(field.type, column)
        if values is None:
            return None
        columns.append(values)
    kinds = [field.type for field in fields]
    return _Answer(
        names=result.column_names,
        columns=columns,
        numbers=[
            DataType.is_integer(t) or DataType.is_floating(t) or DataType.is_decimal(t)
            for t in kinds
        ],
        times=[DataType.is_temporal(t) for t in kinds],
    )


def _exact(field: arro3.core.Field) -> bool:
    """Whether arro3 gives every value of the field as pyarrow does."""
    from arro3.core import DataType

    kind = field.type
    if _EXTENSION in field.metadata:
        return False
    if _leaf(kind):
        return True
    if DataType.is_dictionary(kind):  # DuckDB's ENUM
        return kind.value_type is not None and _leaf(kind.value_type)
    if DataType.is_list(kind) or DataType.is_large_list(kind) or DataType.is_fixed_size_list(kind):
        return kind.value_field is not None and _exact(kind.value_field)
    if DataType.is_struct(kind):
        names = [f.name for f in kind.fields]
        return len(set(names)) == len(names) and all(_exact(f) for f in kind.fields)
    return False


def _leaf(kind: arro3.core.DataType) -> bool:
    """Whether arro3 gives every single value of the type as pyarrow does."""
    from arro3.core import DataType

    return any(
        test(kind)
        for test in (
            DataType.is_null,
            DataType.is_boolean,
            DataType.is_integer,
            DataType.is_floating,
            DataType.is_string,
            DataType.is_large_string,
            DataType.is_string_view,
            DataType.is_binary,
            DataType.is_large_binary,
            DataType.is_binary_view,
            DataType.is_fixed_size_binary,
        )
    )


def _checkable(field: arro3.core.Field) -> bool:
    """Whether arro3 gives the column's values as pyarrow does once :func:`_arro3_values`
    has checked them."""
    from arro3.core import DataType

    kind = field.type
    if _EXTENSION in field.metadata:
        return False
    if DataType.is_decimal(kind):
        return _scale(kind) is not None
    if DataType.is_date(kind):
        return True
    if DataType.is_timestamp(kind) or DataType.is_time(kind) or DataType.is_duration(kind):
        return kind.time_unit != "ns" and _zone_known(kind.tz)
    return False


def _scale(kind: arro3.core.DataType) -> int | None:
    """A decimal's scale, which arro3's DataType tells only in its text (``Decimal128(38,
    0)``); None for a negative one."""
    match = _DECIMAL_SCALE.search(str(kind))
    return None if match is None else int(match[1])


def _zone_known(zone: str | None) -> bool:
    """Whether pyarrow gives the times of a zone as arro3 does: a fixed offset, or a name
    zoneinfo knows (pyarrow writes the others, even UTC on a system with no zone database,
    as Arrow's text or refuses them)."""
    if zone is None or _FIXED_OFFSET.fullmatch(zone):
        return True
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(zone)
    except (KeyError, ValueError, OSError):
        return False
    return True


def _arro3_values(
    kind: arro3.core.DataType, column: arro3.core.ChunkedArray
) -> list[object] | None:
    """A column's values as arro3 gives them, or None where they would not be pyarrow's."""
    from arro3.core import DataType

    decimal = DataType.is_decimal(kind)
    scale = _scale(kind) if decimal else 0
    if scale is None:
        return None
    try:
        if decimal:
            column = column.cast(DataType.decimal256(_WIDEST, scale))
        values = cast("list[object]", column.to_pylist())
    except Exception:  # a date Python cannot hold, a zone arro3 cannot read: pyarrow's way
        return None
    # arro3 gives None for a time beyond its own range (DuckDB's infinity), where pyarrow
    # gives Arrow's text, or refuses it.
    if DataType.is_temporal(kind) and sum(v is None for v in values) != column.null_count:
        return None
    if decimal and any(
        len(cast("Decimal", v).as_tuple().digits) >= _WIDEST for v in values if v is not None
    ):
        return None  # a decimal256 may hold one digit more than its widest precision
    return values


def _table(answer: _Answer) -> str:
    from telemetry.text import printable

    if not answer.names:  # a statement that answers nothing
        return ""
    names = [printable(name) for name in answer.names]
    cells = [
        [printable(_text(value, null="NULL")) for value in column] for column in answer.columns
    ]
    right = answer.numbers
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


def _csv(answer: _Answer, *, terminal: bool) -> str:
    from telemetry.text import printable, spreadsheet_text

    if not answer.names:
        return ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    clean: Callable[[str], str] = printable if terminal else str
    # Names too: a PIVOT names its columns after values from builds.
    writer.writerow([clean(spreadsheet_text(name)) for name in answer.names])
    # Text is guarded as the export guards it, and only text: a number keeps its sign, and
    # so does a time Python cannot hold, which comes as Arrow's text ("-0001-01-01").
    guarded = [not time for time in answer.times]
    for row in zip(*answer.columns, strict=True):
        cells = [_text(value, null="") for value in row]
        writer.writerow(
            [
                clean(spreadsheet_text(cell) if guard and isinstance(value, str | bytes) else cell)
                for cell, value, guard in zip(cells, row, guarded, strict=True)
            ]
        )
    return buffer.getvalue()


def _json(answer: _Answer) -> str:
    keys = [json.dumps(name, ensure_ascii=False) for name in _unique(answer.names)]
    objects = [
        "  {" + ", ".join(f"{k}: {_json_value(v)}" for k, v in zip(keys, row, strict=True)) + "}"
        for row in zip(*answer.columns, strict=True)
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
    # Called for each value: an interval is pyarrow's MonthDayNano, so none exists before
    # pyarrow is loaded, and an answer read by arro3 alone loads none.
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(value, pa.MonthDayNano)


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
