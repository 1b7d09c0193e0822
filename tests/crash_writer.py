"""Kill writers in the middle of their writes, many times over (run as a program).

    python -m tests.crash_writer STORE KILLS SEED

Forks a writer that stores builds as fast as it can, each build reported on a pipe once its
write returned, and SIGKILLs it after a random delay: over the kills the delays sweep the
whole write (building batches, writing, fsync, both renames, retention removing days).
Prints one JSON object: the builds reported stored, the kills, and how many builds each
writer stored.
Only pyarrow and the collector are loaded, so forking is safe (no thread pools yet).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

from telemetry.collector import TelemetryCollector
from telemetry.storage import TelemetryStorage

TARGETS = 40
T0 = 1761575000000  # 2025-10-27; builds are placed from here, a minute apart
KEEP_DAYS = 3000  # retention keeps the builds from T0 on, and removes the old ones


def _write_forever(store: str, writer: int, report: int) -> None:
    storage = TelemetryStorage(store, max_sessions=10**6, retention_days=KEEP_DAYS)
    collector = TelemetryCollector(storage, on_warning=lambda message: None)
    # First a build from long ago, on a day of its own: the retention that runs after each
    # write removes it, so kills land in removals too.
    old = T0 - (KEEP_DAYS + 30 + writer) * 86_400_000
    collector.build_started(f"old-{writer}", ts=old)
    collector.target_finished(f"old-{writer}", "//old:t", ts=old + 5, status="built")
    collector.build_finished(f"old-{writer}", ts=old + 9, success=True)
    build = 0
    while True:
        session = f"k{writer}-{build}"
        start = T0 + (writer * 1000 + build) * 60_000  # a minute apart: all in the past
        collector.build_started(session, ts=start, parallelism=4)
        for t in range(TARGETS):
            target = f"//pkg{t}:lib"
            collector.target_started(session, target, ts=start + t, worker=t % 4)
            collector.target_finished(session, target, ts=start + t + 5, status="built")
        collector.build_finished(session, ts=start + TARGETS + 10, success=True)
        os.write(report, f"{session}\n".encode())
        build += 1


def main(store: str, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    reported: list[str] = []
    per_writer: list[int] = []
    for writer in range(kills):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                _write_forever(store, writer, write_end)
            finally:
                os._exit(1)
        os.close(write_end)
        # Sweep the delays: short ones land in the first write, longer ones in later ones.
        time.sleep(rng.uniform(0, 0.03) if writer % 3 else rng.uniform(0, 0.004))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as pipe:
            lines = pipe.read().decode().splitlines()
        reported += lines
        per_writer.append(len(lines))
    json.dump({"reported": reported, "kills": kills, "per_writer": per_writer}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
