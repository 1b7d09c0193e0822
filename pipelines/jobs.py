"""Scheduled jobs: the store's maintenance, run by cron, a systemd timer or a CI schedule
(``builder telemetry jobs run all``), and a log of what each run did.

Each job is idempotent (run again over the same days, it finds nothing to do or writes the
same result), atomic (readers see each day before or after its work, never half of it) and
resumable (killed at any moment, it leaves a store that reads the same, and the next run
finishes the work). A run holds the store's jobs lock from start to end, so two runs never
overlap on a store: the second waits. ``all`` runs the jobs in :data:`JOBS` order and stops
at the first that fails.

Every run of a job that does something (not a dry run) appends one line to the run log,
``<dir>/jobs/runs.jsonl``: when it started, how long it took, whether it succeeded, the days
it worked on, what it counted (rows and files in and out) and one line in words. ``jobs
list`` shows the last run of each job and how far behind it is.

>>> results = run_jobs(TelemetryStorage("store"), ["compact"])  # doctest: +SKIP
>>> results[0].said  # doctest: +SKIP
'compacted 3 days: 120 builds, 9,840 target rows from 240 files into 9'
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from telemetry import layout, locks
from telemetry.errors import StorageError, TelemetryError, TelemetryWarning, write_failure
from telemetry.progress import Progress, no_progress

if TYPE_CHECKING:  # the command line reads the job names from here: nothing heavy loads
    from telemetry.storage import TelemetryStorage

JobName: TypeAlias = Literal["compact", "rollup", "retention", "months"]
# What ``jobs run`` takes: a job's name, or every job.
JobChoice: TypeAlias = Literal["compact", "rollup", "retention", "months", "all"]
Outcome: TypeAlias = Literal["ok", "failed", "dry run"]
# What tells each job's progress (see :func:`run_jobs`): given a job's name as it starts,
# the :class:`Progress` that job reports to.
JobProgress: TypeAlias = Callable[[JobName], Progress]

LOG: Final = Path(layout.JOBS) / "runs.jsonl"
# The log keeps the newest runs: a job run daily for years stays a small file.
_KEPT: Final = 1000


class UnknownJob(TelemetryError):
    """A job name that is not a job."""


@dataclass(slots=True, frozen=True)
class JobResult:
    """What one job did in a run (or would do, in a dry run)."""

    job: JobName
    started: datetime
    seconds: float
    outcome: Outcome
    said: str  # one line: what it did, would do, or why it failed
    days: tuple[date, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    def record(self) -> dict[str, object]:
        """The run log's line for this result."""
        return {
            "job": self.job,
            "started": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": round(self.seconds, 3),
            "outcome": self.outcome,
            "days": [d.isoformat() for d in self.days],
            "counts": self.counts,
            "said": self.said,
        }


@dataclass(slots=True, frozen=True)
class JobStatus:
    """A job as ``jobs list`` shows it: its last logged run, and the work waiting for it."""

    job: JobName
    does: str
    last: dict[str, object] | None  # the run log's line for its last run
    behind: int  # days waiting for it (months, for the months job)
    waiting: str  # the work waiting, in words


@dataclass(slots=True, frozen=True)
class _Job:
    name: JobName
    does: str
    behind: Callable[[TelemetryStorage, Sequence[date] | None], list[date]]
    work: Callable[
        [TelemetryStorage, Sequence[date] | None, Progress],
        tuple[str, tuple[date, ...], dict[str, int]],
    ]
    plan: Callable[[TelemetryStorage, list[date]], str]
    waiting: Callable[[TelemetryStorage, list[date]], str]


# -- compact -----------------------------------------------------------------------------------


def _compact_behind(storage: TelemetryStorage, days: Sequence[date] | None) -> list[date]:
    from pipelines.compaction import pending

    return pending(storage, days=days)


def _compact(
    storage: TelemetryStorage, days: Sequence[date] | None, progress: Progress
) -> tuple[str, tuple[date, ...], dict[str, int]]:
    from pipelines.compaction import compact

    worked = compact(storage, days=days, progress=progress)
    done = [d for d in worked if d.merged]
    counts = {
        "days": len(done),
        "builds": sum(d.sessions for d in done),
        "target_rows": sum(d.targets for d in done),
        "rollup_rows": sum(d.rollups for d in done),
        "writes_merged": sum(d.files for d in done),  # each a sessions file (and targets)
        "files_in": sum(d.files + d.target_files for d in done),
        "files_out": 3 * len(done),
        "copies": sum(d.copies for d in worked),
        # Of days merged by an earlier run (or an earlier version, which wrote none).
        "copies_backfilled": sum(d.copies for d in worked if not d.merged),
    }
    if not done:
        said = "nothing to merge: every closed day is compacted"
    else:
        said = (
            f"compacted {_plural(len(done), 'day')}: {_plural(counts['builds'], 'build')}, "
            f"{counts['target_rows']:,} target rows from {_plural(counts['files_in'], 'file')} "
            f"into {counts['files_out']} (sessions, targets and rollups)"
        )
    if counts["copies_backfilled"]:
        said += (
            f"; wrote {_plural(counts['copies_backfilled'], 'Parquet copy')} of days "
            f"compacted before"
        )
    return said, tuple(d.day for d in worked), counts


