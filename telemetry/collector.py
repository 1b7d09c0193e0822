"""The collector: aggregates a build's events into one session row and its target rows.

Targets are buffered column by column in compact arrays (about 30 bytes a target), guarded by
one lock so a build executor may report from many worker threads. When a build finishes, its
columns become Arrow record batches and go to a :class:`SessionSink` (normally the store).
The collector never raises into the build: a bad event or a failed write becomes a
:class:`~telemetry.errors.TelemetryWarning`, reported once, and the build goes on.

A session id names one build, as in ingest: an event of a build that already finished (a
second ``build_finished``, or the id reused for the next build) and a second
``build_started`` of an open build are refused with a warning. Taken, they would mix two
builds' targets in one, or store a build that never ran.

An event dated more than :data:`~telemetry.events.AHEAD_MS` (an hour) ahead of the clock is
refused, and a build that starts so is refused whole: stored, it would be the newest day of
the store until the clock caught up, and retention, which keeps the newest days, would
remove real builds to make room for it.
"""

from __future__ import annotations

import threading
import warnings
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from telemetry.errors import EventError, TelemetryError, TelemetryWarning
from telemetry.events import (
    INTERRUPTED,
    MAX_TEXT,
    MAX_TS_MS,
    STATUSES,
    BuildFinished,
    BuildStarted,
    Event,
    Status,
    TargetFinished,
    TargetStarted,
    failure_text,
    format_ts,
    latest_ts,
    parse_event,
    parse_timestamp,
)
from telemetry.metrics import peak_concurrency
from telemetry.schema import SESSIONS_SCHEMA, TARGETS_SCHEMA

_STATUS_CODE: dict[str, int] = {status: code for code, status in enumerate(STATUSES)}
_BUILT, _CACHED, _FAILED, _SKIPPED = (_STATUS_CODE[s] for s in STATUSES)
_STATUS_DICTIONARY = pa.array(STATUSES, pa.string())
_NO_WORKER = -1
_KIND: dict[type, str] = {
    BuildStarted: "build_started",
    TargetStarted: "target_started",
    TargetFinished: "target_finished",
    BuildFinished: "build_finished",
}


class SessionSink(Protocol):
    """Where finished sessions go: one session row and its target rows per call."""

    def write(self, sessions: pa.RecordBatch, targets: pa.RecordBatch) -> object: ...


class _NullSink:
    def write(self, sessions: pa.RecordBatch, targets: pa.RecordBatch) -> None:
        return None


@dataclass(slots=True, frozen=True)
class SessionInfo:
    """What ``build_started`` said about a build."""

    parallelism: int | None = None
    tool: str | None = None
    labels: Mapping[str, str] | None = None
    host: str | None = None
    commit: str | None = None
    branch: str | None = None


class _Buffer:
    """One open session's target rows, column by column."""

    __slots__ = (
        "counts",
        "deps",
        "ends",
        "errors",
        "executed_ms",
        "first_ts",
        "info",
        "last_ts",
        "pending",
        "session",
        "start_ts",
        "starts",
        "statuses",
        "target_ids",
        "workers",
    )

    def __init__(self, session: str, ts: int) -> None:
        self.session = session
        self.start_ts: int | None = None
        self.first_ts = ts
        self.last_ts = ts
        self.info = SessionInfo()
        self.target_ids = array("i")
        self.statuses = array("b")
        self.starts = array("q")
        self.ends = array("q")
        self.workers = array("i")
        self.errors: dict[int, str] = {}
        # row -> the target ids its start named as its deps (rows without: unknown)
        self.deps: dict[int, tuple[int, ...]] = {}
        self.counts = [0, 0, 0, 0]
        self.executed_ms = 0
        # target id -> starts not yet matched by a finish (ts, worker, deps), first in first out
        self.pending: dict[int, deque[tuple[int, int, tuple[int, ...] | None]]] = {}


