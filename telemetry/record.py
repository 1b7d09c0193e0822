"""Recording a build: run the build command untouched and store it as a session.

The build keeps its standard input, output and error, its exit status is returned as it is,
and signals meant for it reach it. Recording problems (an unwritable store, a bad setting)
are returned as text for one line on stderr; they never change the build's result.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from telemetry.collector import TelemetryCollector
from telemetry.config import TelemetryConfig
from telemetry.errors import ConfigError, TelemetryError
from telemetry.storage import TelemetryStorage

# Forwarded to the build when they are sent to us. SIGINT is not forwarded: Ctrl-C in a
# terminal already reaches the whole foreground process group, the build included, and a
# second SIGINT makes many tools abort their clean shutdown.
_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_SIGNALLED = frozenset({128 + signal.SIGINT, 128 + signal.SIGTERM})


@dataclass(slots=True, frozen=True)
class Recording:
    """What running and recording a build came to."""

    exit_status: int
    session_id: str | None = None
    interrupted: bool = False
    problems: tuple[str, ...] = field(default_factory=tuple)
    error: str | None = None  # the build could not be started at all


def record(
    command: Sequence[str],
    *,
    labels: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Recording:
    """Run ``command`` with the caller's standard streams and record it as a build.

    Recording follows the ``BUILDER_TELEMETRY_*`` variables of ``environ`` (the process
    environment by default); when they are invalid the build still runs, unrecorded.

    >>> record(["make", "-j8"], labels={"config": "release"}).exit_status  # doctest: +SKIP
    0
    """
    problems: list[str] = []
    env = os.environ if environ is None else environ
    collector = _collector(env, problems)
    session = f"rec-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    start = _now_ms()
    # The handlers are in place before the build starts, so no signal meant for it is lost.
    with _forwarding() as child:
        try:
            child.start(command)
        except FileNotFoundError:
            error = f"{command[0]}: command not found"
            return Recording(127, problems=tuple(problems), error=error)
        except PermissionError:
            error = f"{command[0]}: permission denied"
            return Recording(126, problems=tuple(problems), error=error)
        except OSError as oserror:
            error = f"{command[0]}: {oserror.strerror or oserror}"
            return Recording(126, problems=tuple(problems), error=error)
        tool = Path(command[0]).name
        collector.build_started(session, ts=start, tool=tool, labels=build_labels(env, labels))
        status = child.wait()
        received = child.received
    end = _now_ms()
    killed = -status if status < 0 else None
    # A build that handles Ctrl-C or SIGTERM itself usually exits with 128 + the signal.
    interrupted = killed is not None or bool(received) or status in _SIGNALLED

    if interrupted:
        collector.build_interrupted(session, ts=end)
    else:
        reason = None if status == 0 else f"{tool} exited with status {status}"
        collector.build_finished(session, ts=end, success=status == 0, error=reason)
    exit_status = 128 + killed if killed is not None else status
    recorded = session if collector.enabled and not problems else None
    return Recording(exit_status, recorded, interrupted, tuple(problems))


def build_labels(
    environ: Mapping[str, str], labels: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The build's labels: the ``BUILDER_*`` settings it ran with (``BUILDER_PARALLEL=8``, not
    telemetry's own), then the explicit ``labels``, which win.

    >>> build_labels({"BUILDER_PARALLEL": "8", "BUILDER_TELEMETRY_DIR": "t", "HOME": "/h"})
    {'BUILDER_PARALLEL': '8'}
    """
    found = {
        key: value
        for key, value in sorted(environ.items())
        if key.startswith("BUILDER_")
        and not key.startswith(("BUILDER_TELEMETRY_", "BUILDER_DEBUG"))
    }
    return found | dict(labels or {})


def configured_build(folder: Path) -> list[str]:
    """The build command of ``[tool.builder] build`` in ``pyproject.toml``, or of ``build``
    in ``builder.toml``, as a shell command line.

    >>> configured_build(Path("."))  # doctest: +SKIP
    ['/bin/sh', '-c', 'ninja -C out']
    """
    candidates = ((folder / "builder.toml", ()), (folder / "pyproject.toml", ("tool", "builder")))
    for path, keys in candidates:
        try:
            settings = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read {path}: {error}") from None
        for key in keys:
            settings = settings.get(key, {}) if isinstance(settings, dict) else {}
        build = settings.get("build") if isinstance(settings, dict) else None
        if build is None:
            continue
        if isinstance(build, list) and build and all(isinstance(w, str) for w in build):
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


def build_command(configured: list[str], extra: Sequence[str]) -> list[str]:
    """The configured command with ``extra`` arguments appended, quoted for the shell."""
    if not extra:
        return configured
    if configured[:2] == ["/bin/sh", "-c"]:
        return [*configured[:2], f"{configured[2]} {shlex.join(extra)}"]
    return [*configured, *extra]


def _collector(environ: Mapping[str, str], problems: list[str]) -> TelemetryCollector:
    try:
        config = TelemetryConfig.from_env(environ)
    except TelemetryError as error:
        problems.append(f"telemetry is off for this build: {error}")
        return TelemetryCollector(_Nowhere(), enabled=False)
    storage = TelemetryStorage(
        config.dir, max_sessions=config.max_sessions, retention_days=config.retention_days
    )
    return TelemetryCollector(
        storage, enabled=config.enabled, on_warning=problems.append, warn_every_time=True
    )


class _Nowhere:
    def write(self, sessions: object, targets: object) -> None:
        return None


class _Child:
    """The build's process, and the signals we were sent while it ran."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.received: list[int] = []

    def start(self, command: Sequence[str]) -> None:
        self.process = subprocess.Popen(list(command))
        for signum in self.received:  # arrived while it was starting
            if signum != signal.SIGINT:
                self.process.send_signal(signum)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if signum != signal.SIGINT and self.process and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()


@contextmanager
def _forwarding() -> Iterator[_Child]:
    """While the build runs, pass signals meant for it on to it, and note Ctrl-C (which the
    terminal sends to the build itself). Python-level handlers, not SIG_IGN: the build must
    start with the default dispositions, and exec resets handlers but keeps an ignore."""
    child = _Child()
    previous = {sig: signal.signal(sig, child.on_signal) for sig in (*_FORWARDED, signal.SIGINT)}
    try:
        yield child
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
