"""Progress bars on stderr for the commands that can take long (``ingest``, ``export``,
``compact``, ``jobs run``): one line, redrawn in place, and erased when the work ends.

A bar is drawn only where a person watches: stderr a terminal whose ``TERM`` is not
``dumb``. ``NO_COLOR`` does not turn it off (a bar is not colour). Piped or redirected,
nothing at all is written, so what a script reads of stderr is what it always was. Work that
ends within :data:`DEFAULT_DELAY` seconds (``BUILDER_PROGRESS_DELAY``, as git's
``GIT_PROGRESS_DELAY``) shows nothing either: no bar flashes for a small file. Then::

    ingest [##############.................]  45%  12.3/27.0 MB
    ingest  12.3 MB                                  (a total not known: a pipe)

redrawn at most :data:`REDRAW_SECONDS` apart (what came in between is drawn then, so the
count shown is never older than that), and once more when the work is done; when the work
ends (done, failed or interrupted), the line is erased before anything else is written, and
a warning said meanwhile erases it first, so no half bar is left in front of a message or
the result.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeAlias

if TYPE_CHECKING:
    from telemetry.progress import Progress

# What a bar counts: bytes are shown in megabytes (10^6), the others as counts.
Unit: TypeAlias = Literal["bytes", "builds", "days", "files", "steps"]

DELAY_VARIABLE: Final = "BUILDER_PROGRESS_DELAY"
# Seconds of work before a bar is first drawn.
DEFAULT_DELAY: Final = 0.5
# A bar is redrawn at most this often (and once more when the work is done).
REDRAW_SECONDS: Final = 0.1
MAX_WIDTH: Final = 80
# Back to the start of the line, and clear it to its end.
ERASE: Final = "\r\x1b[K"
_MIN_BAR: Final = 10


def render(label: str, unit: Unit, done: int, total: int | None, width: int) -> str:
    """The line of a bar ``width`` columns wide (its last column left empty, so the line
    never wraps): with a total, ``label [###...]  45%  12.3/27.0 MB``, the count as wide as
    the total, without the bar where it would be shorter than 10; without a total,
    ``label  12.3 MB``.

    >>> render("ingest", "bytes", 12_300_000, 27_000_000, 60)
    'ingest [##############.................]  45%  12.3/27.0 MB'
    >>> render("compact", "days", 3, None, 60)
    'compact  3 days'
    """
    room = max(width - 1, 0)
    if total is None:
        return f"{label}  {_amount(unit, done)}"[:room]
    shown = min(done, total)
    if unit == "bytes":
        whole, part = f"{total / 1e6:.1f}", f"{shown / 1e6:.1f}"
    else:
        whole, part = f"{total:,}", f"{shown:,}"
    # As wide as the total from the start: the bar keeps its length as the count grows.
    counts = f"{part.rjust(len(whole))}/{whole} {'MB' if unit == 'bytes' else unit}"
    percent = 100 if total == 0 else shown * 100 // total
    length = room - len(label) - len(" [") - len("] ") - len(" 45%") - len("  ") - len(counts)
    if length < _MIN_BAR:
        return f"{label}  {percent:3d}%  {counts}"[:room]
    filled = length if total == 0 else length * shown // total
    return f"{label} [{'#' * filled}{'.' * (length - filled)}] {percent:3d}%  {counts}"


def _amount(unit: Unit, done: int) -> str:
    return f"{done / 1e6:.1f} MB" if unit == "bytes" else f"{done:,} {unit}"


class Line:
    """One line of a terminal, redrawn in place: not before ``delay`` seconds since it was
    made, then at most every :data:`REDRAW_SECONDS` (a ``final`` draw at once). What comes
    sooner is kept, and :meth:`tick` (every :data:`REDRAW_SECONDS`, from a thread) draws it:
    a bar never shows an old count while the work waits (for a pipe, on a long step). Erased
    only when something is on it."""

    def __init__(
        self,
        stream: IO[str],
        *,
        width: int,
        delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.width = width
        self.delay = delay
        self.clock = clock
        self.started = clock()
        self.drawn_at: float | None = None
        self.shown = False
        self.text = ""  # what was drawn last
        self.pending: str | None = None  # what is to be drawn next
        # Reentrant: Ctrl-C may come while a draw holds it, and the erase that follows
        # takes it again.
        self._lock = threading.RLock()

    def draw(self, text: str, *, final: bool = False) -> None:
        with self._lock:
            now = self.clock()
            soon = self.drawn_at is not None and now - self.drawn_at < REDRAW_SECONDS
            if now - self.started < self.delay or (soon and not final):
                self.pending = text
                return
            self._show(text, now)

    def tick(self) -> None:
        """Draw what is pending, once the delay is over."""
        with self._lock:
            now = self.clock()
            if self.pending is not None and now - self.started >= self.delay:
                self._show(self.pending, now)

    def held(self) -> threading.RLock:
        """The line's lock, for writing something else to the terminal in its place: nothing
        is drawn while it is held."""
        return self._lock

    def erase(self, *, redraw: bool = False) -> None:
        """Clear the line; with ``redraw``, the next :meth:`tick` draws it again (after a
        warning written in its place)."""
        with self._lock:
            self.pending = self.text if redraw and self.shown else None
            if self.shown:
                self.shown = False
                self._write(ERASE)

    def _show(self, text: str, now: float) -> None:
        self.pending = None
        self.drawn_at = now
        self.shown = True
        self.text = text
        self._write(f"\r{text}\x1b[K")

    def _write(self, text: str) -> None:
        # Decoration: a stderr that cannot be written must not fail the work.
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()


class Bar:
    """A :class:`~telemetry.progress.Progress` drawn as ``label``'s bar on a :class:`Line`
    (``line`` None: one that draws nothing)."""

    def __init__(self, line: Line | None, label: str, unit: Unit) -> None:
        self.line = line
        self.label = label
        self.unit = unit

    def begin(self) -> None:
        """The label alone, as the work starts: it replaces what was on the line."""
        if self.line is not None:
            self.line.draw(self.label, final=True)

    def __call__(self, done: int, total: int | None, /) -> None:
        if self.line is not None:
            text = render(self.label, self.unit, done, total, self.line.width)
            self.line.draw(text, final=total is not None and done >= total)


@contextlib.contextmanager
def bar(label: str, unit: Unit, *, shown: bool = True) -> Iterator[Progress]:
    """A :class:`~telemetry.progress.Progress` that draws ``label``'s bar on stderr while the
    block runs, when a person watches (see the module's docstring); the line is erased as the
    block ends, however it ends. Not ``shown``: nothing is drawn (the work itself writes to
    the terminal: an export to stdout, which a bar would break into)."""
    with _line(shown) as line:
        yield Bar(line, label, unit)


@contextlib.contextmanager
def job_bars() -> Iterator[Callable[[str], Progress]]:
    """For ``jobs run`` (a :data:`pipelines.jobs.JobProgress`): given a job's name as it
    starts, its bar of days, labelled with the name and drawn over the one before on the same
    line, which is erased as the block ends."""
    with _line() as line:

        def start(name: str) -> Progress:
            started = Bar(line, name, "days")
            started.begin()
            return started

        yield start


@contextlib.contextmanager
def _line(shown: bool = True) -> Iterator[Line | None]:
    stream = sys.stderr
    if not shown or not _watched(stream):
        yield None  # nobody watches: the delay is not even read
        return
    delay = _delay()
    line = Line(stream, width=_width(stream), delay=delay)
    show_warning = warnings.showwarning

    def erase_then_show(*args: Any, **kwargs: Any) -> None:
        # Under the line's lock: the redrawing thread cannot put the bar back before the
        # warning is written. The bar comes back under it.
        with line.held():
            line.erase(redraw=True)
            show_warning(*args, **kwargs)

    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(REDRAW_SECONDS):
            line.tick()

    ticker = threading.Thread(target=tick, name="progress bar", daemon=True)
    warnings.showwarning = erase_then_show
    _start_without_signals(ticker)
    try:
        yield line
    finally:
        stop.set()
        ticker.join()
        warnings.showwarning = show_warning
        line.erase()


def _start_without_signals(thread: threading.Thread) -> None:
    """Start ``thread`` with every signal blocked in it, so that Ctrl-C (SIGINT) and SIGTERM
    reach the main thread, even while it waits in a read: a signal the kernel gave the other
    thread would leave that read waiting."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:  # no POSIX threads' signals here (Windows): nothing to block
        thread.start()
        return
    before = block(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()  # a new thread takes the mask of the one that starts it
    finally:
        block(signal.SIG_SETMASK, before)


def _watched(stream: IO[str] | None) -> bool:
    """Whether a person watches ``stream``: a terminal that is not a dumb one."""
    try:
        terminal = stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False
    return terminal and os.environ.get("TERM") != "dumb"


def _width(stream: IO[str]) -> int:
    """The terminal's columns (``COLUMNS`` first, as for any program), at most 80."""
    columns = 0
    with contextlib.suppress(ValueError):
        columns = int(os.environ.get("COLUMNS", ""))
    if columns <= 0:
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = MAX_WIDTH
    return min(columns or MAX_WIDTH, MAX_WIDTH)


def _delay() -> float:
    """``BUILDER_PROGRESS_DELAY``: seconds of work before a bar shows (0: at once)."""
    from telemetry.config import parse_number
    from telemetry.errors import ConfigError

    text = os.environ.get(DELAY_VARIABLE, "").strip()
    if not text:
        return DEFAULT_DELAY
    problem = ConfigError(
        f"{DELAY_VARIABLE} must be a number of seconds of at least 0 (e.g. 0.5), got {text!r}"
    )
    try:
        seconds = parse_number(text, source=DELAY_VARIABLE, example="0.5")
    except ConfigError:
        raise problem from None
    if math.isnan(seconds) or seconds < 0:
        raise problem
    return seconds


__all__ = ["DEFAULT_DELAY", "DELAY_VARIABLE", "Bar", "Line", "Unit", "bar", "job_bars", "render"]
