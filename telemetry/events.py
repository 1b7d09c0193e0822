"""The event protocol: four typed events, their parsing from JSON objects, and the builder
that makes them of what another build tool wrote.

Any build tool reports a build as JSON Lines, one event per line; the Python collector takes the
same events as values, and the readers of other tools' files make them with
:class:`EventBuilder`, checked as :func:`parse_event` checks a JSON object. Timestamps are
normalised to integer Unix epoch milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias, get_args

from telemetry.errors import EventError

Status: TypeAlias = Literal["built", "cached", "failed", "skipped"]
STATUSES: Final[tuple[Status, ...]] = get_args(Status)
_STATUS: Final[dict[str, Status]] = {status: status for status in STATUSES}
# The statuses of targets that ran: their time is work the build did.
EXECUTED: Final[frozenset[Status]] = frozenset({"built", "failed"})

# The first epoch millisecond too late for an event (the year 10000). Arrow's timestamp[ms]
# holds far more, but Python's datetime (and every reader a person uses) stops at year 9999;
# a timestamp outside [1970, 10000) is a bug in the sender.
MAX_TS_MS: Final = 253_402_300_800_000
# The most characters a text of an event (a session, target, error, label) may hold.
MAX_TEXT: Final = 65_536
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
# The error stored for a build whose build_finished never came (the build was killed).
INTERRUPTED: Final = "interrupted"
# The error stored for a failed build that gave none (see failure_text). Templates that
# str.format and polars' pl.format both fill, so the collector and the columnar ingest,
# which fills them a column at a time, store the same text.
FAILED_TARGET_TEXT: Final = "target {} failed{}"
MORE_FAILED_TEXT: Final = " and {} more"


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
    # The targets this one waited for, by name: None when the tool did not say (unknown),
    # empty when it has none.
    deps: tuple[str, ...] | None = None


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
    if not 0 <= ms < MAX_TS_MS:
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
    return min(round(moment.timestamp() * 1000) + AHEAD_MS, MAX_TS_MS)


def format_ts(ts: int) -> str:
    """Epoch milliseconds as UTC text to the second, as reports show times.

    >>> format_ts(1761575000000)
    '2025-10-27T14:23:20'
    """
    return datetime.fromtimestamp(ts // 1000, UTC).strftime(TIME_FORMAT)


def failure_text(first: str, failed: int) -> str:
    """The error stored for a failed build that gave none: its first failed target (in the
    order the targets finished) and how many more failed. The columnar ingest fills the same
    templates a column at a time, held equal by
    ``tests/test_metrics.py::test_failure_texts_in_columns_are_failure_text``.

    >>> failure_text("//app:server", 3)
    'target //app:server failed and 2 more'
    """
    more = MORE_FAILED_TEXT.format(failed - 1) if failed > 1 else ""
    return FAILED_TARGET_TEXT.format(first, more)


def parse_event(obj: object) -> Event:
    """Validate one decoded JSON value as an event; unknown fields are ignored.

    >>> parse_event({"event": "build_finished", "session": "b-1", "ts": 5, "success": True})
    BuildFinished(session='b-1', ts=5, success=True, error=None)
    """
    if not isinstance(obj, dict):
        raise EventError(f"an event must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("event")
    session = _required(obj.get("session"), "session")
    ts = parse_timestamp(obj.get("ts"), name="ts") if "ts" in obj else _missing("ts")
    get = obj.get
    if kind == "build_started":
        return _build_started(
            session,
            ts,
            get("parallelism"),
            get("tool"),
            get("labels"),
            get("host"),
            get("commit"),
            get("branch"),
        )
    if kind == "target_started":
        return _target_started(session, ts, get("target"), get("worker"), get("deps"))
    if kind == "target_finished":
        return _target_finished(
            session, ts, get("target"), get("status"), get("duration_ms"), get("error")
        )
    if kind == "build_finished":
        return _build_finished(session, ts, get("success"), get("error"))
    raise EventError(
        "event must be one of build_started, target_started, target_finished, "
        f"build_finished, got {_short(kind)!r}"
    )


class EventBuilder:
    """The events of one build, made of what another tool wrote (values of any type) and
    checked as :func:`parse_event` checks a JSON object, without going through JSON. Each
    method returns the event, or the :class:`~telemetry.errors.EventError` saying why the
    values make none: a reader goes on past one bad value, as ingest goes on past a bad line.

    >>> build = EventBuilder("b-1")
    >>> build.target_finished(5, "//a", "built")
    TargetFinished(session='b-1', ts=5, target='//a', status='built', duration_ms=None, error=None)
    >>> build.build_finished(-1, success=True)
    EventError('ts must lie between 1970 and year 9999 in epoch milliseconds, got -1')
    """

    __slots__ = ("_session", "_wrong")

    def __init__(self, session: object) -> None:
        # Checked once; an unusable session makes every event of the build an error, as
        # each of its lines would be.
        self._session = ""
        self._wrong: str | None = None
        try:
            self._session = _required(session, "session")
        except EventError as error:
            self._wrong = str(error)

    def build_started(
        self,
        ts: object,
        *,
        parallelism: object = None,
        tool: object = None,
        labels: object = None,
        host: object = None,
        commit: object = None,
        branch: object = None,
    ) -> BuildStarted | EventError:
        try:
            return _build_started(
                self._checked(),
                parse_timestamp(ts),
                parallelism,
                tool,
                labels,
                host,
                commit,
                branch,
            )
        except EventError as error:
            return error

    def target_started(
        self, ts: object, target: object, *, worker: object = None, deps: object = None
    ) -> TargetStarted | EventError:
        try:
            return _target_started(self._checked(), parse_timestamp(ts), target, worker, deps)
        except EventError as error:
            return error

    def target_finished(
        self,
        ts: object,
        target: object,
        status: object,
        *,
        duration_ms: object = None,
        error: object = None,
    ) -> TargetFinished | EventError:
        try:
            return _target_finished(
                self._checked(), parse_timestamp(ts), target, status, duration_ms, error
            )
        except EventError as wrong:
            return wrong

    def build_finished(
        self, ts: object, *, success: object, error: object = None
    ) -> BuildFinished | EventError:
        try:
            return _build_finished(self._checked(), parse_timestamp(ts), success, error)
        except EventError as wrong:
            return wrong

    def _checked(self) -> str:
        if self._wrong is not None:
            raise EventError(self._wrong)  # a new one: raising one again lengthens its traceback
        return self._session


# The checks of each event's own fields, after its session and ts: one set for both
# parse_event and EventBuilder, in the order parse_event has always reported them.


def _build_started(
    session: str,
    ts: int,
    parallelism: object,
    tool: object,
    labels: object,
    host: object,
    commit: object,
    branch: object,
) -> BuildStarted:
    return BuildStarted(
        session=session,
        ts=ts,
        parallelism=_count(parallelism, "parallelism", minimum=1),
        tool=_text(tool, "tool"),
        labels=parse_labels(labels),
        host=_text(host, "host"),
        commit=_text(commit, "commit"),
        branch=_text(branch, "branch"),
    )


def _target_started(
    session: str, ts: int, target: object, worker: object, deps: object
) -> TargetStarted:
    return TargetStarted(
        session=session,
        ts=ts,
        target=_required(target, "target"),
        worker=_count(worker, "worker", minimum=0),
        deps=parse_deps(deps),
    )


def _target_finished(
    session: str, ts: int, target: object, status: object, duration_ms: object, error: object
) -> TargetFinished:
    name = _required(target, "target")
    known = _STATUS.get(status) if isinstance(status, str) else None
    if known is None:
        raise EventError(f"status must be one of {', '.join(STATUSES)}, got {_short(status)!r}")
    return TargetFinished(
        session=session,
        ts=ts,
        target=name,
        status=known,
        duration_ms=parse_duration(duration_ms),
        error=_text(error, "error"),
    )


def _build_finished(session: str, ts: int, success: object, error: object) -> BuildFinished:
    if not isinstance(success, bool):
        raise EventError(f"success must be true or false, got {_short(success)!r}")
    return BuildFinished(session=session, ts=ts, success=success, error=_text(error, "error"))


def _missing(name: str) -> int:
    raise EventError(f"{name} is missing")


def _required(value: object, name: str) -> str:
    if value is None:
        raise EventError(f"{name} is missing")
    if not isinstance(value, str) or value == "":
        raise EventError(f"{name} must be a non-empty string, got {_short(value)!r}")
    return _checked(value, name)


def session_problem(value: str) -> str | None:
    """Why ``value`` cannot be a build's session id (as the protocol checks it), or None.

    >>> session_problem("")
    "session must be a non-empty string, got ''"
    """
    return text_problem(value, "session")


def text_problem(value: str, name: str) -> str | None:
    """Why ``value`` cannot be stored as the protocol's text ``name`` (empty, too long, not
    text), or None."""
    try:
        _required(value, name)
    except EventError as error:
        return str(error)
    return None


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{name} must be a non-empty string, got {_short(value)!r}")
    return _checked(value, name)


def _checked(value: str, name: str) -> str:
    """Refuse text that cannot be stored: too long, or not encodable as UTF-8."""
    if len(value) > MAX_TEXT:
        raise EventError(f"{name} is {len(value)} characters long; at most {MAX_TEXT} are kept")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError(
            f"{name} holds an unpaired surrogate (\\ud800-\\udfff escape), which is not text: "
            f"{_short(value)!r}"
        ) from None
    return value


def _count(value: object, name: str, *, minimum: int) -> int | None:
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
        or not 0 <= value < MAX_TS_MS
    ):
        raise EventError(
            f"duration_ms must be a number of milliseconds from 0 up to about 317 years, "
            f"got {_short(value)!r}"
        )
    return round(value)


def parse_deps(value: object) -> tuple[str, ...] | None:
    """A ``deps`` value (the targets a target waited for) as a tuple of names, in the order
    given: None stays None (not known), an empty list is known to be none.

    >>> parse_deps(["//a:gen", "//b:lib"]), parse_deps([]), parse_deps(None)
    (('//a:gen', '//b:lib'), (), None)
    """
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise EventError(f"deps must be a list of target names, got {_short(value)!r}")
    for name in value:
        if not isinstance(name, str) or name == "":
            raise EventError(
                f"deps must hold target names (non-empty strings), got {_short(name)!r}"
            )
        _checked(name, "a name in deps")
    return tuple(value)


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
