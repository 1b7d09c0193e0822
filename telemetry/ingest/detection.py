"""What an input is, told before it is read: its compression (gzip, zstd or none) by its
first bytes, undone as it is read, and its format by its first line that is not blank.

Both look ahead without consuming: the bytes looked at are handed on in front of the rest,
so a pipe is read once. Nothing here loads pyarrow or polars.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
from typing import IO, Any, Final, Literal, TypeAlias, cast

from telemetry.ingest.bazel import is_bep_event
from telemetry.ingest.trace import is_trace
from telemetry.ingest.turbo import is_turbo_summary

# What the first line tells: one JSON document (a Turborepo run summary or a Chrome trace,
# told apart once it is read whole), Build Event Protocol lines, a .ninja_log, or our JSON
# lines.
Detected: TypeAlias = Literal["document", "bazel-bep", "ninja-log", "jsonl"]

# A byte-order mark, as some editors write at the start of a text file.
BOM: Final = b"\xef\xbb\xbf"
_DETECT_LINES: Final = 100
# A trace's first line, when it is not a whole document: {"otherData":..., "traceEvents":[
_TRACE_START: Final = re.compile(rb'^\{\s*"(traceEvents|otherData|displayTimeUnit)"|^\[\s*\{.*"ph"')
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"


def read_head(source: IO[bytes], *, max_line: int) -> bytes:
    """The start of ``source`` up to and with its first line that is not blank (blank
    lines and a byte-order mark may come before it; at most 100 lines, each at most
    ``max_line`` bytes are read). Reading stops without a word where the input is damaged:
    reading it line by line then reports where.

    >>> read_head(io.BytesIO(b"\\n{}\\n{}\\n"), max_line=100)
    b'\\n{}\\n'
    """
    head = b""
    with contextlib.suppress(Exception):
        for _ in range(_DETECT_LINES):
            line = source.readline(max_line + 1)
            head += line
            if not line or line.lstrip(BOM).strip():
                break
    return head


def detect_format(head: bytes) -> Detected:
    """What the input is, from its first line that is not blank (see :func:`read_head`).

    >>> detect_format(b"# ninja log v5\\n"), detect_format(b'{"event": "build_started"}\\n')
    ('ninja-log', 'jsonl')
    """
    first = head.lstrip(BOM).strip()
    if first.startswith(b"# ninja log v"):
        return "ninja-log"
    if first in (b"{", b"[") or _TRACE_START.match(first):
        return "document"
    try:
        decoded = json.loads(first)
    except (ValueError, RecursionError):
        return "jsonl"
    if is_bep_event(decoded):
        return "bazel-bep"
    if is_turbo_summary(decoded) or is_trace(decoded):
        return "document"
    return "jsonl"


def decompressed(handle: IO[bytes]) -> IO[bytes]:
    """``handle`` itself, or a reader of its gzip or zstd content, told by the first bytes.

    >>> decompressed(io.BytesIO(gzip.compress(b"a\\n"))).read()
    b'a\\n'
    """
    # Read the magic bytes fully (a pipe may deliver them one at a time), then put them back.
    magic = b""
    while len(magic) < 4:
        chunk = handle.read(4 - len(magic))
        if not chunk:
            break
        magic += chunk
    source = io.BufferedReader(Prefixed(magic, handle))
    if magic[:2] == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=source, mode="rb"))
    if magic == _ZSTD_MAGIC:
        return io.BufferedReader(_Zstd(source))
    return source


def is_plain(source: IO[bytes]) -> bool:
    """Whether ``source`` (from :func:`decompressed`) is the input itself, not compressed."""
    return isinstance(source, io.BufferedReader) and isinstance(source.raw, Prefixed)


class Prefixed(io.RawIOBase):
    """``prefix`` and then the rest of ``stream``; or ``error`` raised, when reading ahead
    broke off with it, where the stream broke off."""

    def __init__(self, prefix: bytes, stream: IO[bytes], error: Exception | None = None) -> None:
        self.prefix = memoryview(prefix)  # sliced without copying what is left
        self.stream = stream
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.prefix:
            size = min(len(buffer), len(self.prefix))
            buffer[:size] = self.prefix[:size]
            self.prefix = self.prefix[size:]
            return size
        if self.error is not None:
            raise self.error
        readinto = getattr(self.stream, "readinto", None)
        if readinto is not None:
            return int(readinto(buffer) or 0)
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Zstd(io.RawIOBase):
    """The content of a zstd stream of one or more frames; an input that ends inside a
    frame is an error (zstandard's own stream reader would just stop)."""

    def __init__(self, source: IO[bytes]) -> None:
        import zstandard

        self.source = source
        self.new_frame = zstandard.ZstdDecompressor().decompressobj
        self.frame = self.new_frame()
        self.in_frame = False
        self.pending = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            data = self.source.read(1 << 16)
            if not data:
                if self.in_frame:
                    raise EOFError("the zstd stream ended inside a frame")
                return 0
            while data:
                self.in_frame = True
                self.pending += self.frame.decompress(data)
                if not self.frame.eof:
                    break
                data = self.frame.unused_data
                self.frame = self.new_frame()
                self.in_frame = False
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        del self.pending[:size]  # in place: no copy of what remains
        return size
