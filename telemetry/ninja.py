"""A recorded ninja build (``builder record -- ninja ...``): what ninja was asked to build,
and afterwards what became of every command the requested targets need.

What ran is read from the lines the build appended to ``.ninja_log``, with the log's reader
(:mod:`telemetry.ingest.ninja`). Commands that failed are never written to it: ninja reports
them on its standard output, which is read as it passes (:mod:`telemetry.ninja_output`); what
else a failed build left undone is worked out by asking ninja afterwards which outputs are
still out of date (see :class:`NinjaRun`).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
import shlex
import shutil
import stat
import subprocess
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from telemetry.errors import InputError

if TYPE_CHECKING:
    from telemetry.events import Status
    from telemetry.ingest.ninja import LogCommand, LogEntry
    from telemetry.ninja_output import Failure, NinjaOutput
    from telemetry.record import Source

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
_STATUS_LINE = re.compile(r"^\[\d+/\d+\] (.*)$")
_SHELL_SYNTAX = re.compile(r"[;&|<>()`$\n]")


@dataclass(slots=True, frozen=True)
class NinjaTarget:
    """A command of a recorded build, named by its first output (relative to the build
    directory when ninja named it by an absolute path); times in milliseconds since ninja
    started (executed commands only); ``error``: what a failed command printed first;
    ``deps``: the build's targets whose outputs it takes as inputs, as ``ninja -t graph``
    draws them (None when ninja was not asked)."""

    output: str
    status: Status
    start_ms: int | None = None
    end_ms: int | None = None
    error: str | None = None
    deps: tuple[str, ...] | None = None


@dataclass(slots=True)
class _Graph:
    """What ``ninja -t graph`` says of the requested targets: every file they need, and for
    every command (edge) its rule, inputs and outputs. Files are named by ninja's ids."""

    names: dict[str, str] = field(default_factory=dict)  # id -> path
    rules: dict[str, str] = field(default_factory=dict)  # edge -> rule
    inputs: dict[str, list[str]] = field(default_factory=dict)  # edge -> input ids
    outputs: dict[str, list[str]] = field(default_factory=dict)  # edge -> output ids
    producer: dict[str, str] = field(default_factory=dict)  # output id -> edge
    behind: dict[str, tuple[str, ...]] = field(default_factory=dict)  # see _made_by

    def add_edge(self, edge: str, rule: str) -> None:
        self.rules[edge] = rule
        self.inputs.setdefault(edge, [])
        self.outputs.setdefault(edge, [])

    def commands(self) -> list[str]:
        """The edges that run a command (not ``phony``)."""
        return [edge for edge, rule in self.rules.items() if rule != "phony"]

    def named_outputs(self, edge: str) -> list[str]:
        return [self.names[o] for o in self.outputs[edge] if o in self.names]

    def needs(self, edge: str, names: Mapping[str, str]) -> tuple[str, ...]:
        """The ``names`` (by edge) of the commands whose outputs ``edge`` takes as inputs,
        order-only ones and those behind ``phony`` names too, in the order the graph draws
        them: what ninja waited for before it ran the command."""
        found: dict[str, None] = {}  # in order, each once
        behind = self.behind
        for node in self.inputs[edge]:
            made = behind.get(node)
            for producer in self._made_by(node) if made is None else made:
                name = names.get(producer)
                if name is not None:
                    found[name] = None
        return tuple(found)

    def _made_by(self, node: str) -> tuple[str, ...]:
        """The commands (not ``phony``) that make ``node``: its own, or those behind the
        phony name it is; remembered, as many commands share a phony name."""
        known = self.behind.get(node)
        if known is not None:
            return known
        self.behind[node] = ()  # a phony name that names itself again, through others
        producer = self.producer.get(node)
        if producer is None:
            made: tuple[str, ...] = ()  # a source file
        elif self.rules[producer] != "phony":
            made = (producer,)
        else:
            made = tuple(dict.fromkeys(p for i in self.inputs[producer] for p in self._made_by(i)))
        self.behind[node] = made
        return made


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

    After the build, :meth:`outcome` gives every command the requested targets need, as one
    target named by its first output (a command with several outputs wrote a log line for
    each, and ``ninja -t graph`` draws them all):

    - ``built``: the lines this build added to ``.ninja_log`` (or, when ninja rewrote the
      log to compact it, the lines that were not in it before);
    - when the build succeeded, every other command in ``ninja -t graph`` of the requested
      targets was up to date: ``cached``;
    - ``failed``: the commands ninja reported with ``FAILED:`` on its output, read as it
      passed (:meth:`watch_output`), each with the first lines it printed and the interval
      it ran over (:class:`_Failed`);
    - when it failed, a dry run (``ninja -n -v``, its commands named through
      ``-t compdb``) tells which outputs are still out of date: the other such commands
      were never attempted, ``skipped``; the rest were up to date, ``cached``. When the dry
      run cannot be matched to the graph (two commands alike, a failed regeneration of the
      manifest), only the executed and the failed commands are recorded.

    When ninja's output could not be read, the ready commands among those still out of
    date (all their inputs up to date) are taken for the failed ones when no more of them
    are ready than ``-k`` allows (or ``-k 0``): ninja tried every one. Otherwise which
    failed is not known, and they are ``skipped``.
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
    output: NinjaOutput | None = None  # ninja's stdout, read as it passes on to ours

    @classmethod
    def prepare(
        cls,
        command: Sequence[str],
        *,
        environ: Mapping[str, str],
        source: Source = "auto",
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

    def watch_output(self) -> None:
        """Read ninja's standard output for the commands that fail, passing it on to ours
        unchanged (:class:`telemetry.ninja_output.NinjaOutput`). When no pipe or terminal
        can be had for it, the build runs with our stdout as it is, and which commands
        failed is worked out afterwards as well as the log and ninja's tools allow."""
        try:
            from telemetry.ninja_output import NinjaOutput

            self.output = NinjaOutput.open(self.environ)
        except (OSError, ImportError):  # out of descriptors, no pseudo-terminals here
            self.output = None

    def close(self) -> None:
        """The build did not start."""
        if self.output is not None:
            self.output.close()
            self.output = None
        self._close_log()

    def _close_log(self) -> None:
        if self._before is not None:
            with contextlib.suppress(OSError):
                os.close(self._before)
            self._before = None

    def executed(self) -> tuple[int, list[LogEntry]]:
        """The log's format version and the entries this build wrote (``FileNotFoundError``
        when there is no log after the build)."""
        # Loaded only now, after the build: the ingest package brings pyarrow with it, and
        # the build is not kept waiting for that.
        from telemetry.ingest.ninja import header_version, parse_log

        with self.log_path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            version = header_version(handle.readline())
            if version is None:
                raise InputError(f"{self.log_path} is not a ninja build log")
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

    def outcome(
        self, *, succeeded: bool, interrupted: bool, started_ms: int | None = None
    ) -> list[NinjaTarget]:
        """Every command the build's targets need, and what became of it; ``started_ms``:
        when the build was started (epoch milliseconds), which ninja's reports of failed
        commands are timed from."""
        from telemetry.ingest.ninja import build_directories, log_commands, target_name

        reported = self.output.finish() if self.output is not None else None
        self.output = None
        had_log = self._before is not None
        version: int | None = None
        try:
            version, executed = self.executed()
        except FileNotFoundError:
            # A build that fails before it writes a log (a bad manifest) leaves none, and so
            # does one none of whose commands succeeded.
            if not reported and (succeeded or had_log):
                self.problems.append(
                    f"no ninja log at {self.log_path} after the build; its targets are not recorded"
                )
            if not reported:
                return []
            executed = []
        except (OSError, InputError) as error:
            self.problems.append(f"cannot read {self.log_path}: {error}")
            return []
        finally:
            self._close_log()
        commands = log_commands(executed)
        directories = self._directories(build_directories(commands))
        targets = [
            NinjaTarget(target_name(c.outputs[0], directories), "built", c.start_ms, c.end_ms)
            for c in commands
        ]
        failures = _Failed(
            reported,
            started_ms=started_ms,
            commands=commands,
            directories=directories,
            parallelism=self.parallelism,
            manifest=os.path.normpath(self.manifest),
        )
        if interrupted or self.abort():  # what was running or queued is unknown
            return targets + failures.targets(None)
        deadline = time.monotonic() + _TOOL_SECONDS
        try:
            # Without a log (none of its commands succeeded) there is none to throw away.
            if (
                not self.same_binary
                and version is not None
                and not self._writes_version(version, deadline)
            ):
                self.problems.append(
                    f"{self.ninja} is not the ninja that wrote {self.log_path} (log format "
                    f"v{version}); only the commands that ran are recorded"
                )
                return targets + failures.targets(None)
            graph = _parse_graph(self._tool("-t", "graph", *self.targets, deadline=deadline))
            failed = failures.targets(graph)
            status: dict[str, Status] = {}
            if not succeeded:
                found = self._after_failure(graph, deadline, failures.edges)
                if found is None:
                    return _with_deps(targets + failed, graph, directories)
                status = found
        except _ToolFailed as error:
            if succeeded:  # after a failed build (an unknown target, a bad manifest) ninja
                self.problems.append(str(error))  # has already said what is wrong
            return targets + failures.targets(None)
        done = {output for command in commands for output in command.outputs}
        matched = failures.edges or set()
        targets += failed
        for edge in graph.commands():
            # Outputs nothing needs are drawn without a name: the first named one names it.
            outputs = graph.named_outputs(edge)
            if outputs and done.isdisjoint(outputs) and edge not in matched:
                name = target_name(outputs[0], directories)
                targets.append(NinjaTarget(name, status.get(edge, "cached")))
        return _with_deps(targets, graph, directories)

    def _directories(self, inferred: Sequence[str]) -> list[str]:
        """Where ninja ran (as given and with links resolved), then where the log says its
        commands ran (a wrapper's ninja may have run elsewhere), each ending in a separator.
        Ninja's relative paths are relative to where it ran, so that comes first."""
        given = {os.path.abspath(self.directory), os.path.realpath(self.directory)}
        known = sorted({path.rstrip(os.sep) + os.sep for path in given}, key=len, reverse=True)
        return known + [path for path in inferred if path not in known]

    def _after_failure(
        self, graph: _Graph, deadline: float, failed: set[str] | None
    ) -> dict[str, Status] | None:
        """The status of each command still out of date after a failed build, but those
        ninja reported as ``failed`` (None: its output was not read); None when the dry run
        cannot be matched to the graph."""
        pending = self._still_to_run(graph, deadline)
        if pending is None:
            return None
        manifest = os.path.normpath(self.manifest)
        if any(manifest in graph.named_outputs(edge) for edge in pending):
            return None  # the manifest is to be regenerated: the dry run stopped there
        if failed is not None:
            return dict.fromkeys(pending - failed, "skipped")
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
                            f"`ninja {' '.join(args[:2])}` took {why}; only the commands "
                            f"that ran are recorded"
                        ) from None
        if process.returncode != 0:
            raise _ToolFailed(
                f"`ninja {' '.join(args[:2])}` failed with status {process.returncode}; only "
                f"the commands that ran are recorded"
            )
        return out.decode("utf-8", "backslashreplace")


