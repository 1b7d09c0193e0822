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
import mmap
import os
import re
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from telemetry.errors import InputError
from telemetry.events import latest_ts

_HEADER = re.compile(rb"^# ninja log v(\d+)\s*$")
_OLDEST, _NEWEST = 4, 7
# The ninja tools asked after a build share this much time; a huge manifest gets less detail.
_TOOL_SECONDS = 30.0
# The lines of ``ninja -t graph``: a file, a command drawn as an ellipse, a command with one
# input and one output drawn as a labelled arrow, and the arrows of an ellipse's files.
_GRAPH_NODE = re.compile(r'^"(0x[0-9a-fA-F]+)" \[label="(.*)"\]$')
_GRAPH_EDGE_NODE = re.compile(r'^"(0x[0-9a-fA-F]+)" \[label="(.*)", shape=ellipse\]$')
_GRAPH_SIMPLE = re.compile(r'^"(0x[0-9a-fA-F]+)" -> "(0x[0-9a-fA-F]+)" \[label=" (.*)"\]$')
_GRAPH_ARROW = re.compile(r'^"(0x[0-9a-fA-F]+)" -> "(0x[0-9a-fA-F]+)"(?: \[(.*)\])?$')
_BINDING = re.compile(r"^([A-Za-z0-9_.-]+)\s*=\s*(.*)$")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_.-]+)\}|([A-Za-z0-9_-]+)|.)")
_BOM = b"\xef\xbb\xbf"
_STATUS_LINE = re.compile(r"^\[\d+/\d+\] (.*)$")
_LATEST_MS = 253_402_300_800_000  # the year 10000
_ORIGIN_SLACK_MS = 2  # milliseconds lost rounding an mtime and an end time
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
    if version is None:  # a byte-order mark and blank lines an editor may have added
        lines[:1] = [lines[0].removeprefix(_BOM)] if lines else []
        while lines and not lines[0].strip():
            lines.pop(0)
            first_line += 1
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


