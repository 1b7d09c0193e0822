"""JSON-lines events read whole, in columns: the same builds as the line-by-line reading,
many times faster.

The line-by-line reading (:func:`telemetry.ingest.jsonl.ingest_jsonl`) decodes and checks
each event in Python and feeds the collector; it reports each bad line and goes on. Here the
input is decoded by polars in one pass and every rule of the event protocol and of the
collector is applied to whole columns: the target events (nearly all of a build's events) are
never touched one by one, and only the build events (two per build) go through the
line-by-line checks. The result is exactly what the line-by-line reading stores.

That holds for input plain enough to be sure of it, which is what build tools write; for any
other input :func:`read_columns` declines (returns None) before anything is stored, and the
caller reads the same bytes line by line. It declines when the input has a backslash (an
escaped character: polars and Python's json read some differently), a tab or a blank before
a colon, a key given twice in an event (polars keeps the first value, Python's json the
last), a target event with a field it does not use or a null value, a value of the wrong type
that polars would turn into text, any line the line-by-line reading would report, or a target
that runs twice in one build (the collector pairs starts and finishes first in, first out).
"""

from __future__ import annotations

import io
import json
from typing import Any, Final

import polars as pl
import pyarrow as pa

from telemetry.errors import EventError
from telemetry.events import STATUSES, BuildFinished, BuildStarted, parse_event
from telemetry.schema import SESSIONS_SCHEMA, TARGETS_SCHEMA

MAX_BYTES: Final = 512 << 20  # larger inputs are read line by line, in bounded memory
_MAX_TS: Final = 253_402_300_800_000
_MAX_TEXT: Final = 65_536
_TARGET_FIELDS: Final = {
    "event": pl.String,
    "session": pl.String,
    "ts": pl.Int64,
    "target": pl.String,
    "status": pl.String,
    "worker": pl.Int64,
    "duration_ms": pl.Int64,
    "error": pl.String,
}
_TEXT_FIELDS: Final = [name for name, kind in _TARGET_FIELDS.items() if kind == pl.String]
_BUILD_MARK: Final = '"build_'


class Declined(Exception):
    """The input is not plain enough to be read in columns exactly."""


def read_columns(data: bytes, decode: json.JSONDecoder) -> tuple[pa.Table, pa.Table, int] | None:
    """The sessions and target rows that the line-by-line reading would store from
    ``data`` (whole JSON-lines input, without byte-order mark), and the number of events;
    None when the input is not plain enough to be sure of that. ``decode`` is the JSON
    decoder of the line-by-line reading, used for the build events."""
    try:
        return _read(data, decode)
    except (Declined, EventError, ValueError, RecursionError, pl.exceptions.PolarsError):
        return None


def _read(data: bytes, decode: json.JSONDecoder) -> tuple[pa.Table, pa.Table, int]:
    if (
        b"\\" in data  # an escape: polars and Python's json read some differently
        or b"\x1f" in data  # the separator the lines are read with below
        or b"\t" in data  # a tab before a colon would hide a key from the counts below
        or (b"\r" in data and data.count(b"\r") != data.count(b"\r\n"))
    ):
        raise Declined
    lines = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        schema={"line": pl.String},
    ).drop_nulls()  # blank lines
    decoded = pl.read_ndjson(io.BytesIO(data), schema=_TARGET_FIELDS)
    if decoded.height != lines.height or decoded.height == 0:
        raise Declined  # a line of blanks only, which polars' two readers count apart
    line = pl.col("line")
    build = line.str.contains(_BUILD_MARK, literal=True)
    # With no escapes, every key ends in '":' (once no blank comes before a colon), and
    # every string, key or value, brings two quotes. Comparing the target lines' totals with
    # the fields polars found, any key given twice, any field polars does not read, any
    # null, and any number or boolean polars would turn into text makes them differ: each
    # can only add keys to a line or take strings away. (An array or object turned into
    # text is found by its first character, in _check_targets.)
    counted = lines.select(
        build.alias("build"),
        keys=line.str.count_matches('":', literal=True).filter(~build).sum(),
        spaced=line.str.contains(" :", literal=True).any(),
    )
    keys, spaced = counted.row(0)[1:]
    mask = counted["build"]
    if spaced:
        raise Declined
    frame = decoded.with_row_index("order")
    build_lines = lines.filter(mask).with_columns(order=frame.filter(mask)["order"])
    quotes = data.count(b'"') - sum(text.count('"') for text in build_lines["line"])
    info = _build_events(build_lines, decode)
    rows = frame.filter(~mask)
    found = rows.select(
        fields=pl.sum_horizontal(pl.col(n).is_not_null() for n in _TARGET_FIELDS).sum(),
        texts=pl.sum_horizontal(pl.col(n).is_not_null() for n in _TEXT_FIELDS).sum(),
    ).row(0)
    if (keys, quotes) != (found[0], 2 * (found[0] + found[1])):
        raise Declined
    _check_targets(rows)
    return _assemble(info, rows, decoded.height)


