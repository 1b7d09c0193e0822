"""The columnar reading of JSON lines stores exactly what the line-by-line reading stores, or
declines and leaves the input to it: the same sessions, the same target rows, the same counts.
The line-by-line reading is itself held to the reference implementation in
tests/test_properties.py."""

from __future__ import annotations

import errno
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.ingest import ingest_file, ingest_jsonl
from telemetry.ingest.columnar import read_columns
from telemetry.ingest.jsonl import _DECODER
from telemetry.storage import TelemetryStorage
from tests.test_properties import SETTINGS

T0 = 1761575000000
Y2099 = 4_070_908_800_000  # 2099-01-01T00:00:00Z: far ahead of any clock these tests run by
STATUSES = ["built", "cached", "failed", "skipped"]


def _rows(storage: TelemetryStorage, dataset: str) -> list[tuple[Any, ...]]:
    """Every stored row of a dataset, as plain values, in a fixed order."""
    tables = []
    for stored in storage.files(dataset):
        with ipc.open_file(stored.path) as reader:
            tables.append(reader.read_all())
    if not tables:
        return []
    table = pa.concat_tables(tables)
    rows = []
    for row in table.to_pylist():
        if "labels" in row:
            row["labels"] = sorted(row["labels"] or [])
        rows.append(tuple(row.values()))
    return sorted(rows, key=repr)


def _both(data: bytes) -> tuple[tuple[object, ...], tuple[object, ...], bool]:
    """What each reading stores from ``data``, and whether the columnar one took it."""
    took = read_columns(data.removeprefix(b"\xef\xbb\xbf"), _DECODER) is not None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "events.jsonl")
        path.write_bytes(data)
        fast, slow = TelemetryStorage(Path(folder, "a")), TelemetryStorage(Path(folder, "b"))
        got = ingest_file(fast, path, format="jsonl", apply_retention=False)
        want = ingest_jsonl(slow, io.BytesIO(data), apply_retention=False)  # lines end in \n
        return (
            (got.sessions, got.interrupted, got.events, got.duplicates, got.problems,
             _rows(fast, "sessions"), _rows(fast, "targets")),
            (want.sessions, want.interrupted, want.events, want.duplicates, want.problems,
             _rows(slow, "sessions"), _rows(slow, "targets")),
            took,
        )  # fmt: skip


def _stream(rng: random.Random, builds: int, *, ahead: bool = False) -> list[dict[str, object]]:
    """Events of ``builds`` builds as tools send them, interleaved: each target at most once
    a build, most with a start, cache hits without, some starts naming the targets they
    waited for (none, the build's own, others, a finish naming some too, which the protocol
    ignores); some builds never finish. With ``ahead``, some builds come from a machine
    whose clock says 2099, and some events of others carry a time from 2099."""
    per_build: list[list[dict[str, object]]] = []
    for b in range(builds):
        session = f"s{b}-{rng.choice(['x', 'ci/7', 'é', 'a b'])}"
        start = T0 + rng.randrange(0, 5) * 86_400_000 + rng.randrange(0, 10_000)
        if ahead and rng.random() < 0.25:
            start += Y2099 - T0
        events: list[dict[str, object]] = [{"event": "build_started", "session": session,
                                            "ts": start}]  # fmt: skip
        if rng.random() < 0.5:
            events[0]["parallelism"] = rng.randint(1, 8)
        if rng.random() < 0.5:
            events[0]["labels"] = {"ci": rng.choice(["true", True, 1, 2.5]), "k": "v"}
        if rng.random() < 0.3:
            events[0] |= {"tool": "ninja", "host": "h", "commit": "abc", "branch": "main"}
        clock = start
        for t in rng.sample(range(12), rng.randint(0, 8)):
            status = rng.choice(STATUSES)
            target = f"//pkg:{t}" if t % 3 else f"//p{t}/üñí:{t}"
            begin = clock + rng.randint(-3, 40)
            clock = begin + rng.choice([0, 0, 5, 300])
            if status in ("built", "failed") and rng.random() < 0.8:
                started: dict[str, object] = {"event": "target_started", "session": session,
                                              "ts": begin, "target": target}  # fmt: skip
                if rng.random() < 0.7:
                    started["worker"] = rng.randint(0, 3)
                if (said := _deps(f"{session} {target} {begin}", 0.5)) is not None:
                    started["deps"] = said
                events.append(started)
            finished: dict[str, object] = {"event": "target_finished", "session": session}
            finished |= {"ts": clock, "target": target, "status": status}
            if (said := _deps(f"{session} {target} {clock}", 0.05)) is not None:
                finished["deps"] = said
            if rng.random() < 0.2:
                finished["duration_ms"] = rng.choice([0, 7, 10**6])
            if status == "failed" and rng.random() < 0.5:
                finished["error"] = rng.choice(["", "exit 1", "boom: it broke"])
            events.append(finished)
        if rng.random() < 0.85:
            ok = rng.random() < 0.7
            done: dict[str, object] = {"event": "build_finished", "session": session}
            done |= {"ts": clock + rng.randint(-5, 50), "success": ok}
            if not ok and rng.random() < 0.5:
                done["error"] = "compile failed"
            events.append(done)
        if ahead and rng.random() < 0.25:
            rng.choice(events)["ts"] = Y2099 + rng.randrange(0, 10_000)
        per_build.append(events)
    # Interleave the builds, each in its own order (a start may follow its finish in the
    # stream when the sender is out of order).
    stream: list[dict[str, object]] = []
    while any(per_build):
        chosen = rng.choice([events for events in per_build if events])
        stream.append(chosen.pop(0))
    if len(stream) > 2 and rng.random() < 0.2:
        i = rng.randrange(len(stream) - 1)
        if stream[i]["event"] == "target_started":
            stream[i], stream[i + 1] = stream[i + 1], stream[i]
    return stream


