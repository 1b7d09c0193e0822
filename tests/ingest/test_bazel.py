"""Bazel's Build Event Protocol and trace profile, from a real Bazel (data-fixtures/bazel,
made by its make.sh): a clean build, the same from Bazel's caches, one that fails under
--keep_going, and one that stops at its first failing action (no --keep_going)."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import InputError
from telemetry.ingest import ingest_file
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES

BAZEL = FIXTURES / "bazel"


def _bep(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (BAZEL / f"{name}.bep.json").read_text().splitlines()]


def _field(name: str, key: str) -> dict[str, Any]:
    return next(event[key] for event in _bep(name) if key in event)  # type: ignore[misc]


def _actions(name: str) -> dict[str, list[int]]:
    """Second route: each target's action durations (ms), straight from the profile."""
    profile = json.loads((BAZEL / f"{name}.profile.json").read_text())
    runs: dict[str, list[int]] = {}
    for event in profile["traceEvents"]:
        if event.get("cat") == "action processing" and "//" in event["name"]:
            label = re.search(r"//\S+", event["name"]).group(0)  # type: ignore[union-attr]
            runs.setdefault(label, []).append(round(event["dur"] / 1000))
    return runs


def _stored(tmp_path: Path, name: str, *, profile: bool = True) -> dict[str, object]:
    storage = TelemetryStorage(tmp_path / name)
    result = ingest_file(
        storage,
        BAZEL / f"{name}.bep.json",
        profile=BAZEL / f"{name}.profile.json" if profile else None,
    )
    assert (result.sessions, result.problems) == (1, ())
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    return row


def test_a_clean_build_runs_every_genrule(tmp_path: Path) -> None:
    row = _stored(tmp_path, "clean")
    started, finished = _field("clean", "started"), _field("clean", "finished")
    assert row["session_id"] == f"bazel-{started['uuid']}"
    assert row["duration_ms"] == int(finished["finishTimeMillis"]) - int(started["startTimeMillis"])
    # //app:server needs //lib:util needs //lib:proto: all three genrules ran.
    actions = _actions("clean")
    assert sorted(actions) == ["//app:server", "//lib:proto", "//lib:util"]
    assert (row["built"], row["cached"], row["failed"], row["succeeded"], row["tool"]) == (
        3,
        0,
        0,
        True,
        "bazel",
    )
    assert row["executed_ms"] == sum(sum(runs) for runs in actions.values())
    # The genrules sleep 0.2 s, 0.1 s and 0.3 s.
    report = TelemetryAnalyzer(TelemetryStorage(tmp_path / "clean")).summary()
    assert [b.target for b in report.bottlenecks] == ["//app:server", "//lib:proto", "//lib:util"]
    assert report.bottlenecks[0].mean_ms >= 300


def test_an_unchanged_build_comes_from_the_caches(tmp_path: Path) -> None:
    assert _actions("cached") == {}  # Bazel ran no action of a target
    row = _stored(tmp_path, "cached")
    assert (row["built"], row["cached"], row["total_targets"], row["succeeded"]) == (0, 2, 2, True)


def test_a_failing_target(tmp_path: Path) -> None:
    finished = _field("failed", "finished")
    assert finished["exitCode"] == {"name": "BUILD_FAILURE", "code": 1}
    row = _stored(tmp_path, "failed")
    # //app:server was built before and comes from the cache; //app:broken fails.
    assert (row["built"], row["cached"], row["failed"], row["succeeded"]) == (0, 1, 1, False)
    assert row["error"] == "bazel: BUILD_FAILURE"
    targets = TelemetryAnalyzer(TelemetryStorage(tmp_path / "failed")).recent(1)[0]
    assert [b.target for b in targets.bottlenecks] == ["//app:broken"]


def _targets(tmp_path: Path, name: str) -> dict[str, tuple[Any, ...]]:
    """The stored target rows of a fixture: label -> (status, duration ms, error)."""
    rows = TelemetryStorage(tmp_path / name).snapshot().scan("targets").collect()
    return {r[0]: r[1:] for r in rows.select("target", "status", "duration_ms", "error").rows()}


