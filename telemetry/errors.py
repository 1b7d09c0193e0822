"""The exceptions and warnings the library raises on purpose.

Every error derives from :class:`TelemetryError`, whose message says what happened, shows the
bad value and names one next step, so a caller can show it to a person as it is.
"""

from __future__ import annotations

import errno


class TelemetryError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(TelemetryError):
    """A configuration value (environment variable or option) is invalid."""


class EventError(TelemetryError):
    """An event does not follow the protocol."""


class StorageError(TelemetryError):
    """The store could not be read or written."""


class TelemetryWarning(UserWarning):
    """Something was skipped or could not be stored, and the caller went on."""


class CorruptFileWarning(TelemetryWarning):
    """A stored file could not be read and was skipped."""


class InputError(TelemetryError):
    """An input file or stream could not be read."""


def write_failure(error: OSError) -> str:
    """What went wrong in a write, and where to look: the disk or the permissions only when
    they are the cause.

    >>> write_failure(OSError(28, "No space left on device"))
    'No space left on device; free some space on the disk'
    """
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{reason}; free some space on the disk"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{reason}; check that the directory is writable"
    return reason
