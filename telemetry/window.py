"""Which builds a command is asked about: the time window (``--since``, ``--until``) and
the filters on what a build says of itself (``--branch``, ``--tool``, ``--label``,
``--status``).

Both are plain values, read here without polars; the analyzer turns them into its queries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal, TypeAlias, get_args

from telemetry.errors import ConfigError

BuildStatus: TypeAlias = Literal["succeeded", "failed"]
BUILD_STATUSES: Final[tuple[BuildStatus, ...]] = get_args(BuildStatus)

_RELATIVE = re.compile(r"^(\d+)\s*(m|min|h|d|w)$")
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@dataclass(slots=True, frozen=True)
class Window:
    """Sessions that started in ``[since, until)``; an open end is unbounded.

    >>> Window.parse("2025-10-01", "2025-10-31").until
    datetime.datetime(2025, 11, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """

    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None, *, now: datetime | None = None) -> Window:
        """Parse ``YYYY-MM-DD`` (a whole UTC day), an RFC 3339 time, or an age like ``7d``.

        ``--until`` with a date includes that whole day.
        """
        moment = now or datetime.now(UTC)
        window = cls(
            _parse(since, "--since", moment, end_of_day=False),
            _parse(until, "--until", moment, end_of_day=True),
        )
        if window.since and window.until and window.since >= window.until:
            raise ConfigError(f"--since ({since}) must be earlier than --until ({until})")
        return window

    @property
    def first_day(self) -> date | None:
        return self.since.date() if self.since else None

    @property
    def last_day(self) -> date | None:
        # until is exclusive: a window ending at midnight does not reach into that day.
        return (self.until - timedelta(milliseconds=1)).date() if self.until else None


@dataclass(slots=True, frozen=True)
class Filter:
    """Builds on one branch, from one tool, with every one of some labels, of one outcome;
    what is left None (no labels) takes every build. An interrupted build is ``failed``.

    >>> Filter.parse(branch="main", labels=["ci=true"], status="failed").labels
    (('ci', 'true'),)
    """

    branch: str | None = None
    tool: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    status: BuildStatus | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in BUILD_STATUSES:
            raise ConfigError(
                f"--status must be one of {', '.join(BUILD_STATUSES)}, got {self.status!r}"
            )
        for option, value in (("--branch", self.branch), ("--tool", self.tool)):
            if value == "":  # no build is stored with an empty one: say so, not "no builds"
                raise ConfigError(f"{option} needs a name, got an empty one")

    @classmethod
    def parse(
        cls,
        *,
        branch: str | None = None,
        tool: str | None = None,
        labels: Iterable[str] = (),
        status: BuildStatus | None = None,
    ) -> Filter:
        """The filter of a command line; each label is ``KEY=VALUE`` (the value may be
        empty, as a label recorded with ``--label KEY=`` is)."""
        pairs = []
        for text in labels:
            key, equals, value = text.partition("=")
            if not equals or not key:
                raise ConfigError(f"--label must be KEY=VALUE, got {text!r}")
            pairs.append((key, value))
        return cls(branch, tool, tuple(pairs), status)

    @property
    def takes_all(self) -> bool:
        """Whether it takes every build (nothing was asked)."""
        return self == Filter()


def _parse(text: str | None, option: str, now: datetime, *, end_of_day: bool) -> datetime | None:
    if text is None or text.strip() == "":
        return None
    value = text.strip()
    try:
        moment = _moment(value, now, end_of_day=end_of_day)
    except ValueError:
        raise ConfigError(
            f"{option} must be a date (2025-10-27), a UTC time (2025-10-27T14:23:15) "
            f"or an age (7d, 12h, 2w), got {value!r}"
        ) from None
    except OverflowError:
        moment = None
    if moment is None or not _EARLIEST <= moment <= _LATEST:
        raise ConfigError(f"{option} must lie between 1970 and the year 9999, got {value!r}")
    # Times are stored to the millisecond: a finer bound would mean one thing to polars
    # (which truncates it) and another to a comparison in Python.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _moment(value: str, now: datetime, *, end_of_day: bool) -> datetime:
    relative = _RELATIVE.match(value.lower())
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        day = date.fromisoformat(value)  # 2025-10-27 or 20251027: a whole UTC day
    except ValueError:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start
