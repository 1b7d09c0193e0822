"""Recording a build: run the build command untouched and store it as a session.

The build keeps its standard input, output and error, its exit status is returned as it is,
and signals meant for it reach it. Recording problems (an unwritable store, a bad setting)
are returned as text for one line on stderr; they never change the build's result.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Literal, NamedTuple

from telemetry.config import TelemetryConfig
from telemetry.errors import ConfigError, EventError, TelemetryError, write_failure
from telemetry.pending import INTERRUPTED, fold, pending_files, write_pending

if TYPE_CHECKING:
    from telemetry.ninja import NinjaRun, NinjaTarget
    from telemetry.ninja_output import NinjaOutput
    from telemetry.repository import Revision

Source = Literal["auto", "ninja", "none"]

# SIGTERM is usually sent to one process, so it is passed on to the build. A terminal sends
# Ctrl-C, Ctrl-\ and a hangup to the whole foreground process group: the build has them
# already, and a second copy makes many tools abort their clean shutdown or dump twice.
_FORWARDED = (signal.SIGTERM,)
_NOTED = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
# A build ended by one of these was interrupted; by another (SIGSEGV, SIGABRT) it crashed.
_INTERRUPTING = frozenset(
    {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGKILL}
)
_MAX_TOOL = 200
# Recorded builds left pending before a recording folds them into the store itself: about
# one build in this many pays for loading pyarrow, when nothing reads the store in between.
FOLD_AT = 64


class SessionTaken(ConfigError):
    """The session id given for a build is already stored: every build needs its own."""


class Recording(NamedTuple):
    """What running and recording a build came to (a named tuple: see
    :class:`~telemetry.config.TelemetryConfig`)."""

    exit_status: int
    session_id: str | None = None
    interrupted: bool = False
    problems: tuple[str, ...] = ()
    error: str | None = None  # the build could not be started at all
    killed_by: int | None = None  # the signal that ended the build, if one did


def record(
    command: Sequence[str],
    *,
    labels: Mapping[str, str] | None = None,
    tool: str | None = None,
    environ: Mapping[str, str] | None = None,
    source: Source = "auto",
    session: str | None = None,
) -> Recording:
    """Run ``command`` with the caller's standard streams and file descriptors, and record
    it as a build; ``tool`` names it (the command's name by default), and ``session`` is its
    id (``rec-<time>-<random>`` by default). An id given must be unique per build, e.g. a CI
    job's run id and attempt: one already stored raises :class:`SessionTaken` before the
    build runs (looking it up loads the reader, which only a build given an id pays for).

    With ``source="auto"`` a ``ninja`` command (``"ninja"``: any command that runs ninja)
    also records its targets, from what it appended to ``.ninja_log`` (see
    :class:`telemetry.ninja.NinjaRun`); ``"none"`` records the session alone.

    Recording follows the ``BUILDER_TELEMETRY_*`` variables of ``environ`` (the process
    environment by default); when they are invalid the build still runs, unrecorded.
    Nothing about telemetry raises: problems come back in ``Recording.problems``.

    >>> record(["make", "-j8"], labels={"config": "release"}).exit_status  # doctest: +SKIP
    0
    """
    if not command:
        raise ConfigError("no build command given: builder record -- COMMAND [ARGS]...")
    if session is not None:
        from telemetry.events import session_problem  # not paid by a build without --session

        problem = session_problem(session)
        if problem is not None:
            raise ConfigError(f"--session: {problem}")
    problems: list[str] = []
    env = os.environ if environ is None else environ
    config = _config(env, problems)
    recording = config is not None and config.enabled
    if recording and session is not None:
        assert config is not None
        _check_unused(config, session, problems)
    if session is None:
        session = f"rec-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.urandom(4).hex()}"
    ninja = _ninja(command, env, source, config, problems)
    name = _text(tool or Path(command[0]).name)[:_MAX_TOOL]
    revision = _revision() if recording else None
    with _forwarding(ninja.output if ninja is not None else None) as child:
        # The build's times are the child's own: nothing of ours runs between these two
        # readings of the clock but starting it and waiting for it.
        start = _now_ms()
        try:
            child.start(command)
        except (OSError, ValueError) as error:  # ValueError: a NUL byte in the command
            if ninja is not None:
                ninja.close()
            return _not_started(command[0], error, problems)
        status = child.wait()
        end = _now_ms()
        killed = -status if status < 0 else None
        # A build that handles a signal itself usually exits with 128 + its number.
        ended_by = killed if killed is not None else (status - 128 if status > 128 else None)
        # A build that catches the signal may exit with a status of its own (ninja 1.11: 2).
        interrupted = ended_by in _INTERRUPTING or (status != 0 and child.interrupted())
        started: dict[str, object] = {
            "event": "build_started",
            "session": session,
            "ts": start,
            "tool": name,
            "labels": _storable(build_labels(env, labels), problems),
        }
        if ninja is not None and ninja.parallelism:
            started["parallelism"] = ninja.parallelism
        if config is not None and config.record_host:
            started["host"] = hashed_host()
        if revision is not None:
            started |= {k: v for k, v in revision._asdict().items() if v is not None}
        events = [started]
        if ninja is not None:
            ninja.abort = child.interrupted  # a signal now ends what is asked of ninja
            try:
                outcome = ninja.outcome(
                    succeeded=status == 0, interrupted=interrupted, started_ms=start
                )
            except Exception as error:  # a log or a tool answer we did not foresee
                problems.append(f"ninja targets not recorded: {error}")
                outcome = []
            problems += ninja.problems
            events += _target_events(session, outcome, start, end, env)
        if interrupted:
            events.append({"event": INTERRUPTED, "session": session, "ts": end})
        else:
            finished: dict[str, object] = {
                "event": "build_finished",
                "session": session,
                "ts": end,
                "success": status == 0,
            }
            if killed is not None:
                finished["error"] = f"{name} was killed by {signal.Signals(killed).name}"
            elif status != 0:
                finished["error"] = f"{name} exited with status {status}"
            events.append(finished)
    # Stored once the signals are the caller's again: a Ctrl-C now ends builder at once.
    stored = recording and _store(config, session, events, problems)  # type: ignore[arg-type]
    exit_status = 128 + killed if killed is not None else status
    recorded = session if stored and not problems else None
    return Recording(exit_status, recorded, interrupted, tuple(problems), killed_by=killed)


def _check_unused(config: TelemetryConfig, session: str, problems: list[str]) -> None:
    """Raise :class:`SessionTaken` when a build is stored (or waiting to be) under
    ``session``; a store that cannot be read is a recording problem, not the build's."""
    if not config.dir.is_dir():
        return
    from telemetry.storage import TelemetryStorage

    try:
        taken = session in TelemetryStorage.from_config(config).session_ids()
    except (TelemetryError, OSError) as error:
        problems.append(f"could not check that the session id {session!r} is new: {error}")
        return
    if taken:
        raise SessionTaken(
            f"a build {session!r} is already stored in {config.dir}; give each build its "
            "own id (a CI job's run id and its attempt, for one)"
        )


def _store(
    config: TelemetryConfig, session: str, events: list[dict[str, object]], problems: list[str]
) -> bool:
    """Write the build as a pending file of the store (see :mod:`telemetry.pending`); when
    many are pending (nobody has read the store for a while), fold them in now, so that
    retention keeps applying."""
    try:
        write_pending(config.dir, events)
    except OSError as error:
        why = write_failure(error)
        problems.append(
            f"telemetry could not store build {session!r}: could not write {error.filename}: {why}"
        )
        return False
    try:
        waiting = len(pending_files(config.dir))
    except OSError:
        waiting = 0
    if waiting >= FOLD_AT:
        import warnings

        from telemetry.storage import TelemetryStorage

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                # Not waiting for a reader that folds them right now.
                fold(TelemetryStorage.from_config(config), wait=False)
            except Exception as error:  # whatever it is, the build's result stays its own
                problems.append(f"recorded builds not folded into the store: {error}")
        problems += [str(warning.message) for warning in caught]
    return True


def _ninja(
    command: Sequence[str],
    environ: Mapping[str, str],
    source: Source,
    config: TelemetryConfig | None,
    problems: list[str],
) -> NinjaRun | None:
    """The ninja build ``command`` runs, when its targets are to be recorded, with its
    standard output set up to be read as it passes (anything else keeps ours as it is)."""
    if config is None or not config.enabled or source == "none":
        return None
    if source == "auto" and not any("ninja" in word for word in command[:3]):
        return None  # not ninja: its reader is not even loaded
    try:
        from telemetry.ninja import NinjaRun

        run = NinjaRun.prepare(command, environ=environ, source=source)
        if run is not None:
            run.watch_output()
        return run
    except Exception as error:  # never in the way of the build
        problems.append(f"ninja targets not recorded: {error}")
        return None


def _target_events(
    session: str,
    targets: Sequence[NinjaTarget],
    start: int,
    end: int,
    environ: Mapping[str, str],
) -> list[dict[str, object]]:
    """Ninja's outputs as the build's target events; ninja's times count from its own
    start, a moment after ours, so they are placed from ours and kept within the build. An
    output named by an absolute path is stored without the home directory or user name in
    it; a failed command keeps what it printed first as its error. A command that ran
    names its deps in its start, when ninja's graph gave them."""
    events: list[dict[str, object]] = []
    for target in targets:
        name = _without_home(_text(target.output), environ)
        if target.start_ms is not None and target.end_ms is not None:
            began = min(start + target.start_ms, end)
            finished = min(max(start + target.end_ms, began), end)
            events.append(_target("target_started", session, name, began))
            if target.deps is not None:
                events[-1]["deps"] = [_without_home(_text(d), environ) for d in target.deps]
            events.append(_target("target_finished", session, name, finished, target.status))
        else:
            events.append(_target("target_finished", session, name, end, target.status))
        if target.error:
            events[-1]["error"] = target.error
    return events


def _target(
    event: str, session: str, name: str, ts: int, status: str | None = None
) -> dict[str, object]:
    found: dict[str, object] = {"event": event, "session": session, "ts": ts, "target": name}
    if status is not None:
        found["status"] = status
    return found


def _revision() -> Revision | None:
    """The git commit and branch of the work tree the build runs in (never in its way)."""
    from telemetry.repository import revision

    try:
        return revision(Path.cwd())
    except (OSError, ValueError):
        return None


def hashed_host() -> str | None:
    """The host name as stored when ``BUILDER_TELEMETRY_HOST`` opts in: the first 16 hex
    digits of its SHA-256, enough to tell a team's machines apart without naming them."""
    import hashlib
    import socket

    try:
        name = socket.gethostname()
    except OSError:
        return None
    return "sha256:" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def build_labels(
    environ: Mapping[str, str], labels: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The build's labels: the ``BUILDER_*`` settings it ran with (``BUILDER_PARALLEL=8``, not
    telemetry's own), then the explicit ``labels``, which win.

    >>> build_labels({"BUILDER_PARALLEL": "8", "BUILDER_TELEMETRY_DIR": "t", "HOME": "/h"})
    {'BUILDER_PARALLEL': '8'}
    """
    found = {
        key: _private(value, environ)
        for key, value in sorted(environ.items())
        if key.startswith("BUILDER_")
        and not key.startswith(("BUILDER_TELEMETRY_", "BUILDER_DEBUG"))
    }
    return found | dict(labels or {})


def _private(value: str, environ: Mapping[str, str]) -> str:
    """A setting's value without the home directory or user name it may hold
    (``BUILDER_CACHE=/home/ana/c`` is stored as ``~/c``)."""
    home = environ.get("HOME", "").rstrip("/")
    if len(home) > 1:
        value = value.replace(home, "~")
    for name in {environ.get("USER", ""), environ.get("LOGNAME", "")}:
        if len(name) > 1:
            value = value.replace(name, "<user>")
    return value


def _without_home(path: str, environ: Mapping[str, str]) -> str:
    """A path under the home directory as ``~/...`` (``/home/ana/src/a.o`` is ``~/src/a.o``).

    >>> _without_home("/home/ana/src/a.o", {"HOME": "/home/ana/"}), _without_home("a.o", {})
    ('~/src/a.o', 'a.o')
    """
    home = environ.get("HOME", "").rstrip("/")
    if len(home) > 1 and (path == home or path.startswith(home + "/")):
        return "~" + path[len(home) :]
    return path


def configured_build(folder: Path) -> list[str]:
    """The build command of ``build`` in ``builder.toml``, or else of ``[tool.builder] build``
    in ``pyproject.toml``: a string runs through ``/bin/sh -c``, a list of words as it is.

    >>> configured_build(Path("."))  # doctest: +SKIP
    ['/bin/sh', '-c', 'ninja -C out']
    """
    import tomllib  # only `build` reads a settings file

    candidates = ((folder / "builder.toml", ()), (folder / "pyproject.toml", ("tool", "builder")))
    for path, keys in candidates:
        try:
            settings: object = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read {path}: {error}") from None
        for key in keys:
            settings = settings.get(key, {}) if isinstance(settings, dict) else {}
        build = settings.get("build") if isinstance(settings, dict) else None
        if build is None:
            if not keys:  # builder.toml exists for this alone
                raise ConfigError(f'{path} has no build command: add build = "..."')
            continue
        if isinstance(build, list) and build and all(isinstance(w, str) and w for w in build):
            return list(build)
        if isinstance(build, str) and build.strip():
            return ["/bin/sh", "-c", build]
        raise ConfigError(
            f"build in {path} must be a command line or a list of words, got {build!r}"
        )
    raise ConfigError(
        f'no build command configured in {folder}: add `[tool.builder] build = "..."` to '
        f'pyproject.toml or `build = "..."` to builder.toml'
    )


def build_command(configured: list[str], extra: Sequence[str]) -> tuple[list[str], str]:
    """The configured command with ``extra`` arguments appended (quoted for the shell, at
    the end of the command line), and the build tool's name: the first word."""
    if configured[:2] == ["/bin/sh", "-c"]:
        line = f"{configured[2]} {shlex.join(extra)}" if extra else configured[2]
        try:
            first = shlex.split(configured[2])[0]
        except (ValueError, IndexError):
            first = "sh"
        return [*configured[:2], line], Path(first).name
    return [*configured, *extra], Path(configured[0]).name


def _config(environ: Mapping[str, str], problems: list[str]) -> TelemetryConfig | None:
    try:
        return TelemetryConfig.from_env(environ)
    except TelemetryError as error:
        problems.append(f"telemetry is off for this build: {error}")
        return None


def _not_started(program: str, error: OSError | ValueError, problems: list[str]) -> Recording:
    """What a shell says and returns when it cannot start a command."""
    if isinstance(error, ValueError):
        return Recording(126, problems=tuple(problems), error=f"cannot run {program!r}: {error}")
    if isinstance(error, FileNotFoundError):
        return Recording(127, problems=tuple(problems), error=f"{program}: command not found")
    reason = "permission denied" if isinstance(error, PermissionError) else error.strerror
    return Recording(126, problems=tuple(problems), error=f"{program}: {reason or error}")


def _storable(labels: Mapping[str, str], problems: list[str]) -> dict[str, str]:
    """The labels the protocol accepts; each one it refuses is named and left out."""
    kept: dict[str, str] = {}
    if not labels:
        return kept  # most builds have none: the protocol's module need not load
    from telemetry.events import parse_labels

    for key, value in labels.items():
        try:
            kept |= parse_labels({_text(key): _text(value)})
        except EventError as error:
            problems.append(f"label {_text(key)[:40]!r} not recorded: {error}")
    return kept


def _text(value: str) -> str:
    """Text as stored: bytes that are not UTF-8 (in a file or variable name) escaped."""
    return os.fsencode(value).decode("utf-8", "backslashreplace")


class _Child:
    """The build's process, and the signals we were sent while it ran. With ``output``, the
    build's stdout is that pipe or terminal, read as it passes on to ours; otherwise the
    build has our stdout itself."""

    def __init__(self, output: NinjaOutput | None = None) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.received: list[int] = []
        self.output = output

    def start(self, command: Sequence[str]) -> None:
        # close_fds=False: the build keeps every descriptor it was given (a make jobserver,
        # a log on fd 3); ours are close-on-exec anyway. It stays in our process group, so
        # that a terminal's Ctrl-C reaches it as it would without us.
        stdout = self.output.child_fd if self.output is not None else None
        try:
            self.process = subprocess.Popen(list(command), close_fds=False, stdout=stdout)
        except OSError as error:
            if error.errno != errno.ENOEXEC:
                raise
            # A script without #!: run it with sh, as a shell does.
            self.process = subprocess.Popen(["/bin/sh", *command], close_fds=False, stdout=stdout)
        if self.output is not None:
            self.output.started()
        for signum in self.received:  # arrived while it was starting
            if signum in _FORWARDED:
                self.process.send_signal(signum)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGWINCH:
            if self.output is not None:
                self.output.resize()
            return
        self.received.append(signum)
        if signum in _FORWARDED and self.process and self.process.poll() is None:
            self.process.send_signal(signum)

    def interrupted(self) -> bool:
        """Whether a signal that stops a build has reached us."""
        return any(signum in _INTERRUPTING for signum in self.received)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()


@contextmanager
def _forwarding(output: NinjaOutput | None = None) -> Iterator[_Child]:
    """Until the build is recorded, pass SIGTERM on to it and note the signals a terminal
    sends to it directly; when its stdout is a terminal of ours (``output``), give that the
    size of our terminal whenever it changes. A signal the caller ignores stays ignored
    (``nohup``, ``&``), so the build inherits it as it would; otherwise a Python handler is
    used, never SIG_IGN, which exec would hand on to the build."""
    child = _Child(output)
    previous = {}
    resized = (signal.SIGWINCH,) if output is not None and output.terminal else ()
    for sig in (*_FORWARDED, *_NOTED, *resized):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, child.on_signal)
    try:
        yield child
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
