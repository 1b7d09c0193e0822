"""JSON-lines events read whole, in columns: the same builds as the line-by-line reading,
many times faster.

The line-by-line reading (:func:`telemetry.ingest.jsonl.ingest_jsonl`) decodes and checks
each event in Python and feeds the collector; it reports each bad line and goes on. Here the
input is decoded by polars in one pass and every rule of the event protocol and of the
collector is applied to whole columns: the target events (nearly all of a build's events,
their deps lists too) are never touched one by one, and every other line (the build events,
two per build) goes through the line-by-line checks. The result is exactly what the
line-by-line reading stores: this is its fast path, held equal to it by
``tests/ingest/test_columnar.py::test_plain_streams_are_read_in_columns_with_the_line_by_line_result``.
What it derives per build is defined once for both: the peak concurrency is
:func:`telemetry.metrics.session_peaks` (the collector's sweep, many builds at a time), the
error of a failed build the templates of :func:`telemetry.events.failure_text`.

That holds for input plain enough to be sure of it, which is what build tools write; for any
other input :func:`read_columns` declines (returns None) before anything is stored, and the
caller reads the same bytes line by line. It declines when the input has a backslash (an
escaped character: polars and Python's json read some differently), a key given twice in a
target event (polars keeps the first value, Python's json the last), a target event with a
field it does not use or a null value, a value of the wrong type that polars would turn into
text, any line the line-by-line reading would report, or a target that runs twice in one
build (the collector pairs starts and finishes first in, first out). How it tells is in
:func:`_check_plain`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Final

import polars as pl
import pyarrow as pa

from telemetry.errors import EventError
from telemetry.events import (
    EXECUTED,
    FAILED_TARGET_TEXT,
    INTERRUPTED,
    MAX_LINE_BYTES,
    MAX_TEXT,
    MAX_TS_MS,
    MORE_FAILED_TEXT,
    STATUSES,
    BuildFinished,
    BuildStarted,
    latest_ts,
    parse_event,
)
from telemetry.metrics import session_peaks
from telemetry.schema import LABELS, SESSIONS_SCHEMA, TARGETS_SCHEMA

# Inputs are read in columns a segment of about this many bytes at a time, so memory does
# not grow with the input.
SEGMENT_BYTES: Final = 32 << 20
_TARGET_FIELDS: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "event": pl.String,
    "session": pl.String,
    "ts": pl.Int64,
    "target": pl.String,
    "status": pl.String,
    "worker": pl.Int64,
    "duration_ms": pl.Int64,
    "error": pl.String,
    "deps": pl.List(pl.String),
}
_TEXT_FIELDS: Final = [name for name, kind in _TARGET_FIELDS.items() if kind == pl.String]
_SESSION_SEED: Final = 0x5E55
_TARGET_SEED: Final = 0x7A46


class Declined(Exception):
    """The input is not plain enough to be read in columns exactly."""


@dataclass(slots=True)
class Carry:
    """What one segment of a long input hands the next (:func:`read_columns` with
    ``carry``): the lines of the builds still open at its end, which are read with the
    next segment, and every build finished so far, which must not appear again."""

    lines: bytes = b""
    finished: set[str] = _field(default_factory=set)
    last: bool = False  # the input's last segment: builds still open are interrupted
    # Builds that sent nothing in a whole segment (most never end: killed builds), put aside
    # until the last segment rather than read again with every one.
    parked: list[bytes] = _field(default_factory=list)
    parked_ids: set[str] = _field(default_factory=set)
    parked_bytes: int = 0


def read_columns(
    data: bytes,
    decode: json.JSONDecoder,
    *,
    max_line: int = MAX_LINE_BYTES,
    carry: Carry | None = None,
) -> tuple[pa.Table, pa.Table, int] | None:
    """The sessions and target rows that the line-by-line reading would store from
    ``data`` (whole JSON-lines input, without byte-order mark), and the number of events;
    None when the input is not plain enough to be sure of that. ``decode`` is the JSON
    decoder of the line-by-line reading, used for the build events; a line longer than
    ``max_line`` bytes declines (the line-by-line reading stops there).

    With ``carry``, ``data`` is one segment of a longer input, after the lines
    ``carry`` held: the builds it finishes are read, and, unless it is the last, the
    lines of the builds it leaves open go into ``carry`` for the next one."""
    try:
        return _read(data, decode, max_line, carry)
    except (Declined, EventError, ValueError, RecursionError, pl.exceptions.PolarsError):
        return None


def _read(
    data: bytes, decode: json.JSONDecoder, max_line: int, carry: Carry | None
) -> tuple[pa.Table, pa.Table, int]:
    if (
        b"\\" in data  # an escape: polars and Python's json read some differently
        or b"\x1f" in data  # the separator the lines are read with below
        or (b"\r" in data and data.count(b"\r") != data.count(b"\r\n"))
    ):
        raise Declined
    lines = (
        pl.read_csv(
            data,
            has_header=False,
            separator="\x1f",
            quote_char=None,
            new_columns=["line"],
            schema={"line": pl.String},
        )
        .to_series()
        .drop_nulls()  # blank lines
    )
    if (lines.str.len_bytes().max() or 0) > max_line:  # type: ignore[operator]
        raise Declined  # the line-by-line reading stops there, and says so
    decoded = pl.read_ndjson(data, schema=_TARGET_FIELDS, row_index_name="order")
    if decoded.height != lines.len() or decoded.height == 0:
        raise Declined  # a line of blanks only, which polars' two readers count apart
    quotes = data.count(b'"')
    if carry is not None:
        decoded, lines, quotes = _cut(decoded, lines, quotes, carry)
        if decoded.height == 0:  # every build in it goes on in the next segment
            return SESSIONS_SCHEMA.empty_table(), TARGETS_SCHEMA.empty_table(), 0
    # Target events are nearly all of the input; every other line is decoded by Python's
    # json, so only the target lines need to be read by polars exactly as json would.
    event = decoded.get_column("event")
    start = event == "target_started"
    target = (start | (event == "target_finished")).fill_null(False)
    others = pl.DataFrame({"order": decoded.get_column("order"), "line": lines}).filter(~target)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Python's json and polars' threads side by side: polars lets go of the GIL.
        info = pool.submit(_build_events, others, decode)
        # In one piece: what follows runs several times faster than over the decoder's chunks.
        rows = decoded.with_columns(start=start).filter(target).rechunk()
        columns = _check_targets(rows)
        _check_plain(lines.filter(target), others.get_column("line"), data, quotes, columns)
        return _assemble(info.result, rows, decoded.height)


def _cut(
    decoded: pl.DataFrame, lines: pl.Series, quotes: int, carry: Carry
) -> tuple[pl.DataFrame, pl.Series, int]:
    """A segment's rows less those of the builds it leaves open, which go to ``carry``
    (with their quotes taken off ``quotes``): those that sent something in it to be read
    with the next segment, the others parked until the last. Declines when a build
    finished in an earlier segment, or parked, appears again (the line-by-line reading
    reports the one, and the other is rare enough to leave to it)."""
    session = decoded.get_column("session")
    # The last segment holds the parked builds' lines first: they may go on in it.
    seen = carry.finished if carry.last else carry.finished | carry.parked_ids
    if seen and session.is_in(pl.Series(list(seen), dtype=pl.String).implode()).any():
        raise Declined
    held = carry.lines.count(b"\n")  # the segment's first lines: those carried into it
    done = session.filter(decoded.get_column("event") == "build_finished").unique()
    carry.lines = b""
    if not carry.last:
        # A line with no session stays, and declines below.
        keep = (session.is_null() | session.is_in(done.implode())).fill_null(True)
        if not keep.all():
            active = session.filter(~keep & (decoded.get_column("order") >= held)).unique()
            going_on = session.is_in(active.implode()).fill_null(False)
            idle = ~keep & ~going_on
            if idle.any():
                parked = lines.filter(idle)
                carry.parked.append(("\n".join(parked.to_list()) + "\n").encode())
                carry.parked_bytes += len(carry.parked[-1])
                carry.parked_ids.update(session.filter(idle).unique().to_list())
            if going_on.any():
                carry.lines = ("\n".join(lines.filter(going_on).to_list()) + "\n").encode()
            quotes -= int(lines.filter(~keep).str.count_matches('"', literal=True).sum())
            decoded, lines = decoded.filter(keep), lines.filter(keep)
    carry.finished.update(done.to_list())
    return decoded, lines, quotes


def _build_events(builds: pl.DataFrame, decode: json.JSONDecoder) -> dict[str, dict[str, Any]]:
    """The lines that are not target events, checked one by one as the line-by-line
    reading does; per session what they say."""
    sessions: dict[str, dict[str, Any]] = {}
    latest = latest_ts()
    for order, text in builds.iter_rows():
        event = parse_event(decode.decode(text))
        if event.ts >= latest:
            raise Declined  # dated too far ahead: reported, its build refused, line by line
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
            raise Declined  # a target event to json but not to polars (a key given twice)
    return sessions


@dataclass(slots=True, frozen=True)
class _Columns:
    """What the target rows hold: how many of each field, whether a text value might be
    a number or boolean turned into text, their length written without blanks, and how
    many names their deps hold."""

    present: dict[str, int]
    scalars: bool
    compact: int
    names: int = 0


def _check_targets(rows: pl.DataFrame) -> _Columns:
    """Decline unless every target event is one the line-by-line reading would take; and
    what the columns hold that :func:`_check_plain` needs, found in the same pass."""
    start, status = pl.col("start"), pl.col("status")
    nulls = rows.null_count().row(0, named=True)
    present = {name: rows.height - nulls[name] for name in _TARGET_FIELDS}
    # Each rule is true, or null where it does not apply.
    rules = [
        # In bytes, which is cheaper than characters and declines no text the line-by-line
        # reading takes but the rare one between 65,536 characters and bytes long.
        pl.col("session").str.len_bytes().is_between(1, MAX_TEXT).fill_null(False),
        pl.col("target").str.len_bytes().is_between(1, MAX_TEXT).fill_null(False),
        # Not too far ahead of the clock, read before the line-by-line reading would read
        # it: a time this takes, that one takes too.
        pl.col("ts").is_between(0, latest_ts() - 1).fill_null(False),
        # A start's status is ignored by both readings; anything but one of the four or none
        # is rare enough to leave to the line-by-line reading.
        pl.any_horizontal(status == s for s in STATUSES).fill_null(False)
        | (start & status.is_null()),
    ]
    if present["worker"]:
        rules.append(pl.col("worker").is_between(0, 2**31 - 1) | ~start)
    if present["duration_ms"]:
        rules.append(pl.col("duration_ms").is_between(0, MAX_TS_MS - 1) | start)
    if present["error"]:
        rules.append(pl.col("error").str.len_bytes() <= MAX_TEXT)
    texts = [pl.col(n) for n in ("session", "target", "error") if present[n]]
    # The names in deps, one a row: checked as the other texts are (a row of its own, so
    # they are never compared row by row with those).
    names = (
        [pl.col("deps").list.explode(keep_nulls=False, empty_as_null=False)]
        if present["deps"]
        else []
    )
    if names:
        # Text (not null), not empty, not too long, as the line-by-line reading wants each.
        rules.append(names[0].str.len_bytes().is_between(1, MAX_TEXT).fill_null(False))
    # An array or object that polars turned into text, told by its first character.
    rules += [
        ~(
            text.is_between(pl.lit("["), pl.lit("\\"), closed="left")
            | text.is_between(pl.lit("{"), pl.lit("|"), closed="left")
        )
        for text in (*texts, *names)
    ]
    # A number or boolean turned into text starts with a digit or a minus, or is true or
    # false (the event and status are held to their few values above).
    scalars = [
        text.is_between(pl.lit("-"), pl.lit("."), closed="left")
        | text.is_between(pl.lit("0"), pl.lit(":"), closed="left")
        | (text == "true")
        | (text == "false")
        for text in (*texts, *names)
    ]
    found = rows.select(
        *(rule.all(ignore_nulls=True).alias(f"rule{i}") for i, rule in enumerate(rules)),
        *(scalar.any().alias(f"scalars{i}") for i, scalar in enumerate(scalars)),
        *_length_parts(present),
    ).row(0, named=True)
    if not all(found[f"rule{i}"] for i in range(len(rules))):
        raise Declined  # a missing or invalid field: the line-by-line reading reports it
    anywhere = any(found[f"scalars{i}"] for i in range(len(scalars)))
    names_found = int(found.get("deps.names") or 0)
    return _Columns(present, anywhere, _compact_length(rows, present, found), names_found)


def _check_plain(
    lines: pl.Series, others: pl.Series, data: bytes, quotes: int, columns: _Columns
) -> None:
    """Decline unless the target ``lines`` hold exactly the fields polars found in them,
    each once and each of its type: no key twice (polars keeps the first value, json the
    last), no field polars does not read, no null, nothing polars turned into text.

    Arrays and objects turned into text are declined by :func:`_check_targets`. With no
    escapes, every string, key or value, brings two quotes, and every key ends in ``":``
    (once no blank comes before a colon). So when the target lines hold as many keys as
    polars found fields, and twice as many quotes as it found fields and text values, there
    is no key it did not read, and no number or boolean it turned into text (each takes two
    quotes away, and only a key could bring them back).

    Counting keys and quotes is a pass over the text. A number or boolean turned into text
    starts with a digit or a minus, or is true or false: when no text value does, there is
    none, and the lines of tools that write no blanks are then checked by their length
    alone. They must be as long as the fields found take written that way, since anything
    else in a line makes it longer: strings are the same bytes to both readers, and polars
    reads no number into a whole-number field that it would write shorter. (A number turned
    into text can be written longer than it came, 1e7 as 10000000, which is why the length
    tells nothing when one might be there.)
    """
    present = columns.present
    fields = sum(present.values())
    if columns.scalars:
        quotes -= sum(text.count('"') for text in others)
        texts = sum(present[name] for name in _TEXT_FIELDS) + columns.names
        if quotes != 2 * (fields + texts):
            raise Declined
    elif lines.str.len_bytes().sum() == columns.compact:
        return
    if b"\t" in data:
        raise Declined  # a tab before a colon would hide a key from the count below
    keys, spaced = (
        lines.to_frame()
        .select(
            keys=pl.col("line").str.count_matches('":', literal=True).sum(),
            spaced=pl.col("line").str.contains(" :", literal=True).any(),
        )
        .row(0)
    )
    if spaced or keys != fields:
        raise Declined


def _length_parts(present: dict[str, int]) -> list[pl.Expr]:
    """What :func:`_compact_length` needs of the rows: the bytes of each text field, the
    least and greatest of each whole-number field, and of the deps lists how many names
    they hold, their bytes, and how many lists hold any."""
    numbers = [n for n, kind in _TARGET_FIELDS.items() if kind == pl.Int64 and present[n]]
    deps = pl.col("deps").list
    return [
        *(pl.col(n).str.len_bytes().sum().alias(n) for n in _TEXT_FIELDS if present[n]),
        *(pl.col(n).min().alias(f"{n}.min") for n in numbers),
        *(pl.col(n).max().alias(f"{n}.max") for n in numbers),
        *(
            [
                deps.len().sum().alias("deps.names"),
                deps.eval(pl.element().str.len_bytes()).list.sum().sum().alias("deps.bytes"),
                (deps.len() > 0).sum().alias("deps.filled"),
            ]
            if present["deps"]
            else []
        ),
    ]


def _compact_length(
    rows: pl.DataFrame, present: dict[str, int], parts: dict[str, Any] | None = None
) -> int:
    """The bytes ``rows`` take as JSON objects without blanks or line ends:
    ``{"key":value,...}`` with each present field once, text values quoted. ``parts`` are
    the values of :func:`_length_parts`, when already computed."""
    # Each object's braces and commas are one byte more than its fields; each field is its
    # key, two quotes and a colon, and its value.
    total = rows.height + sum(count * (len(name) + 4) for name, count in present.items())
    expressions = _length_parts(present)
    if not expressions:
        return total  # no target events
    if parts is None:
        parts = rows.select(expressions).row(0, named=True)
    total += sum(int(parts[n]) + 2 * present[n] for n in _TEXT_FIELDS if present[n])
    if present["deps"]:
        # ``["a","b"]``: the brackets, each name quoted, a comma between two.
        names, filled = int(parts["deps.names"]), int(parts["deps.filled"])
        total += 2 * present["deps"] + int(parts["deps.bytes"]) + 3 * names - filled
    spread = []
    for n, kind in _TARGET_FIELDS.items():
        if kind != pl.Int64 or not present[n]:
            continue
        low, high = parts[f"{n}.min"], parts[f"{n}.max"]
        if low >= 0 and len(str(low)) == len(str(high)):
            total += len(str(low)) * present[n]  # all of the same number of digits
        else:
            spread.append(n)
    if spread:
        digits = rows.select(pl.col(n).cast(pl.String).str.len_bytes().sum() for n in spread)
        total += sum(int(value) for value in digits.row(0))
    return total


def _assemble(
    builds: Callable[[], dict[str, dict[str, Any]]], rows: pl.DataFrame, events: int
) -> tuple[pa.Table, pa.Table, int]:
    start = pl.col("start")
    # The collector pairs a finish with the oldest start of the same target still waiting.
    # When a build runs each target at most once, that is the start of the same target if
    # it came first; a target run twice in a build is read line by line. Starts and finishes
    # meet on a hash of session and target, many times faster than on the two texts; the
    # texts of each pair are compared afterwards, so two that merely share a hash decline.
    keyed = rows.with_columns(
        key=pl.col("session").hash(_SESSION_SEED) ^ pl.col("target").hash(_TARGET_SEED)
    )
    begun = keyed.filter(start).select(
        "key",
        begun_at=pl.col("order"),
        begun=pl.col("ts"),
        runner=pl.col("worker"),
        needs=pl.col("deps"),
        begun_session=pl.col("session"),
        begun_target=pl.col("target"),
    )
    try:
        paired = keyed.filter(~start).join(
            begun, on="key", how="left", validate="1:1", maintain_order="left"
        )
    except pl.exceptions.ComputeError:
        raise Declined from None
    other = (pl.col("begun_session") != pl.col("session")) | (
        pl.col("begun_target") != pl.col("target")
    )
    if paired.select(other.any()).item():
        raise Declined
    waiting = pl.col("begun_at") < pl.col("order")
    # A duration given wins; a finish stamped before its start counts as 0 ms.
    begin = (
        pl.when(pl.col("duration_ms").is_not_null())
        .then(pl.col("ts") - pl.col("duration_ms"))
        .otherwise(pl.coalesce(pl.when(waiting).then(pl.col("begun")), "ts"))
    )
    done = paired.select(
        "order",
        "session",
        "target",
        "status",
        "error",
        begin=pl.min_horizontal(begin, pl.col("ts")).clip(lower_bound=0),
        end=pl.col("ts"),
        worker=pl.when(waiting).then(pl.col("runner")).cast(pl.Int32),
        # What the start said; a finish's own deps are not the protocol's, and ignored.
        deps=pl.when(waiting).then(pl.col("needs")),
    )
    return _sessions(builds, rows, done), _targets(done), events


def _sessions(
    builds: Callable[[], dict[str, dict[str, Any]]], rows: pl.DataFrame, done: pl.DataFrame
) -> pa.Table:
    status = pl.col("status")
    executed = status.is_in(sorted(EXECUTED))
    ran = pl.when(executed).then(pl.col("end") - pl.col("begin"))
    spans = rows.group_by("session").agg(
        first=pl.col("ts").min(), last=pl.col("ts").max(), last_seen=pl.col("order").max()
    )
    counts = done.group_by("session").agg(
        total=pl.len(),
        **{name: (status == name).sum() for name in STATUSES},
        executed_ms=ran.sum(),
        # In floating point, to see a total past what the stored int64 holds (the collector
        # refuses that build; here the sum would wrap around).
        executed_float=ran.cast(pl.Float64).sum(),
        first_failed=pl.col("target").filter(status == "failed").first(),
    )
    peaks = session_peaks(done.filter(executed))
    info = builds()  # decoded meanwhile, in a thread
    facts = (
        _builds(info)
        .join(spans, on="session", how="full", coalesce=True)
        .join(counts, on="session", how="left")
        .join(peaks, on="session", how="left")
    )
    late = pl.col("last_seen") > pl.col("finished_at")  # an event after its build finished
    if facts.select(late.any() | (pl.col("executed_float") >= 2.0**62).any()).item():
        raise Declined  # reported line by line
    moments = ["first", "last", "started_ts", "ended_ts"]
    start = pl.coalesce("started_ts", pl.min_horizontal(moments))
    interrupted = pl.col("ended_ts").is_null()
    failed = pl.col("failed").fill_null(0)
    frame = facts.select(
        session_id="session",
        start_time=start,
        end_time=pl.max_horizontal(pl.coalesce("ended_ts", pl.max_horizontal(moments)), start),
        succeeded=~interrupted & pl.col("success").fill_null(False),
        interrupted=interrupted,
        error=pl.when(interrupted)
        .then(pl.lit(INTERRUPTED))
        .when(pl.col("ended_error").is_not_null())
        .then("ended_error")
        .when(~pl.col("success") & (failed > 0))
        .then(_failure_text(pl.col("first_failed"), failed)),
        total_targets=pl.col("total").fill_null(0),
        built=pl.col("built").fill_null(0),
        cached=pl.col("cached").fill_null(0),
        failed=failed,
        skipped=pl.col("skipped").fill_null(0),
        executed_ms=pl.col("executed_ms").fill_null(0),
        peak_concurrency=pl.col("peak").fill_null(0),
        parallelism="parallelism",
        tool="tool",
        host="host",
        commit="commit",
        branch="branch",
    ).with_columns(duration_ms=pl.col("end_time") - pl.col("start_time"))
    arrow = frame.to_arrow()
    labels = [_labels(info.get(session)) for session in arrow.column("session_id").to_pylist()]
    columns = [
        pa.array(labels, LABELS) if field.name == "labels" else arrow.column(field.name)
        for field in SESSIONS_SCHEMA
    ]
    return pa.Table.from_arrays(
        [column.cast(field.type) for column, field in zip(columns, SESSIONS_SCHEMA, strict=True)],
        schema=SESSIONS_SCHEMA,
    )


def _builds(info: dict[str, dict[str, Any]]) -> pl.DataFrame:
    """What the build events say, a row per session that has any."""
    begun = [found.get("started") for found in info.values()]
    ended = [found.get("finished") for found in info.values()]
    return pl.DataFrame(
        {
            "session": list(info),
            "started_ts": [e.ts if e else None for e in begun],
            "ended_ts": [e.ts if e else None for e in ended],
            "finished_at": [found.get("finished_at") for found in info.values()],
            "success": [e.success if e else None for e in ended],
            "ended_error": [e.error if e else None for e in ended],
            **{
                name: [getattr(e, name) if e else None for e in begun]
                for name in ("parallelism", "tool", "host", "commit", "branch")
            },
        },
        schema={
            "session": pl.String,
            "started_ts": pl.Int64,
            "ended_ts": pl.Int64,
            "finished_at": pl.UInt32,
            "success": pl.Boolean,
            "ended_error": pl.String,
            "parallelism": pl.Int32,
            "tool": pl.String,
            "host": pl.String,
            "commit": pl.String,
            "branch": pl.String,
        },
    )


def _labels(found: dict[str, Any] | None) -> list[tuple[str, str]]:
    started = found.get("started") if found else None
    return list(started.labels.items()) if started else []


def _failure_text(first: pl.Expr, failed: pl.Expr) -> pl.Expr:
    """:func:`telemetry.events.failure_text` of each row, from the same templates: its fast
    path over whole columns, held equal by
    ``tests/test_metrics.py::test_failure_texts_in_columns_are_failure_text``."""
    more = pl.when(failed > 1).then(pl.format(MORE_FAILED_TEXT, failed - 1)).otherwise(pl.lit(""))
    return pl.format(FAILED_TARGET_TEXT, first, more)


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
        deps="deps",
    ).to_arrow()
    columns = []
    for field in TARGETS_SCHEMA:
        column = arrow.column(field.name)
        if pa.types.is_dictionary(field.type):
            column = column.cast(pa.string()).combine_chunks().dictionary_encode()
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=TARGETS_SCHEMA)
