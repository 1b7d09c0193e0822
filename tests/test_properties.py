"""Property-based tests: any input is handled without a crash, and any valid stream is stored
with the numbers an independent implementation computes from the same events.

HYPOTHESIS_EXAMPLES=1500 runs a longer search than the suite's 60 examples per test."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.events import parse_event
from telemetry.exporter import render_summary
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests import reference

T0 = 1761575000000
SETTINGS = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(
            ["build_started", "target_started", "target_finished", "build_finished", "x"]
        ),
        "session": st.text(max_size=5) | json_values,
        "ts": st.integers(-10, 10**16) | st.floats() | st.text(max_size=30) | json_values,
        "target": st.text(max_size=5) | json_values,
        "status": st.sampled_from(["built", "cached", "failed", "skipped", "?"]) | json_values,
        "duration_ms": st.integers(-5, 10**16) | st.floats() | json_values,
        "success": st.booleans() | json_values,
        "parallelism": st.integers(-2, 2**40) | json_values,
        "worker": st.integers(-2, 2**40) | json_values,
        "labels": st.dictionaries(st.text(max_size=4), json_values, max_size=3) | json_values,
        "error": st.text(max_size=10) | json_values,
    },
)


@SETTINGS
@given(st.lists(st.binary(max_size=80) | event_like.map(json.dumps).map(str.encode), max_size=25))
def test_any_input_is_ingested_or_reported_never_a_crash(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        storage = TelemetryStorage(Path(folder))
        result = ingest_jsonl(storage, [line.replace(b"\n", b" ") for line in lines])
        assert all(1 <= p.line <= len(lines) for p in result.problems)
        assert result.events + len(result.problems) <= len(lines)
        stored = TelemetryAnalyzer(storage).sessions()
        assert stored.height == result.sessions
        assert stored["total_targets"].min() is None or stored["total_targets"].min() >= 0


@SETTINGS
@given(event_like)
def test_the_event_parser_accepts_or_refuses_with_its_own_error(obj: dict[str, object]) -> None:
    from telemetry.errors import EventError

    with contextlib.suppress(EventError):  # anything else escaping is the failure
        parse_event(obj)


def _build(
    session: str,
    start: int,
    targets: list[tuple[int, int, str, bool]],
    parallelism: int | None,
    outcome: str,
) -> list[str]:
    """Events of one build: (offset, duration, status, with_start) per target."""
    events = [
        {"event": "build_started", "session": session, "ts": start}
        | ({"parallelism": parallelism} if parallelism else {})
    ]
    end = start
    for n, (offset, duration, status, with_start) in enumerate(targets):
        name = f"//p:{n % 4}"
        begin, finish = start + offset, start + offset + duration
        end = max(end, finish)
        if status == "cached" or status == "skipped":
            events.append(
                {
                    "event": "target_finished",
                    "session": session,
                    "ts": finish,
                    "target": name,
                    "status": status,
                }
            )
        elif with_start:
            events.append(
                {
                    "event": "target_started",
                    "session": session,
                    "ts": begin,
                    "target": name,
                    "worker": n % 3,
                }
            )
            events.append(
                {
                    "event": "target_finished",
                    "session": session,
                    "ts": finish,
                    "target": name,
                    "status": status,
                }
            )
        else:
            events.append(
                {
                    "event": "target_finished",
                    "session": session,
                    "ts": finish,
                    "target": name,
                    "status": status,
                    "duration_ms": duration,
                }
            )
    if outcome != "interrupted":
        events.append(
            {
                "event": "build_finished",
                "session": session,
                "ts": end + 7,
                "success": outcome == "ok",
            }
        )
    return [json.dumps(e) for e in events]


def _runs(statuses: list[str]) -> st.SearchStrategy[tuple[int, int, str, bool]]:
    # Times on a coarse grid, so runs often touch ([0,100) then [100,200)) and tie.
    return st.tuples(
        st.integers(0, 5).map(lambda x: x * 100),
        st.integers(0, 3).map(lambda x: x * 100),
        st.sampled_from(statuses),
        st.booleans(),
    )


builds = st.lists(
    st.tuples(
        st.one_of(
            st.lists(_runs(["built", "cached", "failed", "skipped"]), max_size=12),
            # A tool without per-target events (`record -- make`): no rates at all.
            st.just([]),
            # Targets reported but none attempted: rates known, the hit rate 0.
            st.lists(_runs(["skipped"]), min_size=1, max_size=3),
        ),
        st.none() | st.integers(1, 8),
        st.sampled_from(["ok", "failed", "interrupted"]),
    ),
    min_size=1,
    max_size=6,
)


Plan = tuple[list[tuple[int, int, str, bool]], int | None, str]


def _stream(plans: list[Plan]) -> list[str]:
    lines: list[str] = []
    for n, (targets, parallelism, outcome) in enumerate(plans):
        # Runs overlap freely; each start is followed by its own finish in the stream, so
        # first-in-first-out pairing is unambiguous for both implementations.
        lines += _build(f"s{n}", T0 + n * 3_600_000, targets, parallelism, outcome)
    return lines


def _same_rate(got: float | None, want: float | None) -> bool:
    """Both unknown, or both known and equal to 12 digits."""
    if got is None or want is None:
        return got is want
    return got == pytest.approx(want, rel=1e-12, abs=1e-12)


def _on_the_band(values: list[Fraction]) -> bool:
    """Whether the exact change between the older ⌊n/2⌋ and the newer rest is exactly ±10%,
    where floating point may fall on either side of the band."""
    old, new = values[: len(values) // 2], values[len(values) // 2 :]
    if not old or sum(old) == 0:
        return False
    change = (sum(new) / len(new) - sum(old) / len(old)) / (sum(old) / len(old))
    return abs(change) == Fraction(1, 10)


def _rate_lines(summary: str) -> list[str]:
    """The summary's three average-rate lines with their numbers masked: ``n/a``, or the
    mean with "(over K of N builds)" when not every build has a rate. The numbers are
    compared unrounded: a mean on a tie at the shown digits may round either way after a
    sum in floating point."""
    starts = ("  Average Hit Rate:", "  Average Utilization:", "  Targets/Second:")
    return [
        re.sub(r"\d+\.\d+", "#", line) for line in summary.splitlines() if line.startswith(starts)
    ]


@SETTINGS
@given(builds)
def test_any_valid_stream_is_stored_with_the_reference_numbers(plans: list[Plan]) -> None:
    lines = _stream(plans)
    want = reference.sessions_from_lines(lines)
    with tempfile.TemporaryDirectory() as folder:
        storage = TelemetryStorage(Path(folder))
        result = ingest_jsonl(storage, lines)
        assert result.problems == ()
        got = TelemetryAnalyzer(storage).sessions().to_dicts()
    assert [g["session_id"] for g in got] == [w.session_id for w in want]
    for g, w in zip(got, want, strict=True):
        assert (
            g["duration_ms"],
            g["built"],
            g["cached"],
            g["failed"],
            g["skipped"],
            g["interrupted"],
            g["succeeded"],
            g["peak_concurrency"],
        ) == (
            w.duration_ms,
            w.built,
            w.cached,
            w.failed,
            w.skipped,
            w.interrupted,
            w.succeeded,
            w.peak_concurrency,
        )
        assert _same_rate(g["cache_hit_rate"], w.cache_hit_rate), (g, w)
        assert _same_rate(g["parallelism_utilization"], w.parallelism_utilization), (g, w)
        assert _same_rate(g["targets_per_second"], w.targets_per_second), (g, w)


@SETTINGS
@given(builds)
def test_the_averages_and_trends_of_any_history_are_the_references(plans: list[Plan]) -> None:
    lines = _stream(plans)
    sessions = reference.sessions_from_lines(lines)
    want = reference.summary(sessions)
    with tempfile.TemporaryDirectory() as folder:
        storage = TelemetryStorage(Path(folder))
        assert ingest_jsonl(storage, lines).problems == ()
        report = TelemetryAnalyzer(storage).summary()
    assert (report.total_builds, report.builds_with_targets) == (
        want["total"],
        want["rated_builds"],
    )
    assert _same_rate(report.average_cache_hit_rate, want["avg_cache_hit_rate"])
    assert _same_rate(report.average_utilization, want["avg_utilization"])
    assert _same_rate(report.average_targets_per_second, want["avg_targets_per_second"])
    rates = [r for r in (s.exact_cache_hit_rate() for s in sessions) if r is not None]
    if not _on_the_band(rates):
        assert report.cache_trend == want["cache_trend"]
    if not _on_the_band([Fraction(s.duration_ms) for s in sessions]):
        assert report.build_time_trend == want["duration_trend"]

    assert _rate_lines(render_summary(report)) == _rate_lines(reference.summary_text(sessions))


documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "traceEvents",
                    "tasks",
                    "execution",
                    "id",
                    "turboVersion",
                    "ph",
                    "ts",
                    "dur",
                    "name",
                    "tid",
                    "started",
                    "finished",
                    "cache",
                    "taskId",
                    "startTimeMillis",
                    "exitCode",
                    "otherData",
                    "date",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@SETTINGS
@given(documents, st.sampled_from(["auto", "turbo-summary", "chrome-trace", "bazel-bep"]))
def test_any_json_document_in_any_format_is_stored_or_refused_cleanly(
    document: object, fmt: str
) -> None:
    from telemetry.errors import TelemetryError
    from telemetry.ingest import ingest_file

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.json"
        text = (
            json.dumps(document, indent=2)
            if fmt != "bazel-bep"
            else "\n".join(
                json.dumps(item)
                for item in (document if isinstance(document, list) else [document])
            )
        )
        path.write_text(text)
        with contextlib.suppress(TelemetryError):  # anything else escaping is the failure
            ingest_file(TelemetryStorage(Path(folder) / "t"), path, format=fmt)  # type: ignore[arg-type]


log_fields = st.one_of(
    st.integers(-5, 2**63).map(str),
    st.text(max_size=6),
    st.sampled_from(["0", "12", "1700000000000000000", "a.o", "deadbeef", ""]),
)
log_lines = st.lists(log_fields, min_size=0, max_size=7).map("\t".join)
entries = st.builds(
    lambda a, b, mtime, output, digest: f"{min(a, b)}\t{max(a, b)}\t{mtime}\t{output}\t{digest}",
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.integers(0, 2**62),
    st.text(min_size=1, max_size=8),
    st.text(alphabet="0123456789abcdef", max_size=16),
)


@SETTINGS
@given(
    st.sampled_from(["# ninja log v5", "# ninja log v7", "# ninja log v2", ""]),
    st.lists(
        entries | log_lines | st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
        max_size=20,
    ),
)
def test_any_ninja_log_is_stored_or_refused_cleanly(header: str, lines: list[str]) -> None:
    from telemetry.errors import TelemetryError
    from telemetry.ingest import ingest_file
    from telemetry.ingest.ninja import parse_log

    body = "\n".join(line.replace("\n", " ") for line in [header, *lines]).encode(
        "utf-8", "surrogateescape"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ".ninja_log"
        path.write_bytes(body)
        storage = TelemetryStorage(Path(folder) / "t")
        try:
            result = ingest_file(storage, path, format="ninja-log", apply_retention=False)
        except TelemetryError:
            return
        log = parse_log(body)
        # Every command the parser's entries record (lines alike in start, end and hash are
        # one, within a run) is a stored target; every line it refuses is named.
        assert {p.line for p in result.problems} >= {n for n, _ in log.problems}
        stored = TelemetryAnalyzer(storage).sessions()
        commands = {(e.start_ms, e.end_ms, e.command_hash) for e in log.entries}
        assert len(commands) <= int(stored["built"].sum()) <= len(log.entries)


_NAME_PARTS = st.text(alphabet=st.sampled_from(list("-n0123456789.arowx\n٣²Z")), max_size=24)
_NAME_ENDS = st.sampled_from(["", ".arrow", "-n12.arrow", ".arrow\n", "-n.arrow", "-n٣.arrow",
                              "-n².arrow", "-day-n7.arrow", "-n1-n2.arrow"])  # fmt: skip


@settings(max_examples=2000)
@given(_NAME_PARTS, _NAME_ENDS)
def test_a_files_stem_is_its_name_less_its_count_as_the_pattern_says(head: str, end: str) -> None:
    """layout.stem takes a shortcut past its pattern for names ending in .arrow (a year's
    snapshot asks for thousands of stems): it answers as the pattern does for any name."""
    from telemetry import layout

    name = head + end
    assert layout.stem(name) == re.sub(r"(-n\d+)?\.arrow$", "", name)