def test_without_keep_going_the_target_whose_action_failed_is_failed(tmp_path: Path) -> None:
    events: list[Any] = _bep("stopped")
    completed = {
        e["id"]["targetCompleted"]["label"]: e for e in events if "targetCompleted" in e["id"]
    }
    [action] = [e["action"] for e in events if "actionCompleted" in e["id"]]
    # What Bazel reported: //lib:c's genrule exited 3 (the action's own exitCode is Bazel's
    # BUILD_FAILURE, 1) and //lib:c was aborted; //app:client failed only through that
    # action; //app:server succeeded; the profile shows an action of //lib:c alone.
    assert (action["label"], action["type"], action["exitCode"]) == ("//lib:c", "Genrule", 1)
    assert action["failureDetail"]["spawn"]["spawnExitCode"] == 3
    assert completed["//lib:c"]["aborted"] == {"reason": "INCOMPLETE"}
    [cause] = completed["//app:client"]["children"]
    assert cause["actionCompleted"]["label"] == "//lib:c"
    assert completed["//app:server"]["completed"]["success"] is True
    actions = _actions("stopped")
    assert list(actions) == ["//lib:c"]

    row = _stored(tmp_path, "stopped")
    # //lib:c ran and failed, //app:client was never attempted, //app:server came from the cache.
    assert (row["built"], row["cached"], row["failed"], row["skipped"]) == (0, 1, 1, 1)
    assert (row["succeeded"], row["error"]) == (False, "bazel: BUILD_FAILURE")
    started, finished = _field("stopped", "started"), _field("stopped", "finished")
    assert row["duration_ms"] == int(finished["finishTimeMillis"]) - int(started["startTimeMillis"])
    assert row["executed_ms"] == sum(actions["//lib:c"])
    assert _targets(tmp_path, "stopped") == {
        "//lib:c": ("failed", actions["//lib:c"][0], "Genrule failed with exit code 3"),
        "//app:client": ("skipped", 0, None),
        "//app:server": ("cached", 0, None),
    }

    # The BEP alone knows the failed action too, only not which target came from a cache.
    row = _stored(tmp_path / "bep-only", "stopped", profile=False)
    assert (row["built"], row["cached"], row["failed"], row["skipped"]) == (1, 0, 1, 1)


def test_a_failed_action_of_a_target_not_asked_for_is_a_failed_target(tmp_path: Path) -> None:
    # As when only //app:client is asked for: the BEP names //lib:c in its action alone.
    lines = (BAZEL / "stopped.bep.json").read_text().splitlines()
    kept = [line for line in lines if '"aborted"' not in line]
    assert len(kept) == len(lines) - 1
    path = tmp_path / "stopped.bep.json"
    path.write_text("\n".join(kept))
    ingest_file(TelemetryStorage(tmp_path / "t"), path, profile=BAZEL / "stopped.profile.json")
    status, _, error = _targets(tmp_path, "t")["//lib:c"]
    assert (status, error) == ("failed", "Genrule failed with exit code 3")


def test_without_a_profile_only_the_requested_targets_are_known(tmp_path: Path) -> None:
    row = _stored(tmp_path, "clean", profile=False)
    assert (row["built"], row["total_targets"], row["executed_ms"]) == (2, 2, 0)


def test_the_current_field_names_read_the_same(tmp_path: Path) -> None:
    def timestamp(millis: object) -> str:
        moment = datetime.fromtimestamp(int(millis) / 1000, UTC)  # type: ignore[call-overload]
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    current = []
    for event in _bep("clean"):
        if "started" in event:
            started = dict(event["started"])  # type: ignore[call-overload]
            started["startTime"] = timestamp(started.pop("startTimeMillis"))
            event = event | {"started": started}
        if "finished" in event:
            finished = dict(event["finished"])  # type: ignore[call-overload]
            finished["finishTime"] = timestamp(finished.pop("finishTimeMillis"))
            finished.pop("overallSuccess", None)
            event = event | {"finished": finished}
        current.append(json.dumps(event))
    path = tmp_path / "current.bep.json.gz"
    path.write_bytes(gzip.compress("\n".join(current).encode()))
    storage = TelemetryStorage(tmp_path / "t")
    ingest_file(storage, path, profile=BAZEL / "clean.profile.json")
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    expected = _stored(tmp_path, "clean")
    assert {k: row[k] for k in ("duration_ms", "built", "executed_ms", "succeeded")} == {
        k: expected[k] for k in ("duration_ms", "built", "executed_ms", "succeeded")
    }


