"""Tables as text (telemetry.tables): the answer of ``builder telemetry sql`` as aligned
columns, CSV and JSON, with every type DuckDB answers; the expected texts are written out by
hand, and an arro3 Table's are the pyarrow Table's of the same answer."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

import duckdb
import pyarrow as pa
import pytest
from arro3.core import Table as Arro3Table

from telemetry import tables

MIXED = pa.table(
    {
        "label": ["//a:b", "//漢字:x", None],
        "n": pa.array([3, None, -12], pa.int64()),
        "rate": [0.1, float("nan"), 2.5e-07],
        "at": pa.array(
            [
                datetime(2025, 10, 27, 14, 23, 20, 880000, tzinfo=UTC),
                None,
                datetime(2025, 1, 1, tzinfo=UTC),
            ],
            pa.timestamp("us", tz="UTC"),
        ),
        "day": [date(2025, 10, 27), None, date(2025, 1, 1)],
        "labels": pa.array([[("ci", "true")], [], None], pa.map_(pa.string(), pa.string())),
        "ok": [True, False, None],
    }
)


def test_a_table_for_people() -> None:
    """Numbers to the right, the rest to the left, a wide character two columns wide."""
    assert tables.render(MIXED, "table") == (
        "label     n     rate     at                        day         labels          ok\n"
        "--------  ----  -------  ------------------------  ----------  --------------  -----\n"
        '//a:b        3      0.1  2025-10-27T14:23:20.880Z  2025-10-27  {"ci": "true"}  true\n'
        "//漢字:x  NULL      NaN  NULL                      NULL        {}              false\n"
        "NULL       -12  2.5e-07  2025-01-01T00:00:00Z      2025-01-01  NULL            NULL\n"
    )


def test_csv_is_rfc_4180_with_a_header() -> None:
    assert tables.render(MIXED, "csv") == (
        "label,n,rate,at,day,labels,ok\r\n"
        '//a:b,3,0.1,2025-10-27T14:23:20.880Z,2025-10-27,"{""ci"": ""true""}",true\r\n'
        "//漢字:x,,NaN,,,{},false\r\n"
        ",-12,2.5e-07,2025-01-01T00:00:00Z,2025-01-01,,\r\n"
    )


def test_json_is_an_array_of_objects() -> None:
    document = tables.render(MIXED, "json")
    assert document == (
        "[\n"
        '  {"label": "//a:b", "n": 3, "rate": 0.1, "at": "2025-10-27T14:23:20.880Z", '
        '"day": "2025-10-27", "labels": {"ci": "true"}, "ok": true},\n'
        '  {"label": "//漢字:x", "n": null, "rate": "NaN", "at": null, "day": null, '
        '"labels": {}, "ok": false},\n'
        '  {"label": null, "n": -12, "rate": 2.5e-07, "at": "2025-01-01T00:00:00Z", '
        '"day": "2025-01-01", "labels": null, "ok": null}\n'
        "]\n"
    )
    assert json.loads(document)[2]["rate"] == 2.5e-07
    assert tables.render(MIXED.slice(0, 0), "json") == "[]\n"


def test_duckdbs_own_types_as_text() -> None:
    relation = duckdb.sql(
        r"""select 1.50::DECIMAL(4, 2) as d, 12345678901234567890123::HUGEINT as h,
            interval '1 month 2 days 3 hours 4 minutes 5.5 seconds' as i,
            interval '-90 minutes' as back, '\xAA\x41\x5C'::BLOB as b, [1, 2] as l,
            {'k': 'v', 'n': null} as s, TIME '01:02:03' as t,
            TIMESTAMP '2025-01-01 01:02:03.5' as ts, 'inf'::DOUBLE as f, 1 as d"""
    )
    assert relation is not None
    answer = relation.to_arrow_table()
    assert tables.render(answer, "json") == (
        '[\n  {"d": 1.50, "h": 12345678901234567890123, "i": "P1M2DT3H4M5.5S", '
        '"back": "PT-1H-30M", "b": "\\\\xaaA\\\\x5c", "l": [1, 2], "s": {"k": "v", "n": null}, '
        '"t": "01:02:03", "ts": "2025-01-01T01:02:03.500", "f": "Infinity", "d_1": 1}\n]\n'
    )
    assert tables.render(answer, "csv").splitlines()[0] == "d,h,i,back,b,l,s,t,ts,f,d"


HOSTILE = pa.table({"target": ["//a\x1b[2J\u202eb\nc"]})


def test_text_from_builds_reaches_people_escaped() -> None:
    assert tables.render(HOSTILE, "table") == "target\n" + "-" * 20 + "\n//a\\x1b[2J\\u202eb\\nc\n"
    assert tables.render(HOSTILE, "csv", terminal=True) == "target\r\n//a\\x1b[2J\\u202eb\\nc\r\n"
    assert tables.render(HOSTILE, "json", terminal=True) == (
        '[\n  {"target": "//a\\u001b[2J\\u202eb\\nc"}\n]\n'
    )
    # To a file or a pipe, the exact values.
    assert tables.render(HOSTILE, "csv") == 'target\r\n"//a\x1b[2J\u202eb\nc"\r\n'
    assert json.loads(tables.render(HOSTILE, "json")) == [{"target": "//a\x1b[2J\u202eb\nc"}]


def test_dates_python_cannot_hold_are_shown_as_arrow_writes_them() -> None:
    relation = duckdb.sql("select date '-2025-01-01' as d, [date '-2025-01-01'] as nested")
    assert relation is not None
    answer = relation.to_arrow_table()
    assert tables.render(answer.select(["d"]), "csv") == "d\r\n-2025-01-01\r\n"
    with pytest.raises(tables.UnshowableValue, match="the column 'nested' holds values"):
        tables.render(answer, "json")


# An arro3 Table (DuckDB's answer through the Arrow C stream) against the pyarrow Table of
# the same answer, which the tests above hold to texts written by hand: the same text in
# every format, or the same error. Where arro3 alone reads the answer ("plain"), it reads it
# with pyarrow's import made to fail.


def _outcomes(table: pa.Table | Arro3Table) -> dict[tuple[str, bool], str]:
    seen: dict[tuple[str, bool], str] = {}
    for format in tables.TABLE_FORMATS:
        for terminal in (False, True):
            try:
                seen[format, terminal] = tables.render(table, format, terminal=terminal)
            except tables.UnshowableValue as error:
                seen[format, terminal] = f"UnshowableValue: {error}"
    return seen


def _same_outcomes(
    answer: Arro3Table, truth: pa.Table, plain: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _outcomes(truth)
    if not plain:
        assert _outcomes(answer) == expected
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # importing pyarrow fails from here on
    if plain:
        assert _outcomes(answer) == expected
    else:  # the answer did go through pyarrow
        with pytest.raises(ImportError):
            tables.render(answer, "json")


def _hostile(text: str) -> str:
    """SQL for text that must not reach a terminal raw: ESC, a bidi override, a line break."""
    return f"'{text}' || chr(27) || '[2J' || chr(8238) || 'b' || chr(10) || 'c'"


DUCKDB_ANSWERS = [
    pytest.param(
        (),
        "select 1::TINYINT as i8, -2::SMALLINT as i16, 3::INTEGER as i32,"
        " 9223372036854775807::BIGINT as i64, 255::UTINYINT as u8,"
        " 18446744073709551615::UBIGINT as u64, NULL::INTEGER as missing",
        True,
        id="integers",
    ),
    pytest.param(
        (),
        "from (values (1.5::DOUBLE, 0.1::FLOAT), ('nan'::DOUBLE, 'inf'::FLOAT),"
        " ('-inf'::DOUBLE, NULL), (-0.0::DOUBLE, 2.5e-07::FLOAT), (1e300, '-nan'::FLOAT))"
        " t(d, f)",
        True,
        id="floats",
    ),
    pytest.param(
        (),
        "select 12.34::DECIMAL(10, 2) as money, 1.5 as literal, 1.50::DECIMAL(4, 2) as trailing,"
        " -0.001::DECIMAL(18, 3) as tiny, 0::DECIMAL(5, 5) as zero,"
        " 12345678901234567890123::HUGEINT as huge,"
        " 170141183460469231731687303715884105727::HUGEINT as widest,"
        " (select sum(i) from range(10) t(i)) as total, NULL::DECIMAL(10, 2) as missing",
        True,
        id="decimals",
    ),
    pytest.param(
        (),
        "select 'x' as s, '' as empty, NULL as nothing, NULL::VARCHAR as no_text, true as yes,"
        " false as no, NULL::BOOLEAN as unknown, 'a'::ENUM('a', 'b') as enum,"
        " '0b5f2f4e-8a9c-4b0e-9d2a-3c1e5f6a7b8c'::UUID as id, '{\"a\": 1}'::JSON as doc",
        True,
        id="text-and-booleans",
    ),
    pytest.param(
        (),
        f"select {_hostile('//a')} as target, '漢字' || chr(12354) as wide,"
        " 'e' || chr(769) as combining, '=1+1' as formula, '-2' as minus, '@sum' as at,"
        r" 'a\b' as backslash, 'quote\"d, comma' as quoted, chr(9) || 'tab' as tab,"
        " chr(13) || 'cr' as cr",
        True,
        id="text-from-builds",
    ),
    pytest.param(
        (),
        'select 1 as a, 2 as a, 3 as a_1, \'v\' as "=cmd", 4 as "漢字", 5 as "x\x1b[2J\u202ey"',
        True,
        id="column-names",
    ),
    pytest.param(
        (),
        "from (values"
        " (DATE '2026-01-02', TIMESTAMP '2026-01-02 03:04:05.123', TIMESTAMP '2026-01-02 03:04:05',"
        "  TIMESTAMP '2026-01-02 03:04:05.123456', TIME '01:02:03', TIME '23:59:59.5'),"
        " (DATE '0001-01-01', TIMESTAMP '0001-01-01 00:00:00', NULL, NULL, TIME '00:00:00', NULL),"
        " (DATE '9999-12-31', TIMESTAMP '9999-12-31 23:59:59.999999', NULL, NULL, NULL, NULL),"
        " (NULL, NULL, NULL, NULL, NULL, NULL))"
        " t(day, ms, s, us, clock, half)",
        True,
        id="dates-and-times",
    ),
    pytest.param(
        # A zone of daylight saving, with 01:30 twice on 2020-11-01 (the second one is fold=1).
        ("SET TimeZone = 'America/New_York'",),
        "select TIMESTAMPTZ '2026-01-02 03:04:05.5+02' as tz,"
        " TIMESTAMPTZ '2020-11-01 05:30:00+00' as first,"
        " TIMESTAMPTZ '2020-11-01 06:30:00+00' as again,"
        " TIMESTAMP_S '2026-01-02 03:04:05' as s, TIMESTAMP_MS '2026-01-02 03:04:05.123' as ms,"
        " NULL::TIMESTAMPTZ as missing, TIMETZ '01:02:03+02' as timetz",
        True,
        id="zones-and-units",
    ),
    pytest.param(
        (),
        "select TIMESTAMPTZ '2026-01-02 03:04:05.5+02' as utc",
        True,
        id="utc",
    ),
    pytest.param(
        (),
        "select TIMESTAMP_NS '2026-01-02 03:04:05.123456789' as ns,"
        " TIMESTAMP_NS '2026-01-02 03:04:05.123456' as whole_us",
        False,
        id="nanoseconds",
    ),
    pytest.param(
        (),
        "select TIMESTAMP_NS '2026-01-02 03:04:05.123456' as whole_us",
        False,
        id="nanoseconds-of-whole-microseconds",
    ),
    pytest.param(
        (),
        "select INTERVAL '1 month 2 days 3 hours 4 minutes 5.5 seconds' as i,"
        " INTERVAL '-90 minutes' as back, 1 as n",
        False,
        id="intervals",
    ),
    pytest.param(
        (),
        r"select 'ab'::BLOB as b, '\xAA\x41\x5C'::BLOB as c, ''::BLOB as e, '=1'::BLOB as f,"
        " '101'::BIT as bits",
        True,
        id="bytes",
    ),
    pytest.param(
        (),
        "select [1, 2] as l, ['a', NULL, '=x'] as s, []::INT[] as empty, NULL::INT[] as missing,"
        " [[1], [2, 3], NULL] as nested, [1.5, 'nan'::DOUBLE, 'inf'] as floats, [true] as bools,"
        r" ['\xAA'::BLOB] as blobs, [1, 2, 3]::INT[3] as fixed, [NULL] as nulls,"
        f" [{_hostile('x')}] as hostile",
        True,
        id="lists",
    ),
    pytest.param(
        (),
        "select {'a': 1, 'b': 'x'} as s, {'k': 'v', 'n': null} as n, [{'a': 1}] as ls,"
        " {'l': [1, 2], 's': {'c': '=1'}} as deep, NULL::STRUCT(a INT) as missing,"
        " 'a'::ENUM('a', 'b') as e",
        True,
        id="structs",
    ),
    pytest.param(
        (),
        "select MAP {'k': 1, 'j': 2} as m, MAP {1: 'a'} as ints, {'m': MAP {'a': 1}} as inside",
        False,
        id="maps",
    ),
    pytest.param(
        (),
        "select [DATE '2026-01-01'] as days, [1.5::DECIMAL(4, 1)] as decimals",
        False,
        id="dates-and-decimals-in-lists",
    ),
    pytest.param(
        (),
        "select {'d': DATE '2026-01-01', 't': TIMESTAMP '2026-01-01 01:02:03'} as inside",
        False,
        id="dates-in-structs",
    ),
    pytest.param(
        (),
        "select date '-2025-01-01' as before_one, DATE 'infinity' as inf,"
        " TIMESTAMP '-infinity' as ninf, TIMESTAMP '294247-01-10 04:00:54.775806' as last",
        False,
        id="dates-python-cannot-hold",
    ),
    pytest.param(
        (),
        "select DATE 'infinity' as inf, 1 as n",
        False,
        id="infinity-alone",
    ),
    pytest.param((), "select [DATE 'infinity'] as nested", False, id="unshowable"),
    pytest.param((), "select union_value(k := 1)::UNION(k INT, s VARCHAR) as u", False, id="union"),
    pytest.param((), "select 123::VARINT as v", False, id="varint"),
    pytest.param(
        ("SET arrow_lossless_conversion = true",),
        "select '0b5f2f4e-8a9c-4b0e-9d2a-3c1e5f6a7b8c'::UUID as id, ['x'] as l",
        False,
        id="uuid-as-extension",
    ),
    pytest.param(
        ("SET arrow_lossless_conversion = true",),
        "select ['0b5f2f4e-8a9c-4b0e-9d2a-3c1e5f6a7b8c'::UUID] as ids",
        False,
        id="uuid-in-a-list",
    ),
    pytest.param(
        ("SET arrow_output_version = '1.5'", "SET produce_arrow_string_view = true"),
        f"select 'short' as s, 'a text longer than twelve bytes' as long, {_hostile('v')} as h,"
        " 'ab'::BLOB as b, ['x', NULL] as l, {'k': 'v'} as st",
        True,
        id="string-views",
    ),
    pytest.param(
        ("SET arrow_large_buffer_size = true",),
        "select 'x' as s, 'ab'::BLOB as b, [1] as l",
        True,
        id="large-buffers",
    ),
    pytest.param(
        ("SET arrow_output_version = '1.5'", "SET arrow_output_list_view = true"),
        "select [1, 2] as l",
        False,
        id="list-views",
    ),
    pytest.param(
        (),
        "select i, i * 1.5 as f, 'row ' || i as s, DATE '2026-01-01' + i::INTEGER as d,"
        " [i, i + 1] as l, i % 2 = 0 as even from range(5) t(i)",
        True,
        id="rows",
    ),
    pytest.param(
        (),
        "select 1 as a, 'x' as b, DATE '2026-01-01' as d, 1.5 as n where false",
        True,
        id="no-rows",
    ),
]


@pytest.mark.parametrize(("setup", "query", "plain"), DUCKDB_ANSWERS)
def test_an_arro3_answer_reads_as_the_pyarrow_one(
    setup: tuple[str, ...], query: str, plain: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = duckdb.connect()
    for statement in setup:
        connection.execute(statement)
    relation = connection.sql(query)
    assert relation is not None
    _same_outcomes(Arro3Table.from_arrow(relation), relation.to_arrow_table(), plain, monkeypatch)


def _with_bytes(kind: pa.DataType, values: list[int]) -> pa.Array:
    """An array of raw integers as ``kind``: values no Python object would make."""
    storage = pa.int32() if kind.bit_width == 32 else pa.int64()
    return pa.array(values, storage).view(kind)


def _decimals(kind: pa.DataType, values: list[int]) -> pa.Array:
    """Unscaled integers as decimals, beyond the type's precision too (as DuckDB's HUGEINT)."""
    width = kind.bit_width // 8
    data = b"".join(v.to_bytes(width, "little", signed=True) for v in values)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(data)])


# 01:30 twice in New York, as daylight saving time ends: the second is fold=1.
NEW_YORK_FOLD = [datetime(2020, 11, 1, 4, 30, tzinfo=UTC), datetime(2020, 11, 1, 6, 30, tzinfo=UTC)]

# Arrow types DuckDB gives only with settings, or never, built with pyarrow.
ARROW_ANSWERS = [
    pytest.param(
        {
            "large": pa.array(["=a", None, "漢字"], pa.large_string()),
            "view": pa.array(["x", None, "a text longer than twelve bytes"], pa.string_view()),
            "bytes": pa.array([b"\x00", None, b"ab"], pa.large_binary()),
            "bytes_view": pa.array([b"\xff" * 20, None, b""], pa.binary_view()),
            "fixed": pa.array([b"ab", None, b"\\x"], pa.binary(2)),
            "half": pa.array([1.5, None, float("nan")], pa.float16()),
            "nothing": pa.nulls(3),
        },
        True,
        id="layouts",
    ),
    pytest.param(
        {
            "s": pa.array([time(1, 2, 3), None, time(23, 59, 59)], pa.time32("s")),
            "ms": pa.array([time(1, 2, 3, 4000), None, time(0)], pa.time32("ms")),
            "day": pa.array([date(2020, 1, 1), None, date(1, 1, 1)], pa.date64()),
            "noon": _with_bytes(pa.date64(), [43_200_000, 0, -86_400_000]),
        },
        True,
        id="times-and-dates",
    ),
    pytest.param(
        {
            f"{unit}_{zone}": pa.array([*NEW_YORK_FOLD, None], pa.timestamp(unit, zone))
            for unit in ("s", "ms", "us")
            for zone in ("UTC", "+05:30", "-00:30", "America/New_York", "Etc/GMT+3")
        },
        True,
        id="zones",
    ),
    pytest.param(
        {
            unit: pa.array([timedelta(seconds=1), None, timedelta(days=-1)], pa.duration(unit))
            for unit in ("s", "ms", "us")
        },
        True,
        id="durations",
    ),
    pytest.param(
        {
            "beyond": _decimals(pa.decimal128(4, 2), [12345, -12345, 999, 2**127 - 1]),
            "wide": _decimals(pa.decimal256(40, 5), [1, -(10**39), 0, 5]),
            "wider": _decimals(pa.decimal256(4, 0), [12345, 1, 2, 3]),
        },
        True,
        id="decimals-beyond-precision",
    ),
    pytest.param(
        {"widest": _decimals(pa.decimal256(76, 0), [2**255 - 1, 10**76, 10**75, -1])},
        False,
        id="decimals-of-77-digits",
    ),
    pytest.param({"n": pa.array([Decimal("1.23E+4")], pa.decimal128(5, -2))}, False, id="scale"),
    pytest.param({"n": pa.array([Decimal("1.5")], pa.decimal32(5, 2))}, False, id="decimal32"),
    pytest.param(
        {"e": pa.array(["a", None, "a"]).dictionary_encode(), "l": pa.array([[1], None, []])},
        True,
        id="dictionaries",
    ),
    pytest.param(
        {"days": pa.array([date(2020, 1, 1), None, date(2020, 1, 1)]).dictionary_encode()},
        False,
        id="dictionary-of-dates",
    ),
    pytest.param(
        {
            "ll": pa.array([[1], None, []], pa.large_list(pa.int64())),
            "fixed": pa.array([[1, 2], None, [3, None]], pa.list_(pa.int64(), 2)),
            "empty": pa.array([{}, None, {}], pa.struct([])),
        },
        True,
        id="nested",
    ),
    pytest.param({"t": _with_bytes(pa.time32("s"), [100_000, 1])}, False, id="time-past-a-day"),
    pytest.param({"t": _with_bytes(pa.time64("us"), [-1, 1])}, False, id="time-before-midnight"),
    pytest.param({"t": _with_bytes(pa.timestamp("s"), [2**62, 1])}, False, id="beyond-chrono"),
    pytest.param({"d": _with_bytes(pa.date32(), [2**31 - 1, 1])}, False, id="date-infinity"),
    pytest.param({"d": _with_bytes(pa.duration("s"), [2**62, 1])}, False, id="long-duration"),
    pytest.param({"d": _with_bytes(pa.duration("ns"), [1, 1000])}, False, id="duration-ns"),
    pytest.param({"t": _with_bytes(pa.time64("ns"), [1, 1000])}, False, id="time-ns"),
    pytest.param(
        {"z": _with_bytes(pa.timestamp("us", "+0200"), [0, 1])}, False, id="zone-pyarrow-refuses"
    ),
    pytest.param({"z": _with_bytes(pa.timestamp("us", "Nope"), [0, 1])}, False, id="no-zone"),
    pytest.param(
        {"s": pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])},
        False,
        id="struct-of-one-name-twice",
    ),
    pytest.param({"u": pa.array([UUID(int=1).bytes, None], pa.uuid())}, False, id="uuid-extension"),
    pytest.param(
        {
            "u": pa.UnionArray.from_sparse(
                pa.array([0, 1], pa.int8()), [pa.array([1, 2]), pa.array(["a", "b"])]
            )
        },
        False,
        id="union",
    ),
    pytest.param(
        {"r": pa.RunEndEncodedArray.from_arrays([1, 3], ["a", "b"])}, False, id="run-end-encoded"
    ),
    pytest.param(
        {"v": pa.array([[1], None], pa.large_list_view(pa.int64()))}, False, id="list-view"
    ),
    pytest.param(
        {"i": pa.array([pa.MonthDayNano([1, 2, 3]), None], pa.month_day_nano_interval())},
        False,
        id="interval",
    ),
]


@pytest.mark.parametrize(("columns", "plain"), ARROW_ANSWERS)
def test_arrow_types_read_by_arro3_as_by_pyarrow(
    columns: dict[str, pa.Array], plain: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = pa.table(columns)
    _same_outcomes(Arro3Table.from_arrow(table), table, plain, monkeypatch)


def test_an_arro3_statement_that_answers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _same_outcomes(Arro3Table.from_pydict({}), pa.table({}), True, monkeypatch)
    assert tables.render(Arro3Table.from_pydict({}), "json") == "[]\n"


def test_an_arro3_answer_of_plain_types_loads_no_pyarrow() -> None:
    # `builder telemetry sql` answers through DuckDB and arro3 so that it never pays
    # pyarrow's import; an answer of other types is still shown, through pyarrow.
    code = (
        "import sys, duckdb\n"
        "from arro3.core import Table\n"
        "from telemetry import tables\n"
        "def show(query):\n"
        "    answer = Table.from_arrow(duckdb.connect().sql(query))\n"
        "    print(tables.render(answer, 'table'), 'pyarrow' in sys.modules, sep='')\n"
        "show(\"select 3 as n, 1.5 as d, '//a:b' as t, DATE '2026-01-02' as day, [1] as l\")\n"
        "show(\"select INTERVAL '1 month 2 days' as i\")\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == (
        "n  d    t      day         l\n"
        "-  ---  -----  ----------  ---\n"
        "3  1.5  //a:b  2026-01-02  [1]\n"
        "False\n"
        "i\n"
        "-----\n"
        "P1M2D\n"
        "True\n"
    )
