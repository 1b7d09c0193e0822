"""Bazel's Build Event Protocol as JSON (``--build_event_json_file``), optionally with the
JSON trace profile of the same build (``--profile``).

One BEP file is one build. Its session comes from ``started`` and ``buildFinished`` (both
the old ``...TimeMillis`` fields and the current timestamp strings are read). A target whose
action failed (``actionCompleted`` without success) is ``failed``, with the command's own
exit code in its error; one the BEP reports failed only because another target's action
failed was never attempted: ``skipped``, as are the other aborted targets. Every action the
profile shows for a target is a run of that target, ``built`` unless the target failed. A
requested target that ran no action was served from Bazel's caches: ``cached``. Without a
profile only the requested targets and the failed actions are known, each ``built``,
``failed`` or ``skipped``. The build's commit and branch come from ``--build_metadata``
(``COMMIT_SHA``, ``BRANCH_NAME``) or from the ``--workspace_status_command``'s keys
(``BUILD_SCM_REVISION``, ``STABLE_GIT_COMMIT``, ``GIT_BRANCH``, ...); nothing else of the
BEP's command line, metadata, environment, user or host is stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from telemetry.errors import EventError, InputError
from telemetry.events import MAX_TEXT, Event, EventBuilder, parse_timestamp

_LABEL = re.compile(r"(@[\w.~+-]*)?//[^\s'\"]*")
_ACTION_CATEGORY = "action processing"
# Where a build's commit and branch come from, first found first: the keys BuildBuddy's
# guide gives to --build_metadata, then the usual keys of a --workspace_status_command.
_COMMIT_KEYS = ("COMMIT_SHA", "BUILD_SCM_REVISION", "STABLE_GIT_COMMIT", "STABLE_COMMIT_SHA")
_BRANCH_KEYS = ("BRANCH_NAME", "GIT_BRANCH", "STABLE_GIT_BRANCH", "BUILD_SCM_BRANCH")


def is_bep_event(value: object) -> bool:
    """Whether a decoded JSON line looks like a Build Event Protocol event."""
    return isinstance(value, dict) and isinstance(value.get("id"), dict) and "event" not in value


def bep_events(
    lines: Iterable[bytes | str], *, profile: object = None
) -> Iterator[Event | EventError]:
    """The protocol's events for one BEP file (and the build's trace profile), each made by
    an :class:`~telemetry.events.EventBuilder`. The file is read, and any error in it
    raised, before the first event.

    >>> bep = ['{"id": {"started": {}}, "started": {"uuid": "u1", "startTimeMillis": "1000"}}',
    ...        '{"id": {"buildFinished": {}}, "finished": {"finishTimeMillis": "2000",'
    ...        ' "exitCode": {"name": "SUCCESS"}}}']
    >>> [(type(event).__name__, event.session, event.ts) for event in bep_events(bep)]
    [('BuildStarted', 'bazel-u1', 1000), ('BuildFinished', 'bazel-u1', 2000)]
    """
    started: Mapping[str, Any] | None = None
    finished: Mapping[str, Any] | None = None
    outcome: dict[str, str] = {}  # label -> built | failed | skipped
    failures: dict[str, str] = {}  # label -> why its action failed
    causes: dict[str, set[str]] = {}  # failed label -> labels of the failed actions it names
    metadata: dict[str, str] = {}  # --build_metadata KEY=VALUE
    workspace: dict[str, str] = {}  # the --workspace_status_command's KEY VALUE lines
    texts = [raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw for raw in lines]
    last_line = max((n for n, text in enumerate(texts, start=1) if text.strip()), default=0)
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            continue
        try:
            event = json.loads(text)
        except ValueError:
            if number == last_line:
                break  # Bazel was killed while writing: the build is stored as interrupted
            raise InputError(
                f"line {number} of the Build Event Protocol file is not JSON"
            ) from None
        if not is_bep_event(event):
            continue
        kind = event["id"]
        if "started" in event:
            started = event["started"]
        elif "finished" in event:
            finished = event["finished"]
        elif "targetCompleted" in kind:
            label = kind["targetCompleted"].get("label")
            if isinstance(label, str):
                if "aborted" in event:
                    outcome[label] = "skipped"
                else:
                    completed = event.get("completed") or {}
                    outcome[label] = "built" if completed.get("success") else "failed"
                    if not completed.get("success"):
                        causes[label] = _failed_actions(event.get("children"))
        elif "buildMetadata" in kind:
            said = (event.get("buildMetadata") or {}).get("metadata")
            if isinstance(said, Mapping):
                metadata |= {k: v for k, v in said.items() if isinstance(v, str)}
        elif "workspaceStatus" in kind:
            items = (event.get("workspaceStatus") or {}).get("item")
            for item in items if isinstance(items, list) else ():
                if isinstance(item, Mapping) and isinstance(item.get("value"), str):
                    workspace[str(item.get("key"))] = item["value"]
        elif "actionCompleted" in kind and isinstance(event.get("action"), Mapping):
            action = event["action"]
            label = action.get("label") or kind["actionCompleted"].get("label")
            if isinstance(label, str) and not action.get("success", False):
                failures[label] = (
                    f"{action.get('type') or 'action'} failed with exit code {_exit_code(action)}"
                )
    for label, named in causes.items():
        if named and label not in named:
            outcome[label] = "skipped"  # a dependency's action failed; none of its own ran
    # Without --keep_going Bazel reports the target whose action failed as aborted
    # (INCOMPLETE), or not at all when it was only a dependency: the action decides.
    outcome |= dict.fromkeys(failures, "failed")
    if started is None:
        raise InputError(
            "the Build Event Protocol file has no started event; give the file that "
            "--build_event_json_file wrote"
        )
    start = _time(started, "startTimeMillis", "startTime")
    session = f"bazel-{started.get('uuid') or start}"
    other = profile.get("otherData") if isinstance(profile, Mapping) else None
    build_id = other.get("build_id") if isinstance(other, Mapping) else None
    if build_id is not None and started.get("uuid") and build_id != started["uuid"]:
        raise InputError(
            f"the profile is of another build ({build_id}) than the Build Event Protocol "
            f"file ({started['uuid']}); give the --profile written by the same command"
        )
    runs = [
        (label, begin, end, "failed" if outcome.get(label) == "failed" else "built")
        for label, begin, end in _profile_actions(profile, start)
    ]
    ran = {label for label, _, _, _ in runs}
    end_ms = _time(finished, "finishTimeMillis", "finishTime") if finished else None
    last = end_ms if end_ms is not None else start
    # Requested, done, and no action of it ran (known only with a profile): from a cache.
    rest = [
        (label, "cached" if status == "built" and profile is not None else status)
        for label, status in outcome.items()
        if label not in ran
    ]
    success, why = True, None
    if finished is not None:
        exit_code = finished.get("exitCode") or {}
        code = exit_code.get("code", 0)  # proto3 JSON leaves out a 0
        success = bool(finished.get("overallSuccess", code == 0)) and code == 0
        why = None if success else f"bazel: {exit_code.get('name', 'failed')}"
    build = EventBuilder(session)

    def error(label: str, status: str) -> str | None:
        return failures.get(label, "failed") if status == "failed" else None

    def events() -> Iterator[Event | EventError]:
        yield build.build_started(
            start,
            tool="bazel",
            commit=_first(_COMMIT_KEYS, metadata, workspace),
            branch=_first(_BRANCH_KEYS, metadata, workspace),
        )
        for label, begin, end, status in runs:
            yield build.target_started(begin, label)
            yield build.target_finished(end, label, status, error=error(label, status))
        for label, status in rest:
            yield build.target_finished(last, label, status, error=error(label, status))
        if finished is not None:  # else Bazel was killed: the build is stored as interrupted
            yield build.build_finished(end_ms, success=success, error=why)

    return events()


def _first(keys: tuple[str, ...], *sources: Mapping[str, str]) -> str | None:
    """The first value of ``keys`` in the first of ``sources`` that has one the protocol
    stores (not empty, not too long, text): metadata that cannot be stored is left out, and
    never costs the build its start."""
    for source in sources:
        for key in keys:
            value = source.get(key, "").strip()
            if value and _storable(value):
                return value
    return None


def _storable(text: str) -> bool:
    if len(text) > MAX_TEXT:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate from a \ud800 escape
        return False
    return True


def _time(message: Mapping[str, Any], millis: str, timestamp: str) -> int:
    """A BEP time, from the old integer-milliseconds field or the current timestamp."""
    if message.get(millis) is not None:
        return parse_timestamp(int(message[millis]), name=millis)
    if message.get(timestamp) is not None:
        return parse_timestamp(message[timestamp], name=timestamp)
    raise InputError(f"a Build Event Protocol event has neither {millis} nor {timestamp}")


def _failed_actions(children: object) -> set[str]:
    """The labels of the actions a failed ``targetCompleted`` names as its failure's causes."""
    if not isinstance(children, list):
        return set()
    labels = set()
    for child in children:
        action = child.get("actionCompleted") if isinstance(child, Mapping) else None
        if isinstance(action, Mapping) and isinstance(action.get("label"), str):
            labels.add(action["label"])
    return labels


