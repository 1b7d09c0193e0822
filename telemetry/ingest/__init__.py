"""Readers that turn what build tools write into stored sessions, one module per source."""

from telemetry.ingest.jsonl import (
    INPUT_FORMATS,
    IngestProblem,
    IngestResult,
    InputFormat,
    ingest_file,
    ingest_jsonl,
)

__all__ = [
    "INPUT_FORMATS",
    "IngestProblem",
    "IngestResult",
    "InputFormat",
    "ingest_file",
    "ingest_jsonl",
]
