"""`builder telemetry sql`: one query over the store with a real DuckDB, its answer as a table,
CSV or JSON with the exact values, text from builds escaped on a terminal, and every failure
one ``Error:`` line.

The expected values are small_history()'s (tests/conftest.py), worked out by hand: builds a,
b and c of 1000, 2000 and 3000 ms started on 2025-10-27 at 14:23:20, 15:23:20 and 16:23:20
UTC, with 4, 5 and 4 targets and hit rates of 25, 40 and 50%."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.storage import TelemetryStorage
from tests.cli.test_terminal import _in_terminal
from tests.conftest import BUILDER, Runner, process_env, small_history
from tests.test_properties import SETTINGS

SESSIONS = "select session_id, tool, error, start_time, labels from sessions order by session_id"
# A target label that would clear the screen and reverse the line, and a line break.
EVIL = "//evil:a\x1b[2J\u202eb\nc"


def test_a_count_as_a_table(small_cli: Runner) -> None:
    result = small_cli("telemetry", "sql", "select count(*) from targets")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == "count_star()\n------------\n          13\n"


def test_a_table_for_people(small_cli: Runner) -> None:
    query = "select session_id, duration_ms, cache_hit_rate, date from sessions order by 1"
    result = small_cli("telemetry", "sql", query)
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == (
        "session_id  duration_ms  cache_hit_rate  date\n"
        "----------  -----------  --------------  ----------\n"
        "a                  1000            25.0  2025-10-27\n"
        "b                  2000            40.0  2025-10-27\n"
        "c                  3000            50.0  2025-10-27\n"
    )


def test_csv_is_rfc_4180_with_a_header(small_cli: Runner) -> None:
    result = small_cli("telemetry", "sql", SESSIONS, "--format", "csv")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == (
        "session_id,tool,error,start_time,labels\r\n"
        'a,ninja,,2025-10-27T14:23:20Z,"{""ci"": ""true""}"\r\n'
        "b,bazel,,2025-10-27T15:23:20Z,{}\r\n"
        "c,,Compilation failed for //app:compile,2025-10-27T16:23:20Z,{}\r\n"
    )


def test_json_is_an_array_of_objects(small_cli: Runner) -> None:
    result = small_cli("telemetry", "sql", SESSIONS, "--format", "json")
    assert (result.code, result.stderr) == (0, "")
    assert json.loads(result.stdout) == [
        {
            "session_id": "a",
            "tool": "ninja",
            "error": None,
            "start_time": "2025-10-27T14:23:20Z",
            "labels": {"ci": "true"},
        },
        {
            "session_id": "b",
            "tool": "bazel",
            "error": None,
            "start_time": "2025-10-27T15:23:20Z",
            "labels": {},
        },
        {
            "session_id": "c",
            "tool": None,
            "error": "Compilation failed for //app:compile",
            "start_time": "2025-10-27T16:23:20Z",
            "labels": {},
        },
    ]
    assert result.stdout.startswith('[\n  {"session_id": "a", "tool": "ninja", "error": null, ')


def test_since_and_until_choose_the_builds_and_their_targets(small_cli: Runner) -> None:
    query = "select count(*) as builds, (select count(*) from targets) as runs from sessions"
    late = small_cli("telemetry", "sql", query, "--since", "2025-10-27T15:00", "--format", "csv")
    assert (late.code, late.stdout) == (0, "builds,runs\r\n2,9\r\n")  # b and c
    early = small_cli("telemetry", "sql", query, "--until", "2025-10-27T15:00", "--format", "csv")
    assert (early.code, early.stdout) == (0, "builds,runs\r\n1,4\r\n")  # a
    before = small_cli("telemetry", "sql", query, "--until", "2025-10-26", "--format", "csv")
    assert (before.code, before.stdout) == (0, "builds,runs\r\n0,0\r\n")


def test_an_empty_store_has_empty_views(cli: Runner, tmp_path: Path) -> None:
    result = cli("telemetry", "sql", "select count(*) from targets")
    assert (result.code, result.stdout, result.stderr) == (
        0,
        "count_star()\n------------\n           0\n",
        "",
    )
    every = "select (select count(*) from sessions), (select count(*) from daily_targets)"
    assert cli("telemetry", "sql", every, "--format", "json").stdout.count(": 0") == 2
    assert not (tmp_path / "telemetry").exists()


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("selec 1", 'Error: Parser Error: syntax error at or near "selec"'),
        (
            "select nope from targets",
            'Error: Binder Error: Referenced column "nope" not found in FROM clause!',
        ),
        ("select * from builds", "Error: Catalog Error: Table with name builds does not exist!"),
        ("select 1 / 0 = cast('x' as int)", "Error: Conversion Error: Could not convert string"),
    ],
)
def test_a_query_duckdb_refuses_is_one_error_line(
    small_cli: Runner, query: str, error: str
) -> None:
    result = small_cli("telemetry", "sql", query)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith(error)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_an_unknown_format_is_an_unusable_command_line(small_cli: Runner) -> None:
    result = small_cli("telemetry", "sql", "select 1", "--format", "xml")
    assert result.code == 2
    assert result.stderr == (
        "Error: Invalid value for '--format': 'xml' is not one of table, csv, json.\n"
    )


def test_a_damaged_file_is_named_and_left_out(cli: Runner, tmp_path: Path) -> None:
    for session in ("a", "b", "c"):
        build = [line for line in small_history() if json.loads(line)["session"] == session]
        assert cli("telemetry", "ingest", "-", stdin="\n".join(build).encode()).code == 0
    [victim] = [
        path
        for path in (tmp_path / "telemetry" / "targets").rglob("*.arrow")
        if path.name.endswith("-n5.arrow")  # b's five targets
    ]
    victim.write_bytes(victim.read_bytes()[:-20])
    result = cli("telemetry", "sql", "select count(*) from targets", "--format", "csv")
    assert (result.code, result.stdout) == (0, "count_star()\r\n8\r\n")
    assert result.stderr.startswith(f"Warning: skipping {victim}: ")
    assert result.stderr.count("\n") == 1


def test_a_damaged_dictionary_of_target_labels_is_named_and_left_out(
    cli: Runner, tmp_path: Path
) -> None:
    """pyarrow's dataset reader ends the process (a segmentation fault) on a dictionary
    batch it cannot decompress: the file is named and left out before DuckDB reads it."""
    for session in ("a", "b", "c"):
        build = [line for line in small_history() if json.loads(line)["session"] == session]
        assert cli("telemetry", "ingest", "-", stdin="\n".join(build).encode()).code == 0
    [victim] = [
        path
        for path in (tmp_path / "telemetry" / "targets").rglob("*.arrow")
        if path.name.endswith("-n5.arrow")  # b's five targets
    ]
    data = bytearray(victim.read_bytes())
    # The file's first zstd frame is in its first dictionary batch (the target labels),
    # which comes before every record batch; its footer stays sound.
    frame = data.index(bytes.fromhex("28b52ffd"))
    data[frame : frame + 4] = bytes(4)
    victim.write_bytes(bytes(data))
    result = cli("telemetry", "sql", "select count(*) from targets", "--format", "csv")
    assert (result.code, result.stdout) == (0, "count_star()\r\n8\r\n")
    assert result.stderr.startswith(f"Warning: skipping {victim}: damaged data (a dictionary")
    assert result.stderr.count("\n") == 1
    # The other readers name the same file, and verify finds it.
    verify = cli("telemetry", "verify")
    assert verify.code == 1 and f"damaged: {victim}: damaged data" in verify.stdout


def _ingested(tmp_path: Path, name: str, events: list[dict[str, object]]) -> Path:
    """A store of ``events``, stored by a real ``builder telemetry ingest``."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    subprocess.run(
        [BUILDER, "telemetry", "ingest", str(path)],
        env=process_env(tmp_path / "t"),
        check=True,
        capture_output=True,
    )
    return tmp_path / "t"


