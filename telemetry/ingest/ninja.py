"""Ninja's build log (``.ninja_log``): its lines, the commands they record, and the builds
they make when a log is ingested on its own. A recorded build (:mod:`telemetry.ninja`) reads
the lines it appended with the same parser and groups them into commands the same way.

Ninja appends one line to ``.ninja_log`` for every output of every command that succeeded:
start and end in milliseconds since that ninja started, a time stamp, the output's path,
and a hash of the command (formats v4 to v7 all have these five columns). Commands that
failed are never written to it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from telemetry.errors import EventError, InputError
from telemetry.events import MAX_TS_MS, Event, EventBuilder, latest_ts
from telemetry.ingest.detection import BOM

_HEADER = re.compile(rb"^# ninja log v(\d+)\s*$")
_OLDEST, _NEWEST = 4, 7
# How far an entry's origin may fall behind its run's: 2 ms lost rounding a time stamp and
# an end time, and 20 ms a time stamp may lag. A file is stamped from a coarse clock, up to
# two of its ticks behind (7.8 ms measured on Linux at 250 Hz, so 20 ms at 100 Hz; Windows
# ticks every 15.6 ms): on Linux every file up to 6.12, and from 6.13 a file just created.
# Ninja 1.12 on stamps a line with the mtime of `.ninja_lock`, which it creates as it starts
# a run's first command and removes when the run ends: so that command's line lags.
_ORIGIN_SLACK_MS = 2 + 20
_SEPARATORS = "/\\"
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[/\\]")
# Anyone's home directory, on Linux, macOS and Windows: a log may come from another machine.
_HOMES = re.compile(r"^(?:[A-Za-z]:)?[/\\](?:home|Users)[/\\][^/\\]+(?=[/\\]|$)")


@dataclass(slots=True, frozen=True)
class LogEntry:
    """One line of ``.ninja_log``: an output of a command that succeeded."""

    start_ms: int
    end_ms: int
    mtime: int  # as ninja wrote it: nanoseconds since 1.10, seconds before
    output: str
    command_hash: str


@dataclass(slots=True, frozen=True)
class NinjaLog:
    version: int
    entries: tuple[LogEntry, ...]
    problems: tuple[tuple[int, str], ...] = ()  # (line number, what is wrong)


@dataclass(slots=True, frozen=True)
class LogCommand:
    """One command that succeeded: its outputs in the order ninja wrote them, and when it
    ran (milliseconds since its ninja started)."""

    outputs: tuple[str, ...]
    start_ms: int
    end_ms: int
    command_hash: str


def header_version(line: bytes) -> int | None:
    """The format version a log's first line names (None when it is not a log's header).

    >>> header_version(b"# ninja log v7\\n"), header_version(b"ninja")
    (7, None)
    """
    header = _HEADER.match(line.removeprefix(BOM))
    return None if header is None else int(header.group(1))


def parse_log(data: bytes, *, first_line: int = 1, version: int | None = None) -> NinjaLog:
    """The entries of a ``.ninja_log`` (or of the lines appended to one, with the
    ``version`` of its header and the number of its ``first_line``).

    >>> [entry] = parse_log(b"# ninja log v5\\n0\\t12\\t17000000\\ta.o\\tbeef\\n").entries
    >>> entry.output, entry.end_ms - entry.start_ms, entry.command_hash
    ('a.o', 12, 'beef')
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if version is None:  # a byte-order mark and blank lines an editor may have added
        lines[:1] = [lines[0].removeprefix(BOM)] if lines else []
        while lines and not lines[0].strip():
            lines.pop(0)
            first_line += 1
    problems: list[tuple[int, str]] = []
    entries: list[LogEntry] = []
    start = 0
    if version is None:
        version = header_version(lines[0]) if lines else None
        if version is None:
            raise InputError(
                "not a ninja build log: the first line should be '# ninja log vN', as ninja "
                "writes at the top of .ninja_log"
            )
        if not _OLDEST <= version <= _NEWEST:
            raise InputError(
                f"ninja log format v{version} is not supported (v{_OLDEST} to v{_NEWEST} are)"
            )
        start = 1
    for index in range(start, len(lines)):
        number = first_line + index
        entry = _entry(lines[index])
        if isinstance(entry, str):
            problems.append((number, entry))
        else:
            entries.append(entry)
    return NinjaLog(version, tuple(entries), tuple(problems))


def _entry(line: bytes) -> LogEntry | str:
    fields = line.rstrip(b"\r").split(b"\t")
    if len(fields) != 5:
        return f"expected 5 tab-separated fields, found {len(fields)}"
    try:
        start, end, mtime = (int(f) for f in fields[:3])
        output = fields[3].decode("utf-8", "backslashreplace")  # as ninja's tools are read
        digest = fields[4].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return "not a ninja log entry (start, end, mtime, output, command hash)"
    if start < 0 or end < start or end > 10**12 or not output or len(output) > 4096:
        return f"implausible entry: start {start}, end {end}"
    return LogEntry(start, end, mtime, output, digest)