class TelemetryCollector:
    """Turns build events into stored sessions; safe to call from many threads.

    >>> from telemetry.storage import TelemetryStorage
    >>> collector = TelemetryCollector(TelemetryStorage(".builder-cache/telemetry"))
    >>> collector.build_started("b-1", ts=1761575000000, parallelism=8)  # doctest: +SKIP

    ``clock`` (UTC, the local clock by default) tells how far ahead an event may be dated.
    """

    def __init__(
        self,
        sink: SessionSink,
        *,
        enabled: bool = True,
        on_warning: Callable[[str], None] | None = None,
        warn_every_time: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.enabled = enabled
        self._warn_every_time = warn_every_time
        self._sink = sink
        self._lock = threading.Lock()
        self._open: dict[str, _Buffer] = {}
        self._labels: dict[str, int] = {}
        self._label_list: list[str] = []
        self._warned = False
        self._on_warning = on_warning
        self._clock = clock or (lambda: datetime.now(UTC))
        # Every ts before this is near enough to now. The clock is read again only for a
        # later one (it runs forward, so this only errs on the side of reading it again).
        self._latest = latest_ts(self._clock())
        self._refused: set[str] = set()  # builds that started too far ahead
        self._finished: set[str] = set()  # builds stored: their ids are not taken again

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetryCollector:
        """A collector for the store the ``BUILDER_TELEMETRY_*`` variables configure.

        Disabled when ``BUILDER_TELEMETRY_ENABLED`` is off; a bad variable is reported once
        as a warning and disables it, so a build script never fails because of telemetry.
        """
        from telemetry.config import TelemetryConfig
        from telemetry.storage import TelemetryStorage

        try:
            config = TelemetryConfig.from_env(environ)
        except TelemetryError as error:
            warnings.warn(
                f"telemetry is off for this build: {error}", TelemetryWarning, stacklevel=2
            )
            return cls.disabled()
        return cls(TelemetryStorage.from_config(config), enabled=config.enabled)

    @classmethod
    def disabled(cls) -> TelemetryCollector:
        """A collector that takes every call and records nothing."""
        return cls(_NullSink(), enabled=False)

    # -- the protocol, one method per event -------------------------------------------------

    def handle(self, event: Event) -> bool:
        """Take one event; a finished build is written to the sink. False when the event
        was not taken: it could not be used or is dated too far ahead (either is reported
        in a warning), or its build was refused."""
        if not self.enabled:
            return False
        try:
            if event.ts >= self._latest and self._ahead(event):
                return False
            if isinstance(event, TargetFinished):
                return self._target_finished(event)
            if isinstance(event, TargetStarted):
                return self._target_started(event)
            if isinstance(event, BuildStarted):
                return self._build_started(event)
            if isinstance(event, BuildFinished):
                return self._build_finished(event)
        except Exception as error:  # the build must never see our failure
            self._warn_once(f"telemetry ignored an event it could not use: {error!r}")
        return False

    def build_started(
        self,
        session: str,
        *,
        ts: int | float | str,
        parallelism: int | None = None,
        tool: str | None = None,
        labels: Mapping[str, object] | None = None,
        host: str | None = None,
        commit: str | None = None,
        branch: str | None = None,
    ) -> None:
        """A build began; ``ts`` in epoch milliseconds (int or float) or RFC 3339 text."""
        if not self.enabled:
            return
        self._parsed(
            {
                "event": "build_started",
                "session": session,
                "ts": ts,
                "parallelism": parallelism,
                "tool": tool,
                "labels": dict(labels) if isinstance(labels, Mapping) else labels,
                "host": host,
                "commit": commit,
                "branch": branch,
            }
        )

    def target_started(
        self,
        session: str,
        target: str,
        *,
        ts: int | float | str,
        worker: int | None = None,
        deps: Sequence[str] | None = None,
    ) -> None:
        """A target began running (on ``worker``, if the build tool numbers them), once
        the targets named in ``deps`` were done (None: not known; empty: it waited for
        none)."""
        if not self.enabled:
            return
        # The common case a build executor sends (short ASCII names, integer milliseconds),
        # checked inline: these lines are the cost every target pays.
        if (
            type(session) is str
            and type(target) is str
            and type(ts) is int
            and 0 <= ts < self._latest
            and 0 < len(session) <= MAX_TEXT
            and 0 < len(target) <= MAX_TEXT
            and session.isascii()
            and target.isascii()
            and (worker is None or (type(worker) is int and 0 <= worker < 2**31))
            and (deps is None or _plain_names(deps))
        ):
            try:
                self._started_row(session, ts, target, worker, deps)
            except Exception as error:  # the build must never see our failure
                self._warn_once(f"telemetry ignored an event it could not use: {error!r}")
        else:
            self._parsed(
                {
                    "event": "target_started",
                    "session": session,
                    "ts": ts,
                    "target": target,
                    "worker": worker,
                    "deps": list(deps) if isinstance(deps, list | tuple) else deps,
                }
            )

    def target_finished(
        self,
        session: str,
        target: str,
        *,
        ts: int | float | str,
        status: Status,
        duration_ms: int | float | None = None,
        error: str | None = None,
    ) -> None:
        """A target finished: ``built``, ``cached``, ``failed`` or ``skipped``."""
        if not self.enabled:
            return
        if (
            type(session) is str
            and type(target) is str
            and type(ts) is int
            and 0 <= ts < self._latest
            and 0 < len(session) <= MAX_TEXT
            and 0 < len(target) <= MAX_TEXT
            and session.isascii()
            and target.isascii()
            and status in _STATUS_CODE
            and error is None
            and (duration_ms is None or (type(duration_ms) is int and 0 <= duration_ms < MAX_TS_MS))
        ):
            try:
                self._finished_row(session, ts, target, status, duration_ms, None)
            except Exception as failure:  # the build must never see our failure
                self._warn_once(f"telemetry ignored an event it could not use: {failure!r}")
        else:
            self._parsed(
                {
                    "event": "target_finished",
                    "session": session,
                    "ts": ts,
                    "target": target,
                    "status": status,
                    "duration_ms": duration_ms,
                    "error": error,
                }
            )

    def build_finished(
        self, session: str, *, ts: int | float | str, success: bool, error: str | None = None
    ) -> None:
        """The build ended; its session and targets are written now."""
        if not self.enabled:
            return
        self._parsed(
            {
                "event": "build_finished",
                "session": session,
                "ts": ts,
                "success": success,
                "error": error,
            }
        )

    def _parsed(self, fields: dict[str, object]) -> None:
        """Validate a call the slow, thorough way (as ingest does), then take it."""
        try:
            event = parse_event(fields)
        except EventError as error:
            self._warn_once(
                f"telemetry ignored {fields['event']} of {fields['session']!r}: {error}"
            )
            return
        self.handle(event)

    @property
    def open_sessions(self) -> list[str]:
        """Sessions started or reported but not yet finished."""
        with self._lock:
            return list(self._open)

    def build_interrupted(self, session: str, *, ts: int | float | str) -> None:
        """The build was killed at ``ts``: store it as interrupted, a failed build whose
        duration runs to ``ts``."""
        if not self.enabled:
            return
        try:
            end = ts if type(ts) is int and 0 <= ts < MAX_TS_MS else parse_timestamp(ts)
            with self._lock:
                buffer = self._buffer(session, end)
                if buffer is not None:
                    del self._open[session]
                    self._finished.add(session)
        except Exception as error:  # the build must never see our failure
            self._warn_once(f"telemetry ignored the interruption of {session!r}: {error}")
            return
        if buffer is None:
            self._ended(session, "the interruption")
            return
        self._flush(buffer, end_ts=end, success=False, error=INTERRUPTED, interrupted=True)

    def close(self) -> int:
        """Store every open session as interrupted; returns how many there were."""
        with self._lock:
            buffers = list(self._open.values())
            self._finished.update(self._open)
            self._open.clear()
        for buffer in buffers:
            self._flush(
                buffer, end_ts=buffer.last_ts, success=False, error=INTERRUPTED, interrupted=True
            )
        return len(buffers)

    # -- internals ----------------------------------------------------------------------------

    def _buffer(self, session: str, ts: int) -> _Buffer | None:
        """The open session's buffer, opened when new; None for a build refused or finished
        (the caller says so with :meth:`_ended`, once it has released the lock)."""
        buffer = self._open.get(session)
        if buffer is None:
            return self._opened(session, ts)
        if ts > buffer.last_ts:
            buffer.last_ts = ts
        elif ts < buffer.first_ts:
            buffer.first_ts = ts
        return buffer

    def _opened(self, session: str, ts: int) -> _Buffer | None:
        """A new session's buffer, under the lock; None for a build refused or finished."""
        if session in self._refused or session in self._finished:
            return None
        self._open[session] = buffer = _Buffer(session, ts)
        return buffer

    def _ended(self, session: str, what: str) -> bool:
        """False: the event was not taken. A finished build is named in a warning (a build
        refused whole was named once, when it started)."""
        if session in self._finished:
            self._warn_once(
                f"telemetry ignored {what} of {session!r}: that build already finished; "
                f"give each build its own session id"
            )
        return False

    def _label(self, target: str) -> int:
        label = self._labels.get(target)
        if label is None:
            label = self._labels[target] = len(self._label_list)
            self._label_list.append(target)
        return label

    def _ahead(self, event: Event) -> bool:
        """Whether ``event`` is dated too far ahead of the clock, read again now; if so it is
        refused with a warning, and a build that starts so is refused whole, its other
        events without a word (one warning names the build)."""
        self._latest = latest_ts(self._clock())
        if event.ts < self._latest:
            return False
        with self._lock:
            if event.session in self._refused:
                return True
            if isinstance(event, BuildStarted):
                self._refused.add(event.session)
                self._open.pop(event.session, None)  # events that came before it go too
        # The message leaves out the time now, so the same input is reported alike whenever
        # it is read (and by both readings of ingest).
        when = format_ts(event.ts)
        if isinstance(event, BuildStarted):
            self._warn_once(
                f"telemetry refused build {event.session!r} with all its events: it starts at "
                f"{when}, more than an hour ahead of this machine's clock; check the clock of "
                f"the machine that ran it"
            )
        else:
            self._warn_once(
                f"telemetry ignored {_KIND[type(event)]} of {event.session!r}: ts {when} is "
                f"more than an hour ahead of this machine's clock; check the clock of the "
                f"machine that sent it"
            )
        return True

    def _build_started(self, event: BuildStarted) -> bool:
        with self._lock:
            open_build = self._open.get(event.session)
            again = open_build is not None and open_build.start_ts is not None
            buffer = None if again else self._buffer(event.session, event.ts)
            if buffer is not None:
                buffer.start_ts = event.ts
                buffer.info = SessionInfo(
                    event.parallelism,
                    event.tool,
                    event.labels,
                    event.host,
                    event.commit,
                    event.branch,
                )
                return True
        if again:
            self._warn_once(
                f"telemetry ignored build_started of {event.session!r}: that build was already "
                f"started; give each build its own session id"
            )
            return False
        return self._ended(event.session, "build_started")

    def _target_started(self, event: TargetStarted) -> bool:
        return self._started_row(event.session, event.ts, event.target, event.worker, event.deps)

    def _target_finished(self, event: TargetFinished) -> bool:
        return self._finished_row(
            event.session, event.ts, event.target, event.status, event.duration_ms, event.error
        )

    def _started_row(
        self,
        session: str,
        ts: int,
        target: str,
        worker: int | None,
        deps: Sequence[str] | None = None,
    ) -> bool:
        with self._lock:
            buffer = self._open.get(session)  # self._buffer(session, ts), inline
            if buffer is None:
                buffer = self._opened(session, ts)
            elif ts > buffer.last_ts:
                buffer.last_ts = ts
            elif ts < buffer.first_ts:
                buffer.first_ts = ts
            if buffer is not None:
                label = self._labels.get(target)
                if label is None:
                    label = self._label(target)
                pending = buffer.pending.get(label)
                if pending is None:
                    pending = buffer.pending[label] = deque()
                # Names as target ids: a build's deps name its own targets, held once.
                needs = None if deps is None else tuple(self._label(name) for name in deps)
                pending.append((ts, _NO_WORKER if worker is None else worker, needs))
                return True
        return self._ended(session, "target_started")

    def _finished_row(
        self,
        session: str,
        ts: int,
        target: str,
        status: Status,
        duration_ms: int | None,
        error: str | None,
    ) -> bool:
        code = _STATUS_CODE[status]
        with self._lock:
            buffer = self._open.get(session)  # self._buffer(session, ts), inline
            if buffer is None:
                buffer = self._opened(session, ts)
            elif ts > buffer.last_ts:
                buffer.last_ts = ts
            elif ts < buffer.first_ts:
                buffer.first_ts = ts
            if buffer is not None:
                label = self._labels.get(target)
                if label is None:
                    label = self._label(target)
                started = buffer.pending.get(label)
                start, worker, needs = started.popleft() if started else (ts, _NO_WORKER, None)
                if started is not None and not started:
                    del buffer.pending[label]
                if duration_ms is not None:
                    start = ts - duration_ms
                # A finish stamped before its start (clock skew between hosts) counts as 0 ms.
                if start > ts:
                    start = ts
                elif start < 0:
                    start = 0
                if error is not None:
                    buffer.errors[len(buffer.statuses)] = error
                if needs is not None:
                    buffer.deps[len(buffer.statuses)] = needs
                buffer.target_ids.append(label)
                buffer.statuses.append(code)
                buffer.starts.append(start)
                buffer.ends.append(ts)
                buffer.workers.append(worker)
                buffer.counts[code] += 1
                if code in (_BUILT, _FAILED):
                    buffer.executed_ms += ts - start
                return True
        return self._ended(session, "target_finished")

    def _build_finished(self, event: BuildFinished) -> bool:
        with self._lock:
            buffer = self._buffer(event.session, event.ts)
            if buffer is not None:
                del self._open[event.session]
                # Under the same lock as the removal: no event finds the build neither open
                # nor finished, and opens a new one.
                self._finished.add(event.session)
        if buffer is None:
            return self._ended(event.session, "build_finished")
        self._flush(
            buffer, end_ts=event.ts, success=event.success, error=event.error, interrupted=False
        )
        return True

    def _flush(
        self,
        buffer: _Buffer,
        *,
        end_ts: int,
        success: bool,
        error: str | None,
        interrupted: bool,
    ) -> None:
        try:
            # Labels are only ever appended, so the indices this buffer holds stay valid
            # while other threads add more; no copy is needed.
            labels = self._label_list
            sessions, targets = session_batches(
                buffer, labels, end_ts=end_ts, success=success, error=error, interrupted=interrupted
            )
            self._sink.write(sessions, targets)
        except Exception as failure:  # the build must never see our failure
            self._warn_once(f"telemetry could not store build {buffer.session!r}: {failure}")

    def _warn_once(self, message: str) -> None:
        if self._warned and not self._warn_every_time:
            return
        self._warned = True
        if self._on_warning is not None:
            self._on_warning(message)
        else:
            warnings.warn(message, TelemetryWarning, stacklevel=3)


def session_batches(
    buffer: _Buffer,
    labels: list[str],
    *,
    end_ts: int,
    success: bool,
    error: str | None,
    interrupted: bool,
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """The session row and target rows of one buffered build, as Arrow record batches."""
    rows = len(buffer.statuses)
    start_ts = buffer.start_ts if buffer.start_ts is not None else buffer.first_ts
    end_ts = max(end_ts, start_ts)
    counts = buffer.counts
    info = buffer.info

    starts = _int_array(pa.int64(), buffer.starts)
    ends = _int_array(pa.int64(), buffer.ends)
    statuses = _int_array(pa.int8(), buffer.statuses)
    if error is None and not success:
        error = _failure_text(buffer, labels, statuses)
    workers_raw = _int_array(pa.int32(), buffer.workers)
    workers = pc.if_else(
        pc.equal(workers_raw, _NO_WORKER), pa.scalar(None, pa.int32()), workers_raw
    )
    # Each file carries only the labels its rows use, so files stay small and self-contained.
    encoded = _int_array(pa.int32(), buffer.target_ids).dictionary_encode()
    target_col = pa.DictionaryArray.from_arrays(
        encoded.indices, pa.array([labels[i] for i in encoded.dictionary.to_pylist()], pa.string())
    )
    status_col = pa.DictionaryArray.from_arrays(statuses, _STATUS_DICTIONARY)
    error_col = _sparse_text(buffer.errors, rows)
    deps_col = _sparse_names(buffer.deps, rows, labels)
    targets = pa.RecordBatch.from_arrays(
        [
            pa.repeat(pa.scalar(buffer.session, pa.string()), rows),
            target_col,
            status_col,
            starts.cast(pa.timestamp("ms", tz="UTC")),
            ends.cast(pa.timestamp("ms", tz="UTC")),
            pc.subtract(ends, starts),
            workers,
            error_col,
            deps_col,
        ],
        schema=TARGETS_SCHEMA,
    )

    executed = pc.is_in(statuses, pa.array([_BUILT, _FAILED], pa.int8()))
    peak = peak_concurrency(starts.filter(executed), ends.filter(executed))
    session = pa.RecordBatch.from_pylist(
        [
            {
                "session_id": buffer.session,
                "start_time": start_ts,
                "end_time": end_ts,
                "duration_ms": end_ts - start_ts,
                "succeeded": bool(success) and not interrupted,
                "interrupted": interrupted,
                "error": error,
                "total_targets": rows,
                "built": counts[_BUILT],
                "cached": counts[_CACHED],
                "failed": counts[_FAILED],
                "skipped": counts[_SKIPPED],
                "executed_ms": buffer.executed_ms,
                "peak_concurrency": peak,
                "parallelism": info.parallelism,
                "tool": info.tool,
                "host": info.host,
                "commit": info.commit,
                "branch": info.branch,
                "labels": list((info.labels or {}).items()),
            }
        ],
        schema=SESSIONS_SCHEMA,
    )
    return session, targets


def _int_array(kind: pa.DataType, values: array[int]) -> pa.Array:
    """A zero-copy Arrow view of a Python ``array`` of fixed-width integers."""
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def _sparse_text(values: dict[int, str], rows: int) -> pa.Array:
    """A string column that is null but at the few rows ``values`` names."""
    if not values:
        return pa.nulls(rows, pa.string())
    positions = array("i", [0]) * rows
    for row, slot in zip(values, range(1, len(values) + 1), strict=True):
        positions[row] = slot
    return pa.array([None, *values.values()], pa.string()).take(_int_array(pa.int32(), positions))


def _sparse_names(values: dict[int, tuple[int, ...]], rows: int, labels: list[str]) -> pa.Array:
    """A list-of-names column, null but at the rows ``values`` names (each a tuple of
    target ids, as ``labels`` names them)."""
    kind = TARGETS_SCHEMA.field("deps").type
    if not values:
        return pa.nulls(rows, kind)
    sizes = array("i", [0]) * rows
    ids = array("i")
    for row, names in values.items():  # rows in the order they were added: ascending
        sizes[row] = len(names)
        ids.extend(names)
    offsets = pc.cumulative_sum(pa.array([0, *sizes], pa.int32()))
    missing = pc.invert(pc.is_in(pa.array(range(rows), pa.int32()), pa.array(list(values))))
    encoded = _int_array(pa.int32(), ids).dictionary_encode()
    names = pa.DictionaryArray.from_arrays(
        encoded.indices, pa.array([labels[i] for i in encoded.dictionary.to_pylist()], pa.string())
    ).cast(pa.string())
    return pa.ListArray.from_arrays(offsets, names, kind, mask=missing)


def _plain_names(names: object) -> bool:
    """Whether ``names`` is a list or tuple of short ASCII names: deps the collector takes
    without the thorough checks."""
    return type(names) in (list, tuple) and all(
        type(name) is str and 0 < len(name) <= MAX_TEXT and name.isascii()
        for name in names  # type: ignore[attr-defined]
    )


def _failure_text(buffer: _Buffer, labels: list[str], statuses: pa.Array) -> str | None:
    failed = pc.indices_nonzero(pc.equal(statuses, _FAILED))
    if len(failed) == 0:
        return None
    return failure_text(labels[buffer.target_ids[failed[0].as_py()]], len(failed))
