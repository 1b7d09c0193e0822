"""Ingest of the JSON Lines event protocol.

A malformed line is recorded with its line number and skipped; the rest of the stream is
still stored. Sessions still open when the stream ends are stored as interrupted builds.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from telemetry.collector import TelemetryCollector
from telemetry.errors import EventError, InputError, StorageError
from telemetry.events import BuildFinished, BuildStarted, parse_event
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


class _ChunkSink:
    """Collects finished sessions and writes them in large chunks, skipping stored ones."""

    def __init__(self, storage: TelemetryStorage) -> None:
        self.storage = storage
        self.stored_ids = storage.session_ids()
        self.sessions: list[pa.RecordBatch] = []
        self.targets: list[pa.RecordBatch] = []
        self.rows = 0
        self.written = 0
        self.interrupted = 0
        self.duplicates = 0

    def write(self, sessions: pa.RecordBatch, targets: pa.RecordBatch) -> None:
        session_id = sessions["session_id"][0].as_py()
        if session_id in self.stored_ids:
            self.duplicates += 1
            return
        self.stored_ids.add(session_id)
        self.interrupted += bool(sessions["interrupted"][0].as_py())
        self.sessions.append(sessions)
        self.targets.append(targets)
        self.rows += targets.num_rows + 1
        if self.rows >= _CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.sessions:
            return
        sessions = pa.Table.from_batches(self.sessions)
        targets = pa.Table.from_batches(self.targets).unify_dictionaries()
        self.storage.append(sessions, targets.combine_chunks())
        self.written += sessions.num_rows
        self.sessions, self.targets, self.rows = [], [], 0


def ingest_jsonl(
    storage: TelemetryStorage,
    lines: Iterable[bytes | str],
    *,
    apply_retention: bool = True,
) -> IngestResult:
    """Store the builds described by JSON-lines events; returns what was stored and skipped.

    >>> ingest_jsonl(TelemetryStorage("/tmp/t"), open("events.jsonl", "rb"))  # doctest: +SKIP
    """
    sink = _ChunkSink(storage)
    failures: list[str] = []
    collector = TelemetryCollector(sink, on_warning=failures.append)
    problems: list[IngestProblem] = []
    started: set[str] = set()
    finished: set[str] = set()
    events = 0
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as error:
            problems.append(IngestProblem(number, f"not UTF-8 text ({error.reason})"))
            continue
        if not text.strip():
            continue
        try:
            event = parse_event(json.loads(text))
        except json.JSONDecodeError as error:
            problems.append(IngestProblem(number, f"not valid JSON ({error.msg})"))
            continue
        except (EventError, RecursionError) as error:
            problems.append(IngestProblem(number, str(error)))
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
        if isinstance(event, BuildFinished):
            finished.add(event.session)
        collector.handle(event)
        events += 1
        if failures:
            break
    collector.close()
    if failures:
        raise StorageError(failures[0])
    sink.flush()
    retention = storage.apply_retention() if apply_retention else RetentionResult()
    return IngestResult(
        sessions=sink.written,
        interrupted=sink.interrupted,
        events=events,
        duplicates=sink.duplicates,
        problems=tuple(problems),
        retention=retention,
    )


def ingest_file(
    storage: TelemetryStorage, path: str | os.PathLike[str], *, apply_retention: bool = True
) -> IngestResult:
    """Ingest a JSON-lines file (``-`` reads standard input)."""
    if str(path) == "-":
        return ingest_jsonl(storage, sys.stdin.buffer, apply_retention=apply_retention)
    try:
        with Path(path).open("rb") as handle:
            return ingest_jsonl(storage, handle, apply_retention=apply_retention)
    except IsADirectoryError:
        raise InputError(f"{path} is a directory; give a JSON-lines file or - for stdin") from None
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; give a JSON-lines file or - for stdin") from None
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
