"""The event protocol: what parses, what is refused, and the messages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from telemetry.errors import EventError
from telemetry.events import (
    BuildFinished,
    BuildStarted,
    EventBuilder,
    TargetFinished,
    TargetStarted,
    parse_event,
    parse_timestamp,
)
from tests.conftest import T0, Runner


def test_the_seed_example_parses() -> None:
    assert parse_event(
        {
            "event": "build_started",
            "session": "b-42",
            "ts": 1761575000000,
            "parallelism": 8,
            "tool": "ninja",
            "labels": {"BUILDER_PARALLEL": "8"},
            "unknown": [1, 2],
        }
    ) == BuildStarted("b-42", 1761575000000, 8, "ninja", {"BUILDER_PARALLEL": "8"})
    assert parse_event(
        {
            "event": "target_started",
            "session": "b-42",
            "ts": 1761575000010,
            "target": "//shared:proto",
            "worker": 0,
        }
    ) == TargetStarted("b-42", 1761575000010, "//shared:proto", 0)
    assert parse_event(
        {
            "event": "target_finished",
            "session": "b-42",
            "ts": 1761575000455,
            "target": "//shared:proto",
            "status": "failed",
            "duration_ms": 12.6,
            "error": "x",
        }
    ) == TargetFinished("b-42", 1761575000455, "//shared:proto", "failed", 13, "x")
    assert parse_event(
        {"event": "build_finished", "session": "b-42", "ts": 1761575002341, "success": True}
    ) == BuildFinished("b-42", 1761575002341, True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1761575000000, 1761575000000),
        (1761575000000.4, 1761575000000),
        (1761575000000.6, 1761575000001),
        ("2025-10-27T14:23:20Z", 1761575000000),
        ("2025-10-27T14:23:20.250Z", 1761575000250),
        ("2025-10-27T16:23:20+02:00", 1761575000000),
        ("2025-10-27T14:23:20", 1761575000000),  # no offset: UTC
    ],
)
def test_timestamps(value: object, expected: int) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -1, True, "yesterday", None, [1], 10**20, "9999-99-99"]
)
def test_bad_timestamps(value: object) -> None:
    with pytest.raises(EventError, match="ts must"):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([1, 2], "must be a JSON object, got list"),
        ({"event": "build_started", "ts": 1}, "session is missing"),
        ({"event": "build_started", "session": "", "ts": 1}, "session must be a non-empty"),
        ({"event": "build_started", "session": "s"}, "ts is missing"),
        ({"event": "exploded", "session": "s", "ts": 1}, "event must be one of"),
        (
            {
                "event": "target_finished",
                "session": "s",
                "ts": 1,
                "target": "t",
                "status": "exploded",
            },
            "status must be one of built, cached, failed, skipped",
        ),
        (
            {"event": "target_finished", "session": "s", "ts": 1, "status": "built"},
            "target is missing",
        ),
        (
            {"event": "build_started", "session": "s", "ts": 1, "parallelism": "eight"},
            "parallelism must be a whole number ≥ 1, got 'eight'",
        ),
        (
            {"event": "build_started", "session": "s", "ts": 1, "parallelism": 0},
            "parallelism must be a whole number ≥ 1",
        ),
        (
            {"event": "target_started", "session": "s", "ts": 1, "target": "t", "worker": -1},
            "worker must be a whole number ≥ 0",
        ),
        (
            {
                "event": "target_finished",
                "session": "s",
                "ts": 1,
                "target": "t",
                "status": "built",
                "duration_ms": -5,
            },
            "duration_ms must be",
        ),
        ({"event": "build_finished", "session": "s", "ts": 1}, "success must be true or false"),
        (
            {"event": "build_started", "session": "s", "ts": 1, "labels": {"a": {"b": 1}}},
            "label 'a' must be a string",
        ),
        (
            {"event": "build_started", "session": "s", "ts": 1, "labels": ["a"]},
            "labels must be an object",
        ),
    ],
)
def test_invalid_events_say_what_is_wrong(event: object, message: str) -> None:
    with pytest.raises(EventError, match=message.replace("(", r"\(")):
        parse_event(event)


def test_scalar_labels_become_strings() -> None:
    event = parse_event(
        {
            "event": "build_started",
            "session": "s",
            "ts": 1,
            "labels": {"jobs": 8, "ci": True, "ratio": 1.5},
        }
    )
    assert isinstance(event, BuildStarted)
    assert event.labels == {"jobs": "8", "ci": "true", "ratio": "1.5"}


def test_huge_values_keep_the_message_short() -> None:
    with pytest.raises(EventError) as error:
        parse_event({"event": "x" * 100_000, "session": "s", "ts": 1})
    assert len(str(error.value)) < 200


def _started(**fields: object) -> dict[str, object]:
    return {"event": "target_started", "session": "s", "ts": 1, "target": "//app", **fields}


def test_deps_are_the_names_a_target_waited_for_in_the_order_given() -> None:
    assert parse_event(_started(deps=["//lib", "//gen", "//lib"])) == TargetStarted(
        "s", 1, "//app", None, ("//lib", "//gen", "//lib")
    )
    # An empty list is known to be none; absent (or null) is not known.
    assert parse_event(_started(deps=[])) == TargetStarted("s", 1, "//app", None, ())
    assert parse_event(_started()) == TargetStarted("s", 1, "//app", None, None)
    assert parse_event(_started(deps=None)).deps is None  # type: ignore[union-attr]
    # The protocol has them on target_started only: elsewhere they are an unknown field.
    finished = {"event": "target_finished", "session": "s", "ts": 1, "target": "//app",
                "status": "built", "deps": "anything"}  # fmt: skip
    assert parse_event(finished) == TargetFinished("s", 1, "//app", "built")


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        ("//lib", "deps must be a list of target names, got '//lib'"),
        ({"//lib": 1}, "deps must be a list of target names, got {'//lib': 1}"),
        (5, "deps must be a list of target names, got 5"),
        (["//lib", 5], "deps must hold target names (non-empty strings), got 5"),
        (["//lib", None], "deps must hold target names (non-empty strings), got None"),
        ([""], "deps must hold target names (non-empty strings), got ''"),
        ([["//lib"]], "deps must hold target names (non-empty strings), got ['//lib']"),
        (["x" * 65_537], "a name in deps is 65537 characters long; at most 65536 are kept"),
        (["\ud800"], "a name in deps holds an unpaired surrogate"),
    ],
)
def test_deps_that_are_no_list_of_names_are_refused(deps: object, message: str) -> None:
    with pytest.raises(EventError) as error:
        parse_event(_started(deps=deps))
    assert str(error.value).startswith(message)


def test_the_builder_checks_deps_as_parse_event_does() -> None:
    build = EventBuilder("s")
    assert build.target_started(1, "//app", deps=("//lib",)) == TargetStarted(
        "s", 1, "//app", None, ("//lib",)
    )
    wrong = build.target_started(1, "//app", deps=[3])
    assert isinstance(wrong, EventError)
    assert str(wrong) == "deps must hold target names (non-empty strings), got 3"


def test_a_line_with_bad_deps_is_named_and_skipped(cli: Runner, tmp_path: Path) -> None:
    """Read in columns or line by line, a bad deps value is a malformed line like any other:
    one line on stderr with its number, the rest stored, exit status 1."""
    lines = [
        {"event": "build_started", "session": "b", "ts": T0},
        {"event": "target_started", "session": "b", "ts": T0, "target": "//gen", "deps": []},
        {"event": "target_finished", "session": "b", "ts": T0 + 5, "target": "//gen",
         "status": "built"},
        {"event": "target_started", "session": "b", "ts": T0 + 5, "target": "//app",
         "deps": ["//gen", 7]},
        {"event": "target_finished", "session": "b", "ts": T0 + 9, "target": "//app",
         "status": "built"},
        {"event": "build_finished", "session": "b", "ts": T0 + 9, "success": True},
    ]  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    result = cli("telemetry", "ingest", str(path))
    assert (result.code, result.stdout, result.stderr) == (
        1,
        "Stored 1 build from 5 events.\n",
        f"{path}:4: deps must hold target names (non-empty strings), got 7\n"
        "Skipped 1 malformed line.\n",
    )
    # //app has no start: its deps are not known, and it took no time.
    shown = json.loads(cli("telemetry", "show", "b", "--format", "json").stdout)
    assert [(t["target"], t["deps"], t["durationMs"]) for t in shown["targets"]] == [
        ("//gen", [], 5),
        ("//app", None, 0),
    ]