def test_nothing_private_of_the_bep_is_stored(tmp_path: Path) -> None:
    _stored(tmp_path, "clean")
    stored = b"".join(p.read_bytes() for p in (tmp_path / "clean").rglob("*.arrow"))
    for private in (b"/home/dev", b"buildhost", b"BUILD_USER", b"--profile"):
        assert private not in stored


def test_a_bep_without_its_start_is_one_clear_error(tmp_path: Path) -> None:
    lines = [
        line
        for line in (BAZEL / "clean.bep.json").read_text().splitlines()
        if '"started":{"uuid"' not in line
    ]
    path = tmp_path / "no-start.bep.json"
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match="has no started event"):
        ingest_file(TelemetryStorage(tmp_path / "t"), path)


def test_a_profile_goes_only_with_a_bep(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event":"build_started","session":"s","ts":1761575000000}\n')
    with pytest.raises(InputError, match="--profile goes with a Bazel"):
        ingest_file(TelemetryStorage(tmp_path / "t"), events, profile=BAZEL / "clean.profile.json")


def _with(tmp_path: Path, metadata: dict[str, str], status: dict[str, str]) -> dict[str, object]:
    """The real clean build, its (empty) buildMetadata and its workspaceStatus given these
    keys, as `--build_metadata=K=V` and a `--workspace_status_command` printing `K V` give
    them; stored, its session row."""
    lines = []
    for event in _bep("clean"):
        if "buildMetadata" in event:
            event = event | {"buildMetadata": {"metadata": metadata}}
        if "workspaceStatus" in event:
            items = event["workspaceStatus"]["item"]  # type: ignore[index]
            added = [{"key": k, "value": v} for k, v in status.items()]
            event = event | {"workspaceStatus": {"item": [*items, *added]}}
        lines.append(json.dumps(event))
    path = tmp_path / "with.bep.json"
    path.write_text("\n".join(lines))
    storage = TelemetryStorage(tmp_path / "with")
    ingest_file(storage, path, profile=BAZEL / "clean.profile.json")
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    return row


@pytest.mark.parametrize(
    ("metadata", "status", "commit", "branch"),
    [
        ({}, {}, None, None),  # the real build gave neither
        ({"COMMIT_SHA": "c0ffee1", "BRANCH_NAME": "main"}, {}, "c0ffee1", "main"),
        ({}, {"BUILD_SCM_REVISION": "abc1234", "GIT_BRANCH": "dev"}, "abc1234", "dev"),
        ({}, {"STABLE_GIT_COMMIT": "5ca1ab1e", "STABLE_GIT_BRANCH": "rel"}, "5ca1ab1e", "rel"),
        # A value the protocol cannot store is none: the next key's is taken, and the
        # build keeps its start.
        ({"COMMIT_SHA": "c" * 70_000}, {"BUILD_SCM_REVISION": "abc1234"}, "abc1234", None),
        ({"BRANCH_NAME": "bad\udc80"}, {}, None, None),
        # What the command line said beats the workspace status; an empty value is none.
        (
            {"COMMIT_SHA": "given", "BRANCH_NAME": " "},
            {"BUILD_SCM_REVISION": "status", "GIT_BRANCH": "from-status"},
            "given",
            "from-status",
        ),
    ],
)
def test_the_commit_and_branch_come_from_build_metadata_or_the_workspace_status(
    tmp_path: Path,
    metadata: dict[str, str],
    status: dict[str, str],
    commit: str | None,
    branch: str | None,
) -> None:
    row = _with(tmp_path, metadata, status)
    assert (row["commit"], row["branch"]) == (commit, branch)
    clean = _stored(tmp_path, "clean")
    assert (row["duration_ms"], row["tool"]) == (clean["duration_ms"], "bazel")
    assert row["host"] is None  # BUILD_HOST stays private


def test_other_build_metadata_is_not_stored(tmp_path: Path) -> None:
    _with(tmp_path, {"COMMIT_SHA": "c0ffee1", "ROLE": "secret-role"}, {"TOKEN": "hush"})
    stored = b"".join(p.read_bytes() for p in (tmp_path / "with").rglob("*.arrow"))
    assert b"c0ffee1" in stored
    assert b"secret-role" not in stored and b"hush" not in stored
