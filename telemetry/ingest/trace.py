"""Chrome Trace Event Format (``chrome://tracing`` JSON): Bazel's ``--profile``,
ninjatracing's output, or any ``traceEvents`` file.

One trace is one build. Every complete event (``ph: X``) and every begin/end pair
(``B``/``E`` on the same thread) becomes a ``built`` target named by the event's name, run
on the worker of its thread. Metadata, instant and counter events are left out. A trace
says nothing of success, so the build counts as successful.

Flow events (``ph: s``, ``t``, ``f``, one flow sharing a ``cat``, ``name`` and ``id``) are
arrows from one slice to the next, as Perfetto and ``chrome://tracing`` draw them: a start or
step binds to the slice enclosing it on its thread, an end to the next slice beginning on
its thread (to the enclosing one with ``"bp": "e"``). A slice an arrow points to waited for
the slice it comes from: that one's name is among its ``deps``. The slices that flows bind
have deps (empty for one no arrow points to); the others, and every slice of a trace
without flows, have none known.

Trace times are microseconds from an origin the trace does not state. Time 0 is taken to be
``otherData.date`` when it is in UTC (Bazel writes it, to the second, in local time);
otherwise the trace is taken to have ended when its file was last written (for standard
input: when it is read).
"""

from __future__ import annotations

import hashlib
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
    slices, workers = _slices(events)
    if not slices:
        raise InputError("the trace holds no complete (X) or begin/end (B, E) events")
    deps = _flow_deps(events, slices, workers)
    runs = sorted(range(len(slices)), key=lambda i: (slices[i].start, slices[i].name))
    first = min(run.start for run in slices)
    last = max(run.end for run in slices)
    origin = _origin(document, first, last, written_ms)
    build = EventBuilder(f"trace-{hashlib.sha256(raw).hexdigest()[:16]}")
    return _events(build, origin, [(slices[i], deps.get(i)) for i in runs], first, last)


@dataclass(slots=True, frozen=True)
class _Slice:
    """A complete event or begin/end pair: its name, its times in milliseconds (as stored)
    and in the trace's microseconds (which flows bind by), and its thread."""

    name: str
    start: int
    end: int
    worker: int
    begin_us: float
    end_us: float


def _events(
    build: EventBuilder,
    origin: int,
    runs: list[tuple[_Slice, list[str] | None]],
    first: int,
    last: int,
) -> Iterator[Event | EventError]:
    yield build.build_started(origin + first, tool="trace")
    for run, deps in runs:
        yield build.target_started(origin + run.start, run.name, worker=run.worker, deps=deps)
        yield build.target_finished(origin + run.end, run.name, "built")
    yield build.build_finished(origin + last, success=True)


def _slices(events: list[Any]) -> tuple[list[_Slice], dict[tuple[str, str], int]]:
    """Every complete event and begin/end pair, in the order they end in the trace, and the
    worker of each thread."""
    workers: dict[tuple[str, str], int] = {}
    open_: dict[tuple[str, str], list[tuple[str, float]]] = {}
    slices = []
    for event in events:
        if not isinstance(event, Mapping):
            continue
        phase, ts = event.get("ph"), event.get("ts")
        if phase not in ("X", "B", "E") or not _number(ts):
            continue
        assert isinstance(ts, int | float)
        thread = _thread(event)
        worker = workers.setdefault(thread, len(workers))
        name = str(event.get("name") or "?")[:1000]
        start = round(ts / 1000)
        if phase == "X":
            duration = event.get("dur")
            if _number(duration):
                assert isinstance(duration, int | float)
                end, end_us = start + round(duration / 1000), ts + max(duration, 0)
            else:
                end, end_us = start, ts
            slices.append(_Slice(name, start, max(start, end), worker, ts, end_us))
        elif phase == "B":
            open_.setdefault(thread, []).append((name, ts))
        elif open_.get(thread):
            begun_name, begun = open_[thread].pop()
            began = round(begun / 1000)
            slices.append(_Slice(begun_name, began, max(began, start), worker, begun, ts))
    return slices, workers


def _thread(event: Mapping[str, Any]) -> tuple[str, str]:
    return repr(event.get("pid")), repr(event.get("tid"))


def _flow_deps(
    events: list[Any], slices: list[_Slice], workers: dict[tuple[str, str], int]
) -> dict[int, list[str]]:
    """For each slice that a flow binds, the names of the slices whose arrows point to it
    (each once, in the order of the arrows), by the slice's index."""
    by_worker: dict[int, list[int]] = {}
    for index in sorted(range(len(slices)), key=lambda i: slices[i].begin_us):
        by_worker.setdefault(slices[index].worker, []).append(index)
    flows = [
        e
        for e in events
        if isinstance(e, Mapping) and e.get("ph") in ("s", "t", "f") and _number(e.get("ts"))
    ]
    deps: dict[int, list[str]] = {}
    arrows: dict[tuple[str, str, str], int] = {}  # each flow going on: the slice it left
    # A dependency is stored by its name: a flow leaving a slice whose name another slice
    # of the trace has too (RunTask, CppCompile) would name them all, so it names none.
    named = Counter(piece.name for piece in slices)
    for event in sorted(flows, key=lambda e: e["ts"]):  # stable: the file's order for ties
        thread = by_worker.get(workers.get(_thread(event), -1))
        if thread is None:
            continue  # on a thread with no slice
        enclosing = event["ph"] != "f" or event.get("bp") == "e"
        bound = _bound(slices, thread, event["ts"], enclosing=enclosing)
        if bound is None:
            continue
        key = (repr(event.get("cat")), repr(event.get("name")), repr(event.get("id")))
        came_from = arrows.pop(key, None) if event["ph"] != "s" else None
        deps.setdefault(bound, [])
        if (
            came_from not in (None, bound)
            and named[slices[came_from].name] == 1
            and slices[came_from].name not in deps[bound]
        ):
            deps[bound].append(slices[came_from].name)
        if event["ph"] != "f":
            arrows[key] = bound
    return deps


def _bound(slices: list[_Slice], thread: list[int], ts: float, *, enclosing: bool) -> int | None:
    """The slice of a ``thread`` (indices, by start) a flow event at ``ts`` binds to: the
    innermost one enclosing ``ts``, else the first beginning at ``ts`` or after it."""
    starts = [slices[i].begin_us for i in thread]
    if enclosing:
        for index in reversed(thread[: bisect_right(starts, ts)]):
            if slices[index].end_us >= ts:
                return index
        return None
    at = bisect_left(starts, ts)
    return thread[at] if at < len(thread) else None


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
