"""The benchmark suite: `just bench` (or `python -m bench.run`).

Generates a deterministic history (BUILDS builds of TARGETS targets over DAYS days, seed
fixed), then measures each figure REPEAT times after a warm-up and prints a table of medians
with min-max, and writes the same as JSON. Figures that compare two things measure both in
the same run, alternating, so a busy machine slows both alike. Nothing here asserts a time:
the targets are printed beside what was measured.

    python -m bench.run                  # the small default, about a minute
    python -m bench.run --large          # a year: 100,000 builds x 500 targets
    python -m bench.run --builds 500 --targets 50 --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

DAY_MS = 86_400_000
BUILDER = str(Path(sys.executable).with_name("builder"))


@dataclass
class Figure:
    name: str
    unit: str
    samples: list[float]
    target: str = ""
    note: str = ""
    median: float = field(init=False)
    low: float = field(init=False)
    high: float = field(init=False)

    def __post_init__(self) -> None:
        self.median = statistics.median(self.samples)
        self.low, self.high = min(self.samples), max(self.samples)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _alternating(
    actions: dict[str, Callable[[], object]],
    repeat: int,
    *,
    before: Callable[[str], object] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each action, run in turn ``repeat`` times after one warm-up round;
    ``before(name)``, untimed, before each run."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for round_ in range(repeat + 1):
        for name, action in actions.items():
            if before is not None:
                before(name)
            elapsed = _timed(action)
            if round_:
                times[name].append(elapsed)
    return times


# -- data ------------------------------------------------------------------------------------


def generate_events(
    path: Path,
    builds: int,
    targets: int,
    days: int,
    seed: int,
    *,
    chunk: range | None = None,
    end: int | None = None,
) -> int:
    """A JSON-lines history: each build runs some targets and takes the rest from the cache.
    Writes the builds numbered ``chunk`` (all by default), started over the ``days`` before
    ``end`` (epoch ms; half a day ago by default); returns the number of events."""
    now = int(time.time() * 1000) - DAY_MS // 2 if end is None else end
    first = now - days * DAY_MS
    step = (now - first) // max(builds, 1)
    labels = [f"//pkg{t // 10}:target{t}" for t in range(targets)]
    costs = random.Random(seed)
    cost = [costs.randint(20, 4000) for _ in range(targets)]
    events = 0
    with path.open("w") as out:
        for b in chunk or range(builds):
            rng = random.Random(seed * 1_000_003 + b)  # any chunk of builds, the same builds
            session = f"bench-{b}"
            start = first + b * step
            lines = [
                {"event": "build_started", "session": session, "ts": start, "parallelism": 8,
                 "tool": "bench", "labels": {"ci": "true" if b % 3 else "false"}},
            ]  # fmt: skip
            clock = [start] * 8
            for t in range(targets):
                worker = t % 8
                if rng.random() < 0.7:
                    lines.append(
                        {"event": "target_finished", "session": session, "ts": clock[worker],
                         "target": labels[t], "status": "cached"}
                    )  # fmt: skip
                    continue
                begin = clock[worker]
                clock[worker] = end = begin + int(cost[t] * rng.uniform(0.8, 1.3))
                lines.append(
                    {"event": "target_started", "session": session, "ts": begin,
                     "target": labels[t], "worker": worker}
                )  # fmt: skip
                lines.append(
                    {"event": "target_finished", "session": session, "ts": end,
                     "target": labels[t], "status": "failed" if rng.random() < 0.002 else "built"}
                )  # fmt: skip
            lines.append(
                {"event": "build_finished", "session": session, "ts": max(clock) + 5,
                 "success": True}
            )  # fmt: skip
            # In the order a build tool reports them: by time, a finish before a start at the
            # same moment (a worker is freed, then takes the next target).
            lines[1:-1] = sorted(
                lines[1:-1], key=lambda e: (e["ts"], e["event"] == "target_started")
            )
            for line in lines:
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
            events += len(lines)
    return events


# -- measurements ----------------------------------------------------------------------------


class _Discard:
    def write(self, sessions: Any, targets: Any) -> None:
        pass


def collector_per_event(repeat: int, targets: int = 10_000, threads: int = 4) -> Figure:
    """Microseconds per event while ``threads`` threads report one build's targets."""
    from telemetry.collector import TelemetryCollector

    labels = [f"//pkg{t // 10}:target{t}" for t in range(targets)]
    samples = []
    for round_ in range(repeat + 1):
        collector = TelemetryCollector(_Discard())
        session = f"c{round_}"
        collector.build_started(session, ts=1_761_575_000_000, parallelism=threads)
        barrier = threading.Barrier(threads + 1)

        def report(
            worker: int, collector: TelemetryCollector, session: str, barrier: threading.Barrier
        ) -> None:
            barrier.wait()
            for t in range(worker, targets, threads):
                ts = 1_761_575_000_000 + t
                collector.target_started(session, labels[t], ts=ts, worker=worker)
                collector.target_finished(session, labels[t], ts=ts + 7, status="built")

        pool = [
            threading.Thread(target=report, args=(w, collector, session, barrier))
            for w in range(threads)
        ]
        for thread in pool:
            thread.start()
        start = time.perf_counter()
        barrier.wait()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - start
        collector.build_finished(session, ts=1_761_575_100_000, success=True)
        if round_:
            samples.append(elapsed / (2 * targets) * 1e6)
    return Figure("collector cost per event (4 threads)", "µs", samples, "≤ 1 µs")


