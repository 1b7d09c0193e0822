"""Recorded builds not yet in the Arrow files: the store's write-ahead area.

``builder record`` runs around every build, and loading pyarrow to write one row would cost
several times what starting Python does. So a recorded build's events (the protocol's JSON
lines) are written as one small file, atomically, without loading pyarrow::

    <dir>/pending/20251027T142315Z-3f9a1c2b7d4e.jsonl

The next process that lists the store's sessions (every reader, compaction, ingest, the
collector's writes) folds those files into the Arrow files first, through the collector, the
same route every build takes, and then removes them. Folding is idempotent: a file's build is
written under the file's own name stem, so a fold that stops between writing and removing
the file, or two processes folding at once, write the same Arrow files again (renamed over
the first), never a second copy; and a stem that a compacted day already replaces stays
hidden behind it.

This module's writing side imports only the standard library; the folding side loads the
collector, and with it pyarrow, only when there is something to fold.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from telemetry.errors import StorageError
    from telemetry.storage import TelemetryStorage

PENDING: Final = "pending"
SUFFIX: Final = ".jsonl"
# Not in the public protocol: a build that a signal ended, stored as interrupted at this ts.
INTERRUPTED: Final = "build_interrupted"
_LOCK: Final = ".lock"
_TMP_PREFIX: Final = ".tmp-"
_BAD_SUFFIX: Final = ".bad"


def write_pending(dir: Path, events: Iterable[Mapping[str, Any]]) -> Path:
    """Write one build's events as a pending file of the store at ``dir``; returns its
    path. Atomic: the file appears whole (written, synced, then renamed) or not at all.
    Raises :class:`OSError` when the store cannot be written.

    >>> write_pending(Path(".builder-cache/telemetry"), events)  # doctest: +SKIP
    PosixPath('.builder-cache/telemetry/pending/20251027T142315Z-3f9a1c2b7d4e.jsonl')
    """
    folder = dir / PENDING
    stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.urandom(6).hex()}"
    text = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events)
    temporary = folder / f"{_TMP_PREFIX}{stem}{SUFFIX}"
    final = folder / f"{stem}{SUFFIX}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(temporary, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, final)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise OSError(error.errno, error.strerror, str(final)) from error
    with contextlib.suppress(OSError):  # the rename is durable once the folder is synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return final


def pending_files(dir: Path) -> list[Path]:
    """The pending files of the store at ``dir``, oldest first (cheap: one listing)."""
    try:
        entries = os.scandir(dir / PENDING)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        names = [e.name for e in entries if e.name.endswith(SUFFIX) and e.name[0] != "."]
    return [dir / PENDING / name for name in sorted(names)]


@contextlib.contextmanager
def folding(dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the lock that lets one process at a time fold the pending files of the store at
    ``dir`` (and ``clear`` remove them); yields whether it is held (False without ``wait``
    while another process holds it). Raises :class:`OSError` when it cannot be taken.
    Without advisory locks (Windows, where ``record`` does not run) nothing is held."""
    lock = os.open(dir / PENDING / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            import fcntl
        except ImportError:
            yield True
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(lock)


def fold(storage: TelemetryStorage, *, wait: bool = True) -> int:
    """Fold the pending files of ``storage`` into its Arrow files and remove them; returns
    how many builds were stored. Without ``wait``, nothing is folded while another process
    folds. Problems are warnings (:class:`TelemetryWarning`), and reading the store goes on:
    a file that cannot be read or written now stays pending for the next fold, and one that
    is not what ``record`` writes, or whose build the collector refuses, is set aside as
    ``*.bad``."""
    from telemetry.errors import StorageError, TelemetryWarning

    stored = 0
    try:
        with folding(storage.dir, wait=wait) as held:
            # Listed again under the lock: another process may have folded them meanwhile.
            for path in pending_files(storage.dir) if held else []:
                try:
                    done = _fold_one(storage, path)
                except StorageError as error:
                    warnings.warn(
                        f"a recorded build stays pending in {path}: {error}",
                        TelemetryWarning,
                        stacklevel=3,
                    )
                    break  # the store cannot be written now; the rest would fail alike
                if done is not None:
                    stored += done
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
    except FileNotFoundError:
        pass  # no pending folder (any more: a clear removed it)
    except OSError as error:  # a folder we may not read, a file system without locks
        count = len(_listed(storage.dir))
        warnings.warn(
            f"{count or 'the'} recorded builds in {storage.dir / PENDING} are not shown: "
            f"{error.strerror or error}",
            TelemetryWarning,
            stacklevel=3,
        )
    if stored:
        storage.apply_retention(sweep=False, wait=False)
    return stored


def _listed(dir: Path) -> list[Path]:
    try:
        return pending_files(dir)
    except OSError:
        return []


def _fold_one(storage: TelemetryStorage, path: Path) -> int | None:
    """The builds stored from one pending file, or None when the file is not to be removed:
    it stays pending (it cannot be read now) or was set aside."""
    from telemetry.collector import TelemetryCollector
    from telemetry.errors import EventError, TelemetryWarning
    from telemetry.events import parse_event

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        calls = [json.loads(line) for line in lines]
    except FileNotFoundError:
        return None  # folded by another process meanwhile
    except ValueError as error:  # not JSON lines: not what record writes
        _set_aside(path, f"it cannot be read ({error})")
        return None
    except OSError as error:  # may be read later (another user's file, too many open)
        warnings.warn(
            f"a recorded build stays pending in {path}: {error.strerror or error}",
            TelemetryWarning,
            stacklevel=4,
        )
        return None
    sink = _Sink(storage, stem=path.name.removesuffix(SUFFIX))
    problems: list[str] = []
    collector = TelemetryCollector(sink, on_warning=problems.append, warn_every_time=True)
    for call in calls:
        if isinstance(call, dict) and call.get("event") == INTERRUPTED:
            collector.build_interrupted(str(call.get("session")), ts=call.get("ts"))  # type: ignore[arg-type]
            continue
        try:
            collector.handle(parse_event(call))
        except EventError as error:
            problems.append(f"an event of {path.name} was not stored: {error}")
    collector.close()
    if sink.error is not None:
        raise sink.error
    if not sink.sessions and calls:
        # Refused whole (dated too far ahead of this machine's clock, say): kept aside,
        # where a person can look at it, rather than deleted.
        _set_aside(path, "; ".join(problems) or "it holds no build")
        return None
    for problem in problems:
        warnings.warn(problem, TelemetryWarning, stacklevel=4)
    return sink.sessions


class _Sink:
    """Writes what the collector makes of one pending file under that file's name stem."""

    def __init__(self, storage: TelemetryStorage, *, stem: str) -> None:
        self.storage = storage
        self.stem = stem
        self.sessions = 0
        self.error: StorageError | None = None

    def write(self, sessions: Any, targets: Any) -> None:
        from telemetry.errors import StorageError

        # One build a file; were there more, each would get a stem of its own, as fixed.
        stem = self.stem if not self.sessions else _another(self.stem, self.sessions)
        try:
            self.storage.append(sessions, targets, stem=stem)
        except StorageError as error:
            # The collector would only warn: kept here so that the file stays pending.
            self.error = error
            return
        self.sessions += sessions.num_rows


def _another(stem: str, index: int) -> str:
    import hashlib

    digest = hashlib.sha256(f"{stem}/{index}".encode()).hexdigest()[:12]
    return f"{stem[:-12]}{digest}"


def _set_aside(path: Path, why: str) -> None:
    from telemetry.errors import TelemetryWarning

    with contextlib.suppress(OSError):
        os.rename(path, path.with_name(path.name + _BAD_SUFFIX))
    warnings.warn(
        f"{path} was set aside as {path.name + _BAD_SUFFIX}: {why}", TelemetryWarning, stacklevel=4
    )
