"""Ninja: its build log (``.ninja_log``), read after a recorded build or ingested on its own.

Ninja appends one line to ``.ninja_log`` for every output of every command that succeeded:
start and end in milliseconds since that ninja started, the output's mtime, the output's
path, and a hash of the command (formats v4 to v7 all have these five columns). Commands
that failed are never written to it, so what a failed build did is worked out by asking
ninja afterwards which outputs are still out of date (see :class:`NinjaRun`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from telemetry.errors import InputError

_HEADER = re.compile(rb"^# ninja log v(\d+)\s*$")
_OLDEST, _NEWEST = 4, 7
# The ninja tools asked after a build share this much time; a huge manifest gets less detail.
_TOOL_SECONDS = 30.0
# A file in ``ninja -t graph`` (a command is an ellipse, or a labelled arrow).
_GRAPH_NODE = re.compile(r'^"0x[0-9a-fA-F]+" \[label="(.*)"\]$', re.MULTILINE)
_STATUS_LINE = re.compile(r"^\[\d+/\d+\] (.*)$")
_LATEST_MS = 253_402_300_800_000  # the year 10000
_SHELL_SYNTAX = re.compile(r"[;&|<>()`$\n]")

Status = Literal["built", "cached", "failed", "skipped"]


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
    problems: list[tuple[int, str]] = []
    entries: list[LogEntry] = []
    start = 0
    if version is None:
        header = _HEADER.match(lines[0]) if lines else None
        if header is None:
            raise InputError(
                "not a ninja build log: the first line should be '# ninja log vN', as ninja "
                "writes at the top of .ninja_log"
            )
        version = int(header.group(1))
        if not _OLDEST <= version <= _NEWEST:
            raise InputError(
                f"ninja log format v{version} is not supported (v{_OLDEST} to v{_NEWEST} are: "
                f"ninja 1.3 and later)"
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
        output = fields[3].decode("utf-8")
        digest = fields[4].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return "not a ninja log entry (start, end, mtime, output, command hash)"
    if start < 0 or end < start or end > 10**12 or not output or len(output) > 4096:
        return f"implausible entry: start {start}, end {end}"
    return LogEntry(start, end, mtime, output, digest)


def log_events(
    data: bytes, *, name: str = "ninja", written_ms: int | None = None
) -> tuple[list[str], list[tuple[int, str]]]:
    """The protocol's JSON lines for every build in a ``.ninja_log``, and the lines skipped.

    Each ninja run appended its commands in the order they finished, with times counted from
    its own start: where an end time goes back, the next run began. Every entry is a
    ``built`` target (the log holds nothing else) and every run a successful build. The log
    has no dates; a run is placed by the mtimes its outputs got when they were written
    (the median over its entries), or else taken to have ended when the log was written.

    >>> log = b"# ninja log v5\\n0\\t10\\t5000000000\\ta.o\\t1\\n0\\t8\\t9000000000\\ta.o\\t1\\n"
    >>> [json.loads(e)["ts"] for e in log_events(log)[0] if "build_" in e]  # mtimes in s
    [4999999999990, 5000000000000, 8999999999992, 9000000000000]
    """
    log = parse_log(data)
    runs: list[list[LogEntry]] = []
    for entry in log.entries:
        if not runs or entry.end_ms < runs[-1][-1].end_ms:
            runs.append([])
        runs[-1].append(entry)
    if not runs:
        raise InputError(f"{name} holds no ninja log entries")
    now = time.time_ns() // 1_000_000 if written_ms is None else written_ms
    events: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for run in runs:
        origin = _origin(run, now)
        # Named by its lines, so ingesting the log again stores each run once; a run that
        # repeats an earlier one line for line is told apart by how many came before it.
        digest = hashlib.sha256(
            "\n".join(f"{e.start_ms}\t{e.end_ms}\t{e.mtime}\t{e.output}" for e in run).encode()
        ).hexdigest()[:16]
        seen[digest] = seen.get(digest, 0) + 1
        session = f"ninja-{digest}" + (f"-{seen[digest]}" if seen[digest] > 1 else "")
        first = min(e.start_ms for e in run)
        last = max(e.end_ms for e in run)
        events.append(
            {"event": "build_started", "session": session, "ts": origin + first, "tool": "ninja"}
        )
        for entry in run:
            events.append(_started(session, entry.output, origin + entry.start_ms))
            events.append(_finished(session, entry.output, origin + entry.end_ms, "built"))
        events.append(
            {"event": "build_finished", "session": session, "ts": origin + last, "success": True}
        )
    return [json.dumps(e) for e in events], list(log.problems)


def _origin(run: Sequence[LogEntry], fallback_end_ms: int) -> int:
    """Epoch milliseconds of a run's time 0, from its outputs' mtimes."""
    last = max(e.end_ms for e in run)
    offsets = [_mtime_ms(e.mtime) - e.end_ms for e in run if e.mtime > 0]
    # An mtime that would place the run outside the years the protocol takes is not used.
    offsets = [o for o in offsets if o >= 0 and o + last < _LATEST_MS]
    if offsets:
        offsets.sort()
        middle = len(offsets) // 2  # the median (the upper one of an even count)
        return offsets[middle]
    return max(0, fallback_end_ms - last)


def _mtime_ms(mtime: int) -> int:
    """An mtime in milliseconds: ninja writes nanoseconds (1.10 on), seconds before."""
    return mtime // 1_000_000 if mtime > 10**14 else mtime * 1000


def _started(session: str, target: str, ts: int) -> dict[str, Any]:
    return {"event": "target_started", "session": session, "ts": ts, "target": target}


def _finished(session: str, target: str, ts: int, status: Status) -> dict[str, Any]:
    return {
        "event": "target_finished",
        "session": session,
        "ts": ts,
        "target": target,
        "status": status,
    }


# --- a recorded ninja build ---------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class NinjaTarget:
    """An output of a recorded build; times in milliseconds since ninja started (executed
    outputs only)."""

    output: str
    status: Status
    start_ms: int | None = None
    end_ms: int | None = None


@dataclass(slots=True)
class NinjaRun:
    """A ninja build about to run: where its log is, and what was in it before.

    After the build, :meth:`targets` gives every output of the requested targets:

    - ``built``: the lines this build appended to ``.ninja_log`` (or, when ninja rewrote the
      log to compact it, the lines that were not in it before);
    - when the build succeeded, every other output the requested targets depend on
      (``ninja -t graph``, ``-t targets all``) was up to date: ``cached``;
    - when it failed, ``ninja -n -v`` (a dry run, with ``-t compdb`` to name what it would
      run) tells which outputs are still out of date. One whose inputs are all up to date
      was ready to run and is ``failed``: ninja logs no failed command, and stops starting
      new ones at its ``-k`` failures, so in a parallel build this also counts ready outputs
      ninja had not yet started. One waiting for another out-of-date output is
      ``skipped``; the rest are ``cached``.
    """

    ninja: str
    directory: Path
    manifest: str
    targets: tuple[str, ...]
    parallelism: int | None
    log_path: Path
    environ: Mapping[str, str]
    _before: int | None = None  # a descriptor of the log as it was before the build
    _before_size: int = 0
    problems: list[str] = field(default_factory=list)

    @classmethod
    def prepare(
        cls,
        command: Sequence[str],
        *,
        environ: Mapping[str, str],
        source: Literal["auto", "ninja", "none"] = "auto",
    ) -> NinjaRun | None:
        """The run of ``command`` when it is a ninja build (``source="ninja"``: any command,
        a wrapper that runs ninja in the ``-C`` directory or here); None otherwise, and for
        ninja's tools, dry runs, ``--version`` and ``-h``."""
        if source == "none":
            return None
        words = list(command)
        if words[:2] == ["/bin/sh", "-c"] and len(words) == 3:
            if _SHELL_SYNTAX.search(words[2]):  # more than one simple command
                words = [] if source == "auto" else ["sh"]
            else:
                try:
                    words = shlex.split(words[2])
                except ValueError:
                    return None
        if not words:
            return None
        program = Path(words[0]).name
        is_ninja = program in ("ninja", "ninja-build", "ninja.exe")
        if not is_ninja and source == "auto":
            return None
        options = _options(words[1:]) if is_ninja else _wrapper_options(words[1:])
        if options is None:
            return None
        directory, manifest, parallelism, targets = options
        path = environ.get("PATH", os.defpath)
        ninja = shutil.which(words[0] if is_ninja else "ninja", path=path)
        if ninja is None:
            return None
        folder = Path(directory)
        run = cls(
            ninja=ninja,
            directory=folder,
            manifest=manifest,
            targets=tuple(targets),
            parallelism=parallelism if parallelism is not None else _default_parallelism(),
            log_path=folder / _builddir(folder / manifest) / ".ninja_log",
            environ=environ,
        )
        run._remember()
        return run

    def _remember(self) -> None:
        """Keep the log open as it is: if ninja replaces it, this still reads the old one."""
        with contextlib.suppress(OSError):
            self._before = os.open(self.log_path, os.O_RDONLY | os.O_CLOEXEC)
            self._before_size = os.fstat(self._before).st_size

    def close(self) -> None:
        if self._before is not None:
            with contextlib.suppress(OSError):
                os.close(self._before)
            self._before = None

    def executed(self) -> list[LogEntry]:
        """The log entries this build wrote."""
        try:
            with self.log_path.open("rb") as handle:
                info = os.fstat(handle.fileno())
                same = False
                if self._before is not None:
                    kept = os.fstat(self._before)
                    same = (kept.st_dev, kept.st_ino) == (info.st_dev, info.st_ino)
                if same and info.st_size >= self._before_size:
                    head = handle.readline()
                    header = _HEADER.match(head)
                    if header is None:
                        return []
                    handle.seek(self._before_size)
                    appended = handle.read()
                    # A line cut short by a ninja that was killed belongs to no build.
                    return list(
                        parse_log(appended, version=int(header.group(1)), first_line=2).entries
                    )
                current = handle.read()
        except FileNotFoundError:
            return []
        new = parse_log(current).entries if current.startswith(b"# ninja log") else ()
        if self._before is None:
            return list(new)
        old_bytes = os.pread(self._before, self._before_size, 0)
        try:
            old = set(parse_log(old_bytes).entries)
        except InputError:
            old = set()
        return [entry for entry in new if entry not in old]

    def outcome(self, *, succeeded: bool, interrupted: bool) -> list[NinjaTarget]:
        """Every output of the build's targets, and what became of it."""
        try:
            executed = self.executed()
        except (OSError, InputError) as error:
            self.problems.append(f"cannot read {self.log_path}: {error}")
            return []
        finally:
            self.close()
        targets = [NinjaTarget(e.output, "built", e.start_ms, e.end_ms) for e in executed]
        if interrupted:  # what was running or queued is unknown; do not keep the user waiting
            return targets
        deadline = time.monotonic() + _TOOL_SECONDS
        try:
            outputs = self._outputs(deadline)
            closure = self._closure(outputs, deadline)
            done = {t.output for t in targets}
            dirty: set[str] = set()
            blocked: set[str] = set()
            if not succeeded:
                dirty = self._still_to_run(deadline) & closure
                blocked = self._waiting(dirty, deadline)
        except _ToolFailed as error:
            if succeeded:  # after a failed build (an unknown target, a bad manifest) ninja
                self.problems.append(str(error))  # has already said what is wrong
            return targets
        for output in sorted(closure - done):
            if output not in dirty:
                targets.append(NinjaTarget(output, "cached"))
            elif output in blocked:
                targets.append(NinjaTarget(output, "skipped"))
            else:
                targets.append(NinjaTarget(output, "failed"))
        return targets

    # The questions asked of ninja: each loads the manifest, none builds or writes anything.

    def _tool(self, *args: str, deadline: float) -> str:
        command = [self.ninja, "-C", str(self.directory), "-f", self.manifest, *args]
        env = dict(self.environ) | {"NINJA_STATUS": "[%f/%t] ", "CLICOLOR_FORCE": "0"}
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _ToolFailed(
                f"ninja {' '.join(args[:2])} took over {_TOOL_SECONDS:.0f} s; only the "
                f"executed outputs are recorded"
            ) from None
        except OSError as error:
            raise _ToolFailed(f"cannot run {self.ninja}: {error.strerror or error}") from None
        if done.returncode != 0:
            raise _ToolFailed(
                f"`ninja {' '.join(args[:2])}` failed with status {done.returncode}; only the "
                f"executed outputs are recorded"
            )
        return done.stdout.decode("utf-8", "surrogateescape")

    def _outputs(self, deadline: float) -> set[str]:
        """Every output of a command (phony names are not outputs)."""
        found = set()
        for line in self._tool("-t", "targets", "all", deadline=deadline).splitlines():
            output, sep, rule = line.rpartition(": ")
            if sep and rule != "phony":
                found.add(output)
        return found

    def _closure(self, outputs: set[str], deadline: float) -> set[str]:
        """The outputs the requested targets (the default ones when none) need, themselves
        included: the nodes of ``ninja -t graph``."""
        graph = self._tool("-t", "graph", *self.targets, deadline=deadline)
        nodes = {match.group(1) for match in _GRAPH_NODE.finditer(graph)}
        return nodes & outputs

    def _still_to_run(self, deadline: float) -> set[str]:
        """The outputs a dry run would build now."""
        database = json.loads(self._tool("-t", "compdb", deadline=deadline) or "[]")
        by_command: dict[str, str] = {}
        for entry in database:
            if isinstance(entry, dict) and isinstance(entry.get("output"), str):
                by_command.setdefault(str(entry.get("command")), entry["output"])
        dry = self._tool("-n", "-v", *self.targets, deadline=deadline)
        pending = set()
        for line in dry.splitlines():
            match = _STATUS_LINE.match(line)
            if match and match.group(1) in by_command:
                pending.add(by_command[match.group(1)])
        return pending

    def _waiting(self, dirty: set[str], deadline: float) -> set[str]:
        """Those of the ``dirty`` outputs that wait for another one."""
        if not dirty:
            return set()
        text = self._tool("-t", "query", *sorted(dirty), deadline=deadline)
        waiting = set()
        node = None
        in_inputs = False
        for line in text.splitlines():
            if not line.startswith(" "):
                node, in_inputs = line.removesuffix(":"), False
            elif line.startswith("  input:"):
                in_inputs = True
            elif line.startswith("  ") and not line.startswith("    "):
                in_inputs = False
            elif in_inputs and node is not None:
                name = line.strip()
                for prefix in ("|| ", "| "):
                    name = name.removeprefix(prefix)
                if name in dirty:
                    waiting.add(node)
        return waiting