def collector_memory(targets: int = 100_000) -> Figure:
    """Bytes held per buffered target (labels distinct, as in a monorepo)."""
    from telemetry.collector import TelemetryCollector

    labels = [f"//pkg{t // 10}:target{t}" for t in range(targets)]
    collector = TelemetryCollector(_Discard())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    collector.build_started("m", ts=1_761_575_000_000)
    for t in range(targets):
        collector.target_started("m", labels[t], ts=1_761_575_000_000 + t, worker=t % 8)
        collector.target_finished("m", labels[t], ts=1_761_575_000_009 + t, status="built")
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    collector.build_finished("m", ts=1_761_575_200_000, success=True)
    # The labels themselves belong to the build tool; what we add is counted.
    return Figure("memory per buffered target", "B", [held / targets], "≤ 100 B",
                  "tracemalloc, labels owned by the caller")  # fmt: skip


def flush_10k(repeat: int, folder: Path) -> Figure:
    """Milliseconds of build_finished for a 10,000-target build: batches, write, fsync,
    rename."""
    from telemetry.collector import TelemetryCollector
    from telemetry.storage import TelemetryStorage

    storage = TelemetryStorage(folder / "flush", retention_days=10**5, max_sessions=10**6)
    labels = [f"//pkg{t // 10}:target{t}" for t in range(10_000)]
    samples = []
    for round_ in range(repeat + 1):
        collector = TelemetryCollector(storage)
        session = f"f{round_}"
        start = 1_761_575_000_000 + round_ * 1000
        collector.build_started(session, ts=start, parallelism=8)
        for t, label in enumerate(labels):
            collector.target_started(session, label, ts=start + t, worker=t % 8)
            collector.target_finished(session, label, ts=start + t + 5, status="built")
        elapsed = _timed(
            functools.partial(collector.build_finished, session, ts=start + 20_000, success=True)
        )
        if round_:
            samples.append(elapsed * 1000)
    return Figure("flush of a 10,000-target build", "ms", samples, "≤ 15 ms")


def command_times(repeat: int, store: Path) -> list[Figure]:
    """The commands people type, against the benchmark's history, beside their baselines.

    The package's modules are compiled to bytecode first, as ``pip install`` leaves them and
    as the standard library that ``python -c pass`` loads is: where bytecode is not written
    (``PYTHONDONTWRITEBYTECODE``), each command would otherwise compile its modules anew."""
    import compileall

    import telemetry

    compileall.compile_dir(Path(telemetry.__file__).parent, quiet=1)
    env = dict(os.environ, BUILDER_TELEMETRY_DIR=str(store),
               BUILDER_TELEMETRY_RETENTION_DAYS="100000",
               BUILDER_TELEMETRY_MAX_SESSIONS="1000000000")  # fmt: skip

    def run(*args: str) -> Callable[[], object]:
        return lambda: subprocess.run(args, env=env, stdout=subprocess.DEVNULL, check=True)

    times = _alternating(
        {
            "true": run("true"),
            "python -c pass": run(sys.executable, "-c", "pass"),
            "record": run(BUILDER, "record", "--", "true"),
            "import polars": run(sys.executable, "-c", "import polars"),
            "recent 1": run(BUILDER, "telemetry", "recent", "1"),
            "help": run(BUILDER, "--help"),
            "summary": run(BUILDER, "telemetry", "summary"),
        },
        repeat,
    )
    overhead = [(r - t) * 1000 for r, t in zip(times["record"], times["true"], strict=True)]
    bare = times["python -c pass"]
    against_python = [o / (p * 1000) for o, p in zip(overhead, bare, strict=True)]
    ratio = [r / p for r, p in zip(times["recent 1"], times["import polars"], strict=True)]
    return [
        Figure("`builder record -- true` overhead over `true`", "ms", overhead),
        Figure("`record -- true` overhead / `python -c pass`", "x", against_python, "≤ 2x",
               f"python -c pass {statistics.median(bare) * 1000:.0f} ms; the build is folded "
               f"into the store by the `recent 1` run after it"),
        Figure("`recent 1` / `python -c 'import polars'`", "x", ratio, "≤ 1.3x",
               f"import polars {statistics.median(times['import polars']) * 1000:.0f} ms"),
        Figure("`builder --help`", "ms", [t * 1000 for t in times["help"]], "≤ 120 ms"),
        Figure("`builder telemetry summary`", "ms", [t * 1000 for t in times["summary"]]),
    ]  # fmt: skip


