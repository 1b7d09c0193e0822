"""Whether a stored file can be read: its footer, its schema and, when asked, its data.

A reader trusts a file's footer for the place of every record batch (polars panics on a
footer pointing past the end), so every file is checked here before it is read: both ends
are read and the footer's blocks must tile the file. :func:`problem` says in words what is
wrong with a file, the words ``verify`` and every warning use.
"""

from __future__ import annotations

import functools
import os
import re
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from telemetry.schema import Dataset, judge_schema

if TYPE_CHECKING:
    import pyarrow as pa

# How a problem that is the user's permissions, not the file's content, begins.
UNREADABLE = "unreadable"
# What a file that was removed while it was checked is said to be (not a problem).
VANISHED = "vanished"
_MAGIC = b"ARROW1"
_ZSTD = 1  # CompressionType.ZSTD in Arrow's Message.fbs


class Finding(NamedTuple):
    """What a check found in one file."""

    path: Path
    problem: str | None  # None: it reads in full

    @property
    def damaged(self) -> bool:
        """Whether the file holds what cannot be read. A file the user may not read is
        not known to be damaged: it is reported, never moved aside."""
        return self.problem is not None and not self.problem.startswith(UNREADABLE)


def problem(path: Path, dataset: Dataset, *, full: bool = False) -> str | None:
    """Why ``path`` cannot be read as a file of ``dataset``, or None when it can.

    By default only the footer and schema are read; ``full`` reads and validates the data.
    """
    return examine(path, dataset, full=full)[0]


def examine(path: Path, dataset: Dataset, *, full: bool) -> tuple[str | None, tuple[str, ...]]:
    """What :func:`problem` says, and the columns a readable file lacks."""
    if not full:
        said = _examined_without_pyarrow(path, dataset)
        if said is not None:
            return said
    import pyarrow as pa
    import pyarrow.ipc as ipc

    try:
        schema = footer_schema(path)
        if full:
            with pa.memory_map(str(path)) as source:
                ipc.open_file(source).read_all().validate(full=True)
    except FileNotFoundError:
        return VANISHED, ()
    except Unsound as unsound:
        try:  # pyarrow's words, when it has any, are the ones people search for
            with ipc.open_file(str(path)):
                pass
        except (OSError, pa.ArrowException) as error:
            if errno_of(error) is None:
                return f"not a complete Arrow IPC file ({first_line(error)})", ()
        return f"not a complete Arrow IPC file ({unsound})", ()
    except OSError as error:
        if errno_of(error) is None:  # Arrow's own I/O errors are about what the file holds
            return f"damaged data ({first_line(error)})", ()
        return f"{UNREADABLE} ({reason(error)})", ()
    except pa.ArrowException as error:
        return f"damaged data ({first_line(error)})", ()
    return judge_schema(schema, dataset)


