"""Ninja's standard output while a recorded build runs: passed on to ours byte for byte, and
read for what only it tells, which commands failed, when, and what they printed.

Ninja never writes a failed command to ``.ninja_log``. It prints ``FAILED: OUTPUTS`` on its
standard output (ninja 1.13: ``FAILED: [code=N] OUTPUTS``), then the command, then what the
command printed, and goes on. So ninja's stdout is given a pipe, or a pseudo-terminal when
ours is a terminal (ninja then still sees one: its colours, its one-line status, the width
it elides to), and a thread copies every byte from it to our stdout as it comes, unchanged.
Its stdin and stderr stay ours, and it stays in our process group, so that a terminal's
Ctrl-C reaches it as before.

Of what passes, this keeps, bounded whatever the build prints: for each ``FAILED:`` line,
when it was read, the outputs it names and the first lines the command printed; and, on a
terminal, where ninja shows each command's status line as it starts, when each description
was first shown. This module is loaded only for a ninja build that is being recorded.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

ERROR_LINES: Final = 20
ERROR_CHARS: Final = 2000
_READ_SIZE: Final = 65536
_MAX_LINE: Final = 65536  # a longer line is kept cut: only a line's start is ever matched
_MAX_SHOWN: Final = 200_000  # descriptions remembered on a terminal, by their hash
_SHOWN_AGAIN: Final = -1
# Once the build has exited, something it left running may still hold the output open: we
# stop waiting for the end of the stream when it has been quiet this long, or (still
# talking) after the second figure. A slow reader of ours is waited for as long as it takes.
_QUIET_SECONDS: Final = 1.0
_TALKING_SECONDS: Final = 10.0

_LINE_END = re.compile(rb"[\r\n]")
# CSI (colours, erase line), OSC (titles, links), and the other two- and three-byte escapes.
_ESCAPE = re.compile(
    rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])|\x1b"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_EXIT_CODE = re.compile(r"^\[code=-?\d+\] ")
_DEFAULT_STATUS: Final = "[%f/%t] "  # ninja's own when NINJA_STATUS is not set


@dataclass(slots=True, frozen=True)
class Failure:
    """A command ninja reported as failed.

    ``outputs`` as ninja printed them after ``FAILED:`` (its outputs, separated by spaces);
    ``end_ms`` when that line was read; ``start_ms`` when the command's status line was
    shown as it started, when ninja showed one (a terminal) and only this command had that
    description; epoch milliseconds. ``error``: the first lines the command printed, without
    escape sequences or home directories; None when it printed nothing.
    """

    outputs: str
    end_ms: int
    start_ms: int | None = None
    error: str | None = None


@dataclass(slots=True)
class _Block:
    """A ``FAILED:`` report being read: its first line after ``FAILED:`` is the command."""

    outputs: str
    end_ms: int
    start_ms: int | None
    command_seen: bool = False
    lines: list[str] = field(default_factory=list)
    chars: int = 0
    cut: bool = False

    def add(self, text: str) -> None:
        if not self.command_seen:
            self.command_seen = True
        elif len(self.lines) >= ERROR_LINES or self.chars >= ERROR_CHARS:
            self.cut = True
        else:
            kept = text[: ERROR_CHARS - self.chars]
            self.cut = self.cut or len(kept) < len(text)
            self.lines.append(kept)
            self.chars += len(kept) + 1


class FailureReader:
    """Reads ninja's output as it passes, for the commands it reports as failed.

    >>> reader = FailureReader(environ={"HOME": "/home/ana"})
    >>> reader.feed(b"[1/2] CC a.o\\nFAILED: a.o \\ncc -c a.c\\n/home/ana/a.c:1: error\\n", 7)
    >>> reader.failures()
    [Failure(outputs='a.o', end_ms=7, start_ms=None, error='~/a.c:1: error')]
    """

    def __init__(self, *, environ: Mapping[str, str], terminal: bool = False) -> None:
        self._status = _status_pattern(environ.get("NINJA_STATUS", _DEFAULT_STATUS))
        self._home = _home_pattern(environ.get("HOME", ""))
        self._terminal = terminal
        self._partial = bytearray()
        self._since: int | None = None  # when the line being read began to arrive
        self._block: _Block | None = None
        # Whether the last line was a status line, and when its command was shown starting.
        self._after_status = False
        self._status_start: int | None = None
        self._shown: dict[int, int] = {}
        self._lock = threading.Lock()
        self._failures: list[Failure] = []

    def feed(self, data: bytes, now_ms: int) -> None:
        """Read ``data``, which arrived at ``now_ms``."""
        with self._lock:
            start = 0
            for match in _LINE_END.finditer(data):
                self._add(data[start : match.start()], now_ms)
                self._line(bytes(self._partial), now_ms if self._since is None else self._since)
                self._partial.clear()
                self._since = None
                start = match.end()
            self._add(data[start:], now_ms)

    def failures(self) -> list[Failure]:
        """The failures read so far (a report still being read, as far as it was read)."""
        with self._lock:
            found = list(self._failures)
            if self._block is not None:
                found.append(self._failure(self._block))
            return found

    def _add(self, piece: bytes, now_ms: int) -> None:
        if piece:
            if self._since is None:
                self._since = now_ms
            room = _MAX_LINE - len(self._partial)
            if room > 0:
                self._partial += piece[:room]

    def _line(self, raw: bytes, at: int) -> None:
        if not raw:
            return  # between a "\r" and a "\n", or a blank line
        text = _ESCAPE.sub(b"", raw).decode("utf-8", "replace")
        if text.startswith("FAILED: "):
            self._end_block()
            outputs = _EXIT_CODE.sub("", text[len("FAILED: ") :], count=1)
            # Ninja follows every output with a space; the status line just before this one
            # was the command's own, shown as it finished.
            started = self._status_start if self._after_status else None
            self._block = _Block(outputs.removesuffix(" "), at, started)
            self._after_status = False
            return
        match = self._status.match(text) if self._status is not None else None
        if match is not None:
            self._end_block()
            self._after_status = True
            self._status_start = self._shown_before(match.group(1), raw, at)
            return
        self._after_status = False
        if text.startswith("ninja: "):  # "ninja: build stopped: ...", "ninja: error: ..."
            self._end_block()
        elif self._block is not None:
            self._block.add(_CONTROL.sub("", text))

    def _shown_before(self, description: str, raw: bytes, at: int) -> int | None:
        """When ``description`` was shown before, if it was exactly once; and remember this
        showing. Only a terminal shows a command's status as it starts (ninja then ends the
        line with "erase to its end"), so only there is it remembered."""
        if not (self._terminal and raw.endswith(b"\x1b[K")):
            return None
        key = hash(description)
        before = self._shown.get(key)
        if before is not None:
            self._shown[key] = _SHOWN_AGAIN
        elif len(self._shown) < _MAX_SHOWN:
            self._shown[key] = at
        return None if before is None or before == _SHOWN_AGAIN else before

    def _end_block(self) -> None:
        if self._block is not None:
            self._failures.append(self._failure(self._block))
            self._block = None

    def _failure(self, block: _Block) -> Failure:
        lines = list(block.lines)
        while lines and not lines[-1].strip():
            lines.pop()
        text = "\n".join(lines) + ("\n..." if block.cut else "")
        text = self._home.sub("~", text)
        return Failure(block.outputs, block.end_ms, block.start_ms, text or None)


def _status_pattern(format: str) -> re.Pattern[str] | None:
    """A status line as ``NINJA_STATUS`` draws it, the description in group 1; None when the
    format has no text of its own to tell a status line from a command's output by."""
    parts = re.split(r"(%.)", format)
    pattern, literal = "", False
    for part in parts:
        if part == "%%":
            pattern, literal = pattern + "%", True
        elif part.startswith("%") and len(part) == 2:
            pattern += ".*?"  # a count, a rate, a percentage, a time
        elif part:
            pattern, literal = pattern + re.escape(part), True
    return re.compile(f"^{pattern}(.*)$", re.DOTALL) if literal else None


