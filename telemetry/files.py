"""Writing a user's output file atomically: the old file stays until the new one is whole."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from telemetry.errors import InputError


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """Yield a binary handle; on success it replaces ``path``, on failure nothing changes.

    A symlink is followed (the link stays, its target is replaced); a FIFO or a device is
    written straight into, since it cannot be replaced. The new file gets the old file's
    permissions, or those a plain ``open`` would give.

    >>> with atomic_output(Path("sessions.csv")) as out:  # doctest: +SKIP
    ...     out.write(b"startTime,durationMs\\r\\n")
    """
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name to --output")
    real = Path(os.path.realpath(path))
    if real.exists() and not real.is_file():
        with _opened(real) as handle:
            yield handle
        return
    try:
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=real.parent)
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _mode_for(real))
        os.replace(temporary, real)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[IO[bytes]]:
    try:
        with path.open("wb") as handle:
            yield handle
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        # The umask can only be read by setting it; the CLI is single-threaded here.
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