def _compact_plan(storage: TelemetryStorage, days: list[date]) -> str:
    if not days:
        return "nothing to do: every closed day is compacted"
    return f"would compact {_plural(len(days), 'day')}: {_days(days)}"


def _compact_waiting(storage: TelemetryStorage, days: list[date]) -> str:
    return f"{_plural(len(days), 'closed day')} to compact" if days else "up to date"


# -- rollup ------------------------------------------------------------------------------------


def _rollup_behind(storage: TelemetryStorage, days: Sequence[date] | None) -> list[date]:
    from pipelines.rollup import expired, pending

    return sorted({*pending(storage, days=days), *expired(storage)})


def _rollup(
    storage: TelemetryStorage, days: Sequence[date] | None, progress: Progress
) -> tuple[str, tuple[date, ...], dict[str, int]]:
    from pipelines.rollup import rollup

    done = rollup(storage, days=days, progress=progress)
    counts = {
        "days": len(done.days),
        "builds": done.builds,
        "expired_days": len(done.expired),
        "months_written": done.months,
    }
    parts = []
    if done.days:
        parts.append(
            f"rolled up {_plural(len(done.days), 'day')} ({_plural(done.builds, 'build')})"
        )
    if done.expired:
        parts.append(f"dropped {_plural(len(done.expired), 'day')} past {_kept(storage)}")
    if parts:
        said = f"{', '.join(parts)}: {_plural(done.months, 'month')} rewritten"
    else:
        said = "nothing to roll up: every closed day is rolled up"
    return said, tuple(sorted({*done.days, *done.expired})), counts


def _rollup_plan(storage: TelemetryStorage, days: list[date]) -> str:
    from pipelines.rollup import expired

    gone = set(expired(storage))
    fresh = [d for d in days if d not in gone]
    if not days:
        return "nothing to do: every closed day is rolled up"
    parts = []
    if fresh:
        parts.append(f"would roll up {_plural(len(fresh), 'day')}: {_days(fresh)}")
    if gone:
        parts.append(f"would drop {_plural(len(gone), 'day')} past {_kept(storage)}")
    return "; ".join(parts)


def _rollup_waiting(storage: TelemetryStorage, days: list[date]) -> str:
    return f"{_plural(len(days), 'day')} to roll up or drop" if days else "up to date"


def _kept(storage: TelemetryStorage) -> str:
    keep = storage.rollup_retention_days
    return "nothing" if keep is None else _plural(keep, "day")


# -- retention ---------------------------------------------------------------------------------


def _retention_behind(storage: TelemetryStorage, days: Sequence[date] | None) -> list[date]:
    return list(storage.retention_plan().removed_days)


def _retention(
    storage: TelemetryStorage, days: Sequence[date] | None, progress: Progress
) -> tuple[str, tuple[date, ...], dict[str, int]]:
    removed = storage.apply_retention()
    # One call with no steps to tell: its end only, in the days it removed.
    progress(len(removed.removed_days), len(removed.removed_days))
    counts = {"days": len(removed.removed_days), "builds": removed.removed_sessions}
    if not removed.removed_days:
        said = f"nothing to remove: {_policy(storage)}"
    else:
        said = (
            f"removed {_plural(len(removed.removed_days), 'day')} "
            f"({_plural(removed.removed_sessions, 'build')}): {_policy(storage)}"
        )
    return said, removed.removed_days, counts


def _retention_plan(storage: TelemetryStorage, days: list[date]) -> str:
    if not days:
        return f"nothing to do: {_policy(storage)}"
    builds = storage.retention_plan().removed_sessions
    return f"would remove {_plural(len(days), 'day')} ({_plural(builds, 'build')}): {_days(days)}"


def _retention_waiting(storage: TelemetryStorage, days: list[date]) -> str:
    return f"{_plural(len(days), 'day')} to remove" if days else "up to date"