def _home_pattern(home: str) -> re.Pattern[str]:
    """The user's home directory, and anyone's under /home or /Users, as a path's start:
    not within a longer path (``/srv/home/x``), but after an option (``-I/home/ana``)."""
    home = home.rstrip("/")
    others = r"/(?:home|Users)/[^/\s'\"`:;,()]+"
    mine = f"{re.escape(home)}|" if len(home) > 1 else ""
    return re.compile(rf"(?:(?<![\w.~/-])|(?<=-[A-Za-z]))(?:{mine}{others})(?![\w.-])")


class NinjaOutput:
    """The pipe or pseudo-terminal ninja's stdout is given, and the thread that passes what
    it writes on to ours while reading it for failures.

    Made before the build starts (:meth:`open`); :meth:`started` once it has; after it has
    exited, :meth:`finish` waits for what it wrote to be passed on and gives the failures.
    """

    def __init__(self, read_fd: int, child_fd: int, *, terminal: bool, environ: Mapping[str, str]):
        self.terminal = terminal
        self.child_fd: int | None = child_fd  # ninja's stdout, ours until it has started
        self._read_fd: int | None = read_fd
        self._fd_lock = threading.Lock()
        self._reader: FailureReader | None = FailureReader(environ=environ, terminal=terminal)
        self._waiting_since: float | None = None  # when the thread began to wait for a read
        self._exited: float | None = None  # when the build exited
        self._waited_after_exit = 0.0
        # Time spent after the exit passing output on to a slow reader of ours (``| less``):
        # waited for as long as it takes, so it does not count as the build still talking.
        self._writing_since: float | None = None
        self._wrote_after_exit = 0.0
        self._thread = threading.Thread(target=self._copy, name="ninja-output", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, environ: Mapping[str, str]) -> NinjaOutput | None:
        """A pipe, or a pseudo-terminal like ours when our stdout is a terminal; None when
        we have no stdout to pass ninja's on to. Raises :class:`OSError` when none can be
        made (no descriptor or pseudo-terminal to spare)."""
        try:
            os.fstat(1)
        except OSError:
            return None  # ninja gets our (missing) stdout as it is
        if not os.isatty(1):
            read_fd, write_fd = os.pipe()
            return cls(read_fd, write_fd, terminal=False, environ=environ)
        import fcntl
        import termios

        master, slave = os.openpty()
        try:
            try:
                modes = termios.tcgetattr(1)
            except termios.error:
                modes = termios.tcgetattr(slave)
            # Ninja's bytes reach our terminal as they are, which then processes its output
            # once, as it would have ninja's ("\n" is not made "\r\n" twice).
            modes[1] &= ~termios.OPOST
            termios.tcsetattr(slave, termios.TCSANOW, modes)
            with contextlib.suppress(OSError):
                size = fcntl.ioctl(1, termios.TIOCGWINSZ, bytes(8))
                fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
        except (OSError, termios.error) as error:
            os.close(master)
            os.close(slave)
            raise OSError(f"cannot set up a terminal for ninja: {error}") from None
        return cls(master, slave, terminal=True, environ=environ)

    def resize(self) -> None:
        """Give ninja's terminal the size ours has now (on SIGWINCH)."""
        if not self.terminal or self._read_fd is None:
            return
        import fcntl
        import termios

        with contextlib.suppress(OSError):
            size = fcntl.ioctl(1, termios.TIOCGWINSZ, bytes(8))
            fcntl.ioctl(self._read_fd, termios.TIOCSWINSZ, size)

    def started(self) -> None:
        """The build has its copy of ninja's stdout: ours is closed, so that the stream ends
        when the build's copies do."""
        if self.child_fd is not None:
            fd, self.child_fd = self.child_fd, None
            os.close(fd)

    def finish(self) -> list[Failure] | None:
        """Wait for the output to be passed on, and give the failures ninja reported; None
        when the output could not be read to its end."""
        self.started()
        self._exited = exited = time.monotonic()
        while self._thread.is_alive():
            self._thread.join(_QUIET_SECONDS / 4)
            now = time.monotonic()
            writing = self._writing_since
            passing = self._wrote_after_exit + (now - max(writing, exited) if writing else 0.0)
            if now - exited - passing >= _TALKING_SECONDS:
                break  # something the build left running keeps talking (`yes &`)
            since = self._waiting_since
            if since is not None and now - max(since, exited) >= _QUIET_SECONDS:
                break  # held open, and quiet, by something the build left running
        if not self._thread.is_alive():
            self._close_read()
        return self._reader.failures() if self._reader is not None else None

    def close(self) -> None:
        """The build did not start: let the thread end."""
        self.started()
        self._thread.join()
        self._close_read()

    def _copy(self) -> None:
        reader, fd = self._reader, self._read_fd
        assert fd is not None
        passing = True
        while True:
            self._waiting_since = begun = time.monotonic()
            try:
                data = os.read(fd, _READ_SIZE)
            except OSError:  # EIO: the pseudo-terminal's last writer has closed it
                data = b""
            arrived = time.time_ns() // 1_000_000
            self._waiting_since = None
            if self._exited is not None:
                self._waited_after_exit += time.monotonic() - max(begun, self._exited)
            if not data:
                return
            if passing:
                self._writing_since = wrote = time.monotonic()
                try:
                    _write_all(data)
                except BrokenPipeError:
                    # Our reader has gone: so does ninja's, which then learns it as it would
                    # have (SIGPIPE or EPIPE on its next write).
                    self._close_read()
                    return
                except OSError:
                    passing = False  # a full disk, say: ninja's own writes would fail too
                finally:
                    if self._exited is not None:
                        self._wrote_after_exit += time.monotonic() - max(wrote, self._exited)
                    self._writing_since = None
            if reader is not None:
                try:
                    reader.feed(data, arrived)
                except Exception:  # never in the way of the output: stop reading it
                    self._reader = reader = None

    def _close_read(self) -> None:
        with self._fd_lock:
            fd, self._read_fd = self._read_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(1, view)
        except BlockingIOError:  # our stdout was left non-blocking by whoever shares it
            import select

            select.select([], [1], [])
            continue
        view = view[written:]
