"""Ingest of the JSON Lines event protocol, and of the files the other readers turn into
its events.

A malformed line is recorded with its line number and skipped; the rest of the stream is
still stored. Sessions still open when the stream ends are stored as interrupted builds.
The other readers (Bazel, Turborepo, traces, ninja logs) hand their typed events to the
same loop, numbered as lines would be; what an input is, is told by
:mod:`telemetry.ingest.detection`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import stat
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from telemetry.collector import TelemetryCollector
from telemetry.errors import EventError, InputError
from telemetry.events import MAX_LINE_BYTES, BuildFinished, BuildStarted, Event, parse_event
from telemetry.formats import InputFormat
from telemetry.ingest.bazel import bep_events
from telemetry.ingest.columnar import SEGMENT_BYTES, Carry, read_columns
from telemetry.ingest.detection import (
    BOM,
    Detected,
    Prefixed,
    decompressed,
    detect_format,
    is_plain,
    read_head,
)
from telemetry.ingest.ninja import log_events
from telemetry.ingest.trace import is_trace, trace_events
from telemetry.ingest.turbo import is_turbo_summary, turbo_events
from telemetry.progress import Progress, counted
from telemetry.schema import SESSIONS_SCHEMA, TARGETS_SCHEMA
from telemetry.storage import RetentionResult, TelemetryStorage

# Completed sessions are written in chunks of about this many target rows, so memory stays
# bounded on a long stream while files stay large enough to read fast.
_CHUNK_ROWS = 1_000_000


@dataclass(slots=True, frozen=True)
class IngestProblem:
    """A line that was skipped, and why."""

    line: int
    message: str


@dataclass(slots=True, frozen=True)
class IngestResult:
    """What one ingest stored and skipped."""

    sessions: int
    interrupted: int
    events: int
    duplicates: int
    problems: tuple[IngestProblem, ...]
    retention: RetentionResult = field(default_factory=RetentionResult)
    # Events read but not taken: dated too far ahead, or of a build refused whole.
    refused: int = 0
    # Of ``sessions`` and of ``interrupted``, the builds that started before the store's
    # retention days: the retention after the ingest removes them as soon as they are stored.
    expired: int = 0
    expired_interrupted: int = 0


class _ChunkSink:
    """Collects finished sessions and writes them in large chunks, skipping stored ones.

    ``mine`` holds the builds this ingest already stored (reading the same input in columns,
    before it declined), each with whether it was interrupted: they are counted as
    written, not written again; with ``remember``, what is written is added to it."""

    def __init__(
        self,
        storage: TelemetryStorage,
        *,
        mine: dict[str, bool] | None = None,
        remember: bool = False,
    ) -> None:
        self.storage = storage
        self.mine = {} if mine is None else mine
        self.remember = remember
        self.sessions: list[pa.RecordBatch] = []
        self.targets: list[pa.RecordBatch] = []
        self.rows = 0
        self.written = 0
        self.interrupted = 0
        self.duplicates = 0
        self.expired = 0
        self.expired_interrupted = 0

    def write(self, sessions: pa.RecordBatch, targets: pa.RecordBatch) -> None:
        # Only buffers: the ingest loop flushes, so a storage failure reaches it directly
        # instead of being taken for a problem with one build's events.
        self.sessions.append(sessions)
        self.targets.append(targets)
        self.rows += targets.num_rows + 1

    def add(self, sessions: pa.Table, targets: pa.Table) -> None:
        """Buffer the rows read in columns (the ingest flushes)."""
        self.sessions += sessions.to_batches()
        self.targets += targets.to_batches()
        self.rows += sessions.num_rows + targets.num_rows

    def flush(self) -> None:
        if not self.sessions:
            return
        sessions = pa.Table.from_batches(self.sessions, schema=SESSIONS_SCHEMA)
        targets = pa.Table.from_batches(self.targets, schema=TARGETS_SCHEMA)
        targets = targets.unify_dictionaries().combine_chunks()
        self.sessions, self.targets, self.rows = [], [], 0
        if self.mine:
            ours = pc.is_in(sessions["session_id"], value_set=pa.array(list(self.mine)))
            if pc.any(ours).as_py():
                self.written += pc.sum(ours).as_py()
                done = sessions.filter(ours)["session_id"].to_pylist()
                self.interrupted += sum(self.mine[session] for session in done)
                self._count_expired(sessions.filter(ours))
                sessions = sessions.filter(pc.invert(ours))
                targets = targets.filter(pc.is_in(targets["session_id"], sessions["session_id"]))
                if sessions.num_rows == 0:
                    return
        # Checking for stored ids and writing happen under one lock, so two ingests of the
        # same events at once still store each build once.
        with self.storage.lock():
            stored = self.storage.session_ids()
            if stored:
                new = pc.invert(pc.is_in(sessions["session_id"], pa.array(list(stored))))
                self.duplicates += sessions.num_rows - pc.sum(new).as_py()
                sessions = sessions.filter(new)
                targets = targets.filter(pc.is_in(targets["session_id"], sessions["session_id"]))
            self.storage.append(sessions, targets)
        self.written += sessions.num_rows
        self.interrupted += pc.sum(sessions["interrupted"]).as_py() or 0
        self._count_expired(sessions)
        if self.remember:
            self.mine.update(
                zip(
                    sessions["session_id"].to_pylist(),
                    sessions["interrupted"].to_pylist(),
                    strict=True,
                )
            )

    def _count_expired(self, sessions: pa.Table) -> None:
        """Count the builds among ``sessions`` that retention removes by their age: those
        of days before its cutoff (the day a build started is the partition it is in)."""
        days = self.storage.retention_days
        if days is None:
            return
        cutoff = pa.scalar(self.storage.today() - timedelta(days=days), pa.date32())
        old = pc.less(pc.cast(sessions["start_time"], pa.date32()), cutoff)
        self.expired += pc.sum(old).as_py() or 0
        self.expired_interrupted += pc.sum(pc.and_(old, sessions["interrupted"])).as_py() or 0


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


# One decoder for every line: json.loads with an option builds a new one each call.
_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)


def _unreadable(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "not valid JSON (nested too deeply)"
    text = str(error)
    if "digits" in text:
        return "not valid JSON (a number has too many digits)"
    return f"not valid JSON ({text.splitlines()[0] if text else type(error).__name__})"


def ingest_jsonl(
    storage: TelemetryStorage,
    lines: Iterable[bytes | str],
    *,
    apply_retention: bool = True,
    clock: Callable[[], datetime] | None = None,
) -> IngestResult:
    """Store the builds described by JSON-lines events; returns what was stored and skipped.

    An event dated more than an hour ahead of ``clock`` (UTC, the local clock by default)
    is skipped as a bad line, and a build that starts so is skipped whole, reported once.

    >>> storage = TelemetryStorage(".builder-cache/telemetry")
    >>> ingest_jsonl(storage, open("events.jsonl", "rb")).sessions  # doctest: +SKIP
    200
    """
    return _ingest_lines(
        storage, lines, apply_retention=apply_retention, clock=clock, sink=_ChunkSink(storage)
    )


def _ingest_lines(
    storage: TelemetryStorage,
    lines: Iterable[bytes | str],
    *,
    apply_retention: bool,
    clock: Callable[[], datetime] | None,
    sink: _ChunkSink,
) -> IngestResult:
    return _ingest_events(
        storage, _parsed(lines), apply_retention=apply_retention, clock=clock, sink=sink
    )


def _parsed(lines: Iterable[bytes | str]) -> Iterator[Event | str | None]:
    """For each line, its event or what is wrong with it (None for a blank line)."""
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as error:
            yield f"not UTF-8 text ({error.reason})"
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark, as some editors write
        if not text.strip():
            yield None
            continue
        try:
            event: Event | str = parse_event(_DECODER.decode(text))
        except json.JSONDecodeError as error:
            event = f"not valid JSON ({error.msg})"
        except EventError as error:
            event = str(error)
        except (ValueError, RecursionError) as error:  # a huge number, or nesting too deep
            event = _unreadable(error)
        yield event


def _store_events(
    storage: TelemetryStorage, events: Iterable[Event | EventError], apply_retention: bool
) -> IngestResult:
    """Store the builds of the events a reader made of another tool's output."""
    return _ingest_events(
        storage, events, apply_retention=apply_retention, clock=None, sink=_ChunkSink(storage)
    )


