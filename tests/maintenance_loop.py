"""Maintenance in a loop, beside readers (run as a program).

    python -m tests.maintenance_loop STORE PROGRESS

Each round stores a late build into one of the closed days (so that the next compaction
has that day to merge again) and a build older than the retention keeps, then compacts
every closed day, applies retention (which removes that old build's day) and packs the
closed months (two of the closed days, and the old builds' day, are in last month, so its
pack is retired by retention and written again every round). After each round it appends
``<late builds stored> <compactions> <retentions that removed a day> <months packed>`` to
PROGRESS, a line written whole, so a reader knows which builds were stored before it began.
It prints ``ready`` once the first round is done, and stops when its stdin is closed.
"""

from __future__ import annotations

import json
import os
import select
import sys
from datetime import UTC, datetime
from pathlib import Path

from pipelines.compaction import compact
from pipelines.months import pack
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage

DAY_MS = 86_400_000
TODAY = datetime(2026, 12, 2, 12, tzinfo=UTC)
TODAY_MS = int(TODAY.timestamp() * 1000)
KEEP_DAYS = 10
CLOSED_DAYS = 3  # the days before today that the builds are stored into
TARGETS = 3  # each build's targets: two built, one cached


def build(session: str, start_ms: int) -> list[str]:
    """One build of TARGETS targets, as JSON lines."""
    events: list[dict[str, object]] = [
        {"event": "build_started", "session": session, "ts": start_ms, "parallelism": 2}
    ]
    for t in range(TARGETS):
        status = "cached" if t == TARGETS - 1 else "built"
        if status == "built":
            events.append({"event": "target_started", "session": session,
                           "ts": start_ms + t, "target": f"//t:{t}"})  # fmt: skip
        events.append({"event": "target_finished", "session": session, "ts": start_ms + t + 10,
                       "target": f"//t:{t}", "status": status})  # fmt: skip
    events.append({"event": "build_finished", "session": session,
                   "ts": start_ms + 100, "success": True})  # fmt: skip
    return [json.dumps(e) for e in events]


def permanent_builds() -> dict[str, list[str]]:
    """The builds stored before the loop starts, four on each closed day."""
    return {
        f"p-{day}-{n}": build(f"p-{day}-{n}", TODAY_MS - (day + 1) * DAY_MS + n * 3_600_000)
        for day in range(CLOSED_DAYS)
        for n in range(4)
    }


def storage(store: str | Path) -> TelemetryStorage:
    """The store with its retention, at the loop's today."""
    return TelemetryStorage(store, retention_days=KEEP_DAYS, clock=lambda: TODAY)


def main(store: str, progress: str) -> None:
    kept = storage(store)
    late = compactions = removals = packs = 0
    while True:
        day = late % CLOSED_DAYS + 1
        start = TODAY_MS - day * DAY_MS + 7_200_000 + late * 1000
        stored = ingest_jsonl(kept, build(f"late-{late}", start), apply_retention=False)
        assert stored.sessions == 1, stored
        late += 1
        old = TODAY_MS - (KEEP_DAYS + 5) * DAY_MS
        ingest_jsonl(kept, build(f"old-{late}", old), apply_retention=False)
        compactions += len(compact(kept))
        removals += len(kept.apply_retention().removed_days)
        packs += len(pack(kept).months)
        with open(progress, "a") as out:
            out.write(f"{late} {compactions} {removals} {packs}\n")
        if late == 1:
            print("ready", flush=True)
        if select.select([sys.stdin], [], [], 0)[0] and not os.read(sys.stdin.fileno(), 1):
            return  # stdin closed: the readers are done


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