def log_events(
    data: bytes, *, name: str = "ninja", written_ms: int | None = None
) -> tuple[list[str], list[tuple[int, str]]]:
    """The protocol's JSON lines for every build in a ``.ninja_log``, and the lines skipped.

    Each ninja run appended its commands in the order they finished, with times counted from
    its own start. An output's mtime, less its end time, is at most the moment its run
    started, and at least that less the run's length so far; so the next run began where an
    end time goes back, or where that origin moves past the run's latest origin by more than
    the run has lasted. A log ninja recompacted holds each output once, in no order (time
    goes back while the origin does not move on): its runs are then the groups of origins
    less than a second apart. Every entry is a ``built`` target
    (the log holds nothing else) and every run a successful build. A run is placed by the
    median origin of its entries, or else taken to have ended when the log was written.

    >>> log = b"# ninja log v5\\n0\\t10\\t1700000000\\ta.o\\t1\\n0\\t8\\t1750000000\\ta.o\\t1\\n"
    >>> [json.loads(e)["ts"] for e in log_events(log)[0] if "build_" in e]  # mtimes in s
    [1699999999990, 1700000000000, 1749999999992, 1750000000000]
    """
    log = parse_log(data)
    runs = _runs(log.entries, log.version)
    if not runs:
        raise InputError(f"{name} holds no ninja log entries")
    now = time.time_ns() // 1_000_000 if written_ms is None else written_ms
    events: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for run in runs:
        origin = _origin(run, now, log.version)
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
    when the command started."""
    if entry.mtime <= 0:
        return None
    origin = _mtime_ms(entry.mtime) - (entry.start_ms if version >= 6 else entry.end_ms)
    return origin if 0 <= origin < _LATEST_MS else None


def _origin(run: Sequence[LogEntry], fallback_end_ms: int, version: int) -> int:
    """Epoch milliseconds of a run's time 0: the median origin of its entries."""
    last = max(e.end_ms for e in run)
    # An origin that would place the run outside the years the protocol takes, or further
    # ahead of the clock than a build may be, is not used.
    latest = min(_LATEST_MS, latest_ts())
    offsets = [o for e in run if (o := _entry_origin(e, version)) is not None and o + last < latest]
    if offsets:
        offsets.sort()
        return offsets[len(offsets) // 2]  # the median (the upper one of an even count)
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
class _Graph:
    """What ``ninja -t graph`` says of the requested targets: every file they need, and for
    every command (edge) its rule, inputs and outputs. Files are named by ninja's ids."""

    names: dict[str, str] = field(default_factory=dict)  # id -> path
    rules: dict[str, str] = field(default_factory=dict)  # edge -> rule
    inputs: dict[str, list[str]] = field(default_factory=dict)  # edge -> input ids
    outputs: dict[str, list[str]] = field(default_factory=dict)  # edge -> output ids
    producer: dict[str, str] = field(default_factory=dict)  # output id -> edge

    def add_edge(self, edge: str, rule: str) -> None:
        self.rules[edge] = rule
        self.inputs.setdefault(edge, [])
        self.outputs.setdefault(edge, [])

    def commands(self) -> list[str]:
        """The edges that run a command (not ``phony``)."""
        return [edge for edge, rule in self.rules.items() if rule != "phony"]

    def named_outputs(self, edge: str) -> list[str]:
        return [self.names[o] for o in self.outputs[edge] if o in self.names]


def _parse_graph(text: str) -> _Graph:
    graph = _Graph()
    for line in text.splitlines():
        if match := _GRAPH_EDGE_NODE.match(line):
            graph.add_edge(match.group(1), match.group(2))
        elif match := _GRAPH_NODE.match(line):
            graph.names[match.group(1)] = match.group(2)
        elif match := _GRAPH_SIMPLE.match(line):  # one input, one output: drawn as an arrow
            source, output, rule = match.groups()
            edge = f"{source}->{output}"
            graph.add_edge(edge, rule)
            graph.inputs[edge].append(source)
            graph.outputs[edge].append(output)
            graph.producer[output] = edge
        elif match := _GRAPH_ARROW.match(line):
            source, sink, attributes = match.groups()
            if source in graph.rules and not attributes:  # edge -> its output
                graph.outputs[source].append(sink)
                graph.producer[sink] = source
            elif sink in graph.rules:  # input -> edge (order-only ones dotted)
                graph.inputs[sink].append(source)
    return graph


@dataclass(slots=True)
class NinjaRun:
    """A ninja build about to run: where its log is, and what was in it before.

    After the build, :meth:`outcome` gives every output the requested targets need:

    - ``built``: the lines this build added to ``.ninja_log`` (or, when ninja rewrote the
      log to compact it, the lines that were not in it before);
    - when the build succeeded, every other output in ``ninja -t graph`` of the requested
      targets was up to date: ``cached``;
    - when it failed, a dry run (``ninja -n -v``, its commands named through
      ``-t compdb``) tells which outputs are still out of date. Those waiting for another
      out-of-date output were never attempted: ``skipped``. Those whose inputs were all up
      to date were ready: ninja ran them and they failed, or had not started them yet when
      it stopped at its ``-k`` failures. When there are no more of them than ``-k`` allows
      (or ``-k 0``), ninja tried every one: ``failed``; otherwise which failed is not
      written anywhere, and they are ``skipped``. The rest were up to date: ``cached``.
      When the dry run cannot be matched to the graph (two commands alike, a failed
      regeneration of the manifest), only the executed outputs are recorded.
    """

    ninja: str
    directory: Path
    manifest: str
    targets: tuple[str, ...]
    parallelism: int | None
    failures_allowed: int  # ninja's -k: 0 is no limit
    log_path: Path
    environ: Mapping[str, str]
    same_binary: bool = True  # the ninja asked afterwards is the one that built
    abort: Callable[[], bool] = field(default=lambda: False)
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
        ninja's tools, dry runs, ``--version``, ``-h``, and a manifest that is not a regular
        file (``-f /dev/stdin``: reading it would take it from ninja)."""
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
        directory, manifest, parallelism, failures_allowed, targets = options
        folder = Path(directory)
        try:
            if not stat.S_ISREG(os.stat(folder / manifest).st_mode):
                return None
        except OSError:
            return None  # ninja will say what is wrong
        path = environ.get("PATH", os.defpath)
        ninja = shutil.which(words[0] if is_ninja else "ninja", path=path)
        if ninja is None:
            return None
        run = cls(
            ninja=ninja,
            directory=folder,
            manifest=manifest,
            targets=tuple(targets),
            parallelism=parallelism if parallelism is not None else _default_parallelism(),
            failures_allowed=failures_allowed,
            log_path=folder / _builddir(folder / manifest) / ".ninja_log",
            environ=environ,
            same_binary=is_ninja,
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

    def executed(self) -> tuple[int, list[LogEntry]]:
        """The log's format version and the entries this build wrote (``FileNotFoundError``
        when there is no log after the build)."""
        with self.log_path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            header = _HEADER.match(handle.readline().lstrip(_BOM))
            if header is None:
                raise InputError(f"{self.log_path} is not a ninja build log")
            version = int(header.group(1))
            same = False
            if self._before is not None:
                kept = os.fstat(self._before)
                same = (kept.st_dev, kept.st_ino) == (info.st_dev, info.st_ino)
            if same and info.st_size >= self._before_size:
                handle.seek(self._before_size)
                # A line cut short by a ninja that was killed belongs to no build.
                appended = parse_log(handle.read(), version=version, first_line=2)
                return version, list(appended.entries)
            handle.seek(0)
            current = handle.read()
        new = parse_log(current).entries
        if self._before is None:
            return version, list(new)
        old_bytes = os.pread(self._before, self._before_size, 0)
        try:
            old = set(parse_log(old_bytes).entries)
        except InputError:
            old = set()
        return version, [entry for entry in new if entry not in old]

    def outcome(self, *, succeeded: bool, interrupted: bool) -> list[NinjaTarget]:
        """Every output the build's targets need, and what became of it."""
        had_log = self._before is not None
        try:
            version, executed = self.executed()
        except FileNotFoundError:
            # A build that fails before it writes a log (a bad manifest) leaves none.
            if succeeded or had_log:
                self.problems.append(
                    f"no ninja log at {self.log_path} after the build; its targets are not recorded"
                )
            return []
        except (OSError, InputError) as error:
            self.problems.append(f"cannot read {self.log_path}: {error}")
            return []
        finally:
            self.close()
        targets = [NinjaTarget(e.output, "built", e.start_ms, e.end_ms) for e in executed]
        if interrupted or self.abort():  # what was running or queued is unknown
            return targets
        deadline = time.monotonic() + _TOOL_SECONDS
        try:
            if not self.same_binary and not self._writes_version(version, deadline):
                self.problems.append(
                    f"{self.ninja} is not the ninja that wrote {self.log_path} (log format "
                    f"v{version}); only the executed outputs are recorded"
                )
                return targets
            graph = _parse_graph(self._tool("-t", "graph", *self.targets, deadline=deadline))
            done = {t.output for t in targets}
            status: dict[str, Status] = {}
            if not succeeded:
                found = self._after_failure(graph, deadline)
                if found is None:
                    return targets
                status = found
        except _ToolFailed as error:
            if succeeded:  # after a failed build (an unknown target, a bad manifest) ninja
                self.problems.append(str(error))  # has already said what is wrong
            return targets
        for edge in graph.commands():
            for output in graph.named_outputs(edge):
                if output not in done:
                    targets.append(NinjaTarget(output, status.get(edge, "cached")))
                    done.add(output)
        return targets

    def _after_failure(self, graph: _Graph, deadline: float) -> dict[str, Status] | None:
        """The status of each command still out of date after a failed build; None when
        the dry run cannot be matched to the graph."""
        pending = self._still_to_run(graph, deadline)
        if pending is None:
            return None
        manifest = os.path.normpath(self.manifest)
        if any(manifest in graph.named_outputs(edge) for edge in pending):
            return None  # the manifest is to be regenerated: the dry run stopped there
        waiting = {edge for edge in pending if self._waits(graph, edge, pending)}
        ready = pending - waiting
        tried_all = self.failures_allowed == 0 or len(ready) <= self.failures_allowed
        status: dict[str, Status] = dict.fromkeys(waiting, "skipped")
        status |= dict.fromkeys(ready, "failed" if tried_all else "skipped")
        return status

    @staticmethod
    def _waits(graph: _Graph, edge: str, pending: set[str]) -> bool:
        """Whether ``edge`` needs (through ``phony`` names too) a pending command's output."""
        seen: set[str] = set()
        stack = list(graph.inputs[edge])
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            producer = graph.producer.get(node)
            if producer is None:
                continue
            if producer in pending:
                return True
            if graph.rules[producer] == "phony":
                stack += graph.inputs[producer]
        return False

    def _still_to_run(self, graph: _Graph, deadline: float) -> set[str] | None:
        """The commands (edges) a dry run would run now, or None when its lines cannot all
        be matched to one command each."""
        edge_of = {name: edge for edge in graph.commands() for name in graph.named_outputs(edge)}
        by_command: dict[str, list[str]] = {}
        for entry in json.loads(self._tool("-t", "compdb", deadline=deadline) or "[]"):
            if isinstance(entry, dict) and entry.get("output") in edge_of:
                by_command.setdefault(str(entry.get("command")), []).append(
                    edge_of[entry["output"]]
                )
        dry = self._tool("-n", "-v", *self.targets, deadline=deadline)
        lines: dict[str, int] = {}
        for line in dry.splitlines():
            if match := _STATUS_LINE.match(line):
                lines[match.group(1)] = lines.get(match.group(1), 0) + 1
        pending: set[str] = set()
        unmatched = 0
        for command, count in lines.items():
            edges = by_command.get(command, [])
            if len(edges) > count:
                return None  # some of the commands alike are to run, and which is unknown
            pending.update(edges)
            unmatched += count - len(edges)
        if unmatched:
            # Commands compdb leaves out have no inputs: out of date only when an output
            # is missing. Anything else means the dry run cannot be told apart.
            bare = {
                edge
                for edge in graph.commands()
                if not graph.inputs[edge]
                and edge not in pending
                and any(not (self.directory / o).exists() for o in graph.named_outputs(edge))
            }
            if len(bare) != unmatched:
                return None
            pending |= bare
        return pending

    def _writes_version(self, version: int, deadline: float) -> bool:
        """Whether our ninja writes logs of ``version`` (asking another version would make
        it throw the log away: "build log version is too old; starting over")."""
        text = self._tool("--version", deadline=deadline, in_directory=False).strip()
        found = re.match(r"(\d+)\.(\d+)", text)
        if found is None:
            return False
        release = (int(found.group(1)), int(found.group(2)))
        writes = 5 if release <= (1, 11) else 6 if release == (1, 12) else 7
        return release <= (1, 13) and writes == version

    # The questions asked of ninja: each loads the manifest, none builds or writes anything.

    def _tool(self, *args: str, deadline: float, in_directory: bool = True) -> str:
        where = ["-C", str(self.directory), "-f", self.manifest] if in_directory else []
        command = [self.ninja, *where, *args]
        env = dict(self.environ) | {"NINJA_STATUS": "[%f/%t] ", "CLICOLOR_FORCE": "0"}
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError as error:
            raise _ToolFailed(f"cannot run {self.ninja}: {error.strerror or error}") from None
        with process:
            while True:
                try:
                    out, _ = process.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if self.abort() or time.monotonic() > deadline:
                        process.kill()
                        process.communicate()
                        why = "interrupted" if self.abort() else f"over {_TOOL_SECONDS:.0f} s"
                        raise _ToolFailed(
                            f"`ninja {' '.join(args[:2])}` took {why}; only the executed "
                            f"outputs are recorded"
                        ) from None
        if process.returncode != 0:
            raise _ToolFailed(
                f"`ninja {' '.join(args[:2])}` failed with status {process.returncode}; only "
                f"the executed outputs are recorded"
            )
        return out.decode("utf-8", "backslashreplace")