def _deps(seed: str, chance: float) -> list[str] | None:
    """With this ``chance``, names a target waited for: none, or some of the build's
    targets (as _stream names them) and of no target of it, in any order, a name twice now
    and then. Drawn from a generator of their own, seeded by ``seed`` (the event's own
    values): the streams of the seeds tests name stay as they were before deps."""
    rng = random.Random(seed)
    if rng.random() >= chance:
        return None
    names = [f"//pkg:{t}" if t % 3 else f"//p{t}/üñí:{t}" for t in rng.sample(range(14), 3)]
    chosen = rng.sample(names, rng.randint(0, 3))
    if chosen and rng.random() < 0.1:
        chosen.append(chosen[0])
    return chosen


def _text(events: list[dict[str, object]], rng: random.Random) -> bytes:
    spacing = rng.choice([(",", ":"), (", ", ": ")])
    ending = rng.choice(["\n", "\r\n"])
    lines = [json.dumps(e, separators=spacing, ensure_ascii=rng.random() < 0.1) for e in events]
    return (ending.join(lines) + rng.choice(["", ending])).encode()


@SETTINGS
@given(st.integers(0, 2**32), st.integers(1, 6))
def test_plain_streams_are_read_in_columns_with_the_line_by_line_result(
    seed: int, builds: int
) -> None:
    rng = random.Random(seed)
    events = _stream(rng, builds)
    data = _text(events, rng)
    got, want, took = _both(data)
    assert got == want
    assert took or b"\\" in data  # plain input is read in columns (escapes are declined)


@SETTINGS
@given(st.integers(0, 2**32), st.integers(1, 6))
def test_times_far_ahead_are_refused_alike_by_both_readings(seed: int, builds: int) -> None:
    rng = random.Random(seed)
    events = _stream(rng, builds, ahead=True)
    data = _text(events, rng)
    got, want, took = _both(data)
    assert got == want
    assert not took or all(e["ts"] < Y2099 for e in events)  # left to the line-by-line reading
    # Nothing dated ahead is stored, and a build that started ahead is named once: neither
    # its events after its start nor its end are reported again.
    problems, sessions, targets = got[4], got[5], got[6]
    assert all(v < datetime(2099, 1, 1, tzinfo=UTC) for row in sessions + targets for v in row
               if isinstance(v, datetime))  # fmt: skip
    for line, event in enumerate(events, start=1):
        if event["event"] == "build_started" and event["ts"] >= Y2099:
            named = [p for p in problems if repr(event["session"]) in p.message]
            assert [p.line for p in named if p.line >= line] == [line]
            assert "refused build" in named[-1].message


