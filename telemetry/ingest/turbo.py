"""Turborepo run summaries (``turbo run ... --summarize``, ``.turbo/runs/*.json``).

One summary is one build: its tasks become targets. A task restored from the cache is
``cached``, and lasts as long as turbo took to replay it; one that ran is ``built``, or
``failed`` with its error when it exited non-zero.
Tasks turbo never attempted (after a failure) are not in its summary, so they are not
counted. The summary's ``user`` is never stored.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from telemetry.errors import InputError

_HOMES = re.compile(r"(/home|/Users)/[^/\s)'\"]+")


def is_turbo_summary(document: object) -> bool:
    """Whether a decoded JSON document looks like a Turborepo run summary."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("tasks"), list)
        and isinstance(document.get("execution"), dict)
        and ("turboVersion" in document or "id" in document)
    )


def turbo_events(summary: object, *, home: str | None = None) -> list[str]:
    """The protocol's JSON lines for one run summary.

    >>> turbo_events({"id": "r1", "turboVersion": "2", "tasks": [],
    ...               "execution": {"startTime": 1000, "endTime": 1500, "exitCode": 0}})[0]
    '{"event": "build_started", "session": "turbo-r1", "ts": 1000, "tool": "turbo"}'
    """
    if not is_turbo_summary(summary):
        raise InputError(
            "not a Turborepo run summary: expected a JSON object with tasks and execution, as "
            "`turbo run ... --summarize` writes to .turbo/runs/"
        )
    assert isinstance(summary, dict)
    home = os.path.expanduser("~") if home is None else home
    execution = summary["execution"]
    session = f"turbo-{summary.get('id') or execution.get('startTime')}"
    scm: Mapping[str, Any] = summary["scm"] if isinstance(summary.get("scm"), dict) else {}
    started: dict[str, Any] = {
        "event": "build_started",
        "session": session,
        "ts": execution.get("startTime"),
        "tool": "turbo",
    }
    if isinstance(scm.get("sha"), str) and scm["sha"]:
        started["commit"] = scm["sha"]
    if isinstance(scm.get("branch"), str) and scm["branch"]:
        started["branch"] = scm["branch"]
    events: list[dict[str, Any]] = [started]
    for task in summary["tasks"]:
        events += _task_events(session, task, home)
    events.append(
        {
            "event": "build_finished",
            "session": session,
            "ts": execution.get("endTime"),
            "success": execution.get("exitCode") == 0,
        }
    )
    return [json.dumps(event) for event in events]


def _task_events(session: str, task: object, home: str) -> list[dict[str, Any]]:
    if not isinstance(task, Mapping):
        return []
    target = task.get("taskId")
    run = task.get("execution")
    cache: Mapping[str, Any] = task["cache"] if isinstance(task.get("cache"), Mapping) else {}
    if not isinstance(target, str) or not isinstance(run, Mapping):
        return []  # never attempted
    finished: dict[str, Any] = {
        "event": "target_finished",
        "session": session,
        "ts": run.get("endTime"),
        "target": target,
    }
    if cache.get("status") == "HIT":
        # turbo times a hit too: restoring its outputs and replaying its logs is what the
        # cached target cost this build.
        begin, end = run.get("startTime"), run.get("endTime")
        if isinstance(begin, int) and isinstance(end, int) and end >= begin:
            finished["duration_ms"] = end - begin
        return [finished | {"status": "cached"}]
    started = {
        "event": "target_started",
        "session": session,
        "ts": run.get("startTime"),
        "target": target,
    }
    if run.get("exitCode") == 0:
        return [started, finished | {"status": "built"}]
    error = run.get("error")
    text = str(error) if error else f"exited with status {run.get('exitCode')}"
    # Error texts name absolute directories: no home directory, whoever's, is kept.
    if len(home) > 1:
        text = re.sub(rf"{re.escape(home)}(?=/|\W|$)", "~", text)
    text = _HOMES.sub("~", text)
    return [started, finished | {"status": "failed", "error": text}]