def copy_problem(path: Path, dataset: Dataset, rows: int | None) -> str | None:
    """Why the Parquet copy at ``path`` of a ``dataset`` file cannot be read in full, or does
    not hold this version's columns (and ``date``) or the file's ``rows`` (when known), or
    None when it can."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from telemetry.layout import PARTITION_KEY
    from telemetry.schema import SCHEMAS

    try:
        table = pq.read_table(path)
        table.validate(full=True)
    except FileNotFoundError:
        return VANISHED
    except OSError as error:
        if errno_of(error) is None:
            return f"damaged data ({first_line(error)})"
        return f"{UNREADABLE} ({reason(error)})"
    except pa.ArrowException as error:
        return f"damaged data ({first_line(error)})"
    expected = SCHEMAS[dataset].append(pa.field(PARTITION_KEY, pa.date32(), nullable=False))
    if not table.schema.equals(expected, check_metadata=False):
        return f"not a copy of a {dataset} file: its columns are {', '.join(table.column_names)}"
    if rows is not None and table.num_rows != rows:
        return f"holds {table.num_rows} rows where its file holds {rows}"
    return None


class Unsound(Exception):
    """The two ends of a file are not those of one whole Arrow IPC file (the message says
    where they differ)."""


# A footer's Block: the offset of a message, its metadata's length, its body's length.
_BLOCK = struct.Struct("<qi4xq")
_EOS = 8  # the end-of-stream marker some writers put between the last message and the footer


def footer_schema(path: Path) -> pa.Schema:
    """The schema in the footer of an Arrow IPC file, once the footer is known to describe
    the file; :class:`Unsound` when it does not.

    Readers (polars, pyarrow) take the schema and the place of every message from the
    footer, and polars trusts those places: a footer pointing past the end makes it panic.
    So the footer's blocks must tile the file from the end of the schema message it starts
    with up to the footer. Both ends are read with one ``pread`` each and pyarrow parses the
    footer from those bytes, without the file: a third cheaper than opening it with pyarrow,
    which checks no block.
    """
    import pyarrow as pa
    import pyarrow.ipc as ipc

    head, footer = _sound_ends(path)
    try:  # the footer and what follows it, behind a start: no block is read here
        with ipc.open_file(pa.BufferReader(head[:8] + footer)) as reader:
            return reader.schema
    except (OSError, pa.ArrowException) as error:
        raise Unsound(f"its footer is damaged: {first_line(error)}") from None


def _sound_ends(path: Path) -> tuple[bytes, bytes]:
    """The first 16 bytes of an Arrow IPC file and its footer with what follows it, once the
    footer's blocks are known to tile the file (see :func:`footer_schema`); :class:`Unsound`
    when they do not."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 16, 0)
        tail = os.pread(fd, 4096, max(0, size - 4096))
        if size < 32 or head[:6] != _MAGIC or tail[-6:] != _MAGIC:
            raise Unsound("it does not start and end as one")
        marker, length = struct.unpack_from("<Ii", head, 8)
        footer_length = struct.unpack_from("<i", tail, len(tail) - 10)[0]
        schema_end = 16 + length
        footer_start = size - 10 - footer_length
        if marker != 0xFFFFFFFF or length <= 0 or footer_length <= 0:
            raise Unsound("the length of its schema or of its footer is not a length")
        if schema_end > footer_start:
            raise Unsound("its schema and its footer overlap")
        if footer_length + 10 > len(tail):
            tail = os.pread(fd, footer_length + 10, footer_start)
    finally:
        os.close(fd)
    footer = tail[len(tail) - 10 - footer_length : len(tail) - 10]
    end = schema_end
    for offset, metadata, body in sorted(_footer_blocks(footer)):
        if offset != end or metadata <= 0 or body < 0:
            raise Unsound("its footer places its record batches outside the data")
        end = offset + metadata + body
    if end not in (footer_start, footer_start - _EOS):
        raise Unsound("its footer places its record batches outside the data")
    return head, tail[-10 - footer_length :]


def without_pyarrow() -> bool:
    """Whether files are checked and read here through arro3 rather than pyarrow: when
    arro3 is installed (the ``duckdb`` extra) and nothing in this process has loaded
    pyarrow, whose import (about 40 ms, and numpy's as much again when it is installed)
    takes about as long as a whole query over a year's store; once loaded, pyarrow is as
    quick."""
    return "pyarrow" not in sys.modules and _arro3_installed()


@functools.cache
def _arro3_installed() -> bool:
    """Once a process: without arro3, every file checked would look for it again."""
    try:
        import arro3.io  # noqa: F401
    except ImportError:
        return False
    return True


def _examined_without_pyarrow(
    path: Path, dataset: Dataset
) -> tuple[str | None, tuple[str, ...]] | None:
    """What :func:`examine` says of a sound file in this version's schema, found without
    pyarrow, through arro3 (the optional ``duckdb`` extra): for `builder telemetry sql`,
    which reads through DuckDB and arro3 and never loads pyarrow (about 40 ms). None when
    pyarrow is loaded already (it is as quick then), when arro3 is not installed, and for
    any file this cannot vouch for: :func:`examine` then says what is wrong, in pyarrow's
    words, as it always has.

    arro3 reads the footer and the dictionary batches (the target labels) whole, so a file
    that passes is one every reader here opens."""
    if not without_pyarrow():
        return None
    from arro3.io import read_ipc

    from telemetry.schema import DATASET_KEY, VERSION_KEY, arro3_schema

    try:
        _sound_ends(path)
        schema = read_ipc(str(path)).schema
    except FileNotFoundError:
        return VANISHED, ()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # any other failure (a Rust panic too): pyarrow's reading names it
        return None
    expected = arro3_schema(dataset)
    metadata = schema.metadata
    if (
        schema.remove_metadata() != expected.remove_metadata()
        or metadata.get(DATASET_KEY) != expected.metadata[DATASET_KEY]
        or metadata.get(VERSION_KEY) != expected.metadata[VERSION_KEY]
    ):
        return None
    return None, ()


def _footer_blocks(
    footer: bytes, fields_read: tuple[int, ...] = (2, 3)
) -> list[tuple[int, int, int]]:
    """The dictionary and record batch blocks a footer lists (the Footer table of Arrow's
    File.fbs: fields 2 and 3; ``fields_read`` picks), every offset checked to lie inside it."""

    def read(form: str, at: int) -> int:
        if not 0 <= at <= len(footer) - struct.calcsize(form):
            raise Unsound("its footer is damaged: an offset points outside it")
        value: int = struct.unpack_from(form, footer, at)[0]
        return value

    table = read("<I", 0)
    vtable = table - read("<i", table)
    fields = (read("<H", vtable) - 4) // 2
    blocks: list[tuple[int, int, int]] = []
    for field in fields_read:
        slot = read("<H", vtable + 4 + 2 * field) if field < fields else 0
        if slot == 0:
            continue  # absent: none of them
        vector = table + slot + read("<I", table + slot)
        count = read("<I", vector)
        if count * _BLOCK.size > len(footer) - vector - 4:
            raise Unsound("its footer is damaged: an offset points outside it")
        blocks += _BLOCK.iter_unpack(footer[vector + 4 : vector + 4 + count * _BLOCK.size])
    return blocks


