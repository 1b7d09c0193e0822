"""What the readers do with input that is odd, damaged or hostile: store what can be stored,
or one `Error:` line — never an internal error."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, T0, Runner, small_history

BAZEL = FIXTURES / "bazel"


def _trace(dur: str, pid: str = "1") -> str:
    event = f'{{"ph": "X", "name": "t", "ts": 0, "dur": {dur}, "pid": {pid}, "tid": 1}}'
    return f'{{"traceEvents": [{event}]}}'


@pytest.mark.parametrize(
    "text",
    [
        _trace("NaN"),
        _trace("1e999"),
        _trace("1" + "0" * 400),
        _trace("5", pid="[1, 2]"),
        '{"id": {"started": {}}, "started": {"uuid": "u", "startTimeMillis": "abc"}}',
        '{"id": {"started": {}}, "started": "x"}',
        '{"id": {"targetCompleted": []}, "completed": []}\n'
        '{"id": {"started": {}}, "started": {"uuid": "u", "startTimeMillis": "1"}}',
    ],
)
def test_hostile_documents_are_stored_or_one_error(cli: Runner, tmp_path: Path, text: str) -> None:
    path = tmp_path / "input.json"
    path.write_text(text)
    result = cli("telemetry", "ingest", str(path))
    assert result.code in (0, 1), result.stderr
    assert "internal error" not in result.stderr
    if result.code == 1:
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


def test_a_profile_of_another_build_is_refused(cli: Runner) -> None:
    result = cli(
        "telemetry",
        "ingest",
        str(BAZEL / "cached.bep.json"),
        "--profile",
        str(BAZEL / "clean.profile.json"),
    )
    assert result.code == 1 and "the profile is of another build" in result.stderr


def test_a_bep_cut_short_by_a_killed_bazel_is_an_interrupted_build(
    cli: Runner, tmp_path: Path
) -> None:
    path = tmp_path / "cut.bep.json"
    path.write_bytes((BAZEL / "clean.bep.json").read_bytes()[:15_000])
    result = cli("telemetry", "ingest", str(path))
    assert result.code == 0, result.stderr
    [session] = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert (session["interrupted"], session["succeeded"]) == (True, False)


def test_a_byte_order_mark_before_a_pretty_printed_summary(cli: Runner, tmp_path: Path) -> None:
    summary = {
        "id": "r",
        "turboVersion": "2",
        "tasks": [],
        "execution": {"startTime": T0, "endTime": T0 + 10, "exitCode": 0},
    }
    path = tmp_path / "summary.json"
    path.write_bytes(b"\xef\xbb\xbf\n" + json.dumps(summary, indent=2).encode())
    assert cli("telemetry", "ingest", str(path)).stdout == "Stored 1 build from 2 events.\n"


def test_json_lines_that_start_oddly_are_still_json_lines(cli: Runner, tmp_path: Path) -> None:
    # A first line without "event" is one bad line, not a refused file.
    odd = tmp_path / "odd.jsonl"
    odd.write_text("\n".join(['{"session": "s0", "ts": 1}', *small_history()]))
    result = cli("telemetry", "ingest", str(odd))
    assert (result.code, result.stdout) == (1, "Stored 3 builds from 25 events.\n")
    assert result.stderr.startswith(f"{odd}:1: event must be one of")
    # A pretty-printed first event is not a document: each of its lines is reported.
    cli("telemetry", "clear")
    pretty = tmp_path / "pretty.jsonl"
    first = json.dumps(json.loads(small_history()[0]), indent=2)
    pretty.write_text("\n".join([first, *small_history()[1:]]))
    result = cli("telemetry", "ingest", str(pretty))
    assert result.code == 1 and "Stored 3 builds" in result.stdout


def test_a_first_line_longer_than_a_mebibyte(cli: Runner, tmp_path: Path) -> None:
    lines = small_history()
    big = json.loads(lines[0])
    big["labels"] = {"notes": "x" * 60_000} | {f"k{i}": "y" * 60_000 for i in range(20)}
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join([json.dumps(big), *lines[1:]]).encode()))
    result = cli("telemetry", "ingest", str(path))
    assert (result.code, result.stdout) == (0, "Stored 3 builds from 25 events.\n")


def test_a_trace_dated_in_local_time_is_timed_by_its_file(tmp_path: Path) -> None:
    import os

    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.ingest import ingest_file
    from telemetry.storage import TelemetryStorage

    trace = {
        "otherData": {"date": "Wed Nov 25 16:30:06 EST 2026"},
        "traceEvents": [{"ph": "X", "name": "t", "ts": 0, "dur": 5000}],
    }
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    os.utime(path, ns=((T0 + 5) * 1_000_000, (T0 + 5) * 1_000_000))
    storage = TelemetryStorage(tmp_path / "t")
    ingest_file(storage, path)
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    assert row["start_time"].timestamp() * 1000 == T0


def test_home_directories_in_turbo_errors_are_never_stored(tmp_path: Path) -> None:
    from telemetry.events import TargetFinished
    from telemetry.ingest.turbo import turbo_events

    summary = {
        "id": "r",
        "turboVersion": "2",
        "execution": {"startTime": T0, "endTime": T0 + 10, "exitCode": 1},
        "tasks": [
            {
                "taskId": "b#build",
                "cache": {"status": "MISS"},
                "execution": {
                    "startTime": T0,
                    "endTime": T0 + 9,
                    "exitCode": 1,
                    "error": "command (/home/alice/src/b) failed; see /Users/bob/x and /root/y",
                },
            }
        ],
    }
    [failed] = [
        e
        for e in turbo_events(summary, home="/root")
        if isinstance(e, TargetFinished) and e.status == "failed"
    ]
    assert failed.error == "command (~/src/b) failed; see ~/x and ~/y"
