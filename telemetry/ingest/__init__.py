"""Readers that turn what build tools write into stored sessions, one module per source."""

from telemetry.ingest.jsonl import IngestProblem, IngestResult, ingest_file, ingest_jsonl

__all__ = ["IngestProblem", "IngestResult", "ingest_file", "ingest_jsonl"]
