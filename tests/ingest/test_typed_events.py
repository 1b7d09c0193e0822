"""The readers of other tools' files make typed events through one builder, checked as the
protocol checks a JSON line: what they store is what the same events sent as JSON lines
store, and a value the protocol refuses is reported as it would be on that line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.errors import EventError
from telemetry.events import (
    BuildFinished,
    BuildStarted,
    Event,
    EventBuilder,
    TargetFinished,
    TargetStarted,
    parse_event,
)
from telemetry.ingest import ingest_file, ingest_jsonl
from telemetry.ingest.bazel import bep_events
from telemetry.ingest.jsonl import IngestProblem
from telemetry.ingest.ninja import log_events
from telemetry.ingest.trace import trace_events
from telemetry.ingest.turbo import turbo_events
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES, T0
from tests.test_properties import SETTINGS, event_like

BAZEL = FIXTURES / "bazel"
_KIND = {
    BuildStarted: "build_started",
    TargetStarted: "target_started",
    TargetFinished: "target_finished",
    BuildFinished: "build_finished",
}


def _line(event: Event) -> str:
    """The event as the protocol's JSON line."""
    return json.dumps({"event": _KIND[type(event)], **dataclasses.asdict(event)})


def _rows(storage: TelemetryStorage, dataset: Literal["sessions", "targets"]) -> list[str]:
    """Every stored row of a dataset, in a fixed order."""
    tables = []
    for stored in storage.files(dataset):
        with ipc.open_file(stored.path) as reader:
            tables.append(reader.read_all())
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    return sorted(repr(sorted(row.items())) for row in rows)


def _summary() -> dict[str, object]:
    """A Turborepo run: a cache hit replayed in 30 ms, a build, a failure, and a task turbo
    never attempted (no execution)."""
    run = {"startTime": T0 + 100, "endTime": T0 + 900, "exitCode": 0}
    return {
        "id": "run-1",
        "turboVersion": "2.11.11",
        "scm": {"sha": "abc123", "branch": "main"},
        "execution": {"startTime": T0, "endTime": T0 + 1000, "exitCode": 1},
        "tasks": [
            {
                "taskId": "a#build",
                "cache": {"status": "HIT"},
                "execution": run | {"endTime": T0 + 130},
            },
            {"taskId": "b#build", "cache": {"status": "MISS"}, "execution": run},
            {
                "taskId": "c#build",
                "cache": {"status": "MISS"},
                "execution": run | {"exitCode": 2, "error": "command exited (2)"},
            },
            {"taskId": "d#build", "cache": {"status": "MISS"}},
        ],
    }


# Two ninja runs (the end time goes back at the third line): a.o and b.o, then b.o again;
# mtimes in nanoseconds.
_NINJA_LOG = (
    b"# ninja log v5\n"
    b"0\t10\t1700000000010000000\ta.o\t1\n"
    b"2\t12\t1700000000012000000\tb.o\t2\n"
    b"1\t7\t1700000100007000000\tb.o\t3\n"
)


Reader = Callable[[], Iterable[Event | EventError]]


def _inputs(tmp_path: Path) -> dict[str, tuple[Path, Path | None, Reader]]:
    """Each reader's input file (and profile), and the reader called on it as ingest calls it."""
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(_summary(), indent=2))
    log = tmp_path / ".ninja_log"
    log.write_bytes(_NINJA_LOG)
    bep, profile = BAZEL / "clean.bep.json", BAZEL / "clean.profile.json"
    trace = BAZEL / "failed.profile.json"
    return {
        "bazel": (
            bep,
            profile,
            lambda: bep_events(
                bep.read_bytes().splitlines(keepends=True),
                profile=json.loads(profile.read_text()),
            ),
        ),
        "trace": (
            trace,
            None,
            lambda: trace_events(
                json.loads(trace.read_bytes()),
                raw=trace.read_bytes(),
                written_ms=trace.stat().st_mtime_ns // 10**6,
            ),
        ),
        "turbo": (summary, None, lambda: turbo_events(json.loads(summary.read_text()))),
        "ninja": (
            log,
            None,
            lambda: log_events(
                log.read_bytes(), name=str(log), written_ms=log.stat().st_mtime_ns // 10**6
            )[0],
        ),
    }


