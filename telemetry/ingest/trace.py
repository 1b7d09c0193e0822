"""Chrome Trace Event Format (``chrome://tracing`` JSON): Bazel's ``--profile``,
ninjatracing's output, or any ``traceEvents`` file.

One trace is one build. Every complete event (``ph: X``) and every begin/end pair
(``B``/``E`` on the same thread) becomes a ``built`` target named by the event's name, run
on the worker of its thread. Metadata, instant and counter events are left out. A trace
says nothing of success, so the build counts as successful.

Trace times are microseconds from an origin the trace does not state. Time 0 is taken to be
``otherData.date`` when it is in UTC (Bazel writes it, to the second, in local time);
otherwise the trace is taken to have ended when its file was last written (for standard
input: when it is read).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from telemetry.errors import EventError, InputError
from telemetry.events import Event, EventBuilder


def is_trace(document: object) -> bool:
    """Whether a decoded JSON document is a Chrome trace (object or bare event array)."""
    if isinstance(document, Mapping):
        return isinstance(document.get("traceEvents"), list)
    return isinstance(document, list) and all(
        isinstance(e, Mapping) and "ph" in e for e in document[:10]
    )


def trace_events(
    document: object, *, raw: bytes, written_ms: int | None = None
) -> Iterator[Event | EventError]:
    """The protocol's events for one trace, each made by an
    :class:`~telemetry.events.EventBuilder`; ``raw`` (its bytes) names the session. A
    trace without a run to store is refused at once.

    >>> trace = {"traceEvents": [{"ph": "X", "name": "cc a.o", "ts": 0, "dur": 5000}]}
    >>> _, started, *_ = trace_events(trace, raw=b"x", written_ms=10_000)
    >>> started.target, started.ts  # the 5 ms trace ended when written, at 10,000
    ('cc a.o', 9995)
    """
    if not is_trace(document):
        raise InputError("not a Chrome trace: expected traceEvents, or a list of trace events")
    events = document["traceEvents"] if isinstance(document, Mapping) else document
    assert isinstance(events, list)
    runs = _runs(events)
    if not runs:
        raise InputError("the trace holds no complete (X) or begin/end (B, E) events")
    first = min(begin for _, begin, _, _ in runs)
    last = max(end for _, _, end, _ in runs)
    origin = _origin(document, first, last, written_ms)
    build = EventBuilder(f"trace-{hashlib.sha256(raw).hexdigest()[:16]}")
    return _events(build, origin, runs, first, last)


def _events(
    build: EventBuilder, origin: int, runs: list[tuple[str, int, int, int]], first: int, last: int
) -> Iterator[Event | EventError]:
    yield build.build_started(origin + first, tool="trace")
    for name, begin, end, worker in runs:
        yield build.target_started(origin + begin, name, worker=worker)
        yield build.target_finished(origin + end, name, "built")
    yield build.build_finished(origin + last, success=True)


def _runs(events: list[Any]) -> list[tuple[str, int, int, int]]:
    """(name, start ms, end ms, worker) of every complete event and begin/end pair."""
    workers: dict[tuple[object, object], int] = {}
    open_: dict[tuple[object, object], list[tuple[str, int]]] = {}
    runs = []
    for event in events:
        if not isinstance(event, Mapping):
            continue
        phase, ts = event.get("ph"), event.get("ts")
        if phase not in ("X", "B", "E") or not _number(ts):
            continue
        assert isinstance(ts, int | float)
        thread = (repr(event.get("pid")), repr(event.get("tid")))
        worker = workers.setdefault(thread, len(workers))
        name = str(event.get("name") or "?")[:1000]
        start = round(ts / 1000)
        if phase == "X":
            duration = event.get("dur")
            end = start + round(duration / 1000) if _number(duration) else start  # type: ignore[operator]
            runs.append((name, start, max(start, end), worker))
        elif phase == "B":
            open_.setdefault(thread, []).append((name, start))
        elif open_.get(thread):
            begun_name, begun = open_[thread].pop()
            runs.append((begun_name, begun, max(begun, start), worker))
    return sorted(runs, key=lambda run: (run[1], run[0]))


def _origin(document: object, first: int, last: int, written_ms: int | None) -> int:
    """Epoch milliseconds of the trace's time 0."""
    other = document.get("otherData") if isinstance(document, Mapping) else None
    date = other.get("date") if isinstance(other, Mapping) else None
    # Only a date in UTC is taken: Bazel writes local time, and a zone name is no offset.
    if isinstance(date, str) and date.split()[-2:-1] in (["UTC"], ["GMT"]):
        try:
            zero = datetime.strptime(date, "%a %b %d %H:%M:%S %Z %Y").replace(tzinfo=UTC)
            return round(zero.timestamp() * 1000)
        except ValueError:
            pass
    ended = written_ms if written_ms is not None else time.time_ns() // 1_000_000
    return ended - last


def _number(value: object) -> bool:
    """A finite number; trace times may be negative (Bazel's launch precedes its clock)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) < 1e18  # also refuses NaN and infinities
    )