def dictionaries_problem(path: Path) -> str | None:
    """Why the dictionary batches of a stored file (its target labels) cannot be
    decompressed, or None when they can; for a file whose footer :func:`footer_schema`
    found sound.

    pyarrow's dataset reader, which DuckDB reads the store through, ends the process on a
    zstd frame it cannot decompress in a dictionary batch (pyarrow 26), where its other
    readers raise an error. The dictionaries are a few kilobytes: each of their buffers is
    decompressed here, without pyarrow (Arrow's Message.fbs and Schema.fbs, read by hand as
    the footer is)."""
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            footer_length = struct.unpack("<i", os.pread(handle.fileno(), 4, size - 10))[0]
            footer = os.pread(handle.fileno(), footer_length, size - 10 - footer_length)
            for offset, metadata, body_length in _footer_blocks(footer, (2,)):
                message = os.pread(handle.fileno(), metadata, offset)
                body = os.pread(handle.fileno(), body_length, offset + metadata)
                for start, length in _buffers(message):
                    chunk = body[start : start + length]
                    if len(chunk) < 8:
                        continue  # an empty buffer
                    raw = struct.unpack_from("<q", chunk)[0]
                    if raw < 0:
                        continue  # stored uncompressed
                    decompressor.decompress(chunk[8:], max_output_size=raw)
    except FileNotFoundError:
        return VANISHED
    except (OSError, struct.error, Unsound, zstandard.ZstdError) as error:
        return f"damaged data (a dictionary batch: {first_line(error)})"
    return None


def _buffers(message: bytes) -> list[tuple[int, int]]:
    """The zstd-compressed body buffers (offset, length) that a dictionary batch's message
    lists: Message (field 2, its header) -> DictionaryBatch (field 1, its data) ->
    RecordBatch (field 2, its buffers), after the message's continuation marker and length;
    none when the batch is not compressed with zstd."""
    start = 8 if message[:4] == b"\xff\xff\xff\xff" else 4
    flat = message[start:]

    def read(form: str, at: int) -> int:
        if not 0 <= at <= len(flat) - struct.calcsize(form):
            raise Unsound("a message's metadata points outside it")
        value: int = struct.unpack_from(form, flat, at)[0]
        return value

    def field(table: int, number: int) -> int:
        vtable = table - read("<i", table)
        if 4 + 2 * number >= read("<H", vtable):
            return 0
        slot = read("<H", vtable + 4 + 2 * number)
        return table + slot if slot else 0

    def target(at: int) -> int:  # an offset field: where it points
        return at + read("<I", at)

    message_table = read("<I", 0)
    header = field(message_table, 2)
    data = target(field(target(header), 1)) if header and field(target(header), 1) else 0
    if not data:
        return []
    # BodyCompression (field 3): absent when the buffers are stored as they are; its codec
    # (field 0) is LZ4_FRAME (0, the default) or ZSTD (1), the store's.
    compression = field(data, 3)
    codec = field(target(compression), 0) if compression else 0
    if not compression or not codec or read("<b", codec) != _ZSTD:
        return []
    buffers = field(data, 2)
    if not buffers:
        return []
    vector = target(buffers)
    count = read("<I", vector)
    return [
        (read("<q", vector + 4 + 16 * i), read("<q", vector + 12 + 16 * i)) for i in range(count)
    ]


def errno_of(error: BaseException) -> int | None:
    """The operating system's error number behind an error (Arrow's errors carry it in their
    message), or None for Arrow's own complaints about a file's content."""
    if isinstance(error, OSError) and error.errno:
        return error.errno
    found = re.search(r"\[errno (\d+)\]", str(error))
    return int(found.group(1)) if found else None


def first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def reason(error: OSError) -> str:
    """Why a file could not be opened, without repeating its path: Arrow's errors carry the
    whole message in ``strerror`` (``Failed to open local file '...'. Detail: [errno 13]
    Permission denied``), so the errno is what is said."""
    if error.errno:
        return os.strerror(error.errno)
    found = re.search(r"\[errno (\d+)\]", str(error))
    return os.strerror(int(found.group(1))) if found else error.strerror or str(error)
