"""The newest builds read straight from their files, without polars.

``builder telemetry recent`` is what people type to see the build they just ran. Its answer
is a few rows in the newest files, and loading polars takes several times longer than reading
them, so they are read here with pyarrow alone and computed row by row (the rates with
:func:`telemetry.metrics.rates`, as the analyzer does). When the newest days hold many rows (a
backfill, a large ingest), or anything is unusual (a file that cannot be read, one written
before a column was added), :func:`newest_builds` returns None and the analyzer answers, with
its warnings.
"""

from __future__ import annotations

import warnings
from datetime import date
from typing import Any, Final

import pyarrow as pa
import pyarrow.ipc as ipc

from telemetry import snapshot
from telemetry.events import EXECUTED
from telemetry.model import BuildReport, build_report
from telemetry.schema import Dataset, judge_schema
from telemetry.snapshot import StoredFile
from telemetry.storage import TelemetryStorage
from telemetry.window import Window

# Past this many rows in the files to read, the analyzer's columns are faster than rows.
MAX_ROWS: Final = 200_000
_RUNS: Final = ["session_id", "target", "status", "duration_ms"]


class _Unusual(Exception):
    pass


def newest_builds(
    storage: TelemetryStorage, window: Window, count: int
) -> list[BuildReport] | None:
    """The newest ``count`` builds in ``window``, newest first, as
    :meth:`telemetry.analyzer.TelemetryAnalyzer.recent` gives them; None when the analyzer
    should answer instead."""
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            builds = _newest(storage, window, count)
    except Exception:  # anything unusual: the analyzer answers, and says what it is
        return None
    return None if said else builds


def _newest(storage: TelemetryStorage, window: Window, count: int) -> list[BuildReport]:
    by_day: dict[date, list[StoredFile]] = {}
    sessions = storage.snapshot(
        since=window.first_day, until=window.last_day, datasets=("sessions",)
    ).listed["sessions"]
    for stored in sessions:
        by_day.setdefault(stored.day, []).append(stored)
    budget = MAX_ROWS
    rows: list[dict[str, Any]] = []
    for day in sorted(by_day, reverse=True):
        budget -= _rows(by_day[day])
        for table in _tables("sessions", by_day[day]):
            rows += [r for r in table.to_pylist() if _in(window, r["start_time"])]
        if len(rows) >= count or budget < 0:
            break
    if budget < 0:
        raise _Unusual
    rows.sort(key=lambda r: (r["start_time"], r["session_id"]))
    newest = rows[-count:]
    if not newest:
        return []
    chosen = {r["session_id"] for r in newest}
    # The partitions of these builds alone (a session id may come back on another day).
    days = {r["start_time"].date() for r in newest}
    later = storage.snapshot(days=days, datasets=("targets",))
    if {f.stem for f in later.listed["sessions"]} != {f.stem for d in days for f in by_day[d]}:
        raise _Unusual  # stored, compacted or removed since: the analyzer reads one snapshot
    targets = later.committed("targets")
    if _rows(targets) > budget:
        raise _Unusual
    runs: dict[str, dict[str, list[int]]] = {}
    for table in _tables("targets", targets):
        columns = [table.column(name).to_pylist() for name in _RUNS]
        for session, target, status, duration in zip(*columns, strict=True):
            if session in chosen and status in EXECUTED:
                summed = runs.setdefault(session, {}).setdefault(target, [0, 0])
                summed[0] += duration
                summed[1] += 1
    return [
        build_report(r, [(t, s[0], s[1]) for t, s in runs.get(r["session_id"], {}).items()])
        for r in reversed(newest)
    ]


def _rows(files: list[StoredFile]) -> int:
    if any(f.rows is None for f in files):
        raise _Unusual  # a file not named by our writer: its size is unknown
    return sum(f.rows or 0 for f in files)


def _tables(dataset: Dataset, files: list[StoredFile]) -> list[pa.Table]:
    checked = snapshot.readable(dataset, files, warn=False)
    if len(checked) != len(files) or any(f.missing for f in checked):
        raise _Unusual  # the analyzer names it in a warning, or reads the columns it lacks
    tables = []
    for stored in checked:
        with ipc.open_file(str(stored.path)) as reader:
            if judge_schema(reader.schema, dataset)[0] is not None:
                raise _Unusual  # its footer says other than its start
            table = reader.read_all()
        table.validate(full=True)  # damaged data raises here, not in to_pylist
        tables.append(table)
    return tables


def _in(window: Window, moment: Any) -> bool:
    return (window.since is None or moment >= window.since) and (
        window.until is None or moment < window.until
    )
