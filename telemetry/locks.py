"""The store's locks: the guard that makes removals wait for writes, the lock that makes
check-then-write sequences (ingest's deduplication, compaction) take turns, and the one a
run of scheduled jobs holds so that two runs never overlap.

Both are advisory ``flock`` locks on empty files at the top of the store, released when the
process holding them dies, so a killed writer never leaves the store locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from telemetry.errors import StorageError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; ingests there should not overlap
    fcntl = None  # type: ignore[assignment]

_LOCK = ".lock"
_GUARD = ".guard"
# Held by a run of scheduled jobs for the whole run (their own steps take the lock above).
JOBS_LOCK = ".jobs.lock"


def can_lock() -> bool:
    """Whether :func:`lock` excludes other processes (it cannot where the platform has no
    advisory locks)."""
    return fcntl is not None


@contextlib.contextmanager
def guard(root: Path, *, exclusive: bool, wait: bool = True) -> Iterator[bool]:
    """Hold the guard that makes removals wait for writes: shared while writing, exclusive
    while removing days (see :mod:`telemetry.storage`); yields False when ``wait`` is off and
    another process holds it. Without file locks, or where the guard file cannot be opened
    (a read-only store, whose writes fail on their own with their own error), nothing is
    held."""
    fd = -1
    if fcntl is not None:
        path = root / _GUARD
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
            with contextlib.suppress(OSError):
                if not exclusive:  # retention never makes the store
                    root.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
                break
    try:
        held = True
        if fd >= 0:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
            except BlockingIOError:
                held = False
        yield held
    finally:
        if fd >= 0:
            os.close(fd)  # and with it the lock


@contextlib.contextmanager
def lock(root: Path, name: str = _LOCK) -> Iterator[None]:
    """Hold the store's exclusive lock (for check-then-write sequences such as ingest's
    deduplication, and compaction; plain writes and reads never need it), or the lock file
    ``name`` at the top of the store, such as :data:`JOBS_LOCK`."""
    if root.exists() and not root.is_dir():
        raise StorageError(
            f"{root} is not a directory; point BUILDER_TELEMETRY_DIR (or --dir) at one"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / name).open("a")
    except OSError as error:
        raise StorageError(
            f"could not use {root}: {error.strerror or error}; check "
            f"BUILDER_TELEMETRY_DIR and that the directory is writable"
        ) from error
    with handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