MUTATIONS = [
    # (what, how): each makes the input one the columnar reading must decline or read exactly
    ("a key given twice", lambda line: line.replace('"ts":', '"ts":1,"ts":', 1)),
    ("a null", lambda line: line.replace('"target":', '"worker":null,"target":', 1)),
    ("an unknown field", lambda line: line.replace("{", '{"x":1,', 1)),
    ("a number as text", lambda line: line.replace('"ts":', '"ts":"', 1).replace(",", '",', 2)),
    ("a number for text", lambda line: re.sub(r'"target":"[^"]*"', '"target":123', line)),
    ("a boolean for text", lambda line: re.sub(r'"session":"[^"]*"', '"session":true', line)),
    ("an array for text", lambda line: re.sub(r'"target":"([^"]*)"', r'"target":["\1"]', line)),
    ("an object for text", lambda line: re.sub(r'"target":"[^"]*"', '"target":{}', line)),
    ("a key twice, one spaced", lambda line: line.replace('"ts":', '"ts"  :1,"ts":', 1)),
    ("an escape", lambda line: line.replace('"target":"', '"target":"\\u00e9', 1)),
    ("a lone surrogate", lambda line: line.replace('"target":"', '"target":"\\ud800', 1)),
    ("a float time", lambda line: line.replace('"ts":1', '"ts":1.5e0+', 1).replace("e0+", "", 1)),
    ("a time as text", lambda line: line.replace('"ts":', '"ts":"2025-10-27T14:23:20Z","t":', 1)),
    ("a blank line", lambda line: line + "\n   "),
    ("an empty line", lambda line: line + "\n"),
    ("not JSON", lambda line: line[:-1]),
    ("a tab", lambda line: line.replace(",", ",\t", 1)),
    ("a space before a colon", lambda line: line.replace('"ts":', '"ts" :', 1)),
    ("an unknown event", lambda line: line.replace("target_finished", "target_done", 1)),
    ("a bad status", lambda line: line.replace('"status":"', '"status":"x', 1)),
    ("an empty target", lambda line: line.replace('"target":"', '"target":"",".":"', 1)),
    ("a negative duration", lambda line: line.replace("{", '{"duration_ms":-1,', 1)),
    ("a huge number", lambda line: line.replace('"ts":', '"ts":99999999999999999999,"y":', 1)),
    ("a control character", lambda line: line.replace('"target":"', '"target":"\x01', 1)),
    ("the separator byte", lambda line: line.replace('"target":"', '"target":"\x1f', 1)),
    ("a lone CR", lambda line: line.replace('"target":"', '"target":"\r', 1)),
    ("deps as text", lambda line: line.replace("{", '{"deps":"//a",', 1)),
    ("a number in deps", lambda line: line.replace("{", '{"deps":["//a",12],', 1)),
    ("a boolean in deps", lambda line: line.replace("{", '{"deps":[true],', 1)),
    ("a null in deps", lambda line: line.replace("{", '{"deps":[null,"//a"],', 1)),
    ("an empty name in deps", lambda line: line.replace("{", '{"deps":["//a",""],', 1)),
    ("a list in deps", lambda line: line.replace("{", '{"deps":[["//a"]],', 1)),
    ("an object in deps", lambda line: line.replace("{", '{"deps":[{"a":"b"}],', 1)),
    ("deps null", lambda line: line.replace("{", '{"deps":null,', 1)),
    ("deps an object", lambda line: line.replace("{", '{"deps":{"a":1},', 1)),
    ("deps twice", lambda line: line.replace("{", '{"deps":["//b"],"deps":["//a"],', 1)),
]


