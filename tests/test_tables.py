"""Tables as text (telemetry.tables): the answer of ``builder telemetry sql`` as aligned
columns, CSV and JSON, with every type DuckDB answers; the expected texts are written out by
hand."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pytest

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
