"""`builder telemetry ingest FILE|-`: malformed lines are named and skipped, the rest is stored."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, FIXTURES, HOUR, T0, Runner, process_env, small_history

MALFORMED = FIXTURES / "malformed"


def test_ingest_from_stdin_and_file(cli: Runner, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(small_history()) + "\n")
    result = cli("telemetry", "ingest", str(path))
    assert (result.code, result.stdout, result.stderr) == (
        0,
        "Stored 3 builds from 25 events.\n",
        "",
    )
    again = cli("telemetry", "ingest", "-", stdin=path.read_bytes())
    assert again.stdout == "Stored 0 builds from 25 events.\n"
    assert again.stderr == "Skipped 3 builds already stored.\n"
    assert len(json.loads(cli("telemetry", "export").stdout)["sessions"]) == 3


def test_bad_json_line_is_reported_with_its_number(cli: Runner) -> None:
    path = MALFORMED / "bad-json.jsonl"
    result = cli("telemetry", "ingest", str(path))
    assert result.code == 1
    assert result.stdout == "Stored 2 builds from 10 events.\n"
    assert result.stderr == (
        f"{path}:6: not valid JSON (Expecting value)\nSkipped 1 malformed line.\n"
    )
    ids = [s["sessionId"] for s in json.loads(cli("telemetry", "export").stdout)["sessions"]]
    assert ids == ["bj-1", "bj-2"]


def test_bad_fields_are_each_named(cli: Runner) -> None:
    path = MALFORMED / "bad-fields.jsonl"
    result = cli("telemetry", "ingest", str(path))
    assert result.code == 1
    lines = result.stderr.splitlines()
    assert [line.split(":")[1] for line in lines[:-1]] == ["3", "5", "9", "11", "12", "14"]
    assert "status must be one of built, cached, failed, skipped, got 'exploded'" in lines[3]
    assert lines[-1] == "Skipped 6 malformed lines."
    sessions = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert [(s["sessionId"], s["built"]) for s in sessions] == [("bf-1", 1), ("bf-2", 1)]


def test_truncated_stream_keeps_the_open_build_as_interrupted(cli: Runner) -> None:
    result = cli("telemetry", "ingest", str(MALFORMED / "truncated.jsonl"))
    assert result.code == 1
    assert result.stdout == "Stored 2 builds (1 interrupted) from 9 events.\n"
    sessions = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert [(s["sessionId"], s["interrupted"], s["succeeded"]) for s in sessions] == [
        ("tr-1", False, True),
        ("tr-2", True, False),
    ]


def test_binary_garbage_is_one_clear_error(cli: Runner) -> None:
    result = cli("telemetry", "ingest", str(MALFORMED / "not-jsonl.bin"))
    assert result.code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ")
    assert "holds no build events" in result.stderr and "line 1: not UTF-8 text" in result.stderr
    assert "No telemetry data yet" in cli("telemetry", "summary").stdout


def test_empty_input_stores_nothing_and_succeeds(cli: Runner) -> None:
    result = cli("telemetry", "ingest", str(MALFORMED / "empty.jsonl"))
    assert (result.code, result.stdout) == (0, "Stored 0 builds from 0 events.\n")


def test_a_bad_file_never_loses_what_is_stored(small_cli: Runner) -> None:
    before = small_cli("telemetry", "export").stdout
    small_cli("telemetry", "ingest", str(MALFORMED / "not-jsonl.bin"))
    small_cli("telemetry", "ingest", str(MALFORMED / "bad-fields.jsonl"))
    after = json.loads(small_cli("telemetry", "export").stdout)["sessions"]
    kept = [s for s in after if s["sessionId"] in {"a", "b", "c"}]
    assert kept == json.loads(before)["sessions"]
    assert len(after) == 5


def test_missing_file_and_directory(cli: Runner, tmp_path: Path) -> None:
    missing = cli("telemetry", "ingest", str(tmp_path / "nope.jsonl"))
    assert missing.code == 1
    assert (
        missing.stderr == f"Error: {tmp_path / 'nope.jsonl'} does not exist; give a "
        "file, or - for stdin\n"
    )
    folder = cli("telemetry", "ingest", str(tmp_path))
    assert folder.code == 1 and "is a directory" in folder.stderr


def test_events_after_build_finished_are_refused(cli: Runner) -> None:
    lines = [
        *small_history()[:8],
        json.dumps(
            {
                "event": "target_finished",
                "session": "a",
                "ts": 1761575009000,
                "target": "//late",
                "status": "built",
            }
        ),
    ]
    result = cli("telemetry", "ingest", "-", stdin="\n".join(lines).encode())
    assert result.code == 1
    assert "<stdin>:9: session 'a' already finished earlier in the stream" in result.stderr


def test_many_problems_are_capped(cli: Runner) -> None:
    lines = ["nope"] * 30 + small_history()
    result = cli("telemetry", "ingest", "-", stdin="\n".join(lines).encode())
    errors = result.stderr.splitlines()
    assert len(errors) == 22
    assert errors[20] == "<stdin>: ... and 10 more malformed lines"
    assert result.stdout == "Stored 3 builds from 25 events.\n"


def test_events_older_than_the_retention_are_said_not_kept_in_one_line(tmp_path: Path) -> None:
    store = tmp_path / "telemetry"
    env = process_env(store, BUILDER_TELEMETRY_RETENTION_DAYS="90")
    # The three builds of 2025-10-27, ingested over a year later.
    result = subprocess.run(
        [BUILDER, "telemetry", "ingest", "-"],
        input="\n".join(small_history()) + "\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "Stored 0 builds from 25 events.\n",
        "3 builds are older than the 90-day retention and were not kept.\n",
    )
    summary = subprocess.run(
        [BUILDER, "telemetry", "summary"], env=env, capture_output=True, text=True, check=False
    )
    assert summary.returncode == 0 and summary.stdout.startswith("No telemetry data yet in ")


def _build(session: str, start: int, *, finished: bool = True) -> list[str]:
    events = [
        {"event": "build_started", "session": session, "ts": start},
        {"event": "target_finished", "session": session, "ts": start + 5, "target": "//t",
         "status": "built", "duration_ms": 5},
    ]  # fmt: skip
    if finished:
        events.append({"event": "build_finished", "session": session, "ts": start + 10,
                       "success": True})  # fmt: skip
    return [json.dumps(event) for event in events]


@pytest.mark.parametrize("reading", ["file", "stdin", "by line"])
def test_old_builds_are_told_apart_from_what_retention_removes_besides(
    tmp_path: Path, reading: str
) -> None:
    day = 86_400_000
    now = int(time.time() * 1000)
    store = tmp_path / "telemetry"
    # Stored while the retention was longer: 95 days old, it goes with the next ingest.
    aged = tmp_path / "aged.jsonl"
    aged.write_text("\n".join(_build("aged", now - 95 * day)) + "\n")
    subprocess.run([BUILDER, "telemetry", "ingest", str(aged)], env=process_env(store),
                   capture_output=True, check=True)  # fmt: skip
    lines = [
        *_build("old", now - 100 * day),
        *_build("new", now - 2 * HOUR),
        *_build("old-killed", now - 120 * day, finished=False),
        *_build("new-killed", now - HOUR, finished=False),
    ]
    if reading == "by line":
        lines.append("not json")  # one line that cannot be read in columns
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [BUILDER, "telemetry", "ingest", "-" if reading == "stdin" else str(events)],
        input=events.read_bytes() if reading == "stdin" else None,
        env=process_env(store, BUILDER_TELEMETRY_RETENTION_DAYS="90"),
        capture_output=True,
        check=False,
    )
    name = "<stdin>" if reading == "stdin" else str(events)
    bad = [f"{name}:11: not valid JSON (Expecting value)"] if reading == "by line" else []
    assert result.stdout.decode() == "Stored 2 builds (1 interrupted) from 10 events.\n"
    assert result.stderr.decode().splitlines() == [
        *bad,
        "2 builds are older than the 90-day retention and were not kept.",
        "Retention also removed 1 other build (keeping 90 days and at most 1000 builds).",
        *(["Skipped 1 malformed line."] if bad else []),
    ]
    assert result.returncode == (1 if bad else 0)
    export = subprocess.run([BUILDER, "telemetry", "export"], env=process_env(store),
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert [s["sessionId"] for s in json.loads(export.stdout)["sessions"]] == [
        "new",
        "new-killed",
    ]


def test_the_ingest_result_counts_the_builds_past_the_retention(tmp_path: Path) -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    storage = TelemetryStorage(tmp_path, retention_days=30, clock=lambda: now)
    # The cutoff is 2026-10-26: a build of the 25th is past it, one of the 26th is not.
    midnight_26 = int(datetime(2026, 10, 26, tzinfo=UTC).timestamp() * 1000)
    lines = [
        *_build("25th", midnight_26 - 20),
        *_build("25th-killed", midnight_26 - 1, finished=False),  # runs into the 26th
        *_build("26th", midnight_26),
    ]
    result = ingest_jsonl(storage, lines)
    assert (result.sessions, result.interrupted) == (3, 1)
    assert (result.expired, result.expired_interrupted) == (2, 1)
    assert (result.retention.removed_sessions, storage.session_count()) == (2, 1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"event":"build_started","session":"x","ts":1' + "0" * 400 + "}",
            "ts must lie between 1970 and year 9999",
        ),
        (
            '{"event":"build_started","session":"x","ts":' + "9" * 5000 + "}",
            "not valid JSON (a number has too many digits)",
        ),
        ('{"event":"build_started","session":"x","ts":NaN}', "not valid JSON (NaN is not"),
        (
            '{"event":"build_started","session":"\\ud800","ts":1761575000000}',
            "session holds an unpaired surrogate",
        ),
        (
            '{"event":"build_started","session":"x","ts":1761575000000,"labels":{"k":"\\udfff"}}',
            "label 'k' holds an unpaired surrogate",
        ),
        ("[" * 100_000, "not valid JSON (nested too deeply)"),
    ],
)
def test_a_hostile_line_is_skipped_and_the_rest_is_stored(
    cli: Runner, line: str, message: str
) -> None:
    stdin = "\n".join([*small_history()[:8], line]).encode()
    result = cli("telemetry", "ingest", "-", stdin=stdin)
    assert result.code == 1
    assert result.stdout == "Stored 1 build from 8 events.\n"
    assert result.stderr.startswith(f"<stdin>:9: {message}")
    assert len(result.stderr.splitlines()) == 2


def test_concurrent_ingests_of_the_same_events_store_each_build_once(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    env = process_env(tmp_path / "t")
    running = [
        subprocess.Popen(
            [BUILDER, "telemetry", "ingest", str(events)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    stored = [p.communicate(timeout=120)[0].decode() for p in running]
    assert sorted(stored) == ["Stored 0 builds from 25 events.\n"] * 3 + [
        "Stored 3 builds from 25 events.\n"
    ]
    export = subprocess.run(
        [BUILDER, "telemetry", "export"], env=env, capture_output=True, check=True
    )
    assert [s["sessionId"] for s in json.loads(export.stdout)["sessions"]] == ["a", "b", "c"]


def test_a_build_too_big_to_store_is_skipped_and_the_rest_is_stored(
    storage: TelemetryStorage,
) -> None:
    # Every line is valid, but 40,000 runs of 2.5e14 ms overflow the build's int64 total.
    # Those times lie in the year 9892, so the clock is set after them.
    huge = [json.dumps({"event": "build_started", "session": "huge", "ts": T0})]
    huge += [
        json.dumps(
            {
                "event": "target_finished",
                "session": "huge",
                "ts": 250_000_000_000_000,
                "target": f"//t{i}",
                "status": "built",
                "duration_ms": 249_000_000_000_000,
            }
        )
        for i in range(40_000)
    ]
    huge.append(
        json.dumps(
            {
                "event": "build_finished",
                "session": "huge",
                "ts": 250_000_000_000_001,
                "success": True,
            }
        )
    )
    later = datetime(9892, 12, 31, tzinfo=UTC)
    result = ingest_jsonl(storage, small_history() + huge, clock=lambda: later)
    assert (result.sessions, result.events) == (3, 40027)
    [problem] = result.problems
    assert problem.line == 40027
    assert problem.message.startswith("telemetry could not store build 'huge'")


def test_a_byte_order_mark_and_lower_case_times_are_accepted(cli: Runner) -> None:
    lines = [
        '{"event":"build_started","session":"bom","ts":"2025-10-27t14:23:20z"}',
        '{"event":"build_finished","session":"bom","ts":"2025-10-27t14:23:21.5z","success":true}',
    ]
    result = cli("telemetry", "ingest", "-", stdin=b"\xef\xbb\xbf" + "\n".join(lines).encode())
    assert (result.code, result.stdout) == (0, "Stored 1 build from 2 events.\n")
    [session] = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert (session["startTime"], session["durationMs"]) == ("2025-10-27T14:23:20", 1500)


def test_a_crashed_writers_targets_are_not_counted_when_the_build_comes_again(
    small_cli: Runner, tmp_path: Path
) -> None:
    # A crash between the two renames: the targets file is there, the sessions file is not.
    [sessions_file] = (tmp_path / "telemetry" / "sessions").rglob("*.arrow")
    sessions_file.unlink()
    again = small_cli("telemetry", "ingest", "-", stdin="\n".join(small_history()).encode())
    assert again.stdout == "Stored 3 builds from 25 events.\n"
    report = json.loads(small_cli("telemetry", "summary", "--format", "json").stdout)
    assert [(b["target"], b["runs"]) for b in report["bottlenecks"]] == [
        ("//app:compile", 3),
        ("//app:test", 2),
        ("//app:link", 2),
    ]


def _compressed(kind: str, data: bytes) -> bytes:
    import gzip

    import zstandard

    return gzip.compress(data) if kind == "gz" else zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_compressed_input_is_read_from_a_file_and_from_stdin(
    cli: Runner, tmp_path: Path, kind: str
) -> None:
    packed = _compressed(kind, "\n".join(small_history()).encode())
    path = tmp_path / f"events.jsonl.{kind}"
    path.write_bytes(packed)
    assert cli("telemetry", "ingest", str(path)).stdout == "Stored 3 builds from 25 events.\n"
    cli("telemetry", "clear")
    assert cli("telemetry", "ingest", "-", stdin=packed).stdout == (
        "Stored 3 builds from 25 events.\n"
    )


def test_a_cut_off_zstd_archive_is_reported(cli: Runner, tmp_path: Path) -> None:
    packed = _compressed("zst", "\n".join(small_history()).encode())
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(packed[: len(packed) // 2])
    result = cli("telemetry", "ingest", str(path))
    assert result.code == 1
    assert (
        "the compressed input is damaged or cut short (the zstd stream ended inside a frame)"
        in (result.stderr)
    )


def test_compression_is_recognised_when_a_pipe_delivers_a_byte_at_a_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(_compressed("gz", "\n".join(small_history()).encode()))
    slow = f"(head -c1 '{path}'; sleep 0.3; tail -c +2 '{path}') | '{BUILDER}' telemetry ingest -"
    result = subprocess.run(
        ["bash", "-c", slow],
        capture_output=True,
        text=True,
        env=process_env(tmp_path / "t"),
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "Stored 3 builds from 25 events.\n")


def test_a_cut_off_archive_stores_what_came_before(cli: Runner, tmp_path: Path) -> None:
    import zlib

    packed = _compressed("gz", "\n".join(small_history()).encode())[:300]
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed)
    result = cli("telemetry", "ingest", str(path))
    # Second route: the same prefix, decompressed by zlib and ingested as plain text.
    prefix = zlib.decompressobj(wbits=31).decompress(packed)
    broken_line = prefix.count(b"\n") + 1  # the line the archive broke off in
    assert result.code == 1
    assert result.stderr.splitlines()[-2].startswith(
        f"{path}:{broken_line}: the compressed input is damaged or cut short"
    )
    damaged_export = json.loads(cli("telemetry", "export").stdout)
    cli("telemetry", "clear")
    cli("telemetry", "ingest", "-", stdin=prefix)
    assert json.loads(cli("telemetry", "export").stdout) == damaged_export


@pytest.mark.torture
def test_a_build_from_2099_cannot_push_todays_builds_out(tmp_path: Path) -> None:
    """Retention keeps the newest days; a build dated 2099 stored with a cap of four builds
    would be the newest day, and today's builds would go to make room for it."""
    now = time.time_ns() // 1_000_000

    def build(session: str, start: int) -> list[str]:
        return [
            json.dumps({"event": "build_started", "session": session, "ts": start}),
            json.dumps({"event": "target_finished", "session": session, "ts": start + 400,
                        "target": "//t", "status": "built", "duration_ms": 300}),
            json.dumps({"event": "build_finished", "session": session, "ts": start + 500,
                        "success": True}),
        ]  # fmt: skip

    today = {"a": now - 180_000, "b": now - 120_000, "c": now - 60_000, "a minute ahead": now}
    today["a minute ahead"] += 60_000
    lines = build("a", today["a"]) + build("clock\x1b[2J", 4_070_908_800_000)  # 2099-01-01
    for session in ("b", "c", "a minute ahead"):
        lines += build(session, today[session])
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(lines) + "\n")
    env = process_env(tmp_path / "t", BUILDER_TELEMETRY_MAX_SESSIONS="4")
    result = subprocess.run(
        [BUILDER, "telemetry", "ingest", str(history)], env=env, capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (1, "Stored 4 builds from 12 events.\n")
    assert result.stderr == (
        f"{history}:4: telemetry refused build 'clock\\x1b[2J' with all its events: it starts "
        "at 2099-01-01T00:00:00, more than an hour ahead of this machine's clock; check the "
        "clock of the machine that ran it\nSkipped 1 malformed line.\n"
    )
    # What is stored, read from the files themselves.
    stored: dict[str, int] = {}
    for path in (tmp_path / "t" / "sessions").rglob("*.arrow"):
        with ipc.open_file(path) as reader:
            table = reader.read_all()
        starts = table["start_time"].cast(pa.int64()).to_pylist()
        stored.update(zip(table["session_id"].to_pylist(), starts, strict=True))
    assert stored == today


def test_an_input_whose_only_build_is_refused_says_so_not_that_it_is_unreadable(
    cli: Runner,
) -> None:
    """Every line is a valid event, but the one build starts in 2099: the refusal is
    reported as it is, not as an input that holds no events."""
    y2099 = 4070908800000  # 2099-01-01T00:00:00Z
    events = [
        {"event": "build_started", "session": "b1", "ts": y2099},
        {"event": "target_finished", "session": "b1", "ts": y2099 + 100, "target": "//a",
         "status": "built"},
        {"event": "build_finished", "session": "b1", "ts": y2099 + 200, "success": True},
    ]  # fmt: skip
    result = cli("telemetry", "ingest", "-",
                 stdin="".join(json.dumps(e) + "\n" for e in events).encode())  # fmt: skip
    assert (result.code, result.stdout) == (1, "Stored 0 builds from 0 events.\n")
    assert result.stderr == (
        "<stdin>:1: telemetry refused build 'b1' with all its events: it starts at "
        "2099-01-01T00:00:00, more than an hour ahead of this machine's clock; check the "
        "clock of the machine that ran it\n"
        "Skipped 1 malformed line.\n"
    )
