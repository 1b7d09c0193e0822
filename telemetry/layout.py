"""The store's layout: where each file of a dataset lives and what its name says.

Hive partitioning by the UTC day a session started, one folder per dataset::

    <dir>/sessions/date=2025-10-27/20251027T142315Z-3f9a1c2b7d4e-n1.arrow
    <dir>/targets/date=2025-10-27/20251027T142315Z-3f9a1c2b7d4e-n25.arrow
    <dir>/daily_targets/date=2025-10-26/20251027T030000Z-9b1e22c0a7f3-day-n530.arrow

A name is ``<stem>-n<rows>.arrow``. The stem (the UTC moment of the write and a random part)
is what the files of one write share; ``-day`` marks the files of a compacted day; ``-n``
is the file's row count, which lets retention and ``recent`` plan without opening files.
A name starting with a dot is never data (a writer's temporary file, removed days).

A compacted file also has a Parquet copy in a hidden folder of its day, which SQL engines
read faster (:func:`copy_path`)::

    <dir>/targets/date=2025-10-26/.parquet/20251027T030000Z-9b1e22c0a7f3-day-n25000.arrow.v1.parquet

This module is the one place that spells the layout out: the writer, the snapshot, the
maintenance and the query engines (DuckDB, Spark, the Parquet export) all ask it.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

from telemetry.schema import Dataset

# The partition column: its name in the folders, and the column readers add from it.
PARTITION_KEY: Final = "date"
TMP_PREFIX: Final = ".tmp-"
TRASH_PREFIX: Final = ".trash-"
# The hidden folder of a day partition that holds the Parquet copies of its compacted files.
COPIES: Final = ".parquet"
# Beside the datasets: the long-lived daily rollups (telemetry.rollups), the closed months
# packed for long windows (telemetry.months), and the scheduled jobs' run log
# (pipelines.jobs). The rollups and the packs keep a folder per month.
ROLLUPS: Final = "rollups"
MONTHS: Final = "months"
JOBS: Final = "jobs"
_MONTH_PREFIX: Final = "month="
_MONTH = re.compile(rf"^{_MONTH_PREFIX}(\d{{4}})-(0[1-9]|1[0-2])$")
_PARTITION = re.compile(rf"^{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")
# Only names this writer makes are trusted for their row count; any other file is counted
# by opening it, so a stray file's name cannot make retention delete real history.
_ROWS = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}(?:-day)?-n(\d+)\.arrow$")
_COUNT_SUFFIX = re.compile(r"(-n\d+)?\.arrow$")
_DAY_FILE = re.compile(r"-day-n\d+\.arrow$")
_COPY = re.compile(r"^(.+\.arrow)\.v(\d+)\.parquet$")


@dataclass(slots=True, frozen=True)
class Layout:
    """The folders of one store.

    >>> Layout(Path("t")).partition("targets", date(2025, 10, 27))
    PosixPath('t/targets/date=2025-10-27')
    """

    root: Path

    def dataset(self, dataset: Dataset) -> Path:
        """The folder of a dataset's day partitions."""
        return self.root / dataset

    def partition(self, dataset: Dataset, day: date) -> Path:
        """The folder of one day of a dataset."""
        return self.root / dataset / partition_name(day)


@functools.lru_cache(maxsize=4096)  # a year's snapshot names each of 365 days three times
def partition_name(day: date) -> str:
    """The folder name of a day partition: ``date=2025-10-27``."""
    return f"{PARTITION_KEY}={day.isoformat()}"


@functools.lru_cache(maxsize=4096)  # a year's snapshot reads each of 365 names three times
def partition_day(name: str) -> date | None:
    """The day a partition folder's name stands for; None for any other name."""
    match = _PARTITION.match(name)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def month_of(day: date) -> date:
    """The first day of ``day``'s month: what a month is keyed by."""
    return day.replace(day=1)


def month_end(month: date) -> date:
    """The last day of ``month``'s month.

    >>> month_end(date(2024, 2, 1))
    datetime.date(2024, 2, 29)
    """
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


def month_name(month: date) -> str:
    """The folder name of a month: ``month=2025-10``."""
    return f"{_MONTH_PREFIX}{month:%Y-%m}"


def month_named(name: str) -> date | None:
    """The month a folder's name stands for; None for any other name."""
    match = _MONTH.match(name)
    if not match or match.group(1) == "0000":  # no year 0 in a date
        return None
    return date(int(match.group(1)), int(match.group(2)), 1)


def month_folders(parent: Path) -> list[tuple[date, Path]]:
    """The month folders in ``parent`` (the rollups', the packs'), oldest first; none when
    it is not there. OSError when it cannot be listed."""
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        month = month_named(entry.name)
        if month is not None and entry.is_dir():
            found.append((month, Path(entry.path)))
    return sorted(found)


def new_stem(moment: datetime, *, compacted: bool = False) -> str:
    """A fresh name stem for the files of one write made at ``moment``."""
    stem = f"{moment:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
    return f"{stem}-day" if compacted else stem


def file_name(stem: str, rows: int) -> str:
    """The name of a data file: its stem and its row count."""
    return f"{stem}-n{rows}.arrow"


def temporary_name(stem: str) -> str:
    """The hidden name a file is written under before it is renamed into place."""
    return f"{TMP_PREFIX}{stem}.arrow.partial"


def rows_named(name: str) -> int | None:
    """The row count a name made by this writer states; None for any other name."""
    match = _ROWS.match(name)
    return int(match.group(1)) if match else None


def stem(name: str) -> str:
    """What the files of one write share: the name less ``-nN.arrow``."""
    if name.endswith(".arrow"):  # as the pattern has it, without its cost (a year's files)
        base = name[: -len(".arrow")]
        head, sep, count = base.rpartition("-n")
        return head if sep and count.isdecimal() else base
    return _COUNT_SUFFIX.sub("", name)


def is_data(name: str) -> bool:
    """Whether a file name is a data file's (not hidden, ``.arrow``)."""
    return not name.startswith(".") and name.endswith(".arrow")


def is_compacted(name: str) -> bool:
    """Whether a data file holds a compacted day."""
    return _DAY_FILE.search(name) is not None


def copy_path(path: str, version: int) -> str:
    """Where the Parquet copy of the data file at ``path``, in schema ``version``, lives:
    ``.parquet/<its name>.v<version>.parquet`` in the file's day folder (a string: a
    snapshot looks for the copies of a year's files, and paths as objects cost more).

    >>> copy_path("t/targets/date=2025-10-26/x-day-n5.arrow", 1)
    't/targets/date=2025-10-26/.parquet/x-day-n5.arrow.v1.parquet'
    """
    folder, name = os.path.split(path)
    return os.path.join(folder, COPIES, f"{name}.v{version}.parquet")


def copied(name: str) -> tuple[str, int] | None:
    """The name of the data file a copy's name stands for, and the copy's schema version;
    None for any other name."""
    match = _COPY.match(name)
    return (match.group(1), int(match.group(2))) if match else None