def _ingest_events(
    storage: TelemetryStorage,
    items: Iterable[Event | EventError | str | None],
    *,
    apply_retention: bool,
    clock: Callable[[], datetime] | None,
    sink: _ChunkSink,
) -> IngestResult:
    """Store the builds of ``items``, one for each line of the input or event a reader
    made: an event, why there is none (reported with the item's number), or None (a blank
    line, passed over)."""
    rejected: list[str] = []  # what the collector could not use, for the current line
    collector = TelemetryCollector(
        sink, on_warning=rejected.append, warn_every_time=True, clock=clock
    )
    problems: list[IngestProblem] = []
    started: set[str] = set()
    finished: set[str] = set()
    events = refused = 0
    number = 0
    for number, event in enumerate(items, start=1):
        if event is None:
            continue
        if isinstance(event, str | EventError):
            problems.append(IngestProblem(number, str(event)))
            continue
        if event.session in finished:
            problems.append(
                IngestProblem(
                    number, f"session {event.session!r} already finished earlier in the stream"
                )
            )
            continue
        if isinstance(event, BuildStarted):
            if event.session in started:
                problems.append(
                    IngestProblem(number, f"session {event.session!r} was already started")
                )
                continue
            started.add(event.session)
        # Not taken: reported below, or an event of a build refused whole (reported once).
        if collector.handle(event):
            events += 1
            if isinstance(event, BuildFinished):
                finished.add(event.session)
        else:
            refused += 1
        if rejected:
            problems += [IngestProblem(number, message) for message in rejected]
            rejected.clear()
        if sink.rows >= _CHUNK_ROWS:
            sink.flush()
    collector.close()  # builds still open at the end of the stream: stored as interrupted
    problems += [IngestProblem(number, message) for message in rejected]
    sink.flush()
    retention = storage.apply_retention() if apply_retention else RetentionResult()
    return IngestResult(
        sessions=sink.written,
        interrupted=sink.interrupted,
        events=events,
        duplicates=sink.duplicates,
        expired=sink.expired,
        expired_interrupted=sink.expired_interrupted,
        problems=tuple(problems),
        retention=retention,
        refused=refused,
    )