class _ToolFailed(Exception):
    pass


def _options(args: Sequence[str]) -> tuple[str, str, int | None, int, list[str]] | None:
    """``-C``, ``-f``, ``-j``, ``-k`` and the targets of a ninja command line (getopt rules);
    None when it does not build (a tool, a dry run, help, the version)."""
    directory, manifest, parallelism, failures = ".", "build.ninja", None, 1
    targets: list[str] = []
    index = 0
    with_value = set("Cfjkldtw")
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            targets += args[index:]
            break
        if arg in ("--version", "--help"):
            return None
        if not arg.startswith("-") or arg == "-":
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
            elif letter in ("j", "k"):
                try:
                    number = int(value)
                except ValueError:
                    return None
                if letter == "j":
                    parallelism = max(number, 0)  # ninja -j0: no limit; the peak is used
                else:
                    failures = max(number, 0)
    return directory, manifest, parallelism, failures, targets


def _wrapper_options(args: Sequence[str]) -> tuple[str, str, int | None, int, list[str]] | None:
    """For a command that runs ninja itself: its ``-C DIR`` when it has one."""
    directory = "."
    for index, arg in enumerate(args[:-1]):
        if arg == "-C":
            directory = args[index + 1]
    return directory, "build.ninja", None, 1, []


def _default_parallelism() -> int:
    """What ninja runs at once without ``-j``: 2 on one CPU, 3 on two, else CPUs + 2."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 2 if cpus <= 1 else 3 if cpus == 2 else cpus + 2


def _builddir(manifest: Path) -> str:
    """The manifest's ``builddir``, where ninja keeps its log ("" when unset): the last
    top-level assignment, in the manifest or a file it ``include``s, with ``$var``,
    ``${var}`` and ``$$`` expanded from the top-level variables before it."""
    if not _mentions_builddir(manifest, manifest.parent, depth=0):
        return ""  # the usual case, told apart without parsing a manifest of many megabytes
    scope: dict[str, str] = {}
    _read_bindings(manifest, manifest.parent, scope, depth=0)
    return scope.get("builddir", "")


def _mentions_builddir(path: Path, base: Path, depth: int) -> bool:
    """Whether ``builddir`` appears in the manifest or a file it includes (or may: an
    include named through a variable). This runs before the build starts, so it only
    searches the bytes."""
    if depth > 16:
        return False
    try:
        info = os.stat(path)  # before opening: a FIFO would block, and belongs to ninja
        if not stat.S_ISREG(info.st_mode) or not info.st_size:
            return False
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            if data.find(b"builddir") >= 0:
                return True
            included = []
            at = data.find(b"include ")
            while at >= 0:
                if at == 0 or data[at - 1] in b"\n":
                    end = data.find(b"\n", at)
                    included.append(data[at + 8 : end if end >= 0 else len(data)].strip())
                at = data.find(b"include ", at + 8)
    except (OSError, ValueError):
        return False
    for name in included:
        if b"$" in name:
            return True  # named through a variable: parse to know
        if _mentions_builddir(base / os.fsdecode(name), base, depth + 1):
            return True
    return False


def _read_bindings(path: Path, base: Path, scope: dict[str, str], depth: int) -> None:
    if depth > 16:
        return
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return
    for line in re.sub(r"\$\r?\n[ \t]*", "", text).splitlines():
        if line[:1] in (" ", "\t", "#") or not line:
            continue
        if line.startswith("include "):
            included = _expand(line[len("include ") :].strip(), scope)
            _read_bindings(base / included, base, scope, depth + 1)
            continue
        if match := _BINDING.match(line):
            scope[match.group(1)] = _expand(match.group(2), scope)


def _expand(value: str, scope: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if text in ("$$", "$ ", "$:"):
            return text[1]
        name = match.group(1) or match.group(2)
        return scope.get(name, "") if name else text

    return _VARIABLE.sub(one, value.strip())