def _evil_store(tmp_path: Path) -> Path:
    events = [
        {"event": "build_started", "session": "evil", "ts": 1761575000000},
        {
            "event": "target_finished",
            "session": "evil",
            "ts": 1761575000100,
            "target": EVIL,
            "status": "built",
            "duration_ms": 5,
        },
        {"event": "build_finished", "session": "evil", "ts": 1761575000200, "success": True},
    ]
    return _ingested(tmp_path, "evil", events)


TARGET = "select target from targets"


def test_text_from_builds_reaches_a_terminal_escaped(tmp_path: Path) -> None:
    _evil_store(tmp_path)
    escaped = "//evil:a\\x1b[2J\\u202eb\\nc"
    code, screen = _in_terminal(["telemetry", "sql", TARGET], tmp_path)
    assert (code, screen) == (0, f"target\n{'-' * len(escaped)}\n{escaped}\n")
    code, screen = _in_terminal(["telemetry", "sql", TARGET, "--format", "csv"], tmp_path)
    assert (code, screen) == (0, f"target\r\n{escaped}\r\n")
    code, screen = _in_terminal(["telemetry", "sql", TARGET, "--format", "json"], tmp_path)
    assert (code, screen) == (0, '[\n  {"target": "//evil:a\\u001b[2J\\u202eb\\nc"}\n]\n')


