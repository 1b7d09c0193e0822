"""Readers that turn what build tools write into stored sessions, one module per source.

The names below are loaded on first use: a reader of one source (``telemetry.ingest.ninja``,
which a recorded ninja build uses) is imported without the storing, which loads pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from telemetry.formats import INPUT_FORMATS, InputFormat

if TYPE_CHECKING:
    from telemetry.ingest.jsonl import IngestProblem, IngestResult, ingest_file, ingest_jsonl

_STORING = frozenset({"IngestProblem", "IngestResult", "ingest_file", "ingest_jsonl"})


def __getattr__(name: str) -> Any:
    if name not in _STORING:
        raise AttributeError(f"module 'telemetry.ingest' has no attribute {name!r}")
    return getattr(importlib.import_module("telemetry.ingest.jsonl"), name)


__all__ = [
    "INPUT_FORMATS",
    "IngestProblem",
    "IngestResult",
    "InputFormat",
    "ingest_file",
    "ingest_jsonl",
]