def log_commands(entries: Iterable[LogEntry]) -> list[LogCommand]:
    """The commands of one ninja run's entries, in the order of their first lines.

    Ninja writes a line for every output of a command, each with the command's start, end
    and hash (v4 writes the command itself in place of the hash); so lines alike in these
    three are one command. The time stamp is not compared: ``ninja -t restat`` rewrites it
    for each output on its own.

    >>> log = parse_log(b"# ninja log v7\\n0\\t9\\t5\\ta.h\\tf0\\n0\\t9\\t5\\t/b/a.h\\tf0\\n")
    >>> [(c.outputs, c.end_ms) for c in log_commands(log.entries)]
    [(('a.h', '/b/a.h'), 9)]
    """
    commands: dict[tuple[int, int, str], list[str]] = {}
    for entry in entries:
        outputs = commands.setdefault((entry.start_ms, entry.end_ms, entry.command_hash), [])
        if entry.output not in outputs:
            outputs.append(entry.output)
    return [
        LogCommand(tuple(outputs), start, end, digest)
        for (start, end, digest), outputs in commands.items()
    ]


def build_directories(commands: Iterable[LogCommand]) -> list[str]:
    """Where the commands ran, as far as their outputs tell (each with its trailing
    separator, longest first): a command that names an output both by a relative path and
    by an absolute one ending in it ran in the rest of the absolute one. CMake names every
    custom command's outputs both ways.

    >>> build_directories([LogCommand(("gen/a.h", "/src/out/gen/a.h"), 0, 1, "f0")])
    ['/src/out/']
    """
    found: set[str] = set()
    for command in commands:
        relative = {o for o in command.outputs if not is_absolute(o)}
        if not relative or len(relative) == len(command.outputs):
            continue
        for output in filter(is_absolute, command.outputs):
            for at, char in enumerate(output):
                if char in _SEPARATORS and output[at + 1 :] in relative:
                    found.add(output[: at + 1])
                    break
    return sorted(found, key=len, reverse=True)


def target_name(output: str, directories: Sequence[str]) -> str:
    """An output as a target's name: relative to the build directory when it lies under
    one of ``directories`` (each ending in a separator), else as it is.

    >>> target_name("/src/out/gen/a.h", ["/src/out/"]), target_name("/etc/a", ["/src/out/"])
    ('gen/a.h', '/etc/a')
    """
    for directory in directories:
        if output.startswith(directory) and len(output) > len(directory):
            return output[len(directory) :]
    return output


def is_absolute(path: str) -> bool:
    """Whether a path ninja wrote is absolute, on POSIX or Windows."""
    return path[:1] in ("/", "\\") or _WINDOWS_ABSOLUTE.match(path) is not None


def log_events(
    data: bytes, *, name: str = "ninja", written_ms: int | None = None, home: str | None = None
) -> tuple[Iterator[Event | EventError], list[tuple[int, str]]]:
    """The protocol's events for every build in a ``.ninja_log``, each made by an
    :class:`~telemetry.events.EventBuilder`, and the lines skipped. A log that holds no
    build is refused at once.

    Each ninja run appended its commands in the order they finished, with times counted from
    its own start. An entry's origin (its time stamp less its end time up to v5, less its
    start from v6) is at most the moment its run started, and at least that less the run's
    length so far and how far the file system's clock lags; so the next run began where an
    end time goes back, or where that origin moves past the run's latest origin by more than
    the run has lasted and that lag. A log ninja recompacted holds each output once, in no
    order (time goes back while the origin does not move on): its runs are then the groups
    of origins less than a second apart. Every command (see :func:`log_commands`) is a
    ``built`` target named by its first output (the log holds nothing else), and every run
    a successful build. A run is placed by the median origin of its entries, or else taken
    to have ended when the log was written.

    An absolute output is named relative to the build directory when the log tells where
    that was (:func:`build_directories`); otherwise without the home directory in it:
    ``home`` (the user's, by default), or anyone's under ``/home`` or ``/Users``.

    >>> log = b"# ninja log v5\\n0\\t10\\t1700000000\\ta.o\\t1\\n0\\t8\\t1750000000\\ta.o\\t1\\n"
    >>> from telemetry.events import BuildFinished, BuildStarted
    >>> [e.ts for e in log_events(log)[0] if isinstance(e, BuildStarted | BuildFinished)]
    [1699999999990, 1700000000000, 1749999999992, 1750000000000]
    """
    log = parse_log(data)
    runs = _runs(log.entries, log.version)
    if not runs:
        raise InputError(f"{name} holds no ninja log entries")
    now = time.time_ns() // 1_000_000 if written_ms is None else written_ms
    home = (os.path.expanduser("~") if home is None else home).rstrip(_SEPARATORS)
    return _events(runs, log.version, now, home), list(log.problems)


