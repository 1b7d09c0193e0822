"""builder-telemetry: build events in, partitioned Arrow IPC on disk, answers out.

>>> from telemetry import TelemetryStorage, TelemetryAnalyzer
>>> storage = TelemetryStorage(".builder-cache/telemetry")
>>> report = TelemetryAnalyzer(storage).summary()  # doctest: +SKIP

Names are imported on first use, so ``import telemetry`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "TelemetryCollector": "telemetry.collector",
    "TelemetryStorage": "telemetry.storage",
    "TelemetryAnalyzer": "telemetry.analyzer",
    "TelemetryConfig": "telemetry.config",
    "TelemetryError": "telemetry.errors",
    "TelemetryWarning": "telemetry.errors",
    "Window": "telemetry.window",
    "Filter": "telemetry.window",
    "ingest_jsonl": "telemetry.ingest",
    "ingest_file": "telemetry.ingest",
}

if TYPE_CHECKING:
    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.collector import TelemetryCollector
    from telemetry.config import TelemetryConfig
    from telemetry.errors import TelemetryError, TelemetryWarning
    from telemetry.ingest import ingest_file, ingest_jsonl
    from telemetry.storage import TelemetryStorage
    from telemetry.window import Filter, Window


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'telemetry' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Filter",
    "TelemetryAnalyzer",
    "TelemetryCollector",
    "TelemetryConfig",
    "TelemetryError",
    "TelemetryStorage",
    "TelemetryWarning",
    "Window",
    "__version__",
    "ingest_file",
    "ingest_jsonl",
]
