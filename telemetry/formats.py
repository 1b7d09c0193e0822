"""The file formats builder reads and writes, as closed choices.

Each is one ``Literal``, and its tuple is derived from it: the readers, the exporter and the
command line's choices all take them from here. This module imports nothing else, so the
command line learns them without loading the readers (pyarrow) or the queries (polars).
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

# What ``ingest`` reads; ``auto`` tells the others apart by the input's content.
InputFormat: TypeAlias = Literal[
    "auto", "jsonl", "turbo-summary", "bazel-bep", "chrome-trace", "ninja-log"
]
INPUT_FORMATS: Final[tuple[InputFormat, ...]] = get_args(InputFormat)

# What ``export`` writes. ``prometheus`` is the classic text exposition format (timestamps in
# milliseconds); ``openmetrics`` counts them in seconds, so one file cannot be both.
ExportFormat: TypeAlias = Literal["json", "csv", "parquet", "arrow", "prometheus", "openmetrics"]
EXPORT_FORMATS: Final[tuple[ExportFormat, ...]] = get_args(ExportFormat)

# How ``export`` may compress a text format (Parquet and Arrow compress inside the file).
Compression: TypeAlias = Literal["zstd"]
COMPRESSIONS: Final[tuple[Compression, ...]] = get_args(Compression)
