"""The event protocol: what parses, what is refused, and the messages."""

from __future__ import annotations

import math

import pytest

from telemetry.errors import EventError
from telemetry.events import (
    BuildFinished,
    BuildStarted,
    TargetFinished,
    TargetStarted,
    parse_event,
    parse_timestamp,
)


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
