"""Configuration from ``BUILDER_TELEMETRY_*`` environment variables, validated, and where
the store is when no variable names it.

A flag on the command line beats the environment: callers build a config with
:meth:`TelemetryConfig.from_env` and then ``_replace`` what the user passed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from telemetry.errors import ConfigError

CACHE_FOLDER = ".builder-cache"
DEFAULT_DIR = Path(CACHE_FOLDER) / "telemetry"
DEFAULT_MAX_SESSIONS = 1000
DEFAULT_RETENTION_DAYS = 90
DEFAULT_ROLLUP_RETENTION_DAYS = 730
DEFAULT_REGRESSION_THRESHOLD = 1.5
# Bounds that keep date arithmetic in range (100,000 days is over 270 years).
MAX_SESSIONS_LIMIT = 1_000_000_000
RETENTION_DAYS_LIMIT = 100_000

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class TelemetryConfig(NamedTuple):
    """Where the data lives and how long it is kept.

    A named tuple rather than a dataclass: ``builder record`` reads it around every build,
    and loading :mod:`dataclasses` alone costs it half of what starting Python does.

    >>> TelemetryConfig.from_env({"BUILDER_TELEMETRY_MAX_SESSIONS": "500"}).max_sessions
    500
    """

    enabled: bool = True
    dir: Path = DEFAULT_DIR
    max_sessions: int = DEFAULT_MAX_SESSIONS
    retention_days: int = DEFAULT_RETENTION_DAYS
    regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD
    record_host: bool = False  # store a hash of the host name with recorded builds
    rollup_retention_days: int = DEFAULT_ROLLUP_RETENTION_DAYS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        """Read and validate the ``BUILDER_TELEMETRY_*`` variables (``os.environ`` by default);
        without ``BUILDER_TELEMETRY_DIR``, the store is the one :func:`find_dir` finds."""
        env = os.environ if environ is None else environ
        return cls(
            enabled=_parse_bool(env, "BUILDER_TELEMETRY_ENABLED", default=True),
            dir=_parse_dir(env, "BUILDER_TELEMETRY_DIR"),
            max_sessions=_parse_positive_int(
                env, "BUILDER_TELEMETRY_MAX_SESSIONS", DEFAULT_MAX_SESSIONS, MAX_SESSIONS_LIMIT
            ),
            retention_days=_parse_positive_int(
                env,
                "BUILDER_TELEMETRY_RETENTION_DAYS",
                DEFAULT_RETENTION_DAYS,
                RETENTION_DAYS_LIMIT,
            ),
            regression_threshold=parse_threshold(
                env.get("BUILDER_TELEMETRY_REGRESSION_THRESHOLD"),
                source="BUILDER_TELEMETRY_REGRESSION_THRESHOLD",
            ),
            record_host=_parse_bool(env, "BUILDER_TELEMETRY_HOST", default=False),
            rollup_retention_days=_parse_positive_int(
                env,
                "BUILDER_TELEMETRY_ROLLUP_RETENTION_DAYS",
                DEFAULT_ROLLUP_RETENTION_DAYS,
                RETENTION_DAYS_LIMIT,
            ),
        )


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _parse_bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = _raw(env, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(
        f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {value!r}; "
        f"unset it to use the default"
    )


def find_dir(start: Path | None = None) -> Path:
    """The default store, found as git finds ``.git``: ``.builder-cache/telemetry`` under the
    nearest of ``start`` (the current directory by default) and its ancestors that holds a
    ``.builder-cache`` folder, else under the top of the enclosing git work tree, else under
    ``start``. Relative when that is the current directory, as git says ``.git`` at the top
    of a work tree, and absolute otherwise.

    So ``builder record`` in a subfolder stores where ``builder telemetry`` at the top (or in
    another subfolder) reads, instead of starting a second store wherever it was run.

    >>> find_dir(Path("/home/me/repo/src/app"))  # doctest: +SKIP
    PosixPath('/home/me/repo/.builder-cache/telemetry')
    """
    try:
        cwd = Path.cwd()
    except OSError:  # the current directory was removed: nothing above it can be read
        return DEFAULT_DIR
    here = cwd if start is None else cwd / start
    folders = (here, *here.parents)
    # os.path, not Path: a folder we may not look into is passed over, not an error.
    found = next((f for f in folders if os.path.isdir(f / CACHE_FOLDER)), None)
    if found is None:
        # A .git folder, or a .git file in a linked work tree or a submodule.
        found = next((f for f in folders if os.path.exists(f / ".git")), here)
    return DEFAULT_DIR if found == cwd else found / DEFAULT_DIR


def _parse_dir(env: Mapping[str, str], name: str) -> Path:
    value = env.get(name)
    if value is None or value.strip() == "":
        return find_dir()
    if "\0" in value:
        raise ConfigError(f"{name} must be a directory path, got {value!r}")
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        raise ConfigError(f"{name} names a home directory that does not exist: {value!r}") from None


def _parse_positive_int(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    value = _raw(env, name)
    if value is None:
        return default
    return parse_positive_int(value, source=name, maximum=maximum)


def parse_positive_int(value: str, *, source: str, maximum: int) -> int:
    """Parse a whole number from 1 to ``maximum``, naming ``source`` in the error."""
    try:
        number = int(value) if "_" not in value else 0  # Python's 1_000, not a person's
    except ValueError:
        number = 0
    if not 1 <= number <= maximum:
        raise ConfigError(f"{source} must be a whole number from 1 to {maximum}, got {value!r}")
    return number


def parse_number(text: str, *, source: str, example: str) -> float:
    """A number as a person writes it (``1.5``, ``-2``, ``1e3``, ``inf``); the callers say
    which are usable. Python's ``float`` also takes ``1_5`` (as 15) and other scripts'
    digits: a typo must not pass.

    >>> parse_number("1.5", source="--ratio", example="1.5")
    1.5
    """
    problem = ConfigError(f"{source} must be a number (e.g. {example}), got {text!r}")
    if "_" in text or not text.isascii():
        raise problem
    try:
        return float(text)
    except ValueError:
        raise problem from None


def parse_threshold(value: str | None, *, source: str) -> float:
    """Parse a regression threshold: a finite ratio greater than 1 (``1.5`` = 50% slower)."""
    if value is None or value.strip() == "":
        return DEFAULT_REGRESSION_THRESHOLD
    try:
        if "_" in value:  # Python reads 1_5 as 15; a person wrote something else
            raise ValueError(value)
        number = float(value)
    except ValueError:
        raise ConfigError(
            f"{source} must be a number greater than 1 (e.g. 1.5), got {value!r}"
        ) from None
    if not math.isfinite(number) or number <= 1.0:
        raise ConfigError(f"{source} must be a number greater than 1 (e.g. 1.5), got {value!r}")
    return number