@pytest.mark.parametrize(("what", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
@pytest.mark.parametrize("seed", range(4))
def test_unusual_input_is_declined_or_read_exactly(what: str, mutate: Any, seed: int) -> None:
    rng = random.Random(seed)
    events = _stream(rng, 4)
    lines = [json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in events]
    chosen = [i for i, line in enumerate(lines) if '"target_finished"' in line]
    for i in rng.sample(chosen, min(2, len(chosen))):
        lines[i] = mutate(lines[i])
    got, want, took = _both("\n".join(lines).encode() + b"\n")
    assert got == want, what
    assert took == (what == "an empty line")


# Lines that are valid and meant as written, but unusual: the columnar reading takes some
# and declines others; either way it must store what the line-by-line reading stores.
UNUSUAL = [
    ("blanks after colons and commas",
     lambda line: line.replace(",", ", ").replace('":', '": ')),
    ("blanks at the ends", lambda line: " " + line + "  "),
    ("a text like a number", lambda line: line.replace('"target":"', '"target":"12', 1)),
    ("a text like a boolean", lambda line: re.sub(r'"target":"[^"]*"', '"target":"true"', line)),
    ("a text like an array", lambda line: line.replace('"target":"', '"target":"[x', 1)),
    ("a start with a status",
     lambda line: line.replace("target_finished", "target_started", 1)),
    # Each of these takes as many bytes away as blanks add back, so only the quotes tell.
    ("a number for text and two blanks",
     lambda line: re.sub(r'"target":"[^"]*"', '"target":123', line).replace(",", ", ", 2)),
    ("a boolean for text and two blanks",
     lambda line: re.sub(r'"session":"[^"]*"', '"session":true', line).replace(",", ", ", 2)),
    ("a number for text and a short field",
     lambda line: re.sub(r'"target":"[^"]*"', '"target":1', line)[:-1] + ',"":1,"":1,"":1}'),
    # polars writes these out longer than they came (1e7 as 10000000), room for a key.
    ("an exponent for text and a key twice",
     lambda line: line[:-1] + ',"error":1e7,"ts":2}'),
    ("a tiny exponent for text and blanks",
     lambda line: line[:-1] + ',"error":1e-20,' + " " * 9 + '"y":1}'),
    ("deps with blanks", lambda line: line.replace("{", '{"deps": [ "//a" , "//b" ],', 1)),
    ("names in deps like numbers",
     lambda line: line.replace("{", '{"deps":["12","-1","true"],', 1)),
    ("empty deps", lambda line: line.replace("{", '{"deps":[],', 1)),
    # A number in deps takes two quotes away, an unknown key's text brings them back.
    ("a number in deps and a key with text",
     lambda line: line.replace("{", '{"deps":[12],"x":"y",', 1)),
]  # fmt: skip


@SETTINGS
@given(
    st.integers(0, 2**32),
    st.lists(st.sampled_from([m[1] for m in MUTATIONS + UNUSUAL]), min_size=1, max_size=4),
)
def test_unusual_lines_mixed_in_any_number_are_declined_or_read_exactly(
    seed: int, mutations: list[Any]
) -> None:
    rng = random.Random(seed)
    events = _stream(rng, 3)
    lines = [
        json.dumps(e, separators=rng.choice([(",", ":"), (", ", ": ")]), ensure_ascii=False)
        for e in events
    ]
    chosen = [i for i, line in enumerate(lines) if '"target_' in line]
    for mutate in mutations:
        if chosen:
            i = rng.choice(chosen)
            lines[i] = mutate(lines[i])
    got, want, _ = _both("\n".join(lines).encode() + b"\n")
    assert got == want


def _grouped(rng: random.Random, groups: int) -> list[str]:
    """Lines of ``groups`` groups of one to three builds, each group interleaved as agents
    running at once send them, one group after another (some builds never end)."""
    lines = []
    for group in range(groups):
        spacing = rng.choice([(",", ":"), (", ", ": ")])
        for event in _stream(rng, rng.randint(1, 3)):
            event["session"] = f"{group}-{event['session']}"
            lines.append(json.dumps(event, separators=spacing, ensure_ascii=False))
    return lines


@SETTINGS
@given(
    st.integers(0, 2**32),
    st.integers(1, 14),
    st.integers(2, 12),
    st.lists(st.sampled_from([m[1] for m in MUTATIONS + UNUSUAL]), max_size=2),
    st.sampled_from(["\n", "\r\n"]),
)
def test_an_input_read_a_segment_at_a_time_is_read_as_line_by_line(
    seed: int, groups: int, cuts: int, mutations: list[Any], ending: str
) -> None:
    """Cut into segments (builds going on across the cuts, builds that never end put aside
    until the last, an unusual line in a late segment making the columns decline after
    earlier segments were stored), a file stores and reports exactly what the line-by-line
    reading does."""
    from unittest import mock

    import telemetry.ingest.jsonl as jsonl

    rng = random.Random(seed)
    lines = _grouped(rng, groups)
    chosen = [i for i, line in enumerate(lines) if '"target_' in line]
    for mutate in mutations:
        if chosen:
            i = rng.choice(chosen[len(chosen) // 2 :])
            lines[i] = mutate(lines[i])
    data = (ending.join(lines) + rng.choice(["", ending])).encode()
    # Stored after every segment, or some, or only at the end: a late segment declines
    # with none, some or all of the earlier ones stored.
    flush = rng.choice([1, 40, 10**9])
    with (
        mock.patch.object(jsonl, "SEGMENT_BYTES", max(40, len(data) // cuts)),
        mock.patch.object(jsonl, "_CHUNK_ROWS", flush),
    ):
        got, want, _ = _both(data)
    assert got == want


def test_a_long_input_is_read_in_columns_a_segment_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments much smaller than the input, builds going on across their cuts: read in
    columns throughout (never line by line), with the line-by-line result."""
    import telemetry.ingest.jsonl as jsonl

    rng = random.Random(3)
    lines = _grouped(rng, 20)
    data = ("\n".join(lines) + "\n").encode()
    assert b"\\" not in data
    monkeypatch.setattr(jsonl, "SEGMENT_BYTES", len(data) // 6)
    monkeypatch.setattr(jsonl, "_Reading", None)  # reading the file line by line would fail
    got, want, _ = _both(data)
    assert got == want and got[0] > 30


@pytest.mark.parametrize(
    "data",
    [
        b'{"event":"target_started","session":"s","ts":1,"target":"t","error":1e7,"ts":2}\n',
        b'{"event":"target_finished","session":"s","ts":1,"target":1e7,"status":"built","x":12}\n',
        b'{"event":"target_finished","session":true,"ts":1,"target":"t","status":"built",'
        b'"error":1e-20,         "y":1,"z":1}\n',
        b'{"event":"target_started","session":"s","ts":1,"target":"t","error":1e20}\n'
        b'{"event":"target_started","session":"s","ts":1,"target":"u","error":1e20}\n'
        b'{"event":"target_finished","session":"s","ts":5,"target":"t","status":"built",'
        + b" " * 20
        + b'"session":"OTHER"}\n',
        b'{"event":"target_started","session":"s","ts":1,"target":"t","error":1e30}\n'
        b'{"event":"target_started","session":"s","ts":1,"target":"u","error":1e9}\n'
        b'{"event":"target_started","session":"s","ts":1,"target":"v","error":1e9}\n'
        b'{"event":"target_finished","session":"s","ts":5,"target":"t","status":"built",'
        + b" " * 6
        + b'"event":"build_finished","success":false}\n',
    ],
)
def test_numbers_written_out_longer_than_they_came_cannot_hide_a_key(data: bytes) -> None:
    """A number in a text field is written out by polars in full (1e7 as 10000000), longer
    than it came; the bytes it gains once let a repeated or unknown key pass the length
    check. Found by an adversarial review; each was read in columns, differently."""
    got, want, took = _both(data)
    assert got == want and not took


@pytest.mark.parametrize(
    ("what", "session", "target", "spacing"),
    [
        ("session ids that look like numbers", "123456789", "//a:b", (",", ":")),
        ("a target named like a build event", "s", "build_x", (",", ":")),
        ("Python's default blanks", "s", "//a:b", (", ", ": ")),
        ("a target like a negative number, with blanks", "s", "-1", (", ", ": ")),
    ],
)
def test_plain_input_tools_write_is_read_in_columns(
    what: str, session: str, target: str, spacing: tuple[str, str]
) -> None:
    events = [
        {"event": "build_started", "session": session, "ts": T0},
        {"event": "target_started", "session": session, "ts": T0 + 1, "target": target},
        {"event": "target_finished", "session": session, "ts": T0 + 9, "target": target,
         "status": "built"},
        {"event": "target_finished", "session": session, "ts": T0 + 9, "target": "c",
         "status": "cached", "duration_ms": 0},
        {"event": "build_finished", "session": session, "ts": T0 + 10, "success": True},
    ]  # fmt: skip
    got, want, took = _both("\n".join(json.dumps(e, separators=spacing) for e in events).encode())
    assert got == want and took, what


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_the_length_of_compact_lines_is_computed_from_their_fields(ensure_ascii: bool) -> None:
    """The length the columnar reading expects of lines written without blanks, against
    what json.dumps writes."""
    import polars as pl

    from telemetry.ingest.columnar import _TARGET_FIELDS, _compact_length

    rng = random.Random(5)
    events: list[dict[str, object]] = []
    for n in range(300):
        event: dict[str, object] = {"event": rng.choice(["target_started", "target_finished"]),
                                    "session": rng.choice(["s", "ünï", "a b", "🙂"]),
                                    "ts": rng.choice([0, 7, 10**12 + n, T0 + n])}  # fmt: skip
        for name, values in [
            ("target", ["//a:b", "é" * rng.randint(1, 30)]),
            ("status", ["built", "cached"]),
            ("worker", [0, 9, 10, -3, 2**31]),
            ("duration_ms", [0, 99, 100, 10**9]),
            ("error", ["", "x y"]),
        ]:
            if rng.random() < 0.6:
                event[name] = rng.choice(values)
        events.append(event)
    text = [json.dumps(e, separators=(",", ":"), ensure_ascii=ensure_ascii) for e in events]
    rows = pl.read_ndjson("\n".join(text).encode(), schema=_TARGET_FIELDS)
    present = {name: rows.height - rows[name].null_count() for name in _TARGET_FIELDS}
    expected = sum(len(line.encode()) for line in text)
    assert (_compact_length(rows, present) == expected) == (not ensure_ascii)


@pytest.mark.parametrize(
    "events",
    [
        # A target finished twice in one build: the collector pairs it with its starts first
        # in, first out; read line by line.
        [("build_started", {}), ("target_started", {"target": "a"}),
         ("target_finished", {"target": "a", "status": "built"}),
         ("target_started", {"target": "a"}),
         ("target_finished", {"target": "a", "status": "failed"}),
         ("build_finished", {"success": False})],
        # An event after its build finished, and a build started twice.
        [("build_started", {}), ("build_finished", {"success": True}),
         ("target_finished", {"target": "a", "status": "built"})],
        [("build_started", {}), ("build_started", {}), ("build_finished", {"success": True})],
        # A start that came after its finish stays waiting; the finish has no start.
        [("build_started", {}), ("target_finished", {"target": "a", "status": "built"}),
         ("target_started", {"target": "a", "worker": 3}), ("build_finished", {"success": True})],
        # Targets of a build never started, and a build that never finished.
        [("target_started", {"target": "a"}), ("target_finished", {"target": "a",
                                                                     "status": "built"})],
        # A target named like a build event.
        [("build_started", {}), ("target_finished", {"target": "build_x", "status": "cached"}),
         ("build_finished", {"success": True})],
    ],
)  # fmt: skip
def test_streams_the_collector_reads_in_order_come_out_the_same(
    events: list[tuple[str, dict[str, object]]],
) -> None:
    lines = [
        json.dumps({"event": kind, "session": "s", "ts": T0 + 10 * n} | fields)
        for n, (kind, fields) in enumerate(events)
    ]
    got, want, _ = _both("\n".join(lines).encode())
    assert got == want


def test_a_byte_order_mark_and_stored_builds_come_out_the_same(tmp_path: Path) -> None:
    rng = random.Random(3)
    data = "\ufeff".encode() + _text(_stream(rng, 5), rng)
    got, want, took = _both(data)
    assert got == want and took
    # Builds already stored are skipped the same way.
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    storage = TelemetryStorage(tmp_path / "store")
    first = ingest_file(storage, path, apply_retention=False)
    again = ingest_file(storage, path, apply_retention=False)
    assert (again.sessions, again.duplicates) == (0, first.sessions)


def _line_by_line(
    path: Path, storage: TelemetryStorage, max_line: int | None = None
) -> tuple[object, ...]:
    """What reading ``path`` line by line stores and reports, a break-off included."""
    from telemetry.events import MAX_LINE_BYTES
    from telemetry.ingest.detection import decompressed
    from telemetry.ingest.jsonl import IngestProblem, _Reading

    with path.open("rb") as handle:
        reading = _Reading(decompressed(handle), str(path), max_line or MAX_LINE_BYTES)
        result = ingest_jsonl(storage, reading.lines(), apply_retention=False)
    broke = (IngestProblem(reading.count + 1, reading.failure),) if reading.failure else ()
    return (result.sessions, result.events, result.problems + broke,
            _rows(storage, "sessions"), _rows(storage, "targets"))  # fmt: skip


def _damaged_inputs() -> dict[str, bytes]:
    import gzip

    import zstandard

    rng = random.Random(11)
    text = _text(_stream(rng, 60), rng)
    flipped = bytearray(gzip.compress(text, mtime=0))
    flipped[len(flipped) // 3] ^= 0x04
    half = len(text) // 2
    cut = text.rfind(b"\n", 0, half) + 1
    frames = b"".join(
        zstandard.ZstdCompressor().compress(part) for part in (text[:cut], text[cut:])
    )
    bad_zstd = bytearray(frames)
    bad_zstd[len(frames) * 3 // 4] ^= 0xFF
    return {
        "gzip with a damaged block": bytes(flipped),
        "gzip, garbage, gzip": gzip.compress(text[:cut]) + b"XX" + gzip.compress(text[cut:]),
        "zstd with a damaged frame": bytes(bad_zstd),
        "gzip cut short": gzip.compress(text)[: len(text) // 5],
        "plain": text,
    }


@pytest.mark.parametrize("limit", [None, 1000])
@pytest.mark.parametrize("name", list(_damaged_inputs()))
def test_damaged_and_large_inputs_are_read_as_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, limit: int | None
) -> None:
    """Reading ahead to decide whether the columns can take it changes nothing about what a
    damaged archive yields before it breaks off, nor about an input over the size limit."""
    import telemetry.ingest.jsonl

    if limit is not None:
        monkeypatch.setattr(telemetry.ingest.jsonl, "SEGMENT_BYTES", limit)
    path = tmp_path / "events.in"
    path.write_bytes(_damaged_inputs()[name])
    fast = TelemetryStorage(tmp_path / "a")
    got = ingest_file(fast, path, format="jsonl", apply_retention=False)
    want = _line_by_line(path, TelemetryStorage(tmp_path / "b"))
    assert (got.sessions, got.events, got.problems,
            _rows(fast, "sessions"), _rows(fast, "targets")) == want  # fmt: skip


def _plain_history(builds: int = 40) -> bytes:
    rng = random.Random(21)
    return _text(_stream(rng, builds), rng) + b"\n"


def _assert_as_line_by_line(got: TelemetryStorage, result: Any, data: bytes, folder: Path) -> None:
    """``got`` holds (and ``result``, when given, reports) what reading ``data`` line by
    line stores."""
    want = TelemetryStorage(folder / "line-by-line")
    expected = ingest_jsonl(want, io.BytesIO(data), apply_retention=False)
    if result is not None:
        assert (result.sessions, result.events, result.problems) == (
            expected.sessions,
            expected.events,
            expected.problems,
        )
    assert _rows(got, "sessions") == _rows(want, "sessions")
    assert _rows(got, "targets") == _rows(want, "targets")


def test_a_file_that_grows_while_it_is_read_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file read in one step that turns out longer than its size said (a build still
    appending to it) is read on from there, line by line, losing nothing."""
    import telemetry.ingest.jsonl as jsonl

    data = _plain_history()
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)

    class Stale:
        """What fstat said before the file grew: half its size."""

        def __init__(self, real: os.stat_result) -> None:
            self.real = real
            self.st_size = real.st_size - len(data) // 2

        def __getattr__(self, name: str) -> object:
            return getattr(self.real, name)

    def stale_fstat(fd: int) -> Stale:
        return Stale(os.fstat(fd))

    monkeypatch.setattr(jsonl, "os", types.SimpleNamespace(**vars(os) | {"fstat": stale_fstat}))
    got = TelemetryStorage(tmp_path / "a")
    result = ingest_file(got, path, apply_retention=False)
    monkeypatch.undo()
    _assert_as_line_by_line(got, result, data, tmp_path)


class _FailingDisk(io.BufferedReader):
    """A file whose large reads fail part way, as on a failing disk; small ones go
    through."""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > 8192:
            super().read(4096)  # what was read before the fault is gone with it
            raise OSError(errno.EIO, "Input/output error")
        return super().read(size)


def test_a_plain_file_that_cannot_be_read_in_one_step_is_read_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _plain_history()
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    with _FailingDisk(io.FileIO(path)) as handle:
        monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=handle))
        got = TelemetryStorage(tmp_path / "a")
        result = ingest_file(got, "-", apply_retention=False)
    _assert_as_line_by_line(got, result, data, tmp_path)


def test_stdin_redirected_from_a_file_part_read_stores_the_rest(tmp_path: Path) -> None:
    """`builder telemetry ingest - < events.jsonl` after something read its first lines:
    the rest is stored, as it would be line by line."""
    from tests.conftest import BUILDER, process_env

    data = _plain_history()
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    skip = data.index(b"\n", len(data) // 3) + 1
    with path.open("rb", buffering=0) as stdin:
        stdin.seek(skip)
        done = subprocess.run(
            [BUILDER, "telemetry", "ingest", "-"], stdin=stdin, capture_output=True,
            env=process_env(tmp_path / "a"), check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _assert_as_line_by_line(TelemetryStorage(tmp_path / "a"), None, data[skip:], tmp_path)


@pytest.mark.parametrize("room", [-1, 0, 1])
def test_files_at_the_size_limit_are_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int
) -> None:
    import telemetry.ingest.jsonl as jsonl

    data = _plain_history()
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    monkeypatch.setattr(jsonl, "SEGMENT_BYTES", len(data) + room)
    got = TelemetryStorage(tmp_path / "a")
    result = ingest_file(got, path, apply_retention=False)
    _assert_as_line_by_line(got, result, data, tmp_path)


def _segments_and_lines(
    tmp_path: Path, data: bytes, segment: int, max_line: int | None = None
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """What a file of ``data`` stores and reports read in segments of ``segment`` bytes,
    and read line by line."""
    from unittest import mock

    import telemetry.ingest.jsonl as jsonl

    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    fast = TelemetryStorage(tmp_path / "segments")
    # Each segment stored before the next is read, as a segment of a million rows is.
    with (
        mock.patch.object(jsonl, "SEGMENT_BYTES", segment),
        mock.patch.object(jsonl, "_CHUNK_ROWS", 1),
    ):
        got = ingest_file(fast, path, format="jsonl", apply_retention=False,
                          **({"max_line": max_line} if max_line else {}))  # fmt: skip
    want = _line_by_line(path, TelemetryStorage(tmp_path / "lines"), max_line)
    return (got.sessions, got.events, got.problems, _rows(fast, "sessions"),
            _rows(fast, "targets")), want  # fmt: skip


def _finished_builds() -> bytes:
    """Builds that all finish: nothing is carried past the segment holding them."""
    from tests.conftest import small_history

    return ("\n".join(small_history()) + "\n").encode()


@pytest.mark.parametrize(
    "tail",
    [
        b"\n",
        b'{"event":"nope"}\n',
        b"\n\n\n",
        b'{"event":"build_started","session":"x\\\\y","ts":1}\n',
    ],
    ids=["a blank line", "a bad line", "blank lines", "an escape"],
)
def test_a_last_segment_that_declines_after_every_build_was_stored(
    tmp_path: Path, tail: bytes
) -> None:
    """Every build in the first segment, stored; the next declines (or is blank): the file
    read again line by line counts them all as stored, not as duplicates, and stores none
    twice."""
    builds = _finished_builds()
    got, want = _segments_and_lines(tmp_path, builds + tail, len(builds))
    assert got == want


def test_a_byte_order_mark_counts_only_at_the_start_of_the_input(tmp_path: Path) -> None:
    """A line in the middle starting with a byte-order mark is not JSON to the line-by-line
    reading, even where a segment starts with it."""
    first = b'{"event":"build_started","session":"open","ts":1761575000000}\n'
    second = (b"\xef\xbb\xbf" + b'{"event":"build_started","session":"b","ts":1761575000001,'
              + b'"tool":"' + b"n" * 400 + b'"}\n')  # fmt: skip
    data = first + second + _finished_builds()
    got, want = _segments_and_lines(tmp_path, data, len(first) + 10, max_line=10_000)
    assert got == want and want[2] != ()


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("mark", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("excess", [0, 1])
def test_a_line_is_measured_alike_by_both_readings(
    tmp_path: Path, ending: str, mark: bytes, excess: int
) -> None:
    """A line's length is its bytes without its ending and, on the first line, without a
    byte-order mark, in columns and line by line."""
    lines = _grouped(random.Random(5), 2)
    longest = max(len(line.encode()) for line in lines)
    data = mark + (ending.join(lines) + ending).encode()
    got, want = _segments_and_lines(tmp_path, data, len(data) + 1, max_line=longest - excess)
    assert got == want
    assert (want[2] == ()) == (excess == 0)


def test_deps_are_stored_alike_by_both_readings_and_the_collector(tmp_path: Path) -> None:
    """A build whose starts name their deps (none, some, a name twice, a name of no target
    of the build, names beyond ASCII, which the collector checks the thorough way), sent as
    JSON lines to both readings and as calls to the collector: the same rows."""
    from telemetry.collector import TelemetryCollector

    starts = [
        ("//gen", T0, []),
        ("//lib", T0 + 10, ["//gen", "//gen"]),
        ("//ünï", T0 + 10, ("//gen",)),
        ("//app", T0 + 30, ["//lib", "//ünï", "//nowhere"]),
        ("//docs", T0 + 30, None),
    ]
    events: list[dict[str, object]] = [{"event": "build_started", "session": "s", "ts": T0}]
    for n, (target, ts, deps) in enumerate(starts):
        started: dict[str, object] = {"event": "target_started", "session": "s", "ts": ts,
                                      "target": target}  # fmt: skip
        if deps is not None:
            started["deps"] = list(deps)
        events += [
            started,
            {"event": "target_finished", "session": "s", "ts": ts + 10 + n, "target": target,
             "status": "built"},
        ]  # fmt: skip
    events.append({"event": "build_finished", "session": "s", "ts": T0 + 60, "success": True})
    data = "\n".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in events)
    got, want, took = _both(data.encode())
    assert got == want and took

    collected = TelemetryStorage(tmp_path / "collected")
    collector = TelemetryCollector(collected)
    collector.build_started("s", ts=T0)
    for n, (target, ts, deps) in enumerate(starts):
        collector.target_started("s", target, ts=ts, deps=deps)
        collector.target_finished("s", target, ts=ts + 10 + n, status="built")
    collector.build_finished("s", ts=T0 + 60, success=True)
    assert _rows(collected, "targets") == got[6]
    assert {row[1]: row[-1] for row in got[6]} == {
        "//gen": [],
        "//lib": ["//gen", "//gen"],
        "//ünï": ["//gen"],
        "//app": ["//lib", "//ünï", "//nowhere"],
        "//docs": None,
    }
