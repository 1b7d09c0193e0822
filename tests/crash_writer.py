"""Kill writers in the middle of their writes, many times over (run as a program).

    python -m tests.crash_writer STORE KILLS SEED

Forks writers that store builds one after another, each build reported on a pipe once its
write returned, and SIGKILLs each at one step of its work. A writer stops at every step (a
build begins; a file is opened; its rows are written, its footer not yet; an fsync; a rename;
retention renaming a day away) and waits for a word on a pipe before going on, so the kill lands
exactly at the step meant, however loaded the machine. The kills sweep the first SPAN steps
in turn (in an order the seed shuffles): the whole write of the first builds, both files,
both renames, and retention removing a day.
Prints one JSON object: the builds reported stored, the kills, how many builds each writer
stored, and how many kills landed at each kind of step.
Only pyarrow and the collector are loaded, so forking is safe (no thread pools yet).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow.ipc as ipc

from telemetry.collector import TelemetryCollector
from telemetry.storage import TelemetryStorage

TARGETS = 40
T0 = 1761575000000  # 2025-10-27; builds are placed from here, a minute apart
KEEP_DAYS = 3000  # retention keeps the builds from T0 on, and removes the old ones
# The kinds of step a writer stops at, each told by one byte on the pipe.
STEPS = {
    b"b": "a build begins",
    b"o": "a file is opened",
    b"w": "rows written, footer not",
    b"f": "fsync",
    b"r": "rename",
}
# The steps the kills sweep: the old build's (with the removal of its day), then three
# builds' and more of 11 each; so about half the kills land before any build is reported.
SPAN = 60


def _stopping_at_each_step(steps: int, go: int) -> Callable[[bytes], None]:
    """Make this process stop at each step of a write: tell the step on ``steps``, then
    wait for a byte on ``go`` (the parent kills it instead at the step it picked)."""

    def stop(kind: bytes) -> None:
        os.write(steps, kind)
        if os.read(go, 1) != b"g":  # the parent is gone
            os._exit(1)

    def after(function: Callable[..., Any], kind: bytes) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            stop(kind)
            return result

        return call

    def before(function: Callable[..., Any], kind: bytes) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            stop(kind)
            return function(*args, **kwargs)

        return call

    class Writer:
        """An IPC file writer that stops once a table's rows are written."""

        def __init__(self, writer: Any) -> None:
            self._writer = writer

        def __enter__(self) -> Writer:
            self._writer.__enter__()
            return self

        def __exit__(self, *exc: object) -> Any:
            return self._writer.__exit__(*exc)

        def write_table(self, *args: Any, **kwargs: Any) -> None:
            self._writer.write_table(*args, **kwargs)
            stop(b"w")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._writer, name)

    new_file = ipc.new_file

    def opened(*args: Any, **kwargs: Any) -> Writer:
        writer = Writer(new_file(*args, **kwargs))
        stop(b"o")
        return writer

    # The store calls these through their modules, so the writer's calls are the patched ones.
    ipc.new_file = opened
    os.fsync = before(os.fsync, b"f")
    os.rename = before(os.rename, b"r")
    return stop


def _write_forever(store: str, writer: int, report: int, stop: Callable[[bytes], None]) -> None:
    storage = TelemetryStorage(store, max_sessions=10**6, retention_days=KEEP_DAYS)
    collector = TelemetryCollector(storage, on_warning=lambda message: None)
    # First a build from long ago, on a day of its own: the retention that runs after each
    # write removes it, so kills land in removals too.
    old = T0 - (KEEP_DAYS + 30 + writer) * 86_400_000
    stop(b"b")
    collector.build_started(f"old-{writer}", ts=old)
    collector.target_finished(f"old-{writer}", "//old:t", ts=old + 5, status="built")
    collector.build_finished(f"old-{writer}", ts=old + 9, success=True)
    build = 0
    while True:
        session = f"k{writer}-{build}"
        start = T0 + (writer * 1000 + build) * 60_000  # a minute apart: all in the past
        stop(b"b")
        collector.build_started(session, ts=start, parallelism=4)
        for t in range(TARGETS):
            target = f"//pkg{t}:lib"
            collector.target_started(session, target, ts=start + t, worker=t % 4)
            collector.target_finished(session, target, ts=start + t + 5, status="built")
        collector.build_finished(session, ts=start + TARGETS + 10, success=True)
        os.write(report, f"{session}\n".encode())
        build += 1


def _step(steps: int) -> bytes:
    kind = os.read(steps, 1)
    if kind not in STEPS:
        raise SystemExit(f"the writer died before its kill (it sent {kind!r})")
    return kind


def main(store: str, kills: int, seed: int) -> None:
    positions = [writer % SPAN for writer in range(kills)]
    random.Random(seed).shuffle(positions)
    reported: list[str] = []
    per_writer: list[int] = []
    killed_at: Counter[str] = Counter()
    for writer, kill_at in enumerate(positions):
        report_read, report_write = os.pipe()
        steps_read, steps_write = os.pipe()
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            for fd in (report_read, steps_read, go_write):
                os.close(fd)
            try:
                stop = _stopping_at_each_step(steps_write, go_read)
                _write_forever(store, writer, report_write, stop)
            finally:
                os._exit(1)
        for fd in (report_write, steps_write, go_read):
            os.close(fd)
        for _ in range(kill_at):
            _step(steps_read)
            os.write(go_write, b"g")
        killed_at[STEPS[_step(steps_read)]] += 1  # the writer waits there: kill it
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for fd in (steps_read, go_write):
            os.close(fd)
        with os.fdopen(report_read, "rb") as pipe:
            lines = pipe.read().decode().splitlines()
        reported += lines
        per_writer.append(len(lines))
    json.dump(
        {
            "reported": reported,
            "kills": kills,
            "per_writer": per_writer,
            "killed_at": dict(killed_at),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