def test_a_pipe_gets_the_exact_values(tmp_path: Path) -> None:
    env = process_env(_evil_store(tmp_path))

    def piped(*args: str) -> bytes:
        done = subprocess.run([BUILDER, "telemetry", "sql", TARGET, *args], env=env,
                              capture_output=True, check=True)  # fmt: skip
        return done.stdout

    assert piped("--format", "csv") == f'target\r\n"{EVIL}"\r\n'.encode()
    assert json.loads(piped("--format", "json")) == [{"target": EVIL}]
    # The table is for people wherever it goes.
    assert piped() == b"target\n" + b"-" * 25 + b"\n//evil:a\\x1b[2J\\u202eb\\nc\n"


def test_without_duckdb_one_line_says_how_to_install_it(tmp_path: Path) -> None:
    """As on a machine where the duckdb extra was not installed."""
    without = (
        "import sys\n"
        "sys.modules['duckdb'] = None\n"
        "from telemetry.cli import main\n"
        "main(['telemetry', 'sql', 'select count(*) from targets'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", without],
        env=process_env(tmp_path / "t"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: DuckDB is not installed; install it with: pip install 'builder-telemetry[duckdb]'\n"
    )


FIXTURE_REUSED = HealthCheck.function_scoped_fixture
# Values of every kind DuckDB answers, Python's range and beyond, and the views' columns.
EXPRESSIONS = [
    "1", "-1.5", "'x'", "null", "true", "'a' || chr(10) || chr(27) || 'b'", "labels", "target",
    "start_time", "cache_hit_rate", "date", "date '2025-01-01'", "date '-0001-01-01'",
    "'infinity'::date", "'-infinity'::timestamptz", "timestamp '2025-01-01 01:02:03.5'",
    "time '01:02:03'", "'01:02:03+05'::timetz", "interval 3 hours", "'\\x00\\xff'::blob",
    "[1, 2]", "[date '-0001-01-01']", "{'a': 1}", "map {'k': 'v'}", "1.5::decimal(10, 2)",
    "12345678901234567890123::hugeint", "'nan'::double", "1e308 * 10", "'101'::bit",
    "union_value(k := 1)", "uuid()", "1 / 0", "cast('x' as int)", "nope",
]  # fmt: skip


# The store is only read: one for every example.
@settings(SETTINGS, suppress_health_check=[*SETTINGS.suppress_health_check, FIXTURE_REUSED])
@given(
    st.lists(st.sampled_from(EXPRESSIONS), min_size=1, max_size=4),
    st.sampled_from(["sessions", "targets", "daily_targets"]),
    st.sampled_from(["table", "csv", "json"]),
)
def test_any_answer_is_written_or_refused_with_one_error_line(
    small_cli: Runner, expressions: list[str], view: str, format: str
) -> None:
    query = f"select {', '.join(expressions)} from {view} limit 2"
    result = small_cli("telemetry", "sql", query, "--format", format)
    assert result.code in (0, 1), result.stderr
    if result.code:
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert "internal error" not in result.stderr
    elif format == "json":
        assert isinstance(json.loads(result.stdout), list)


# Target labels a spreadsheet would run as formulas, each with its own duration to order by.
FORMULAS = ["=1+2", "+3", "-4", "@SUM(A1)", "\t=5", "\r=6", "//ok:a"]