def _policy(storage: TelemetryStorage) -> str:
    kept = []
    if storage.retention_days is not None:
        kept.append(f"{_plural(storage.retention_days, 'day')}")
    if storage.max_sessions is not None:
        kept.append(f"at most {_plural(storage.max_sessions, 'build')}")
    return f"keeping {' and '.join(kept)}" if kept else "keeping everything"


# -- months ------------------------------------------------------------------------------------


def _months_behind(storage: TelemetryStorage, days: Sequence[date] | None) -> list[date]:
    from pipelines.months import pending

    return pending(storage, days=days)


def _months(
    storage: TelemetryStorage, days: Sequence[date] | None, progress: Progress
) -> tuple[str, tuple[date, ...], dict[str, int]]:
    from pipelines.months import pack

    done = pack(storage, days=days, progress=progress)
    counts = {
        "months": len(done.months),
        "months_retired": len(done.retired),
        "days": done.days,
        "builds": done.sessions,
        "target_rows": done.target_rows,
    }
    parts = []
    if done.months:
        parts.append(
            f"packed {_plural(len(done.months), 'month')} ({_months_named(done.months)}): "
            f"{_plural(done.days, 'day')}, {_plural(done.sessions, 'build')}, "
            f"{done.target_rows:,} target rows"
        )
    if done.retired:
        parts.append(
            f"retired the packs of {_plural(len(done.retired), 'month')} with no compacted "
            f"day left ({_months_named(done.retired)})"
        )
    said = "; ".join(parts) or "nothing to pack: every closed month is packed"
    return said, (*done.months, *done.retired), counts


def _months_plan(storage: TelemetryStorage, months: list[date]) -> str:
    if not months:
        return "nothing to do: every closed month is packed"
    return f"would pack or retire {_plural(len(months), 'month')}: {_months_named(months)}"


def _months_waiting(storage: TelemetryStorage, months: list[date]) -> str:
    return f"{_plural(len(months), 'closed month')} to pack" if months else "up to date"


def _months_named(months: Sequence[date]) -> str:
    return ", ".join(f"{month:%Y-%m}" for month in months)


JOBS: Final[tuple[_Job, ...]] = (
    _Job(
        "compact",
        "Merge each closed day into one file per dataset, with its rollup and Parquet copies.",
        _compact_behind,
        _compact,
        _compact_plan,
        _compact_waiting,
    ),
    _Job(
        "rollup",
        "Roll up each closed day into the daily rollups kept "
        "BUILDER_TELEMETRY_ROLLUP_RETENTION_DAYS.",
        _rollup_behind,
        _rollup,
        _rollup_plan,
        _rollup_waiting,
    ),
    _Job(
        "retention",
        "Remove the days past BUILDER_TELEMETRY_RETENTION_DAYS and over "
        "BUILDER_TELEMETRY_MAX_SESSIONS.",
        _retention_behind,
        _retention,
        _retention_plan,
        _retention_waiting,
    ),
    _Job(
        "months",
        "Pack each closed month's compacted days into one Parquet file per dataset, which "
        "long windows read.",
        _months_behind,
        _months,
        _months_plan,
        _months_waiting,
    ),
)
NAMES: Final[tuple[str, ...]] = tuple(job.name for job in JOBS)


# -- running -----------------------------------------------------------------------------------


def run_jobs(
    storage: TelemetryStorage,
    names: Iterable[str],
    *,
    days: Sequence[date] | None = None,
    dry_run: bool = False,
    clock: Callable[[], datetime] | None = None,
    progress: JobProgress | None = None,
) -> list[JobResult]:
    """Run the jobs ``names`` (``"all"`` for every job, in order) on ``days`` (every day
    they apply to by default), stopping at the first that fails; returns what each did.
    With ``dry_run``, what each would do, with nothing changed or logged.

    Retention applies the store's policy to the whole store: ``days`` choose what compaction
    works on. As each job starts, ``progress`` is called with its name, and the job reports
    to the :class:`~telemetry.progress.Progress` it returns, in days (compaction, rollups,
    month packs: the days done of those to do; retention, which removes its days in one
    step: the days removed, once, at its end)."""
    chosen = _chosen(names)
    now = clock or (lambda: datetime.now(UTC))
    if not storage.dir.is_dir():  # no store: nothing to do, and nothing is made
        return [
            JobResult(job.name, now(), 0.0, "dry run" if dry_run else "ok", "no telemetry data")
            for job in chosen
        ]
    results: list[JobResult] = []
    with _held(storage, dry_run):
        for job in chosen:
            started, clock_start = now(), time.perf_counter()
            if dry_run:
                waiting = job.behind(storage, days)
                said = job.plan(storage, waiting)
                results.append(JobResult(job.name, started, 0.0, "dry run", said, tuple(waiting)))
                continue
            try:
                told = no_progress if progress is None else progress(job.name)
                said, worked, counts = job.work(storage, days, told)
            except Exception as error:
                said = (
                    str(error)
                    if isinstance(error, TelemetryError)
                    else f"internal error: {error!r}"
                )
                failed = JobResult(
                    job.name, started, time.perf_counter() - clock_start, "failed", said
                )
                _log(storage, failed, quiet=True)
                if not isinstance(error, TelemetryError):
                    raise  # a bug of ours: logged, then reported as one
                results.append(failed)
                break
            done = JobResult(
                job.name, started, time.perf_counter() - clock_start, "ok", said, worked, counts
            )
            _log(storage, done)
            results.append(done)
    return results


