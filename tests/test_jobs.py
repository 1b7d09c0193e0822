"""pipelines.jobs as a library: a job that fails with a bug of ours is logged before it is
reported, the window of days a run takes, and the order and choice of jobs. (The command
line's tests are in tests/cli/test_jobs.py.)"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

import pipelines.jobs as jobs
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import small_history
from tests.test_duckdb import LATER, _three_days


def test_a_bug_in_a_job_is_logged_then_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))

    def broken(*args: object) -> object:
        raise ZeroDivisionError("a bug")

    [compact, rolled, retention, packed] = jobs.JOBS
    broken_retention = jobs._Job(**{**_fields(retention), "work": broken})
    monkeypatch.setattr(jobs, "JOBS", (compact, rolled, broken_retention, packed))
    with pytest.raises(ZeroDivisionError):
        jobs.run_jobs(storage, ["all"])
    logged = [json.loads(line) for line in (storage.dir / jobs.LOG).read_text().splitlines()]
    assert [(e["job"], e["outcome"]) for e in logged] == [
        ("compact", "ok"),
        ("rollup", "ok"),
        ("retention", "failed"),
    ]
    assert logged[2]["said"] == "internal error: ZeroDivisionError('a bug')"


def _fields(job: jobs._Job) -> dict[str, object]:
    return {name: getattr(job, name) for name in job.__dataclass_fields__}


def test_jobs_run_in_their_order_once_each(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path / "t", clock=lambda: LATER)
    assert ingest_jsonl(storage, small_history()).sessions == 3
    done = jobs.run_jobs(storage, ["retention", "compact", "retention"], dry_run=True)
    assert [r.job for r in done] == ["compact", "retention"]
    with pytest.raises(jobs.UnknownJob, match="no job is called 'nightly'"):
        jobs.run_jobs(storage, ["nightly"])


def test_a_window_takes_the_days_it_touches(tmp_path: Path) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    days = [date(2025, 10, 27), date(2025, 10, 28), date(2025, 10, 29)]
    assert jobs.days_between(storage, None, None) == days
    noon = datetime(2025, 10, 28, 12, tzinfo=UTC)
    assert jobs.days_between(storage, noon, None) == days[1:]
    assert jobs.days_between(storage, None, noon) == days[:2]
    midnight = datetime(2025, 10, 28, tzinfo=UTC)
    assert jobs.days_between(storage, None, midnight) == days[:1]  # until is exclusive
