"""What ``builder telemetry jobs list`` and ``jobs run`` do once their options are read:
one call to :mod:`pipelines.jobs`, and its answer as text (or JSON) on stdout."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from telemetry.cli import reports
from telemetry.cli.messages import err
from telemetry.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.jobs import JobResult, JobStatus
    from telemetry.config import TelemetryConfig


def listing(found: TelemetryConfig, *, format: reports.ReportFormat = "text") -> None:
    """``jobs list``: each job, what it does, its last run and the work waiting for it."""
    from pipelines.jobs import job_statuses

    statuses = job_statuses(reports.storage(found))
    if format == "json":
        reports.out_json(json.dumps([_status_json(s) for s in statuses], indent=2) + "\n")
        return
    reports.out_report("".join(_status_text(s) for s in statuses))


def run(
    found: TelemetryConfig,
    names: Sequence[str],
    *,
    day: str | None = None,
    since: str | None = None,
    until: str | None = None,
    dry_run: bool = False,
) -> int:
    """``jobs run``: one line per job on stdout; a job that fails is one ``Error:`` line on
    stderr, and exit status 1."""
    from pipelines.jobs import days_between, run_jobs
    from telemetry.cli.progress import job_bars
    from telemetry.text import printable

    storage = reports.storage(found)
    days: list[date] | None = None
    if day is not None:
        if since is not None or until is not None:
            raise reports.OptionError("--day cannot be given with --since or --until")
        with reports.option_value():
            days = [_day(day)]
    elif since is not None or until is not None:
        asked = reports.window(since, until)
        days = days_between(storage, asked.since, asked.until)
    with job_bars() as progress:  # one bar per job in turn, on a terminal
        results = run_jobs(storage, names, days=days, dry_run=dry_run, progress=progress)
    status = 0
    for result in results:
        if result.outcome == "failed":
            err(f"Error: {result.job}: {' '.join(result.said.split())}")
            status = 1
        else:
            reports.out(f"{result.job}: {printable(result.said)}{_took(result)}\n")
    return status


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--day takes a date such as 2026-11-20, got {text!r}") from None


def _took(result: JobResult) -> str:
    return "" if result.outcome == "dry run" else f" ({result.seconds:.1f} s)"


def _status_text(status: JobStatus) -> str:
    from telemetry.text import printable

    lines = [f"{status.job}: {status.does}"]
    last = status.last
    if last is None:
        lines.append("  last run: never")
    else:
        started = str(last.get("started", "")).removesuffix("Z")
        lines.append(
            f"  last run: {printable(started)}, {printable(str(last.get('outcome')))} in "
            f"{_seconds(last.get('seconds'))}: {printable(str(last.get('said', '')))}"
        )
    lines.append(f"  waiting: {status.waiting}")
    return "\n".join(lines) + "\n"


def _seconds(value: object) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else "? s"


def _status_json(status: JobStatus) -> dict[str, object]:
    return {
        "job": status.job,
        "does": status.does,
        "lastRun": status.last,
        "behindDays": status.behind,
        "waiting": status.waiting,
    }