def ingest_rate(
    repeat: int, events_path: Path, events: int, folder: Path
) -> tuple[list[Figure], Path]:
    """Events per second stored by ``ingest`` (read in columns), and by the line-by-line
    reading that input it declines gets, each into an empty store."""
    from telemetry.ingest import ingest_file, ingest_jsonl
    from telemetry.storage import TelemetryStorage

    store = folder / "store"
    places = {"columns": "store", "lines": "by-line"}

    def fresh(name: str) -> TelemetryStorage:
        return TelemetryStorage(folder / places[name], retention_days=10**5, max_sessions=10**9)

    def empty(name: str) -> None:  # the last run's store goes before the clock starts
        shutil.rmtree(folder / places[name], ignore_errors=True)

    def columns() -> object:
        return ingest_file(fresh("columns"), events_path, apply_retention=False)

    def lines() -> object:
        with events_path.open("rb") as handle:
            return ingest_jsonl(fresh("lines"), handle, apply_retention=False)

    # Each in its own block: the line-by-line reading's millions of short-lived objects
    # slowed the columnar runs after them by about a tenth, which a build's own ingest (one
    # process, one reading) never meets.
    times = _alternating({"columns": columns}, repeat, before=empty)
    times |= _alternating({"lines": lines}, repeat, before=empty)
    empty("lines")
    empty("columns")
    columns()  # the store the rest of the run reads
    return [
        Figure("ingest of JSON-lines events", "events/s",
               [events / t for t in times["columns"]], "≥ 1,000,000"),
        Figure("ingest, line by line (input the columnar reading declines)", "events/s",
               [events / t for t in times["lines"]]),
    ], store  # fmt: skip