def _exit_code(action: Mapping[str, Any]) -> object:
    """The failed command's exit code. ``action.exitCode`` is Bazel's own exit code for the
    failure (1, BUILD_FAILURE) whatever the command returned; the spawn's is the real one."""
    detail = action.get("failureDetail")
    spawn = detail.get("spawn") if isinstance(detail, Mapping) else None
    if isinstance(spawn, Mapping) and spawn.get("spawnExitCode") is not None:
        return spawn["spawnExitCode"]
    return action.get("exitCode", "?")


def _profile_actions(profile: object, start_ms: int) -> list[tuple[str, int, int]]:
    """(label, start ms, end ms) of every action the trace profile shows for a target; the
    profile's clock starts with the build."""
    if profile is None:
        return []
    events = profile.get("traceEvents") if isinstance(profile, Mapping) else profile
    if not isinstance(events, list):
        raise InputError("the profile is not a JSON trace: expected traceEvents")
    runs = []
    for event in events:
        if not isinstance(event, Mapping) or event.get("ph") != "X":
            continue
        if event.get("cat") != _ACTION_CATEGORY:
            continue
        found = _LABEL.search(str(event.get("name", "")))
        ts, dur = event.get("ts"), event.get("dur")
        if found is None or not isinstance(ts, int | float) or not isinstance(dur, int | float):
            continue
        begin = start_ms + round(ts / 1000)
        runs.append((found.group(0), begin, begin + round(dur / 1000)))
    return sorted(runs, key=lambda run: (run[1], run[0]))
