"""`builder telemetry export`: JSON with the seed's keys, CSV for spreadsheets, Parquet, Arrow."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from tests.conftest import HOUR, T0, Runner, small_history

SEED_KEYS = [
    "startTime",
    "durationMs",
    "totalTargets",
    "built",
    "cached",
    "failed",
    "cacheHitRate",
    "parallelismUtilization",
    "targetsPerSecond",
    "succeeded",
]
# The keys after the seed's, as CSV has them too.
MORE_KEYS = [
    "sessionId",
    "endTime",
    "skipped",
    "interrupted",
    "error",
    "parallelism",
    "tool",
    "host",
    "commit",
    "branch",
    "labels",
]
# Last, in JSON only: what a stored session row is rebuilt from.
EXACT_KEYS = ["startTimeMs", "endTimeMs", "executedMs", "peakConcurrency"]


def test_json_has_the_seeds_keys_first_oldest_first(small_cli: Runner) -> None:
    result = small_cli("telemetry", "export")
    assert (result.code, result.stderr) == (0, "")
    sessions = json.loads(result.stdout)["sessions"]
    assert [s["sessionId"] for s in sessions] == ["a", "b", "c"]
    assert all(list(s)[: len(SEED_KEYS)] == SEED_KEYS for s in sessions)
    assert sessions[0] == {
        "startTime": "2025-10-27T14:23:20",
        "durationMs": 1000,
        "totalTargets": 4,
        "built": 3,
        "cached": 1,
        "failed": 0,
        "cacheHitRate": 25.0,
        "parallelismUtilization": 45.0,
        "targetsPerSecond": 4.0,
        "succeeded": True,
        "sessionId": "a",
        "endTime": "2025-10-27T14:23:21",
        "skipped": 0,
        "interrupted": False,
        "error": None,
        "parallelism": 2,
        "tool": "ninja",
        "host": None,
        "commit": None,
        "branch": None,
        "labels": {"ci": "true"},
        # Then what the row needs to be rebuilt exactly: T0 to the millisecond, the 400 +
        # 300 + 200 ms of its executed targets, compile and test at once.
        "startTimeMs": 1761575000000,
        "endTimeMs": 1761575001000,
        "executedMs": 900,
        "peakConcurrency": 2,
    }


def test_json_ends_with_what_the_stored_rows_hold(cli: Runner, tmp_path: Path) -> None:
    """Each session's times to the millisecond, executed time and peak concurrency, after
    every other key, as the stored files hold them (read here with pyarrow); CSV keeps its
    columns."""
    killed = [  # off a whole second, and interrupted after one target
        {"event": "build_started", "session": "k", "ts": T0 + 4 * HOUR + 123},
        {"event": "target_started", "session": "k", "ts": T0 + 4 * HOUR + 130, "target": "x"},
        {"event": "target_finished", "session": "k", "ts": T0 + 4 * HOUR + 877, "target": "x",
         "status": "built"},
    ]  # fmt: skip
    events = [*small_history(), *map(json.dumps, killed)]
    assert cli("telemetry", "ingest", "-", stdin="\n".join(events).encode()).code == 0
    sessions = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert all(list(s) == [*SEED_KEYS, *MORE_KEYS, *EXACT_KEYS] for s in sessions)
    # By hand: a runs compile and test at once (400 + 300 ms) and link (200 ms); b compile,
    # test and link over 1000 + 1100 + 600 ms, two at a time; c compile alone for 3000 ms;
    # k its one target from +130 to +877 ms, and it ends there.
    assert [[s["sessionId"], *(s[key] for key in EXACT_KEYS)] for s in sessions] == [
        ["a", T0, T0 + 1000, 900, 2],
        ["b", T0 + HOUR, T0 + HOUR + 2000, 2700, 2],
        ["c", T0 + 2 * HOUR, T0 + 2 * HOUR + 3000, 3000, 1],
        ["k", T0 + 4 * HOUR + 123, T0 + 4 * HOUR + 877, 747, 1],
    ]
    stored = {}
    for path in (tmp_path / "telemetry" / "sessions").rglob("*.arrow"):
        with ipc.open_file(path) as reader:
            table = reader.read_all()
        columns = [table.column(name).cast(pa.int64()).to_pylist() for name in STORED]
        for session, *values in zip(table.column("session_id").to_pylist(), *columns, strict=True):
            stored[session] = values
    assert {s["sessionId"]: [s[key] for key in EXACT_KEYS] for s in sessions} == stored
    assert sessions[3]["startTime"] == "2025-10-27T18:23:20"  # still to the second
    header = cli("telemetry", "export", "--format", "csv").stdout.split("\r\n")[0]
    assert header == ",".join([*SEED_KEYS, *MORE_KEYS])


STORED = ["start_time", "end_time", "executed_ms", "peak_concurrency"]


def test_json_rates_have_two_decimals_as_in_the_seed(small_cli: Runner) -> None:
    text = small_cli("telemetry", "export").stdout
    assert '"cacheHitRate": 25.00,' in text
    assert '"parallelismUtilization": 67.50,' in text
    assert '"targetsPerSecond": 1.33,' in text


def test_csv_reads_back_to_the_same_numbers(small_cli: Runner) -> None:
    result = small_cli("telemetry", "export", "--format", "csv")
    assert "\r\n" in result.stdout  # RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    exported = json.loads(small_cli("telemetry", "export").stdout)["sessions"]
    assert len(rows) == len(exported) == 3
    for row, session in zip(rows, exported, strict=True):
        for key in SEED_KEYS:
            expected = session[key]
            if isinstance(expected, bool):
                assert row[key] == ("true" if expected else "false")
            elif isinstance(expected, float):
                assert float(row[key]) == round(expected, 2)
            else:
                assert row[key] == str(expected)
    assert rows[2]["error"] == "Compilation failed for //app:compile"
    assert json.loads(rows[0]["labels"]) == {"ci": "true"}


def test_csv_quotes_commas_quotes_and_newlines(cli: Runner) -> None:
    error = 'linker said "no", then\nstopped'
    events = [
        {"event": "build_started", "session": "q", "ts": 1761575000000},
        {
            "event": "build_finished",
            "session": "q",
            "ts": 1761575000500,
            "success": False,
            "error": error,
        },
    ]
    cli("telemetry", "ingest", "-", stdin="\n".join(map(json.dumps, events)).encode())
    text = cli("telemetry", "export", "--format", "csv").stdout
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["error"] == error
    assert row["durationMs"] == "500"


def test_output_file_and_binary_formats(small_cli: Runner, tmp_path: Path) -> None:
    parquet = tmp_path / "sessions.parquet"
    arrow = tmp_path / "sessions.arrow"
    assert (
        small_cli("telemetry", "export", "--format", "parquet", "--output", str(parquet)).code == 0
    )
    assert small_cli("telemetry", "export", "--format", "arrow", "-o", str(arrow)).code == 0
    table = pq.read_table(parquet)
    assert table.column("session_id").to_pylist() == ["a", "b", "c"]
    assert table.column("cache_hit_rate").to_pylist() == [25.0, 40.0, 50.0]
    with ipc.open_file(arrow) as reader:
        assert reader.read_all().column("duration_ms").to_pylist() == [1000, 2000, 3000]
    con = duckdb.connect()
    assert con.execute(
        f"select sum(total_targets), max(parallelism_utilization) from '{parquet}'"
    ).fetchone() == (13, 67.5)


def test_output_replaces_a_file_atomically(small_cli: Runner, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    small_cli("telemetry", "export", "--output", str(target))
    assert len(json.loads(target.read_text())["sessions"]) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_unknown_format_is_one_line(small_cli: Runner) -> None:
    result = small_cli("telemetry", "export", "--format", "xml")
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "xml" in result.stderr


def test_window(small_cli: Runner) -> None:
    sessions = json.loads(small_cli("telemetry", "export", "--since", "2025-10-27T15:00Z").stdout)
    assert [s["sessionId"] for s in sessions["sessions"]] == ["b", "c"]


def test_empty_store_exports_valid_empty_files(cli: Runner) -> None:
    result = cli("telemetry", "export")
    assert json.loads(result.stdout) == {"sessions": []}
    assert result.stderr.startswith("No telemetry data yet in ")
    header = cli("telemetry", "export", "--format", "csv").stdout
    assert header.startswith("startTime,durationMs,totalTargets,") and header.count("\n") == 1


def test_output_through_a_symlink_keeps_the_link(small_cli: Runner, tmp_path: Path) -> None:
    real = tmp_path / "real" / "sessions.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    assert small_cli("telemetry", "export", "-o", str(link)).code == 0
    assert link.is_symlink()
    assert len(json.loads(real.read_text())["sessions"]) == 3


def test_output_into_a_fifo_writes_into_it(small_cli: Runner, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert small_cli("telemetry", "export", "-o", str(fifo)).code == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert len(json.loads(received[0])["sessions"]) == 3


def test_output_with_the_longest_file_name(small_cli: Runner, tmp_path: Path) -> None:
    target = tmp_path / ("x" * 250 + ".json")
    assert small_cli("telemetry", "export", "-o", str(target)).code == 0
    assert target.exists()