class _ToolFailed(Exception):
    pass


def _with_deps(
    targets: list[NinjaTarget], graph: _Graph, directories: Sequence[str]
) -> list[NinjaTarget]:
    """``targets`` with their deps from ``graph``: for each one's command, the other
    targets of the build whose outputs it takes as inputs. A target whose command the graph
    does not draw (not needed by the targets asked for) keeps unknown deps."""
    from telemetry.ingest.ninja import target_name

    edge_of: dict[str, str] = {}
    for edge in graph.commands():
        for output in graph.named_outputs(edge):
            edge_of.setdefault(target_name(output, directories), edge)
    edges = {t.output: edge_of[t.output] for t in targets if t.output in edge_of}
    names = {edge: name for name, edge in edges.items()}
    return [
        NinjaTarget(t.output, t.status, t.start_ms, t.end_ms, t.error, graph.needs(made, names))
        if (made := edges.get(t.output)) is not None
        else t
        for t in targets
    ]


class _Failed:
    """The commands ninja reported as failed, as targets named by their first output.

    A failed command's end is when ninja reported it. Its start is when ninja showed it
    starting, on a terminal; otherwise, the earliest moment ninja could have started it:
    once the last of its inputs this build made was written (``ninja -t graph``, the log's
    end times) and one of the ``-j`` job slots was free (the log's commands and the failed
    ones before it hold the others). Ninja starts a ready command as soon as a slot frees,
    so that is when it started unless other ready commands took the slots first, or a pool
    held it back.
    """

    def __init__(
        self,
        reported: Sequence[Failure] | None,
        *,
        started_ms: int | None,
        commands: Sequence[LogCommand],
        directories: Sequence[str],
        parallelism: int | None,
        manifest: str,
    ) -> None:
        self.reported = sorted(reported or (), key=lambda failure: failure.end_ms)
        # The commands matched to the graph; None when ninja's output was not read.
        self.edges: set[str] | None = set() if reported is not None else None
        self._started_ms = started_ms
        self._commands = commands
        self._directories = directories
        self._slots = parallelism
        self._manifest = manifest  # as ninja names it when it regenerates it

    def targets(self, graph: _Graph | None) -> list[NinjaTarget]:
        """The failed targets, each matched to its command in ``graph`` when there is one."""
        from telemetry.ingest.ninja import target_name

        edge_of = (
            {name: edge for edge in graph.commands() for name in graph.named_outputs(edge)}
            if graph is not None
            else {}
        )
        made = {output: c.end_ms for c in self._commands for output in c.outputs}
        starts = sorted(c.start_ms for c in self._commands)
        ends = sorted(c.end_ms for c in self._commands)
        found: dict[str, NinjaTarget] = {}
        for failure in self.reported:
            edge, first = _reported_command(failure.outputs, edge_of, graph)
            if first in made:
                continue  # run again and succeeded (a wrapper that tries twice)
            if graph is not None and edge is None and first != self._manifest:
                # Ninja runs nothing but what the targets need, or the manifest's own
                # regeneration: this line was a command's output, not ninja's report.
                continue
            start = end = None
            if self._started_ms is not None:
                end = max(failure.end_ms - self._started_ms, 0)
                if failure.start_ms is not None:
                    start = min(max(failure.start_ms - self._started_ms, 0), end)
                else:
                    ready = self._ready(edge, graph, made)
                    start = self._first_free_slot(min(ready, end), end, starts, ends)
                insort(starts, start)
                insort(ends, end)
            name = target_name(first, self._directories)
            found[name] = NinjaTarget(name, "failed", start, end, failure.error)
            if edge is not None and self.edges is not None:
                self.edges.add(edge)
        return list(found.values())

    @staticmethod
    def _ready(edge: str | None, graph: _Graph | None, made: Mapping[str, int]) -> int:
        """When the last of the command's inputs (through ``phony`` names too) that this
        build made was written; 0 when it made none."""
        if edge is None or graph is None:
            return 0
        ready, seen = 0, set()
        stack = list(graph.inputs[edge])
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            ready = max(ready, made.get(graph.names.get(node, ""), 0))
            producer = graph.producer.get(node)
            if producer is not None and graph.rules[producer] == "phony":
                stack += graph.inputs[producer]
        return ready

    def _first_free_slot(self, ready: int, end: int, starts: list[int], ends: list[int]) -> int:
        """The first moment from ``ready`` on at which fewer commands ran than ninja had
        job slots: ``ready`` itself, or when one of them ended."""
        if not self._slots:
            return ready  # -j 0: no limit
        for moment in [ready, *ends[bisect_right(ends, ready) : bisect_left(ends, end)]]:
            if bisect_right(starts, moment) - bisect_right(ends, moment) < self._slots:
                return moment
        return ready


def _reported_command(
    outputs: str, edge_of: Mapping[str, str], graph: _Graph | None
) -> tuple[str | None, str]:
    """The command (edge) of a ``FAILED:`` line's outputs, and its first output as the graph
    names it. Ninja separates outputs by spaces, which paths may hold too, so the graph's
    names are looked for among the line's space-separated runs of words."""
    cuts = [at for at, char in enumerate(outputs) if char == " "] + [len(outputs)]
    if graph is not None and edge_of:
        begins = [0] + [at + 1 for at in cuts[:-1]]
        for begin in begins if len(cuts) <= 64 else begins[:1]:
            for stop in cuts:
                edge = edge_of.get(outputs[begin:stop]) if stop > begin else None
                if edge is not None:
                    return edge, graph.named_outputs(edge)[0]
    return None, outputs[: cuts[0]]


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