def _build_events(builds: pl.DataFrame, decode: json.JSONDecoder) -> dict[str, dict[str, object]]:
    """The lines naming a build event, checked one by one as the line-by-line reading does;
    per session what they say."""
    sessions: dict[str, dict[str, object]] = {}
    for order, text in builds.select("order", "line").iter_rows():
        event = parse_event(decode.decode(text))
        found = sessions.setdefault(event.session, {})
        if isinstance(event, BuildStarted):
            if "started" in found or "finished" in found:
                raise Declined  # started twice, or after it finished: reported line by line
            found["started"] = event
            found["started_at"] = order
        elif isinstance(event, BuildFinished):
            if "finished" in found:
                raise Declined
            found["finished"] = event
            found["finished_at"] = order
        else:
            raise Declined  # a target event that mentions "build_": rare, read line by line
    return sessions


def _check_targets(decoded: pl.DataFrame) -> None:
    """Decline unless every target event is one the line-by-line reading would take."""
    started = pl.col("event") == "target_started"
    finished = pl.col("event") == "target_finished"
    text = [pl.col(n).str for n in _TEXT_FIELDS]
    rules = [
        started | finished,
        pl.col("session").str.len_chars().is_between(1, _MAX_TEXT),
        pl.col("target").str.len_chars().is_between(1, _MAX_TEXT),
        pl.col("ts").is_between(0, _MAX_TS - 1),
        pl.col("worker").is_between(0, 2**31 - 1) | pl.col("worker").is_null() | finished,
        pl.col("status").is_in(STATUSES) | started,
        pl.col("duration_ms").is_between(0, _MAX_TS - 1) | pl.col("duration_ms").is_null()
        | started,
        (pl.col("error").str.len_chars() <= _MAX_TEXT) | pl.col("error").is_null(),
        # An array or object that polars turned into text.
        *(~(t.starts_with("[") | t.starts_with("{")).fill_null(False) for t in text),
    ]  # fmt: skip
    checks = decoded.select(
        rule.all(ignore_nulls=False).alias(f"rule{i}") for i, rule in enumerate(rules)
    ).row(0)
    if not all(value is True for value in checks):
        raise Declined  # a missing or invalid field: the line-by-line reading reports it


def _assemble(
    info: dict[str, dict[str, object]], rows: pl.DataFrame, events: int
) -> tuple[pa.Table, pa.Table, int]:
    start = pl.col("event") == "target_started"
    key = ["session", "target"]
    # The collector pairs a finish with the oldest start of the same target still waiting.
    # When a build runs each target at most once, that is the start of the same target if
    # it came first; a target run twice in a build is read line by line.
    begun = rows.filter(start).select(
        *key, begun_at=pl.col("order"), begun=pl.col("ts"), runner=pl.col("worker")
    )
    try:
        paired = rows.filter(~start).join(
            begun, on=key, how="left", validate="1:1", maintain_order="left"
        )
    except pl.exceptions.ComputeError:
        raise Declined from None
    waiting = pl.col("begun_at") < pl.col("order")
    paired = paired.with_columns(
        begun=pl.when(waiting).then(pl.col("begun")),
        runner=pl.when(waiting).then(pl.col("runner")),
    )
    # A duration given wins; a finish stamped before its start counts as 0 ms.
    begin = (
        pl.when(pl.col("duration_ms").is_not_null())
        .then(pl.col("ts") - pl.col("duration_ms"))
        .otherwise(pl.coalesce("begun", "ts"))
    )
    done = paired.select(
        "order",
        "session",
        "target",
        "status",
        "error",
        begin=pl.min_horizontal(begin, pl.col("ts")).clip(lower_bound=0),
        end=pl.col("ts"),
        worker=pl.col("runner").cast(pl.Int32),
    )
    return _sessions(info, rows, done), _targets(done), events


