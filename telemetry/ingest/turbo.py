"""Turborepo run summaries (``turbo run ... --summarize``, ``.turbo/runs/*.json``).

One summary is one build: its tasks become targets. A task restored from the cache is
``cached``, and lasts as long as turbo took to replay it; one that ran is ``built``, or
``failed`` with its error when it exited non-zero, and waited for the tasks its summary
lists as its ``dependencies`` (its deps).
Tasks turbo never attempted (after a failure) are not in its summary, so they are not
counted. The summary's ``user`` is never stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from telemetry.errors import EventError, InputError
from telemetry.events import Event, EventBuilder, text_problem

_HOMES = re.compile(r"(/home|/Users)/[^/\s)'\"]+")


def is_turbo_summary(document: object) -> bool:
    """Whether a decoded JSON document looks like a Turborepo run summary."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("tasks"), list)
        and isinstance(document.get("execution"), dict)
        and ("turboVersion" in document or "id" in document)
    )


def turbo_events(summary: object, *, home: str | None = None) -> Iterator[Event | EventError]:
    """The protocol's events for one run summary, each made by an
    :class:`~telemetry.events.EventBuilder`; one that is no summary is refused at once.

    >>> summary = {"id": "r1", "turboVersion": "2", "tasks": [],
    ...            "execution": {"startTime": 1000, "endTime": 1500, "exitCode": 0}}
    >>> [(type(event).__name__, event.session, event.ts) for event in turbo_events(summary)]
    [('BuildStarted', 'turbo-r1', 1000), ('BuildFinished', 'turbo-r1', 1500)]
    """
    if not is_turbo_summary(summary):
        raise InputError(
            "not a Turborepo run summary: expected a JSON object with tasks and execution, as "
            "`turbo run ... --summarize` writes to .turbo/runs/"
        )
    assert isinstance(summary, dict)
    home = os.path.expanduser("~") if home is None else home
    return _summary_events(summary, home)


def _summary_events(summary: Mapping[str, Any], home: str) -> Iterator[Event | EventError]:
    execution = summary["execution"]
    build = EventBuilder(f"turbo-{summary.get('id') or execution.get('startTime')}")
    scm: Mapping[str, Any] = summary["scm"] if isinstance(summary.get("scm"), dict) else {}
    sha, branch = scm.get("sha"), scm.get("branch")
    yield build.build_started(
        execution.get("startTime"),
        tool="turbo",
        commit=sha if isinstance(sha, str) and sha else None,
        branch=branch if isinstance(branch, str) and branch else None,
    )
    for task in summary["tasks"]:
        yield from _task_events(build, task, home)
    yield build.build_finished(execution.get("endTime"), success=execution.get("exitCode") == 0)


def _task_events(build: EventBuilder, task: object, home: str) -> Iterator[Event | EventError]:
    if not isinstance(task, Mapping):
        return
    target = task.get("taskId")
    run = task.get("execution")
    cache: Mapping[str, Any] = task["cache"] if isinstance(task.get("cache"), Mapping) else {}
    if not isinstance(target, str) or not isinstance(run, Mapping):
        return  # never attempted
    begin, end = run.get("startTime"), run.get("endTime")
    if cache.get("status") == "HIT":
        # turbo times a hit too: restoring its outputs and replaying its logs is what the
        # cached target cost this build.
        duration = None
        if isinstance(begin, int) and isinstance(end, int) and end >= begin:
            duration = end - begin
        yield build.target_finished(end, target, "cached", duration_ms=duration)
        return
    yield build.target_started(begin, target, deps=_dependencies(task))
    if run.get("exitCode") == 0:
        yield build.target_finished(end, target, "built")
        return
    error = run.get("error")
    text = str(error) if error else f"exited with status {run.get('exitCode')}"
    # Error texts name absolute directories: no home directory, whoever's, is kept.
    if len(home) > 1:
        text = re.sub(rf"{re.escape(home)}(?=/|\W|$)", "~", text)
    text = _HOMES.sub("~", text)
    yield build.target_finished(end, target, "failed", error=text)


def _dependencies(task: Mapping[str, Any]) -> list[str] | None:
    """The task ids a task's summary lists as its dependencies; None (not known) for anything
    else, which older summaries have in its place."""
    said = task.get("dependencies")
    if isinstance(said, list) and all(isinstance(name, str) and name for name in said):
        # A name the protocol cannot store (too long, not text) is left out, never the task.
        return [name for name in said if text_problem(name, "deps") is None]
    return None