def ingest_memory(
    repeat: int, events_path: Path, events: int, folder: Path, args: argparse.Namespace
) -> list[Figure]:
    """Peak memory of a whole `builder telemetry ingest` (its own process, into an empty
    store) of the history's events and of four times as many builds: with inputs read a
    segment at a time it must not grow with the input. And the events a second of the
    larger one, the command's start included."""
    big = folder / "events-x4.jsonl"
    builds = 4 * min(args.chunk, args.builds)
    big_events = generate_events(big, builds, args.targets, args.days, args.seed)
    figures = []
    for path, count, what in ((events_path, events, "history"), (big, big_events, "x4")):
        peaks, seconds = [], []
        for _ in range(max(1, min(repeat, 3))):
            store = folder / "memory-store"
            shutil.rmtree(store, ignore_errors=True)
            env = os.environ | {"BUILDER_TELEMETRY_DIR": str(store),
                                "BUILDER_TELEMETRY_RETENTION_DAYS": "100000"}  # fmt: skip
            started = time.perf_counter()
            child = subprocess.Popen(
                [BUILDER, "telemetry", "ingest", str(path)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(child.pid, 0)
            seconds.append(time.perf_counter() - started)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"ingest of {path} failed")
            peaks.append(usage.ru_maxrss / 1024)  # KiB on Linux
        size = path.stat().st_size / 2**20
        figures.append(Figure(f"ingest command, peak memory, {what} ({size:,.0f} MiB input)",
                              "MiB", peaks, "flat in the input"))  # fmt: skip
        if what == "x4":
            figures.append(Figure(f"ingest command of {size:,.0f} MiB, its start included",
                                  "events/s", [count / s for s in seconds]))  # fmt: skip
    big.unlink()
    return figures


def compaction(store: Path, folder: Path) -> tuple[Figure, Path]:
    """Seconds to compact a copy of the history (every day before today), as the daily job
    does; returns the compacted copy."""
    from pipelines.compaction import compact
    from telemetry.storage import TelemetryStorage

    packed = folder / "packed"
    shutil.copytree(store, packed)
    storage = TelemetryStorage(packed)
    before = len(_data_files(packed))
    elapsed = _timed(functools.partial(compact, storage))
    after = len(_data_files(packed))
    hidden = sum(1 for _ in packed.glob("*/.trash-*/*.arrow"))
    note = (
        f"{before:,} files before, {after:,} after (rollups included; the {hidden:,} "
        f"replaced are kept aside an hour for the readers of the files before)"
    )
    return Figure("compaction of the history (closed days)", "s", [elapsed], "", note), packed


def _data_files(store: Path, dataset: str = "*") -> list[Path]:
    """The data files in the store's day folders (not what maintenance took out and keeps
    aside an hour in hidden folders)."""
    return list(store.glob(f"{dataset}/date=*/*.arrow"))


def sizes(store: Path, events_per_row: float, target_rows: int, rows_jsonl: Path) -> list[Figure]:
    """Bytes per target row: the targets files, the whole store (sessions and rollups too),
    and the same history as JSON lines: the events ingested, and the target rows written out
    as such."""
    targets = sum(p.stat().st_size for p in _data_files(store, "targets"))
    whole = sum(p.stat().st_size for p in _data_files(store))
    rollups = sum(p.stat().st_size for p in _data_files(store, "daily_targets"))
    copies = sum(p.stat().st_size for p in store.glob("*/date=*/.parquet/*.parquet"))
    events = events_per_row
    with rows_jsonl.open("rb") as lines:
        rows = rows_jsonl.stat().st_size / sum(1 for _ in lines)
    return [
        Figure("stored bytes per target row (targets files)", "B", [targets / target_rows], "",
               f"whole store {whole / target_rows:.1f} B per target row, {whole / 1e6:.1f} MB, "
               f"of which rollups {rollups / 1e6:.2f} MB; and the Parquet copies of the "
               f"compacted files, {copies / 1e6:.1f} MB"),
        Figure("JSON-lines events / whole store", "x", [events / (whole / target_rows)],
               "≥ 15x", f"{events:.0f} B of events per target row"),
        Figure("JSON-lines target rows / targets files", "x", [rows / (targets / target_rows)],
               "≥ 15x", f"{rows:.0f} B per row as JSON lines"),
    ]  # fmt: skip


def ingest_rest(store: Path, folder: Path, args: argparse.Namespace, done: int) -> int:
    """Store the builds after the first ``done`` a chunk at a time (a year of events as one
    file would be gigabytes); returns the number of events."""
    from telemetry.ingest import ingest_file
    from telemetry.storage import TelemetryStorage

    storage = TelemetryStorage(store, retention_days=10**5, max_sessions=10**9)
    part = folder / "part.jsonl"
    events = 0
    for first in range(done, args.builds, done):
        chunk = range(first, min(first + done, args.builds))
        events += generate_events(part, args.builds, args.targets, args.days, args.seed,
                                  chunk=chunk)  # fmt: skip
        ingest_file(storage, part, apply_retention=False)
        print(f"stored builds up to {chunk.stop:,}", file=sys.stderr)
    part.unlink(missing_ok=True)
    return events


def export_rows(
    store: Path, folder: Path, json_rows: int
) -> tuple[Path, list[date], Path, Path, int]:
    """The stored target rows as Parquet, and the sessions; the newest days' target rows,
    up to about ``json_rows`` of them, as JSON lines, and those days."""
    import polars as pl

    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.snapshot import scan
    from telemetry.storage import TelemetryStorage

    storage = TelemetryStorage(store, retention_days=10**5, max_sessions=10**9)
    files = storage.snapshot(datasets=("targets",)).files("targets")
    targets = scan(files, dataset="targets").with_columns(
        pl.col("target", "status").cast(pl.String)
    )
    targets_parquet = folder / "targets.parquet"
    sessions_parquet = folder / "sessions.parquet"
    targets.sink_parquet(targets_parquet)
    TelemetryAnalyzer(storage).sessions().drop("labels").write_parquet(sessions_parquet)
    rows = pl.scan_parquet(targets_parquet).select(pl.len()).collect().item()
    days: list[date] = []
    taken = 0
    for stored in sorted(files, key=lambda f: f.day, reverse=True):
        if stored.day not in days:
            if taken >= json_rows:
                break
            days.append(stored.day)
        taken += stored.rows or 0
    rows_jsonl = folder / "target-rows.jsonl"
    chosen = [f for f in files if f.day in days]
    scan(chosen, dataset="targets").with_columns(
        pl.col("target", "status").cast(pl.String)
    ).collect().write_ndjson(rows_jsonl)
    return rows_jsonl, sorted(days), targets_parquet, sessions_parquet, rows


def aggregate_vs_json(repeat: int, store: Path, rows_jsonl: Path, days: list[date]) -> list[Figure]:
    """Mean executed duration per target over ``days``: from the store's target rows, as the
    analyzer answers it (daily rollups for compacted days), and from the same rows as JSON
    lines (polars' reader, and Python's json module)."""
    from datetime import UTC, datetime

    import polars as pl

    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.storage import TelemetryStorage
    from telemetry.window import Window

    storage = TelemetryStorage(store, retention_days=10**5, max_sessions=10**9)
    since = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
    analyzer = TelemetryAnalyzer(storage, window=Window(since=since))

    def top(rows: pl.LazyFrame) -> pl.DataFrame:
        return (
            rows.filter(pl.col("status").is_in(["built", "failed"]))
            .group_by("target")
            .agg(pl.col("duration_ms").mean())
            .sort("duration_ms", descending=True)
            .head(10)
            .collect()
        )

    def ours() -> object:
        return top(storage.snapshot(days=days, datasets=("targets",)).scan("targets"))

    def analyzed() -> object:
        return analyzer.bottlenecks(top=10)

    def ndjson() -> object:
        return top(pl.scan_ndjson(rows_jsonl))

    def python_json() -> object:
        total: dict[str, list[int]] = {}
        with rows_jsonl.open() as lines:
            for line in lines:
                row = json.loads(line)
                if row["status"] in ("built", "failed"):
                    acc = total.setdefault(row["target"], [0, 0])
                    acc[0] += row["duration_ms"]
                    acc[1] += 1
        return sorted(total, key=lambda t: total[t][0] / total[t][1])[-10:]

    want = [t for (t,) in top(pl.scan_ndjson(rows_jsonl)).select("target").rows()]
    if [b.target for b in analyzed()] != want:  # type: ignore[attr-defined]
        raise SystemExit("the analyzer's bottlenecks differ from the rows': a bug")
    times = _alternating(
        {"ours": ours, "analyzed": analyzed, "ndjson": ndjson, "json": python_json}, repeat
    )
    rows = sum(1 for _ in rows_jsonl.open())
    note = f"{rows:,} target rows over {len(days)} days"
    return [
        Figure("bottlenecks from the target rows (load + aggregate)", "ms",
               [t * 1000 for t in times["ours"]], "", note),
        Figure("bottlenecks as the analyzer answers (rollups)", "ms",
               [t * 1000 for t in times["analyzed"]], "", note),
        Figure("JSON lines (polars) / target rows, load + aggregate", "x",
               [j / o for j, o in zip(times["ndjson"], times["ours"], strict=True)], "≥ 25x"),
        Figure("JSON lines (json module) / target rows, load + aggregate", "x",
               [j / o for j, o in zip(times["json"], times["ours"], strict=True)], "≥ 25x"),
        Figure("JSON lines (polars) / analyzer, load + aggregate", "x",
               [j / o for j, o in zip(times["ndjson"], times["analyzed"], strict=True)],
               "≥ 25x"),
        Figure("JSON lines (json module) / analyzer, load + aggregate", "x",
               [j / o for j, o in zip(times["json"], times["analyzed"], strict=True)], "≥ 25x"),
    ]  # fmt: skip


def summary_vs_duckdb(
    repeat: int,
    store: Path,
    packed: Path,
    targets_parquet: Path,
    sessions_parquet: Path,
    shape: str = "",
) -> list[Figure]:
    """The summary's numbers: our analyzer over the compacted store (and the store as
    ingested) against DuckDB over Parquet (a connection opened once, as the analyzer's
    imports are done once). ``shape`` names the history when it is not the run's own."""
    import duckdb

    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.storage import TelemetryStorage

    storage = TelemetryStorage(store, retention_days=10**5, max_sessions=10**9)
    compacted = TelemetryStorage(packed, retention_days=10**5, max_sessions=10**9)
    from telemetry.exporter import render_summary

    texts = {render_summary(TelemetryAnalyzer(s).summary()) for s in (storage, compacted)}
    if len(texts) != 1:
        raise SystemExit("the compacted store answers differently: a bug")
    connection = duckdb.connect()
    query = f"""
        WITH s AS (
          SELECT duration_ms, succeeded,
                 CASE WHEN built + cached + failed = 0 THEN 0
                      ELSE 100.0 * cached / (built + cached + failed) END AS hit
          FROM read_parquet('{sessions_parquet}')),
        b AS (
          SELECT target, avg(duration_ms) AS mean_ms FROM read_parquet('{targets_parquet}')
          WHERE status IN ('built', 'failed') GROUP BY target ORDER BY mean_ms DESC, target
          LIMIT 5)
        SELECT (SELECT count(*) FROM s), (SELECT count(*) FILTER (WHERE succeeded) FROM s),
               (SELECT avg(duration_ms) FROM s), (SELECT min(duration_ms) FROM s),
               (SELECT max(duration_ms) FROM s), (SELECT avg(hit) FROM s),
               (SELECT list(target) FROM b)
    """
    times = _alternating(
        {
            "compacted": lambda: TelemetryAnalyzer(compacted).summary(),
            "ingested": lambda: TelemetryAnalyzer(storage).summary(),
            "duckdb": lambda: connection.execute(query).fetchall(),
        },
        repeat,
    )
    duckdb_ms = statistics.median(times["duckdb"]) * 1000
    of = f", {shape}" if shape else ""
    return [
        Figure(f"summary, compacted store: ours / DuckDB over Parquet{of}", "x",
               [o / d for o, d in zip(times["compacted"], times["duckdb"], strict=True)],
               "≤ 1x", f"ours {statistics.median(times['compacted']) * 1000:.0f} ms, "
               f"DuckDB {duckdb_ms:.0f} ms"),
        Figure(f"summary, store as ingested: ours / DuckDB over Parquet{of}", "x",
               [o / d for o, d in zip(times["ingested"], times["duckdb"], strict=True)], "",
               f"ours {statistics.median(times['ingested']) * 1000:.0f} ms"),
    ]  # fmt: skip


def sql_count_vs_parquet(
    repeat: int, store: Path, packed: Path, targets_parquet: Path, rows: int, shape: str = ""
) -> list[Figure]:
    """`builder telemetry sql "select count(*) from targets"` against DuckDB over one Parquet
    file of the same target rows, side by side: as library calls (a new snapshot and its
    views, of the compacted store and of the store as ingested, against a new DuckDB
    connection reading the file) and as whole commands (against Python running DuckDB over
    the file). The snapshot alone (listing and checking every file's footer) is timed too.
    ``shape`` names the history in the figures' names when it is not the run's own."""
    import duckdb

    from telemetry.duckdb import query
    from telemetry.schema import DATASETS
    from telemetry.storage import TelemetryStorage

    count = "select count(*) from targets"
    on_parquet = f"select count(*) from read_parquet('{targets_parquet}')"
    compacted = TelemetryStorage(packed, retention_days=10**5, max_sessions=10**9)
    ingested = TelemetryStorage(store, retention_days=10**5, max_sessions=10**9)
    counted = {query(s, count).column(0)[0].as_py() for s in (compacted, ingested)}
    counted.add(duckdb.connect().execute(on_parquet).fetchall()[0][0])
    if counted != {rows}:
        raise SystemExit(f"the counts of target rows differ ({counted}, {rows:,}): a bug")

    def snapshot() -> object:  # as the query takes it: the packs' days are not opened
        taken = compacted.snapshot(packs=True)
        return [taken.files(dataset) for dataset in DATASETS]

    env = dict(os.environ, BUILDER_TELEMETRY_DIR=str(packed))
    # Our modules compiled, as an installed wheel's are (pip compiles them; an editable
    # install compiles them at first import, unless PYTHONDONTWRITEBYTECODE is set, when
    # every run would compile them again), as DuckDB's are.
    import compileall

    import telemetry

    compileall.compile_dir(os.path.dirname(telemetry.__file__), quiet=1)

    def run(*args: str) -> Callable[[], object]:
        return lambda: subprocess.run(args, env=env, stdout=subprocess.DEVNULL, check=True)

    python = f"import duckdb; print(duckdb.sql({on_parquet!r}).fetchall())"
    times = _alternating(
        {
            "compacted": lambda: query(compacted, count),
            "ingested": lambda: query(ingested, count),
            "parquet": lambda: duckdb.connect().execute(on_parquet).fetchall(),
            "snapshot": snapshot,
            "command": run(BUILDER, "telemetry", "sql", count),
            "python": run(sys.executable, "-c", python),
        },
        repeat,
    )

    def ms(name: str) -> str:
        return f"{statistics.median(times[name]) * 1000:,.0f} ms"

    def ratio(ours: str, theirs: str) -> list[float]:
        return [o / t for o, t in zip(times[ours], times[theirs], strict=True)]

    of = f", {shape}" if shape else ""
    return [
        Figure(f"sql count(*) of targets, compacted store / DuckDB over Parquet{of}", "x",
               ratio("compacted", "parquet"), "≤ 1.5x",
               f"library calls: ours {ms('compacted')} (of which the snapshot {ms('snapshot')}), "
               f"Parquet {ms('parquet')}; {rows:,} rows"),
        Figure(f"sql count(*) of targets, store as ingested / DuckDB over Parquet{of}", "x",
               ratio("ingested", "parquet"), "", f"ours {ms('ingested')}"),
        Figure(f"`builder telemetry sql` count(*) / python + DuckDB over Parquet{of}", "x",
               ratio("command", "python"), "≤ 1.5x",
               f"whole commands, compacted store: ours {ms('command')}, {ms('python')}"),
    ]  # fmt: skip


def jobs_on_a_day(folder: Path, builds: int, targets: int, seed: int) -> list[Figure]:
    """`builder telemetry jobs run all` (compaction, rollup, retention) over a closed day
    of ``builds`` builds stored a build at a time, as `builder record` leaves them: its
    seconds and its peak memory, in a process of its own, its start included."""
    import polars as pl

    from telemetry.ingest import ingest_file
    from telemetry.storage import TelemetryStorage

    midnight = (int(time.time() * 1000) // DAY_MS) * DAY_MS  # today, UTC: yesterday closed
    events = folder / "day.jsonl"
    generate_events(events, builds, targets, 1, seed + 2, end=midnight - 1)
    scratch = TelemetryStorage(folder / "day-scratch", retention_days=10**5, max_sessions=10**9)
    ingest_file(scratch, events, apply_retention=False)
    events.unlink()
    # Written again a build at a time: a sessions and a targets file per build.
    import pyarrow as pa

    taken = scratch.snapshot()

    def table(dataset: str) -> pa.Table:
        read = [taken.read(f, dataset) for f in taken.files(dataset)]  # type: ignore[arg-type]
        return pa.concat_tables([t for t in read if t is not None]).sort_by("session_id")

    session_rows, target_rows = table("sessions"), table("targets")
    ids = pl.from_arrow(target_rows.select(["session_id"]))
    assert isinstance(ids, pl.DataFrame)
    spans = {
        session: (int(at), int(n))
        for session, at, n in ids.with_row_index("at")
        .group_by("session_id", maintain_order=True)
        .agg(pl.col("at").first(), pl.len())
        .iter_rows()
    }
    store = folder / "day-store"
    storage = TelemetryStorage(store, retention_days=10**5, max_sessions=10**9)
    for index, session in enumerate(session_rows["session_id"].to_pylist()):
        at, n = spans.get(session, (0, 0))
        storage.append(session_rows.slice(index, 1), target_rows.slice(at, n))
    shutil.rmtree(scratch.dir)
    env = os.environ | {"BUILDER_TELEMETRY_DIR": str(store),
                        "BUILDER_TELEMETRY_RETENTION_DAYS": "100000",
                        "BUILDER_TELEMETRY_MAX_SESSIONS": "1000000000"}  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(
        [BUILDER, "telemetry", "jobs", "run", "all"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("jobs run all failed")
    rows = builds * targets
    return [
        Figure(f"`jobs run all` on a closed day of {builds:,} builds", "s", [seconds],
               "reported", f"{rows:,} target rows; compaction, Parquet copies, rollups"),
        Figure(f"`jobs run all` on a closed day of {builds:,} builds, peak memory", "MiB",
               [usage.ru_maxrss / 1024], "reported"),
    ]  # fmt: skip


def small_team_events(folder: Path, builds: int, targets: int, seed: int) -> tuple[Path, int]:
    """A year of a small team's builds as one JSON-lines file (``builds`` over 365 days, ten
    a day by default), and its number of events."""
    events = folder / "year.jsonl"
    return events, generate_events(events, builds, targets, 365, seed + 1)


def year_backfill_rate(repeat: int, events_path: Path, events: int, folder: Path) -> Figure:
    """Events per second stored by ``ingest`` from a year's backfill in one file (365 days:
    a sessions and a targets file to write for each), into an empty store each time.

    The store a run leaves is moved aside before the next, and all of them removed after
    the last. Removing it instead (its 730 files and 730 folders) made the runs slower one
    after another, the ninth a third slower than the first: on ext4 without a journal, as on
    the machine these figures come from, making a file looks past every one removed in the
    last minutes."""
    from telemetry.ingest import IngestResult, ingest_file
    from telemetry.storage import TelemetryStorage

    store, spent = folder / "year-backfill", folder / "year-backfill-spent"
    spent.mkdir()
    results: list[IngestResult] = []

    def aside(name: str) -> None:  # before the clock starts
        if store.exists():
            store.rename(spent / str(len(results)))

    def backfill() -> None:
        storage = TelemetryStorage(store, retention_days=10**5, max_sessions=10**9)
        results.append(ingest_file(storage, events_path, apply_retention=False))

    times = _alternating({"backfill": backfill}, repeat, before=aside)
    days = len(list(store.glob("sessions/date=*")))
    shutil.rmtree(store)
    shutil.rmtree(spent)
    if any(result.events != events for result in results):
        raise SystemExit("the year's backfill stored other events than it holds: a bug")
    return Figure("ingest of a year's backfill in one file", "events/s",
                  [events / t for t in times["backfill"]], "≥ 1,000,000",
                  f"{results[0].sessions:,} builds, {events:,} events, {days} days: "
                  f"{2 * days} files")  # fmt: skip


def small_team_year(
    repeat: int, folder: Path, events: Path, builds: int, targets: int
) -> list[Figure]:
    """A year of a small team's builds (the file ``events``, of ``builds`` builds of
    ``targets`` targets over 365 days; removed once stored), as ingested, and as `jobs run
    all` leaves it (compacted, and its closed months packed): 365 day folders, where the
    default history has 60. The figures that depend on the number of days are measured on
    it too."""
    from pipelines.compaction import compact
    from pipelines.months import pack
    from telemetry.ingest import ingest_file
    from telemetry.storage import TelemetryStorage

    started = time.perf_counter()
    store, packed = folder / "year-ingested", folder / "year-compacted"
    storage = TelemetryStorage(store, retention_days=10**5, max_sessions=10**9)
    ingest_file(storage, events, apply_retention=False)
    events.unlink()
    shutil.copytree(store, packed)
    year = TelemetryStorage(packed, retention_days=10**5, max_sessions=10**9)
    compact(year)
    compacted = time.perf_counter()
    import polars as pl

    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.snapshot import scan

    year_parquet = folder / "year-targets.parquet"
    sessions_parquet = folder / "year-sessions.parquet"
    files = storage.snapshot(datasets=("targets",)).files("targets")
    scan(files, dataset="targets").with_columns(
        pl.col("target", "status").cast(pl.String)
    ).sink_parquet(year_parquet)
    TelemetryAnalyzer(storage).sessions().drop("labels").write_parquet(sessions_parquet)
    rows = pl.scan_parquet(year_parquet).select(pl.len()).collect().item()
    # The months job stamps only the day folders that have not changed for two seconds (a
    # scheduled run finds yesterday's compaction settled): wait that out, as a daily run
    # does, rather than measure a store whose every folder was written a moment ago.
    time.sleep(max(0.0, 2.5 - (time.perf_counter() - compacted)))
    packed_months = pack(year)
    print(f"stored, compacted and packed a year of {builds:,} builds x {targets} targets "
          f"({len(packed_months.months)} months packed) in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)  # fmt: skip
    shape = f"a year of {builds:,} builds"
    return [
        *sql_count_vs_parquet(repeat, store, packed, year_parquet, rows, shape),
        *summary_vs_duckdb(repeat, store, packed, year_parquet, sessions_parquet, shape),
    ]


def spark_source_vs_parquet(repeat: int, packed: Path, folder: Path) -> list[Figure]:
    """Spark over the compacted store through the builder-telemetry source, beside Spark over
    the Parquet export of the same store, in one local Spark session: the source's counts
    must be the analyzer's; then the target rows per second of each (a count and a sum of
    durations over every target row, a new read each time). Skipped, with a note, where
    pyspark or Java is missing."""
    try:
        from pyspark.sql import DataFrame, SparkSession
    except ImportError:
        print("Spark figures skipped: pyspark is not installed "
              "(pip install -e '.[spark]')", file=sys.stderr)  # fmt: skip
        return []
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        print("Spark figures skipped: no Java runtime (install a Java 17 JRE)", file=sys.stderr)
        return []
    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.parquet import sink_parquet
    from telemetry.spark import FORMAT, register
    from telemetry.storage import TelemetryStorage

    storage = TelemetryStorage(packed, retention_days=10**5, max_sessions=10**9)
    export = folder / "spark-export"
    sink_parquet(storage, export)
    # Spark's Python workers run this interpreter (it would take python3 from the PATH).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(os.cpu_count() or 2))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    register(spark)

    def source(dataset: str) -> DataFrame:
        return spark.read.format(FORMAT).option("dataset", dataset).load(str(packed))

    def parquet(dataset: str) -> DataFrame:
        return spark.read.parquet(str(export / dataset))

    def counts(read: Callable[[str], DataFrame]) -> tuple[int, ...]:
        builds = (
            read("sessions")
            .selectExpr("count(*)", "sum(built)", "sum(cached)", "sum(failed)", "sum(skipped)")
            .first()
        )
        rows = read("targets").count()
        assert builds is not None
        return (*(int(value) for value in builds), rows)

    def scan(read: Callable[[str], DataFrame]) -> Callable[[], object]:
        return lambda: read("targets").selectExpr("count(*)", "sum(duration_ms)").collect()

    try:
        sessions = TelemetryAnalyzer(storage).sessions()
        sums = [int(sessions[column].sum()) for column in ("built", "cached", "failed", "skipped")]
        rows = int(sessions["total_targets"].sum())
        want = (sessions.height, *sums, rows)
        for name, read in (("source", source), ("Parquet export", parquet)):
            if counts(read) != want:
                raise SystemExit(f"Spark over the {name} counts otherwise than the analyzer: a bug")
        times = _alternating({"source": scan(source), "parquet": scan(parquet)}, repeat)
    finally:
        spark.stop()
    note = f"{rows:,} target rows, compacted store"
    return [
        Figure("Spark, builder-telemetry source: target rows per second", "rows/s",
               [rows / t for t in times["source"]], "", note),
        Figure("Spark, Parquet export of the store: target rows per second", "rows/s",
               [rows / t for t in times["parquet"]], "", note),
        Figure("Spark: Parquet export / source, rows per second", "x",
               [s / p for s, p in zip(times["source"], times["parquet"], strict=True)], "",
               note),
    ]  # fmt: skip


# -- the run ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=2000)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--large", action="store_true", help="a year: 100,000 x 500 targets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--day-builds",
        type=int,
        default=10_000,
        help="builds of the closed day that `jobs run all` is measured on",
    )
    parser.add_argument(
        "--year-builds",
        type=int,
        default=3650,
        help="builds of the small team's year (365 days) that some figures are measured on",
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument(
        "--json-rows",
        type=int,
        default=2_000_000,
        help="compare with JSON lines over the newest days up to this many rows",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=2000,
        help="builds generated and ingested at a time (the ingest figure's)",
    )
    args = parser.parse_args(argv)
    if args.large:
        args.builds, args.targets, args.days = 100_000, 500, 365
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="builder-bench-") as scratch:
        folder = Path(scratch)
        events_path = folder / "events.jsonl"
        started = time.perf_counter()
        chunk = min(args.chunk, args.builds)
        events = generate_events(events_path, args.builds, args.targets, args.days, args.seed,
                                 chunk=range(chunk))  # fmt: skip
        print(f"generated {events:,} events ({chunk:,} builds x {args.targets} targets) "
              f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)  # fmt: skip
        figures.append(collector_per_event(args.repeat))
        figures.append(collector_memory())
        figures.append(flush_10k(args.repeat, folder))
        rates, store = ingest_rate(args.repeat, events_path, events, folder)
        figures += rates
        figures += ingest_memory(args.repeat, events_path, events, folder, args)
        events += ingest_rest(store, folder, args, chunk)
        compacted, packed = compaction(store, folder)
        figures.append(compacted)
        rows_jsonl, days, targets_parquet, sessions_parquet, rows = export_rows(
            store, folder, args.json_rows
        )
        events_per_row = events_path.stat().st_size / (chunk * args.targets)
        figures += sizes(packed, events_per_row, rows, rows_jsonl)
        figures += aggregate_vs_json(args.repeat, packed, rows_jsonl, days)
        figures += summary_vs_duckdb(args.repeat, store, packed, targets_parquet, sessions_parquet)
        figures += command_times(args.repeat, packed)
        figures += sql_count_vs_parquet(args.repeat, store, packed, targets_parquet, rows)
        year, year_events = small_team_events(folder, args.year_builds, args.targets, args.seed)
        figures.append(year_backfill_rate(args.repeat, year, year_events, folder))
        figures += small_team_year(args.repeat, folder, year, args.year_builds, args.targets)
        figures += jobs_on_a_day(folder, args.day_builds, args.targets, args.seed)
        figures += spark_source_vs_parquet(args.repeat, packed, folder)
    _print(figures)
    report = {
        "builds": args.builds,
        "targets_per_build": args.targets,
        "events": events,
        "target_rows": rows,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "figures": [asdict(f) for f in figures],
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}", file=sys.stderr)
    return 0


def _print(figures: list[Figure]) -> None:
    rows = [("measure", "median", "min-max", "unit", "target", "")]
    for f in figures:
        rows.append((f.name, _num(f.median), f"{_num(f.low)}-{_num(f.high)}", f.unit, f.target,
                     f.note))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) if i in (0, 3, 4) else row[i].rjust(widths[i])
                 for i in range(5)]  # fmt: skip
        print("  ".join(cells) + (f"  {row[5]}" if row[5] else ""))


def _num(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
