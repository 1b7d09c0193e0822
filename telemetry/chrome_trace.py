"""One build as a Chrome trace (the Trace Event Format's JSON object form), which Perfetto
(ui.perfetto.dev) and chrome://tracing open: what ``builder telemetry trace`` writes.

The build is one process; each worker is one thread, its track, named ``worker N``. Each
target is one complete event (``ph: X``) on its worker's track, ``ts`` and ``dur`` in
microseconds, its category its status, coloured by status in chrome://tracing (``cname``,
one of the trace viewer's reserved colour names; Perfetto colours by name whatever a trace
asks). A target with no worker (a cache hit, a tool that reports none) goes on a track of
its own, ``no worker``. A slice on a track must nest in, or be apart from, the others there,
so runs that overlap on one track (which one worker cannot do) spill onto a further track of
the same name numbered ``(2)``, ``(3)``...

A cache hit (or a skipped target) took no time: a zero-length complete event, which Perfetto
draws as an instant, chrome://tracing as a hairline, and which the project's own trace
ingest (:mod:`telemetry.ingest.trace`) reads back, where an instant event (``ph: i``) would
be dropped.

Time 0 is the whole second (UTC) in which the build started (or its first target, when one
told by its duration began before the build), written as ``otherData.date`` the way the
trace ingest reads it, so ingesting the trace again puts every target at the millisecond it
ran. The tracks come in worker order, so that ingest, which numbers threads as they first
appear, gives workers 0..N-1 back their numbers.

A critical path, when one is known, is given as target names: those targets get
``critical: true`` in their args, and flow arrows (``ph: s`` / ``ph: f``) join them in order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from telemetry.errors import TelemetryError
from telemetry.files import atomic_output
from telemetry.model import BuildDetails, TargetRun

# Colour names of the trace viewer's colour scheme (catapult's reservedColorsByName in
# tracing/base/color_scheme.html), chosen from those every version of it knows: older
# viewers fail on a name they do not know.
STATUS_COLORS: Final[Mapping[str, str]] = {
    "built": "good",  # green
    "cached": "generic_work",  # grey
    "failed": "terrible",  # red
    "skipped": "bad",  # amber: not attempted, usually because a dependency failed
}
NO_WORKER: Final = "no worker"
CRITICAL_PATH: Final = "critical path"  # the flow arrows' name and category
_PID: Final = 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
# otherData.date as Bazel writes it and the trace ingest reads it, in English whatever the
# locale.
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
_UNSAFE_IN_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")
_LONGEST_NAME: Final = 100


class TraceError(TelemetryError):
    """A trace cannot be made as asked (a critical path names a target the build lacks)."""


def trace_document(
    build: BuildDetails, *, critical_path: Sequence[str] | None = None
) -> dict[str, Any]:
    """The Chrome trace of ``build`` as a JSON-ready dict: ``traceEvents``,
    ``displayTimeUnit`` and ``otherData``. ``critical_path``, target names in the order
    they ran, marks those targets and joins them with flow arrows.

    >>> document = trace_document(build)  # doctest: +SKIP
    >>> [e["name"] for e in document["traceEvents"] if e["ph"] == "X"]  # doctest: +SKIP
    ['//app:compile', '//app:test', '//lib:util', '//app:link']
    """
    # A target told by duration_ms may have begun before its build: time 0 precedes both,
    # so that no time in the trace is negative.
    first = min([_ms(build.start_time), *(_ms(run.start_time) for run in build.targets)])
    origin = first // 1000 * 1000
    tracks = _tracks(build.targets)
    critical = _critical_runs(build, critical_path or ())
    marked = {id(run) for run in critical}
    events: list[dict[str, Any]] = [
        _metadata("process_name", {"name": _process_name(build)}),
        _metadata("process_labels", {"labels": _process_labels(build)}),
    ]
    tids: dict[int, int] = {}
    for tid, (name, runs) in enumerate(tracks, start=1):
        events.append(_metadata("thread_name", {"name": name}, tid))
        events.append(_metadata("thread_sort_index", {"sort_index": tid}, tid))
        tids.update((id(run), tid) for run in runs)
    for tid, (_, runs) in enumerate(tracks, start=1):
        events.extend(_slice(run, tid, origin, id(run) in marked) for run in runs)
    # A run that took no time has no inside for an arrow to land in (its instant is where a
    # neighbour's slice ends): the arrows pass from the run before it to the run after it.
    lasting = [run for run in critical if run.end_time > run.start_time]
    for number, (before, after) in enumerate(itertools.pairwise(lasting), 1):
        events.append(_flow("s", number, before, tids[id(before)], origin))
        events.append(_flow("f", number, after, tids[id(after)], origin))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": _other_data(build, origin),
    }


def trace_text(document: Mapping[str, Any]) -> str:
    """``document`` as JSON text, one event a line, ASCII only (build text is escaped in
    JSON's own way, so no target name can break a line or a terminal).

    >>> print(trace_text({"traceEvents": [{"ph": "M"}], "displayTimeUnit": "ms"}), end="")
    {"traceEvents": [
    {"ph": "M"}
    ],
    "displayTimeUnit": "ms"}
    """
    events = document["traceEvents"]
    body = "[\n" + ",\n".join(json.dumps(e) for e in events) + "\n]" if events else "[]"
    fields = [f'{{"traceEvents": {body}']
    fields += [
        f"{json.dumps(k)}: {json.dumps(v)}" for k, v in document.items() if k != "traceEvents"
    ]
    return ",\n".join(fields) + "}\n"


def write_trace(document: Mapping[str, Any], path: Path) -> None:
    """Write ``document`` to ``path`` as :func:`trace_text`, atomically: an earlier file of
    that name stays whole until the new one is.

    >>> write_trace(trace_document(build), Path("build.json"))  # doctest: +SKIP
    """
    text = trace_text(document)
    with atomic_output(path) as handle:
        handle.write(text.encode("ascii"))


def trace_file_name(session_id: str) -> str:
    """The file name a build's trace gets when none is given: its session id with anything
    but ASCII letters, digits, ``.``, ``_`` and ``-`` replaced, so that no id can name a
    folder, a hidden file or an option.

    An id changed on the way gets the first hex digits of its SHA-256 too, so that two ids
    made safe alike do not share a file:

    >>> trace_file_name("ci-42"), trace_file_name("ci/42: nightly"), trace_file_name("../..")
    ('ci-42.trace.json', 'ci_42_nightly-673f0653.trace.json', 'build-0cfd1c96.trace.json')
    """
    safe = _UNSAFE_IN_NAME.sub("_", session_id).strip("._-")[:_LONGEST_NAME].rstrip("._-")
    if safe != session_id:
        # Ids made safe alike (ci/1, ci:1) keep names of their own.
        digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe}-{digest}" if safe else f"build-{digest}"
    return f"{safe}.trace.json"


def _tracks(runs: Iterable[TargetRun]) -> list[tuple[str, list[TargetRun]]]:
    """(thread name, its runs in time order) for each track: the workers in order, then the
    runs without one; runs overlapping on one track go to the next of its lanes."""
    by_worker: dict[int | None, list[TargetRun]] = {}
    for run in runs:
        by_worker.setdefault(run.worker, []).append(run)
    tracks = []
    for worker in sorted(by_worker, key=lambda w: (w is None, w or 0)):
        name = NO_WORKER if worker is None else f"worker {worker}"
        lanes: list[list[TargetRun]] = []
        for run in sorted(by_worker[worker], key=lambda r: (r.start_time, r.end_time, r.target)):
            # The first lane free by the time it starts ([start, end): one ending at t and
            # one starting at t do not overlap).
            lane = next((lane for lane in lanes if lane[-1].end_time <= run.start_time), None)
            if lane is None:
                lanes.append([run])
            else:
                lane.append(run)
        tracks += [(name if n == 1 else f"{name} ({n})", lane) for n, lane in enumerate(lanes, 1)]
    return tracks


def _critical_runs(build: BuildDetails, names: Sequence[str]) -> list[TargetRun]:
    """The run each name of the critical path stands for: of a target run more than once,
    the run that ended last."""
    last: dict[str, TargetRun] = {}
    for run in build.targets:
        if run.target not in last or run.end_time >= last[run.target].end_time:
            last[run.target] = run
    missing = [name for name in names if name not in last]
    if missing:
        raise TraceError(
            f"the critical path names {missing[0]!r}, which is no target of build "
            f"{build.session_id!r}; give the names of its targets"
        )
    return [last[name] for name in names]


def _metadata(name: str, args: dict[str, Any], tid: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"name": name, "ph": "M", "pid": _PID}
    if tid is not None:
        event["tid"] = tid
    event["args"] = args
    return event


def _slice(run: TargetRun, tid: int, origin: int, critical: bool) -> dict[str, Any]:
    start, end = _ms(run.start_time), _ms(run.end_time)
    args: dict[str, Any] = {"status": run.status, "duration_ms": run.duration_ms}
    if run.status == "failed" and run.error is not None:
        args["error"] = run.error
    if critical:
        args["critical"] = True
    event: dict[str, Any] = {
        "name": run.target,
        "cat": run.status,
        "ph": "X",
        "ts": (start - origin) * 1000,
        "dur": max(end - start, 0) * 1000,
        "pid": _PID,
        "tid": tid,
    }
    if run.status in STATUS_COLORS:
        event["cname"] = STATUS_COLORS[run.status]
    event["args"] = args
    return event


def _flow(phase: str, number: int, run: TargetRun, tid: int, origin: int) -> dict[str, Any]:
    """One end of a flow arrow, halfway through ``run``: a flow binds to the slice enclosing
    it, and halfway no neighbour that ends or starts at the same instant can be taken."""
    start, end = _ms(run.start_time), _ms(run.end_time)
    event: dict[str, Any] = {
        "name": CRITICAL_PATH,
        "cat": CRITICAL_PATH,
        "ph": phase,
        "id": number,
        "ts": (start - origin) * 1000 + max(end - start, 0) * 500,
        "pid": _PID,
        "tid": tid,
    }
    if phase == "f":
        event["bp"] = "e"  # bind to the enclosing slice, not to the next one to begin
    return event


def _process_name(build: BuildDetails) -> str:
    """``build b-42 (ninja, main @ 0123abc)``, with what is known of the tool, branch and
    commit (its first 12 characters: the whole of it is in ``otherData``)."""
    commit = build.commit[:12] if build.commit else None
    where = " @ ".join(part for part in (build.branch, commit) if part)
    known = ", ".join(part for part in (build.tool, where) if part)
    return f"build {build.session_id}" + (f" ({known})" if known else "")


def _outcome(build: BuildDetails) -> str:
    if build.interrupted:
        return "interrupted"
    return "succeeded" if build.succeeded else "failed"


def _process_labels(build: BuildDetails) -> str:
    """``succeeded in 2341 ms``, ``failed after 3000 ms``, ``interrupted after 800 ms``."""
    outcome = _outcome(build)
    return f"{outcome} {'in' if outcome == 'succeeded' else 'after'} {build.duration_ms} ms"


def _other_data(build: BuildDetails, origin: int) -> dict[str, Any]:
    zero = _EPOCH + origin * _MS
    other: dict[str, Any] = {
        "date": (
            f"{_DAYS[zero.weekday()]} {_MONTHS[zero.month - 1]} {zero.day:02d} "
            f"{zero:%H:%M:%S} UTC {zero.year}"
        ),
        "session_id": build.session_id,
        "outcome": _outcome(build),
        "start_time": _iso(build.start_time),
        "end_time": _iso(build.end_time),
        "duration_ms": build.duration_ms,
    }
    for key in ("tool", "host", "branch", "commit", "error"):
        if getattr(build, key) is not None:
            other[key] = getattr(build, key)
    if build.labels:
        other["labels"] = dict(sorted(build.labels.items()))
    return other


def _iso(moment: datetime) -> str:
    """UTC to the millisecond: ``2025-10-27T14:23:20.000Z``."""
    at = _EPOCH + _ms(moment) * _MS
    return f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z"


def _ms(moment: datetime) -> int:
    """Epoch milliseconds, exactly (no float on the way)."""
    return (moment - _EPOCH) // _MS


__all__ = [
    "CRITICAL_PATH",
    "NO_WORKER",
    "STATUS_COLORS",
    "TraceError",
    "trace_document",
    "trace_file_name",
    "trace_text",
    "write_trace",
]