class _ToolFailed(Exception):
    pass


def _options(args: Sequence[str]) -> tuple[str, str, int | None, list[str]] | None:
    """``-C``, ``-f``, ``-j`` and the targets of a ninja command line (getopt rules); None
    when it does not build (a tool, a dry run, help, the version)."""
    directory, manifest, parallelism = ".", "build.ninja", None
    targets: list[str] = []
    index = 0
    with_value = set("Cfjkldtw")
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            targets += args[index:]
            break
        if arg in ("--version", "--help") or not arg.startswith("-") or arg == "-":
            if arg in ("--version", "--help"):
                return None
            targets.append(arg)
            continue
        if arg.startswith("--"):
            continue  # --verbose, --quiet
        letters = arg[1:]
        while letters:
            letter, letters = letters[0], letters[1:]
            if letter in ("n", "h"):
                return None
            if letter not in with_value:
                continue
            if letters:
                value, letters = letters, ""
            elif index < len(args):
                value = args[index]
                index += 1
            else:
                return None
            if letter == "t":
                return None
            if letter == "C":
                directory = value  # the last one wins, as in ninja
            elif letter == "f":
                manifest = value
            elif letter == "j":
                try:
                    parallelism = int(value)
                except ValueError:
                    return None
    if parallelism is not None and parallelism <= 0:
        parallelism = 0  # ninja -j0: no limit; the peak is used instead
    return directory, manifest, parallelism, targets


def _wrapper_options(args: Sequence[str]) -> tuple[str, str, int | None, list[str]] | None:
    """For a command that runs ninja itself: its ``-C DIR`` when it has one."""
    directory = "."
    for index, arg in enumerate(args[:-1]):
        if arg == "-C":
            directory = args[index + 1]
    return directory, "build.ninja", None, []


def _default_parallelism() -> int:
    """What ninja runs at once without ``-j``: 2 on one CPU, 3 on two, else CPUs + 2."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 2 if cpus <= 1 else 3 if cpus == 2 else cpus + 2


def _builddir(manifest: Path) -> str:
    """The manifest's top-level ``builddir``, where ninja keeps its log ("" when unset)."""
    try:
        with manifest.open("rb") as handle:
            for raw in handle:
                match = re.match(rb"builddir\s*=\s*(.*?)\s*$", raw)
                if match:
                    value = match.group(1).decode("utf-8", "surrogateescape")
                    return "" if "$" in value else value
    except OSError:
        pass
    return ""


def session_parallelism(run: NinjaRun) -> int | None:
    """The worker count to store: ninja's ``-j`` or its default; None for ``-j0``."""
    return run.parallelism or None