def days_between(
    storage: TelemetryStorage, since: datetime | None, until: datetime | None
) -> list[date]:
    """The stored days that the window ``[since, until)`` touches, oldest first."""
    return [
        day
        for day in storage.days()
        if (since is None or day >= since.astimezone(UTC).date())
        and (until is None or datetime.combine(day, datetime.min.time(), UTC) < until)
    ]


def job_statuses(storage: TelemetryStorage) -> list[JobStatus]:
    """Every job with its last logged run and the work waiting for it."""
    last = {}
    for entry in read_log(storage):
        if isinstance(entry.get("job"), str):  # a line of another kind is not a run
            last[entry["job"]] = entry
    statuses = []
    for job in JOBS:
        waiting = job.behind(storage, None) if storage.dir.is_dir() else []
        statuses.append(
            JobStatus(
                job.name, job.does, last.get(job.name), len(waiting), job.waiting(storage, waiting)
            )
        )
    return statuses


def read_log(storage: TelemetryStorage) -> list[dict[str, object]]:
    """The run log's entries, oldest first; a line a killed run left half written is
    skipped."""
    try:
        text = (storage.dir / LOG).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as error:
        raise StorageError(
            f"could not read {storage.dir / LOG}: {error.strerror or error}"
        ) from error
    entries = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def _chosen(names: Iterable[str]) -> list[_Job]:
    wanted = list(names)
    if "all" in wanted:
        return list(JOBS)
    by_name = {job.name: job for job in JOBS}
    chosen = []
    for name in wanted:
        if name not in by_name:
            raise UnknownJob(f"no job is called {name!r}; the jobs are {', '.join(NAMES)}, or all")
        if by_name[name] not in chosen:
            chosen.append(by_name[name])
    return sorted(chosen, key=JOBS.index)


@contextlib.contextmanager
def _held(storage: TelemetryStorage, dry_run: bool) -> Iterator[None]:
    """The jobs lock, for a run that changes the store (a dry run changes nothing)."""
    if dry_run:
        yield
        return
    with locks.lock(storage.dir, locks.JOBS_LOCK):
        yield


def _log(storage: TelemetryStorage, result: JobResult, *, quiet: bool = False) -> None:
    """Append ``result`` to the run log as one line (the caller holds the jobs lock); the
    oldest lines go once it holds more than :data:`_KEPT` runs.

    A log that cannot be written (a full disk) is a warning, not a failure: the job's work
    is done, and the store holds it; ``quiet`` says nothing (for a job that failed, whose
    own error is what to read)."""
    path = storage.dir / LOG
    line = json.dumps(result.record(), separators=(",", ":")) + "\n"
    try:
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # after the half line of a run killed while logging
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        lines = path.read_bytes().splitlines(keepends=True)
        if len(lines) > _KEPT:
            kept = path.with_name(f".tmp-{path.name}")
            with kept.open("wb") as handle:
                handle.write(b"".join(lines[-_KEPT // 2 :]))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(kept, path)
    except OSError as error:
        if not quiet:
            warnings.warn(
                f"could not write the run log {path}: {write_failure(error)}; this run is "
                f"not in jobs list",
                TelemetryWarning,
                stacklevel=3,
            )


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count:,} {noun[:-1] + 'ies' if noun.endswith('py') else noun + 's'}"


def _days(days: Sequence[date]) -> str:
    shown = [d.isoformat() for d in days[:5]]
    more = f" and {len(days) - 5:,} more" if len(days) > 5 else ""
    return ", ".join(shown) + more


__all__ = [
    "JOBS",
    "LOG",
    "NAMES",
    "JobChoice",
    "JobName",
    "JobProgress",
    "JobResult",
    "JobStatus",
    "UnknownJob",
    "days_between",
    "job_statuses",
    "read_log",
    "run_jobs",
]
