"""The event protocol: four typed events, and their parsing from JSON objects.

Any build tool reports a build as JSON Lines, one event per line; the Python collector takes the
same events as values. Timestamps are normalised to integer Unix epoch milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

from telemetry.errors import EventError

Status: TypeAlias = Literal["built", "cached", "failed", "skipped"]
STATUSES: Final[tuple[Status, ...]] = ("built", "cached", "failed", "skipped")
EXECUTED: Final[frozenset[str]] = frozenset({"built", "failed"})

# Arrow's timestamp[ms] holds far more, but Python's datetime (and every reader a person
# uses) stops at year 9999; a timestamp outside [1970, 10000) is a bug in the sender.
_MAX_TS_MS: Final = 253_402_300_800_000
_MAX_TEXT: Final = 65_536
# How far ahead of the local clock an event may be dated. A build from the future would be
# the store's newest day for as long as its clock is wrong, and retention keeps the newest
# days, so it would push real builds out (a build dated 2099 emptied every day before it).
# Synchronised clocks differ by milliseconds, a drifting VM by minutes; Prometheus, Loki and
# Mimir refuse samples more than 10 minutes ahead. An hour leaves room for a slow clock
# while the harm stays small: a build it lets in is no longer ahead an hour later.
AHEAD_MS: Final = 3_600_000
# The longest line of JSON-lines input read (without its line ending), unless told otherwise:
# an endless line ends the reading there instead of filling the memory.
MAX_LINE_BYTES: Final = 16 << 20
# How times are written for people: UTC, to the second.
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S"


@dataclass(slots=True, frozen=True)
class BuildStarted:
    session: str
    ts: int
    parallelism: int | None = None
    tool: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    host: str | None = None
    commit: str | None = None
    branch: str | None = None


@dataclass(slots=True, frozen=True)
class TargetStarted:
    session: str
    ts: int
    target: str
    worker: int | None = None


@dataclass(slots=True, frozen=True)
class TargetFinished:
    session: str
    ts: int
    target: str
    status: Status
    duration_ms: int | None = None
    error: str | None = None


@dataclass(slots=True, frozen=True)
class BuildFinished:
    session: str
    ts: int
    success: bool
    error: str | None = None


Event: TypeAlias = BuildStarted | TargetStarted | TargetFinished | BuildFinished


def parse_timestamp(value: object, *, name: str = "ts") -> int:
    """Epoch milliseconds (int or float) or an RFC 3339 string, as integer milliseconds.

    >>> parse_timestamp("2025-10-27T14:23:20Z")
    1761575000000
    """
    if isinstance(value, bool):
        raise EventError(f"{name} must be epoch milliseconds or an RFC 3339 string, got {value!r}")
    if isinstance(value, int):
        ms = value  # checked against the range below; never converted to a float
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise EventError(f"{name} must be a finite number of milliseconds, got {value!r}")
        ms = round(value)
    elif isinstance(value, str):
        try:
            # RFC 3339 allows a lower-case "t" and "z"; Python's parser wants capitals.
            moment = datetime.fromisoformat(value.strip().upper())
        except ValueError:
            raise EventError(
                f"{name} must be epoch milliseconds or an RFC 3339 string "
                f"like 2025-10-27T14:23:15Z, got {_short(value)!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = round(moment.timestamp() * 1000)
    else:
        raise EventError(
            f"{name} must be epoch milliseconds or an RFC 3339 string, got {_short(value)!r}"
        )
    if not 0 <= ms < _MAX_TS_MS:
        raise EventError(
            f"{name} must lie between 1970 and year 9999 in epoch milliseconds, "
            f"got {_short(value)!r}"
        )
    return ms


def latest_ts(now: datetime | None = None) -> int:
    """The first epoch millisecond too far ahead of ``now`` (the local clock by default) for
    an event to be dated at: :data:`AHEAD_MS` after it.

    >>> latest_ts(datetime(2025, 10, 27, 14, 23, 20, tzinfo=UTC))
    1761578600000
    """
    moment = datetime.now(UTC) if now is None else now
    return min(round(moment.timestamp() * 1000) + AHEAD_MS, _MAX_TS_MS)


def format_ts(ts: int) -> str:
    """Epoch milliseconds as UTC text to the second, as reports show times.

    >>> format_ts(1761575000000)
    '2025-10-27T14:23:20'
    """
    return datetime.fromtimestamp(ts // 1000, UTC).strftime(TIME_FORMAT)


def parse_event(obj: object) -> Event:
    """Validate one decoded JSON value as an event; unknown fields are ignored.

    >>> parse_event({"event": "build_finished", "session": "b-1", "ts": 5, "success": True})
    BuildFinished(session='b-1', ts=5, success=True, error=None)
    """
    if not isinstance(obj, dict):
        raise EventError(f"an event must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("event")
    session = _text(obj, "session", required=True)
    assert session is not None
    ts = parse_timestamp(obj.get("ts"), name="ts") if "ts" in obj else _missing("ts")
    if kind == "build_started":
        return BuildStarted(
            session=session,
            ts=ts,
            parallelism=_count(obj, "parallelism", minimum=1),
            tool=_text(obj, "tool"),
            labels=parse_labels(obj.get("labels")),
            host=_text(obj, "host"),
            commit=_text(obj, "commit"),
            branch=_text(obj, "branch"),
        )
    if kind == "target_started":
        target = _text(obj, "target", required=True)
        assert target is not None
        return TargetStarted(
            session=session, ts=ts, target=target, worker=_count(obj, "worker", minimum=0)
        )
    if kind == "target_finished":
        target = _text(obj, "target", required=True)
        assert target is not None
        status = obj.get("status")
        if status not in STATUSES:
            raise EventError(f"status must be one of {', '.join(STATUSES)}, got {_short(status)!r}")
        return TargetFinished(
            session=session,
            ts=ts,
            target=target,
            status=status,
            duration_ms=parse_duration(obj.get("duration_ms")),
            error=_text(obj, "error"),
        )
    if kind == "build_finished":
        success = obj.get("success")
        if not isinstance(success, bool):
            raise EventError(f"success must be true or false, got {_short(success)!r}")
        return BuildFinished(session=session, ts=ts, success=success, error=_text(obj, "error"))
    raise EventError(
        "event must be one of build_started, target_started, target_finished, "
        f"build_finished, got {_short(kind)!r}"
    )


def _missing(name: str) -> int:
    raise EventError(f"{name} is missing")


def _text(obj: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise EventError(f"{name} is missing")
        return None
    if not isinstance(value, str) or (required and value == ""):
        raise EventError(f"{name} must be a non-empty string, got {_short(value)!r}")
    return _checked(value, name)


def _checked(value: str, name: str) -> str:
    """Refuse text that cannot be stored: too long, or not encodable as UTF-8."""
    if len(value) > _MAX_TEXT:
        raise EventError(f"{name} is {len(value)} characters long; at most {_MAX_TEXT} are kept")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError(
            f"{name} holds an unpaired surrogate (\\ud800-\\udfff escape), which is not text: "
            f"{_short(value)!r}"
        ) from None
    return value


def _count(obj: Mapping[str, Any], name: str, *, minimum: int) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**31:
        raise EventError(f"{name} must be a whole number ≥ {minimum}, got {_short(value)!r}")
    return value


def parse_duration(value: object) -> int | None:
    """A ``duration_ms`` value as whole milliseconds (None stays None)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or not 0 <= value < _MAX_TS_MS
    ):
        raise EventError(
            f"duration_ms must be a number of milliseconds from 0 up to about 317 years, "
            f"got {_short(value)!r}"
        )
    return round(value)


def parse_labels(value: object) -> dict[str, str]:
    """Labels as a ``str → str`` dict; numbers and booleans become their text."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"labels must be an object of strings, got {_short(value)!r}")
    labels: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise EventError(f"label names must be strings, got {_short(key)!r}")
        _checked(key, "a label name")
        if isinstance(item, str):
            labels[key] = _checked(item, f"label {key!r}")
        elif isinstance(item, bool):
            labels[key] = "true" if item else "false"
        elif isinstance(item, int) or (isinstance(item, float) and math.isfinite(item)):
            labels[key] = str(item)
        else:
            raise EventError(f"label {key!r} must be a string, got {_short(item)!r}")
    return labels


def _short(value: object) -> object:
    """Keep error messages one readable line even when the bad value is huge."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except ValueError:  # an integer with more digits than Python will print
        return "<a number too long to show>"
    if len(text) > 60:
        return text[:57] + "..."
    return value
