"""Progress of the long operations: the protocol they report it through, and a reader that
reports the bytes of an input consumed.

The library never draws anything. An operation that can take long (an ingest, an export,
compaction and the other scheduled jobs) takes an optional ``progress`` callable and calls it
as its work advances, with what is done and the total (None when it is not known), once a
chunk, day or file, never once a row: the command line draws a bar from it
(:mod:`telemetry.cli.progress`), a script may log it or ignore it.

>>> ingest_file(storage, "events.jsonl", progress=print)  # doctest: +SKIP
0 27000000
...
27000000 27000000
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from typing import IO, Any, Final, Protocol, cast


class Progress(Protocol):
    """Called as work advances: ``done`` so far of ``total`` (None when unknown), in the
    operation's own unit (bytes, builds, days). ``done`` never goes down, and is ``total``
    (when that is known) once the last step of the work is done; ``total`` may grow when the
    work finds more to do (an input read a second time)."""

    def __call__(self, done: int, total: int | None, /) -> None: ...


def no_progress(done: int, total: int | None, /) -> None:
    """A :class:`Progress` that does nothing.

    >>> no_progress(3, 10)
    """


class Steps:
    """Steps of a known number, ``progress`` told the steps done as each ends.

    >>> steps = Steps(print, 2)
    0 2
    >>> steps.step(); steps.finish()
    1 2
    2 2
    """

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress or no_progress
        self.total = total
        self.done = 0
        self.progress(0, total)

    def step(self) -> None:
        """One more step done."""
        self.done = min(self.done + 1, self.total)
        self.progress(self.done, self.total)

    def finish(self) -> None:
        """Every step done (those given up on are over too), told once."""
        if self.done < self.total:
            self.done = self.total
            self.progress(self.done, self.total)


# A counted input reports at most once per this many bytes read (and at its end): often
# enough for a bar, never once a line.
REPORT_BYTES: Final = 1 << 20


def counted(handle: IO[bytes], progress: Progress) -> IO[bytes]:
    """``handle`` read as it is, calling ``progress`` with the bytes consumed from where it
    stands now: of its size left for a regular file, of an unknown total (None) for a pipe or
    a terminal. A glance back of at most :data:`REPORT_BYTES` (the first line, read to tell
    the format) is not counted twice; bytes read again after a longer seek back (an ingest
    that reads its input a second time, line by line) are, and the total grows by them:
    ``done`` never goes down, and ends at the total.

    >>> reader = counted(open("events.jsonl", "rb"), print)  # doctest: +SKIP
    0 4401677
    >>> _ = reader.read()  # doctest: +SKIP
    4401677 4401677
    """
    return cast(IO[bytes], _Counted(handle, progress))


class _Counted:
    """A binary input that counts what is read of it; everything else is ``handle``'s."""

    def __init__(self, handle: IO[bytes], progress: Progress) -> None:
        self._handle = handle
        self._progress = progress
        self._position = 0
        self.total: int | None = None
        # Not a file of the system's (a buffer in memory): a total not known.
        with contextlib.suppress(OSError, AttributeError, ValueError, io.UnsupportedOperation):
            status = os.fstat(handle.fileno())
            if stat.S_ISREG(status.st_mode):
                self._position = handle.tell()
                self.total = max(status.st_size - self._position, 0)
        self.done = self._reported = 0
        self._glanced = 0  # bytes to be read again that are not counted again
        progress(0, self.total)

    def _count(self, size: int, asked: int | None) -> None:
        """``size`` bytes read; an empty read where bytes were asked for is the end."""
        self._position += size
        again = min(size, self._glanced)
        self._glanced -= again
        self.done += size - again
        if self.total is not None and self.done > self.total:
            self.total = self.done  # the file grew while it was read
        at_end = size == 0 and asked != 0
        if self.done - self._reported >= REPORT_BYTES or (at_end and self.done > self._reported):
            self._reported = self.done
            self._progress(self.done, self.total)

    def read(self, size: int | None = -1) -> bytes:
        data = self._handle.read(-1 if size is None else size)
        self._count(len(data), size)
        return data

    def read1(self, size: int = -1) -> bytes:
        data: bytes = self._handle.read1(size)  # type: ignore[attr-defined]
        self._count(len(data), size)
        return data

    def readinto(self, buffer: Any) -> int:
        size = int(self._handle.readinto(buffer) or 0)  # type: ignore[attr-defined]
        self._count(size, len(buffer))
        return size

    def readline(self, size: int | None = -1) -> bytes:
        line = self._handle.readline(-1 if size is None else size)
        self._count(len(line), size)
        return line

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._handle.seek(offset, whence)
        back = self._position - position
        if back > REPORT_BYTES and self.total is not None:
            self.total += back  # to be read again, and counted again
        elif back > 0:
            self._glanced += back
        self._position = position
        return position

    def tell(self) -> int:
        return self._handle.tell()

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


__all__ = ["REPORT_BYTES", "Progress", "Steps", "counted", "no_progress"]