def ingest_file(
    storage: TelemetryStorage,
    path: str | os.PathLike[str],
    *,
    format: InputFormat = "auto",
    profile: str | os.PathLike[str] | None = None,
    apply_retention: bool = True,
    max_line: int = MAX_LINE_BYTES,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest a file (``-`` reads standard input): JSON-lines events, a Turborepo run
    summary, or Bazel's Build Event Protocol JSON (with the build's trace ``profile``, if
    given). ``auto`` tells them apart by their content; gzip and zstd compressed input is
    recognised by its first bytes and read as it is.

    Memory stays bounded whatever the input's size: JSON lines are read a segment at a time,
    and a line longer than ``max_line`` bytes (an endless one, say) ends the reading there,
    reported as a problem of that line; the builds finished before it are stored.

    ``progress`` is told the bytes of the input read (compressed ones for a compressed
    file), of the file's size, or of an unknown total (None) for a pipe.

    >>> ingest_file(TelemetryStorage(".builder-cache/telemetry"), "events.jsonl")  # doctest: +SKIP
    """
    trace = _read_profile(profile) if profile is not None else None
    if str(path) == "-":
        if sys.stdin is None:
            raise InputError("standard input is closed; give a JSON-lines file instead of -")
        stdin = _answering_signals(sys.stdin.buffer)
        stdin = stdin if progress is None else counted(stdin, progress)
        return _ingest_stream(
            storage, stdin, "<stdin>", format, trace, None, apply_retention, max_line
        )
    with _opened(path, progress) as handle:
        written = os.fstat(handle.fileno()).st_mtime_ns // 1_000_000
        return _ingest_stream(
            storage, handle, str(path), format, trace, written, apply_retention, max_line
        )


@contextlib.contextmanager
def _opened(path: str | os.PathLike[str], progress: Progress | None = None) -> Iterator[IO[bytes]]:
    try:
        handle = Path(path).open("rb")  # noqa: SIM115 - closed below
    except IsADirectoryError:
        raise InputError(f"{path} is a directory; give a file, or - for stdin") from None
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; give a file, or - for stdin") from None
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
    with handle:
        yield handle if progress is None else counted(handle, progress)


def _answering_signals(stdin: IO[bytes]) -> IO[bytes]:
    """Standard input, read so that Ctrl-C is answered while it waits for a pipe (``tail -f
    build.log | builder telemetry ingest -``, a FIFO, a socket, a terminal); a regular file,
    or a stream that is no file, as it is.

    Python raises KeyboardInterrupt in the main thread, but the system hands SIGINT to any
    thread of the process: once polars and pyarrow have started their thread pools, a read
    of an idle pipe in the main thread was never woken, and Ctrl-C did nothing. Waiting for
    input in slices of a tenth of a second gives Python a moment between them to raise it.
    """
    try:
        fd = stdin.fileno()
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return stdin
    if regular or os.name != "posix":
        return stdin
    return io.BufferedReader(_Waiting(fd), buffer_size=1 << 16)


class _Waiting(io.RawIOBase):
    """A file descriptor's reads, each after waiting for input in short slices."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        import select

        while not select.select([self._fd], [], [], 0.1)[0]:
            pass  # a signal's handler runs here, between two waits
        data = os.read(self._fd, len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_profile(path: str | os.PathLike[str]) -> object:
    with _opened(path) as handle:
        try:
            return json.loads(decompressed(handle).read(), parse_constant=_no_constant)
        except Exception as error:
            raise _unreadable_input(str(path), "JSON trace profile", error) from None


def _ingest_stream(
    storage: TelemetryStorage,
    handle: IO[bytes],
    name: str,
    format: InputFormat,
    profile: object,
    written_ms: int | None,
    apply_retention: bool,
    max_line: int,
) -> IngestResult:
    if max_line < 1:
        raise InputError(f"the longest line allowed must be at least 1 byte, not {max_line}")
    start = _position(handle)
    source = decompressed(handle)
    # The first line tells what the input is; it is read here and handed on in front of the
    # rest (not pushed back into the stream, so a damaged archive still fails line by line).
    head = read_head(source, max_line=max_line) if format == "auto" else b""
    kind: InputFormat | Detected = detect_format(head) if format == "auto" else format
    if kind == "bazel-bep":
        try:
            built = bep_events(itertools.chain([head] if head else [], source), profile=profile)
        except InputError as error:
            raise InputError(f"{name}: {error}") from None
        except Exception as error:
            raise _unreadable_input(name, "Build Event Protocol file", error) from None
        return _store_events(storage, built, apply_retention)
    if profile is not None:
        raise InputError("--profile goes with a Bazel Build Event Protocol file")
    if kind == "ninja-log":
        try:
            events, skipped = log_events(
                _read_all(head, source, name), name=name, written_ms=written_ms
            )
        except InputError as error:
            raise InputError(f"{name}: {error}") from None
        result = _store_events(storage, events, apply_retention)
        # Line numbers of the log itself, not of the events made from it.
        problems = tuple(IngestProblem(number, text) for number, text in skipped)
        return replace(result, problems=(*problems, *result.problems))
    if kind in ("turbo-summary", "chrome-trace", "document"):
        document = _read_document(head, source, name, fall_back=kind == "document")
        if document.parsed:
            try:
                made = _document_events(document, kind, name, written_ms)
            except InputError:
                raise
            except Exception as error:
                raise _unreadable_input(name, "document", error) from None
            return _store_events(storage, made, apply_retention)
        # Not one document after all (a pretty-printed first event, say): JSON lines.
        source, head, start = io.BufferedReader(io.BytesIO(document.raw)), b"", None
    if start is not None:
        # A regular file: read in columns a segment at a time, and when some part of it
        # cannot be, read again from its start line by line (counting what was stored).
        segments = _Segments(storage, max_line)
        if head and is_plain(source):
            # Read again from the start rather than put the first line in front of the
            # first segment, which would copy it whole.
            source, head = _again(handle, start, name), b""
        read = segments.ingest(head, source)
        if read is not None:
            return _retained(storage, read, apply_retention)
        reading = _Reading(_again(handle, start, name), name, max_line)
        sink = _ChunkSink(storage, mine=segments.sink.mine)
    else:
        ahead = _read_ahead(head, source)
        if ahead.whole is not None:
            sink = _ChunkSink(storage)
            whole = ahead.whole.removeprefix(BOM)
            columns = read_columns(whole, _DECODER, max_line=max_line) if whole else None
            if columns is not None:
                return _retained(storage, _stored(sink, *columns), apply_retention)
        # Line by line: what was read ahead, then the rest of the same source, as it would
        # have been read without reading ahead.
        reading = _Reading(source, name, max_line, ahead=ahead)
        sink = _ChunkSink(storage)
    result = _ingest_lines(
        storage, reading.lines(), apply_retention=apply_retention, clock=None, sink=sink
    )
    if reading.failure is None:
        return result
    # The input broke off (a truncated archive, a failing disk, a line too long): what
    # came before is stored.
    problem = IngestProblem(reading.count + 1, reading.failure)
    return replace(result, problems=(*result.problems, problem))


@dataclass(slots=True)
class _Ahead:
    """What was read of an input before deciding how to read it."""

    chunks: list[bytes]
    whole: bytes | None  # all of it, when it ended within a segment and read cleanly
    error: Exception | None = None  # where reading ahead broke off


def _again(handle: IO[bytes], start: int, name: str) -> IO[bytes]:
    """A regular file's input read again from ``start`` (decompressed if it is)."""
    try:
        handle.seek(start)
        return decompressed(handle)
    except OSError as error:
        raise InputError(f"cannot read {name} again: {error.strerror or error}") from None


def _position(handle: IO[bytes]) -> int | None:
    """Where a regular file's reading starts (stdin may be one, part read), to read it
    again from there; None for a pipe or a terminal."""
    try:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.tell()
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


class _Segments:
    """JSON lines read in columns a segment of :data:`SEGMENT_BYTES` at a time, each cut
    after a line; the lines of builds a segment leaves open are read with the next."""

    def __init__(self, storage: TelemetryStorage, max_line: int) -> None:
        self.sink = _ChunkSink(storage, remember=True)
        self.max_line = max_line

    def ingest(self, head: bytes, source: IO[bytes]) -> IngestResult | None:
        """What was stored; None when some segment could not be read in columns, or the
        input could not be read (a damaged archive, a failing disk: line by line says
        where). What the segments before stored is then in ``self.sink.mine`` (what they
        read but had not stored yet is dropped: the reading line by line stores it)."""
        carry = Carry()
        events = 0
        first = True
        limit = self.max_line + 2 + len(BOM)  # a line, its \r\n, a byte-order mark
        while (chunk := _read(source)) is not None:
            carry.last = not chunk
            tail: bytes | None = b""
            if chunk and not chunk.endswith(b"\n"):
                # The segment ends with its last line whole: the rest of that line is read
                # on, within the bound (a longer line is left to line by line to report).
                tail = _read(source, line=limit)
                if tail is None or (len(tail) == limit and tail[-1:] != b"\n"):
                    return None
            # In front: what was read to tell the format, what the last segment carried
            # and, at the end, the builds put aside (they are interrupted).
            held = [*carry.parked, carry.lines] if carry.last else [carry.lines]
            parts = [part for part in (head, *held, chunk, tail) if part]
            segment = b"".join(parts)  # one part is no copy
            head = b""
            del chunk, tail, held, parts  # the segment alone is held while it is read
            if first:  # a byte-order mark counts only at the start of the input
                segment, first = segment.removeprefix(BOM), False
            if segment and not segment.isspace():  # blank lines alone: nothing to read
                read = read_columns(segment, _DECODER, max_line=self.max_line, carry=carry)
                if read is None:
                    return None
                sessions, targets, count = read
                events += count
                # Stored a million rows at a time, as line by line: fewer, larger files.
                self.sink.add(sessions, targets)
                if self.sink.rows >= _CHUNK_ROWS:
                    self.sink.flush()
            if len(carry.lines) > SEGMENT_BYTES // 2 or carry.parked_bytes > 4 * SEGMENT_BYTES:
                return None  # so many builds held open that line by line keeps less
            if carry.last:
                self.sink.flush()
                return IngestResult(
                    sessions=self.sink.written,
                    interrupted=self.sink.interrupted,
                    events=events,
                    duplicates=self.sink.duplicates,
                    expired=self.sink.expired,
                    expired_interrupted=self.sink.expired_interrupted,
                    problems=(),
                )
        return None


def _read(source: IO[bytes], *, line: int | None = None) -> bytes | None:
    """The next segment's bytes of ``source``, or with ``line`` the rest of a line, at most
    that many bytes; None when it cannot be read."""
    try:
        return source.read(SEGMENT_BYTES) if line is None else source.readline(line)
    except Exception:  # a damaged archive (zlib, zstd, EOF) or a failing disk
        return None


def _read_ahead(head: bytes, source: IO[bytes]) -> _Ahead:
    """Up to :data:`SEGMENT_BYTES` of the input, ``head`` first, in the steps a
    line-by-line reading takes (so a decompressor breaks off at the same place)."""
    chunks = [head] if head else []
    size = len(head)
    try:
        while size <= SEGMENT_BYTES:
            chunk = source.read1(1 << 16)  # type: ignore[attr-defined]
            if not chunk:
                return _Ahead([], b"".join(chunks))
            chunks.append(chunk)
            size += len(chunk)
    except Exception as error:  # a damaged archive: reading line by line says where
        return _Ahead(chunks, None, error)
    return _Ahead(chunks, None)


def _stored(sink: _ChunkSink, sessions: pa.Table, targets: pa.Table, events: int) -> IngestResult:
    """Store the rows read in columns through ``sink``; what it stored."""
    sink.add(sessions, targets)
    sink.flush()
    return IngestResult(
        sessions=sink.written,
        interrupted=sink.interrupted,
        events=events,
        duplicates=sink.duplicates,
        expired=sink.expired,
        expired_interrupted=sink.expired_interrupted,
        problems=(),
    )


def _retained(
    storage: TelemetryStorage, result: IngestResult, apply_retention: bool
) -> IngestResult:
    if not apply_retention:
        return result
    return replace(result, retention=storage.apply_retention())


@dataclass(slots=True, frozen=True)
class _Document:
    value: object
    raw: bytes
    parsed: bool = True


def _read_all(head: bytes, source: IO[bytes], name: str) -> bytes:
    """The whole input, ``head`` first."""
    try:
        return head + source.read()
    except Exception as error:  # a damaged archive, a failing disk
        raise _unreadable_input(name, "input", error) from None


def _read_document(
    head: bytes, source: IO[bytes], name: str, *, fall_back: bool = False
) -> _Document:
    """The whole input as one JSON document; with ``fall_back``, an unparsed one holding
    the bytes when it is not one."""
    raw = _read_all(head, source, name)
    try:
        return _Document(json.loads(raw.lstrip(BOM), parse_constant=_no_constant), raw)
    except (ValueError, RecursionError) as error:
        if fall_back:
            return _Document(None, raw, parsed=False)
        raise InputError(f"{name}: {_unreadable(error)}") from None


def _document_events(
    document: _Document, kind: InputFormat | Detected, name: str, written_ms: int | None
) -> Iterator[Event | EventError]:
    if kind in ("turbo-summary", "document") and is_turbo_summary(document.value):
        return turbo_events(document.value)
    if kind in ("chrome-trace", "document") and is_trace(document.value):
        return trace_events(document.value, raw=document.raw, written_ms=written_ms)
    wanted = {"turbo-summary": "a Turborepo run summary", "chrome-trace": "a Chrome trace"}
    raise InputError(
        f"{name} is one JSON document but not "
        f"{wanted.get(kind, 'a Turborepo run summary or a Chrome trace')}; give JSON-lines "
        f"events, a summary from `turbo run ... --summarize`, or a trace"
    )


def _unreadable_input(name: str, what: str, error: BaseException) -> InputError:
    """One line for an input that a reader could not make sense of."""
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    if isinstance(error, OSError | EOFError | zlib.error) or type(error).__name__ == "ZstdError":
        return InputError(f"cannot read {name}: {reason}")
    return InputError(f"{name} is not a readable {what}: {reason}")


class _LineTooLong(Exception):
    pass


class _Reading:
    """The lines of an input, stopping (not failing) where the input breaks off or a line
    is longer than ``max_line`` bytes: what was read ahead first (then let go of), then
    the rest of ``handle``. Linear in the input, and a line is never held past the limit."""

    def __init__(
        self, handle: IO[bytes], name: str, max_line: int, *, ahead: _Ahead | None = None
    ) -> None:
        self.handle = handle
        self.name = name
        self.max_line = max_line
        self.ahead = ahead
        self.count = 0
        self.failure: str | None = None

    def lines(self) -> Iterator[bytes]:
        try:
            for line in self._lines():
                self.count += 1
                yield line
        except _LineTooLong:
            self.failure = (
                f"the line is longer than {_size(self.max_line)} (the most a line may hold; "
                f"see --max-line-bytes): reading stopped here"
            )
        except OSError as error:
            self.failure = f"cannot read further: {error.strerror or error}"
        except (EOFError, zlib.error) as error:
            self.failure = f"the compressed input is damaged or cut short ({error})"
        except Exception as error:
            if type(error).__name__ != "ZstdError":
                raise
            self.failure = f"the compressed input is damaged ({error})"

    def _lines(self) -> Iterator[bytes]:
        ahead = self.ahead
        if ahead is not None and ahead.whole is not None:
            source: IO[bytes] = io.BytesIO(ahead.whole)  # all of it was read
        elif ahead is not None:
            source = io.BufferedReader(Prefixed(b"".join(ahead.chunks), self.handle, ahead.error))
            ahead.chunks.clear()  # let go of them: the joined copy is read from now on
        else:
            source = self.handle
        # A line's length is its bytes without its ending (\n or \r\n) and, on the first
        # line, without a byte-order mark: what the columnar reading measures too.
        limit = self.max_line + 2 + len(BOM)
        first = True
        while line := source.readline(limit):
            size = len(line)
            if line.endswith(b"\n"):
                size -= 2 if line.endswith(b"\r\n") else 1
            if first and line.startswith(BOM):
                size -= len(BOM)
            if size > self.max_line:
                raise _LineTooLong
            first = False
            yield line


def _size(count: int) -> str:
    """A byte count as people write it: ``16 MiB``, ``512 KiB``, ``100 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift and count % (1 << shift) == 0:
            return f"{count >> shift} {unit}"
    return f"{count} bytes"