def _events(
    runs: list[list[LogEntry]], version: int, now: int, home: str
) -> Iterator[Event | EventError]:
    commands = [log_commands(run) for run in runs]
    directories = build_directories(c for run in commands for c in run)
    seen: dict[str, int] = {}
    for run, run_commands in zip(runs, commands, strict=True):
        origin = _origin(run, now, version)
        # Named by its lines, so ingesting the log again stores each run once; a run that
        # repeats an earlier one line for line is told apart by how many came before it.
        digest = hashlib.sha256(
            "\n".join(f"{e.start_ms}\t{e.end_ms}\t{e.mtime}\t{e.output}" for e in run).encode()
        ).hexdigest()[:16]
        seen[digest] = seen.get(digest, 0) + 1
        build = EventBuilder(f"ninja-{digest}" + (f"-{seen[digest]}" if seen[digest] > 1 else ""))
        yield build.build_started(origin + min(e.start_ms for e in run), tool="ninja")
        for command in run_commands:
            target = _without_home(target_name(command.outputs[0], directories), home)
            yield build.target_started(origin + command.start_ms, target)
            yield build.target_finished(origin + command.end_ms, target, "built")
        yield build.build_finished(origin + max(e.end_ms for e in run), success=True)


def _without_home(path: str, home: str) -> str:
    """An absolute path under a home directory as ``~/...``."""
    if len(home) > 1 and (path == home or path.startswith((home + "/", home + "\\"))):
        return "~" + path[len(home) :]
    return _HOMES.sub("~", path, count=1)


def _runs(entries: Sequence[LogEntry], version: int) -> list[list[LogEntry]]:
    """The log's entries, one list per ninja run (see :func:`log_events`)."""
    runs: list[list[LogEntry]] = []
    latest: int | None = None  # the latest origin of the current run
    previous: int | None = None  # the origin of the entry before
    unique = len({entry.output for entry in entries}) == len(entries)
    for entry in entries:
        origin = _entry_origin(entry, version)
        new = not runs
        if runs:
            last_end = runs[-1][-1].end_ms
            if entry.end_ms < last_end:
                new = True
                if unique and None not in (origin, previous) and origin <= previous:  # type: ignore[operator]
                    # Time went back, yet this run began no later than the last: not runs
                    # appended one after another, but a log ninja rewrote in no order.
                    return _clustered(entries, version)
            elif None not in (origin, latest):
                new = origin > latest + last_end + _ORIGIN_SLACK_MS  # type: ignore[operator]
        if new:
            runs.append([])
            latest = None
        runs[-1].append(entry)
        previous = origin
        if origin is not None:
            latest = origin if latest is None else max(latest, origin)
    return runs


def _clustered(entries: Sequence[LogEntry], version: int) -> list[list[LogEntry]]:
    """Entries grouped by origins less than a second apart (those without one join the
    first group)."""
    origins = [_entry_origin(e, version) for e in entries]
    timed = sorted((o, i) for i, o in enumerate(origins) if o is not None)
    groups: list[list[int]] = []
    previous: int | None = None
    for origin, index in timed:
        if previous is None or origin - previous > 1000:
            groups.append([])
        groups[-1].append(index)
        previous = origin
    untimed = [i for i, o in enumerate(origins) if o is None]
    if not groups:
        return [list(entries)]
    groups[0] += untimed
    return [[entries[i] for i in sorted(group)] for group in groups]


def _entry_origin(entry: LogEntry, version: int) -> int | None:
    """When the entry's run started (None when its mtime is unusable). Up to format v5 the
    mtime is the output's, written before the command ended; from v6 (ninja 1.12) it is
    when the command started, as the file system stamped ninja's ``.ninja_lock`` then. Either
    comes from the file system's clock, which may lag (see ``_ORIGIN_SLACK_MS``)."""
    if entry.mtime <= 0:
        return None
    origin = _mtime_ms(entry.mtime) - (entry.start_ms if version >= 6 else entry.end_ms)
    return origin if 0 <= origin < MAX_TS_MS else None


def _origin(run: Sequence[LogEntry], fallback_end_ms: int, version: int) -> int:
    """Epoch milliseconds of a run's time 0: the median origin of its entries."""
    last = max(e.end_ms for e in run)
    # An origin that would place the run outside the years the protocol takes, or further
    # ahead of the clock than a build may be, is not used.
    latest = min(MAX_TS_MS, latest_ts())
    offsets = [o for e in run if (o := _entry_origin(e, version)) is not None and o + last < latest]
    if offsets:
        offsets.sort()
        return offsets[len(offsets) // 2]  # the median (the upper one of an even count)
    return max(0, fallback_end_ms - last)


def _mtime_ms(mtime: int) -> int:
    """An mtime in milliseconds: ninja writes nanoseconds (1.10 on), seconds before."""
    return mtime // 1_000_000 if mtime > 10**14 else mtime * 1000
