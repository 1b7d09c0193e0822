"""A recorded ninja build (``builder record -- ninja ...``): what ninja was asked to build,
and afterwards what became of every command the requested targets need.

What ran is read from the lines the build appended to ``.ninja_log``, with the log's reader
(:mod:`telemetry.ingest.ninja`). Commands that failed are never written to it, so what a
failed build did is worked out by asking ninja afterwards which outputs are still out of
date (see :class:`NinjaRun`).
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from telemetry.errors import InputError

if TYPE_CHECKING:
    from telemetry.ingest.ninja import LogEntry

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

Status = Literal["built", "cached", "failed", "skipped"]


@dataclass(slots=True, frozen=True)
class NinjaTarget:
    """A command of a recorded build, named by its first output (relative to the build
    directory when ninja named it by an absolute path); times in milliseconds since ninja
    started (executed commands only)."""

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

    After the build, :meth:`outcome` gives every command the requested targets need, as one
    target named by its first output (a command with several outputs wrote a log line for
    each, and ``ninja -t graph`` draws them all):

    - ``built``: the lines this build added to ``.ninja_log`` (or, when ninja rewrote the
      log to compact it, the lines that were not in it before);
    - when the build succeeded, every other command in ``ninja -t graph`` of the requested
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

    def outcome(self, *, succeeded: bool, interrupted: bool) -> list[NinjaTarget]:
        """Every command the build's targets need, and what became of it."""
        from telemetry.ingest.ninja import build_directories, log_commands, target_name

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
        commands = log_commands(executed)
        directories = self._directories(build_directories(commands))
        targets = [
            NinjaTarget(target_name(c.outputs[0], directories), "built", c.start_ms, c.end_ms)
            for c in commands
        ]
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
            done = {output for command in commands for output in command.outputs}
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
            # Outputs nothing needs are drawn without a name: the first named one names it.
            outputs = graph.named_outputs(edge)
            if outputs and done.isdisjoint(outputs):
                name = target_name(outputs[0], directories)
                targets.append(NinjaTarget(name, status.get(edge, "cached")))
        return targets

    def _directories(self, inferred: Sequence[str]) -> list[str]:
        """Where ninja ran (as given and with links resolved), then where the log says its
        commands ran (a wrapper's ninja may have run elsewhere), each ending in a separator.
        Ninja's relative paths are relative to where it ran, so that comes first."""
        given = {os.path.abspath(self.directory), os.path.realpath(self.directory)}
        known = sorted({path.rstrip(os.sep) + os.sep for path in given}, key=len, reverse=True)
        return known + [path for path in inferred if path not in known]

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