def _sessions(
    info: dict[str, dict[str, object]], rows: pl.DataFrame, done: pl.DataFrame
) -> pa.Table:
    executed = pl.col("status").is_in(["built", "failed"])
    spans = rows.group_by("session").agg(
        first=pl.col("ts").min(), last=pl.col("ts").max(), last_seen=pl.col("order").max()
    )
    counts = done.group_by("session").agg(
        total=pl.len(),
        **{status: (pl.col("status") == status).sum() for status in STATUSES},
        executed_ms=(pl.col("end") - pl.col("begin")).filter(executed).sum(),
        # In floating point, to see a total past what the stored int64 holds (the collector
        # refuses that build; here the sum would wrap around).
        executed_float=(pl.col("end") - pl.col("begin")).filter(executed).cast(pl.Float64).sum(),
        first_failed=pl.col("target").filter(pl.col("status") == "failed").first(),
    )
    if counts.select((pl.col("executed_float") >= 2.0**62).any()).item():
        raise Declined
    facts: dict[str, dict[str, object]] = {r["session"]: r for r in spans.iter_rows(named=True)}
    for frame in (counts, _peaks(done.filter(executed))):
        for r in frame.iter_rows(named=True):
            facts[r["session"]].update(r)
    out = []
    for session in set(facts) | set(info):
        said = info.get(session, {})
        fact: dict[str, Any] = facts.get(session, {})
        if "finished_at" in said and fact.get("last_seen", -1) > said["finished_at"]:
            raise Declined  # a target event after its build finished: reported line by line
        started: BuildStarted | None = said.get("started")  # type: ignore[assignment]
        ended: BuildFinished | None = said.get("finished")  # type: ignore[assignment]
        moments = [m for m in (fact.get("first"), fact.get("last")) if m is not None]
        moments += [e.ts for e in (started, ended) if e is not None]
        first_ts, last_ts = min(moments), max(moments)
        start_ts = started.ts if started else first_ts
        end_ts = max(ended.ts if ended else last_ts, start_ts)
        interrupted = ended is None
        failed = fact.get("failed") or 0
        error = "interrupted" if interrupted else ended.error  # type: ignore[union-attr]
        if error is None and not ended.success and failed:  # type: ignore[union-attr]
            more = f" and {failed - 1} more" if failed > 1 else ""
            error = f"target {fact['first_failed']} failed{more}"
        out.append(
            {
                "session_id": session,
                "start_time": start_ts,
                "end_time": end_ts,
                "duration_ms": end_ts - start_ts,
                "succeeded": not interrupted and ended.success,  # type: ignore[union-attr]
                "interrupted": interrupted,
                "error": error,
                "total_targets": fact.get("total") or 0,
                "built": fact.get("built") or 0,
                "cached": fact.get("cached") or 0,
                "failed": failed,
                "skipped": fact.get("skipped") or 0,
                "executed_ms": fact.get("executed_ms") or 0,
                "peak_concurrency": fact.get("peak") or 0,
                "parallelism": started.parallelism if started else None,
                "tool": started.tool if started else None,
                "host": started.host if started else None,
                "commit": started.commit if started else None,
                "branch": started.branch if started else None,
                "labels": list((started.labels if started else {}).items()),
            }
        )
    return pa.Table.from_pylist(out, schema=SESSIONS_SCHEMA)


def _peaks(executed: pl.DataFrame) -> pl.DataFrame:
    """Per session, the most executed targets running at once over ``[begin, end)``: a
    sweep where, at equal times, ends come before starts."""
    runs = executed.filter(pl.col("begin") < pl.col("end"))
    steps = pl.concat(
        [
            runs.select("session", t=pl.col("begin"), step=pl.lit(1, pl.Int8)),
            runs.select("session", t=pl.col("end"), step=pl.lit(-1, pl.Int8)),
        ]
    ).sort("session", "t", "step")
    return steps.group_by("session").agg(peak=pl.col("step").cast(pl.Int64).cum_sum().max())


def _targets(done: pl.DataFrame) -> pa.Table:
    arrow = done.select(
        session_id="session",
        target="target",
        status="status",
        start_time=pl.col("begin").cast(pl.Datetime("ms", "UTC")),
        end_time=pl.col("end").cast(pl.Datetime("ms", "UTC")),
        duration_ms=pl.col("end") - pl.col("begin"),
        worker="worker",
        error="error",
    ).to_arrow()
    columns = []
    for field in TARGETS_SCHEMA:
        column = arrow.column(field.name)
        if pa.types.is_dictionary(field.type):
            column = column.cast(pa.string()).combine_chunks().dictionary_encode()
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=TARGETS_SCHEMA)