@pytest.mark.parametrize("reader", ["bazel", "trace", "turbo", "ninja"])
def test_what_a_reader_stores_is_what_its_events_as_json_lines_store(
    tmp_path: Path, reader: str
) -> None:
    path, profile, events = _inputs(tmp_path)[reader]
    made = list(events())
    lines = [_line(event) for event in made if isinstance(event, Event)]
    assert made and len(lines) == len(made)
    read = TelemetryStorage(tmp_path / "read")
    result = ingest_file(read, path, profile=profile, apply_retention=False)
    sent = TelemetryStorage(tmp_path / "sent")
    twin = ingest_jsonl(sent, lines, apply_retention=False)
    assert (result.sessions, result.events, result.problems) == (
        twin.sessions,
        twin.events,
        twin.problems,
    )
    assert result.sessions >= 1 and result.problems == ()
    assert _rows(read, "sessions") == _rows(sent, "sessions")
    assert _rows(read, "targets") == _rows(sent, "targets")


def test_turbo_tasks_become_typed_events_with_what_turbo_said() -> None:
    events = list(turbo_events(_summary(), home="/nobody"))
    assert events == [
        BuildStarted("turbo-run-1", T0, tool="turbo", commit="abc123", branch="main"),
        TargetFinished("turbo-run-1", T0 + 130, "a#build", "cached", duration_ms=30),
        TargetStarted("turbo-run-1", T0 + 100, "b#build"),
        TargetFinished("turbo-run-1", T0 + 900, "b#build", "built"),
        TargetStarted("turbo-run-1", T0 + 100, "c#build"),
        TargetFinished("turbo-run-1", T0 + 900, "c#build", "failed", error="command exited (2)"),
        BuildFinished("turbo-run-1", T0 + 1000, success=False),
    ]


def test_a_value_the_protocol_refuses_is_reported_with_its_events_number(
    tmp_path: Path,
) -> None:
    # b#build's start is text that is no time: its target_started (the 2nd event) is
    # skipped and reported; its finish, with no start, is stored as lasting 0 ms.
    summary = _summary()
    summary["tasks"] = [
        {
            "taskId": "b#build",
            "cache": {"status": "MISS"},
            "execution": {"startTime": "soon", "endTime": T0 + 900, "exitCode": 0},
        }
    ]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    result = ingest_file(TelemetryStorage(tmp_path / "t"), path, apply_retention=False)
    assert (result.sessions, result.events) == (1, 3)
    assert result.problems == (
        IngestProblem(
            2,
            "ts must be epoch milliseconds or an RFC 3339 string like 2025-10-27T14:23:15Z, "
            "got 'soon'",
        ),
    )


def test_a_session_the_protocol_refuses_makes_every_event_an_error() -> None:
    build = EventBuilder("x" * 65_537)
    made = [build.build_started(T0), build.build_finished(T0 + 1, success=True)]
    assert [str(error) for error in made] == [
        "session is 65537 characters long; at most 65536 are kept"
    ] * 2
    assert all(isinstance(error, EventError) for error in made)


_VALUES = {
    "build_started": ("parallelism", "tool", "labels", "host", "commit", "branch"),
    "target_started": ("target", "worker"),
    "target_finished": ("target", "status", "duration_ms", "error"),
    "build_finished": ("success", "error"),
}


@SETTINGS
@given(
    st.sampled_from(sorted(_VALUES)).flatmap(
        lambda kind: event_like.map(lambda fields: fields | {"event": kind})
    ),
    st.integers(-10, 10**16) | st.floats() | st.text(max_size=30) | st.none(),
)
def test_the_builder_checks_what_a_json_line_of_the_same_values_is_checked_for(
    fields: dict[str, Any], ts: object
) -> None:
    # The truth: the event protocol's JSON line of these values, decoded and parsed.
    line = {**fields, "ts": ts}
    try:
        want: object = parse_event(json.loads(json.dumps(line)))
    except EventError as error:
        want = str(error)
    build = EventBuilder(fields.get("session"))
    kind = fields["event"]
    values = {name: fields.get(name) for name in _VALUES[kind]}
    if kind == "build_started":
        made: object = build.build_started(ts, **values)
    elif kind == "target_started":
        made = build.target_started(ts, values.pop("target"), **values)
    elif kind == "target_finished":
        made = build.target_finished(ts, values.pop("target"), values.pop("status"), **values)
    else:
        made = build.build_finished(ts, **values)
    assert (str(made) if isinstance(made, EventError) else made) == want


def test_the_ninja_reader_and_the_format_choices_load_no_pyarrow() -> None:
    # A recorded ninja build reads its log with telemetry.ingest.ninja; the command line
    # takes its choices from telemetry.formats. Neither may cost pyarrow's import.
    code = (
        "import sys, telemetry.ingest.ninja, telemetry.formats\n"
        "print(sorted({'pyarrow', 'polars'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"