def _formula_store(tmp_path: Path) -> Path:
    """One build, session ``=build`` by tool ``@tool`` failing with ``-cmd|' /C calc'!A0``,
    whose targets are FORMULAS, the first 1 ms long, the next 2 ms, and so on."""
    events: list[dict[str, object]] = [
        {"event": "build_started", "session": "=build", "ts": 1761575000000, "tool": "@tool"},
        *(
            {
                "event": "target_finished",
                "session": "=build",
                "ts": 1761575000100,
                "target": target,
                "status": "built",
                "duration_ms": n,
            }
            for n, target in enumerate(FORMULAS, start=1)
        ),
        {
            "event": "build_finished",
            "session": "=build",
            "ts": 1761575000200,
            "success": False,
            "error": "-cmd|' /C calc'!A0",
        },
    ]
    return _ingested(tmp_path, "formulas", events)


def _sql_csv(store: Path, query: str) -> str:
    done = subprocess.run(
        [BUILDER, "telemetry", "sql", query, "--format", "csv"],
        env=process_env(store),
        capture_output=True,
        check=True,
    )
    assert done.stderr == b""
    return done.stdout.decode()


def test_csv_text_never_runs_as_a_spreadsheet_formula(tmp_path: Path) -> None:
    """Each text cell a spreadsheet would run gets a leading ' (a carriage return inside
    the cell makes CSV quote it); the numbers beside it keep their signs."""
    query = "select target, duration_ms, -duration_ms as negative from targets order by 2"
    assert _sql_csv(_formula_store(tmp_path), query) == (
        "target,duration_ms,negative\r\n"
        "'=1+2,1,-1\r\n"
        "'+3,2,-2\r\n"
        "'-4,3,-3\r\n"
        "'@SUM(A1),4,-4\r\n"
        "'\t=5,5,-5\r\n"
        '"\'\r=6",6,-6\r\n'
        "//ok:a,7,-7\r\n"
    )


def test_csv_guards_text_as_the_export_does(tmp_path: Path) -> None:
    """The session's text in sql's CSV is the export's cell for cell."""
    store = _formula_store(tmp_path)
    query = "select session_id, tool, error, host from sessions"
    ours = _sql_csv(store, query)
    assert ours == "session_id,tool,error,host\r\n'=build,'@tool,'-cmd|' /C calc'!A0,\r\n"
    done = subprocess.run(
        [BUILDER, "telemetry", "export", "--format", "csv"],
        env=process_env(store),
        capture_output=True,
        check=True,
    )
    [export] = list(csv.DictReader(io.StringIO(done.stdout.decode(), newline="")))
    [row] = list(csv.DictReader(io.StringIO(ours, newline="")))
    keys = {"session_id": "sessionId", "tool": "tool", "error": "error", "host": "host"}
    assert row == {ours_key: export[key] for ours_key, key in keys.items()}


def test_csv_guards_text_that_looks_like_a_number_and_no_number(small_cli: Runner) -> None:
    """As the export: text is text, whatever it holds; numbers of every kind and a date
    Python cannot hold (which comes as Arrow's text of it) keep their signs."""
    query = (
        "select '-3' as text, -3 as n, -2.5::double as f, -1.50::decimal(5, 2) as d, "
        "-'infinity'::double as inf, date '-0001-01-01' as day, '=1'::blob as b, "
        "['=a'] as list from sessions limit 1"
    )
    result = small_cli("telemetry", "sql", query, "--format", "csv")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == (
        'text,n,f,d,inf,day,b,list\r\n\'-3,-3,-2.5,-1.50,-Infinity,-0001-01-01,\'=1,"[""=a""]"\r\n'
    )


def test_csv_column_names_from_builds_are_guarded(tmp_path: Path) -> None:
    """A PIVOT names its columns after values from builds."""
    query = "pivot (select target from targets where duration_ms < 3) on target using count(*)"
    assert _sql_csv(_formula_store(tmp_path), query) == "'+3,'=1+2\r\n1,1\r\n"


def test_csv_on_a_terminal_is_guarded_then_escaped(tmp_path: Path) -> None:
    _formula_store(tmp_path)
    query = "select target from targets where duration_ms in (1, 5, 6) order by duration_ms"
    code, screen = _in_terminal(["telemetry", "sql", query, "--format", "csv"], tmp_path)
    assert (code, screen) == (0, "target\r\n'=1+2\r\n'\\t=5\r\n'\\r=6\r\n")


