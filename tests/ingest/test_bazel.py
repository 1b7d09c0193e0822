"""Bazel's Build Event Protocol and trace profile, from a real Bazel (data-fixtures/bazel,
made by its make.sh): a clean build, the same from Bazel's caches, and one that fails."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import InputError
from telemetry.ingest import ingest_file
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES

BAZEL = FIXTURES / "bazel"


def _bep(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (BAZEL / f"{name}.bep.json").read_text().splitlines()]


def _field(name: str, key: str) -> dict[str, object]:
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
    assert row["duration_ms"] == int(finished["finishTimeMillis"]) - int(  # type: ignore[arg-type]
        started["startTimeMillis"]  # type: ignore[arg-type]
    )
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