def test_the_table_and_json_keep_formulas_as_they_are(tmp_path: Path) -> None:
    """Neither goes to a spreadsheet: the table is for people, JSON holds typed values."""
    env = process_env(_formula_store(tmp_path))
    query = "select target, -duration_ms as n from targets where duration_ms < 3 order by 2"

    def piped(*args: str) -> str:
        done = subprocess.run([BUILDER, "telemetry", "sql", query, *args], env=env,
                              capture_output=True, check=True)  # fmt: skip
        return done.stdout.decode()

    assert piped() == "target  n\n------  --\n+3      -2\n=1+2    -1\n"
    assert piped("--format", "json") == (
        '[\n  {"target": "+3", "n": -2},\n  {"target": "=1+2", "n": -1}\n]\n'
    )


def test_the_command_loads_neither_pyarrow_nor_numpy(tmp_path: Path) -> None:
    """`builder telemetry sql` over a compacted day and a day of builds not compacted reads
    through DuckDB and arro3 alone: pyarrow's import (numpy's with it) takes about as long
    as the whole query (docs/performance.md). Its answer is the one read through pyarrow, in
    a process that has loaded it, and the one worked out by hand."""
    from pipelines.compaction import compact
    from telemetry.ingest import ingest_jsonl

    store = tmp_path / "telemetry"
    storage = TelemetryStorage(store, clock=lambda: datetime(2025, 10, 29, tzinfo=UTC))
    assert ingest_jsonl(storage, small_history(), apply_retention=False).sessions == 3
    assert compact(storage)  # the 27th: its Parquet copies are read
    later = []  # the same builds two days on, not compacted
    for line in small_history():
        event = json.loads(line)
        event["session"], event["ts"] = f"late-{event['session']}", event["ts"] + 2 * 86_400_000
        later.append(json.dumps(event))
    assert ingest_jsonl(storage, later, apply_retention=False).sessions == 3
    query = (
        "select date, count(*) as rows, sum(duration_ms) as ms, min(target) as first "
        "from targets group by date order by date"
    )
    loaded = (
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'numpy', 'polars'}))"
    )
    code = (
        "import sys\nBEFORE\nfrom telemetry.cli import main\n"
        f"try:\n    main(['telemetry', 'sql', {query!r}])\nexcept SystemExit as e:\n"
        f"    assert e.code == 0, e.code\n{loaded}\n"
    )
    env = process_env(store)
    alone, with_pyarrow = (
        subprocess.run([sys.executable, "-c", code.replace("BEFORE", before)], env=env,
                       capture_output=True, text=True, timeout=120, check=True)
        for before in ("", "import pyarrow")
    )  # fmt: skip
    assert alone.stderr == with_pyarrow.stderr == ""
    # By hand: small_history()'s 13 target rows, their executed runs 300+400+200, 1000+1100
    # +600 and 3000 ms (the others took none), on the 27th and again two days on.
    answer = (
        "date        rows  ms    first\n"
        "----------  ----  ----  -------------\n"
        "2025-10-27    13  6600  //app:compile\n"
        "2025-10-29    13  6600  //app:compile\n"
    )
    assert alone.stdout == answer + "[]\n"
    assert with_pyarrow.stdout.startswith(answer)
    assert "'pyarrow'" in with_pyarrow.stdout.splitlines()[-1]


def test_without_arro3_the_command_reads_through_pyarrow(small_store: TelemetryStorage) -> None:
    """DuckDB installed on its own, without the extra's arro3: the same answer, through
    pyarrow (worked out by hand: small_history()'s 13 target rows)."""
    code = (
        "import sys\n"
        "for name in ('arro3', 'arro3.io', 'arro3.core'):\n"
        "    sys.modules[name] = None\n"
        "from telemetry.cli import main\n"
        "try:\n    main(['telemetry', 'sql', 'select count(*) as n from targets'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('pyarrow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=process_env(small_store.dir),
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert (done.stdout, done.stderr) == ("n\n--\n13\nTrue\n", "")  # names to the left
