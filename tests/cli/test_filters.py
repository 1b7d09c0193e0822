"""`--branch`, `--tool`, `--label KEY=VALUE` and `--status` on summary, recent, export and
show: worked out by hand on the small history, and checked against DuckDB SQL over the
stored files of the generated one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pytest

from telemetry.ingest import ingest_file
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES, T0, Runner, small_history

# The commands that take a window and filters before their name (but the last).
READERS = "summary, recent, export, show, check, cache, flaky, changes, report, trace"

BRANCHES = {"a": "main", "b": "feature/x", "c": "main"}


def _on_branches() -> bytes:
    """small_history with a and c built on main, b on feature/x."""
    lines = []
    for line in small_history():
        event = json.loads(line)
        if event["event"] == "build_started":
            event["branch"] = BRANCHES[event["session"]]
        lines.append(json.dumps(event))
    return "\n".join(lines).encode()


@pytest.fixture
def branched(cli: Runner) -> Runner:
    assert cli("telemetry", "ingest", "-", stdin=_on_branches()).code == 0
    return cli


def test_summary_of_one_branch(branched: Runner) -> None:
    result = branched("telemetry", "summary", "--branch", "main", "--format", "json")
    assert (result.code, result.stderr) == (0, "")
    report = json.loads(result.stdout)
    # a (1000 ms, hit rate 25, utilization 45, 4 targets/s) and c (3000 ms, failed; 50, 25,
    # 4/3): see tests/test_analyzer.py. All three builds would give 3 builds, 38.3% and a
    # compile of 4400/3 ms.
    assert (report["totalBuilds"], report["successful"], report["failed"]) == (2, 1, 1)
    assert report["averageCacheHitRate"] == 37.5
    assert report["averageParallelismUtilization"] == 35.0
    assert report["averageTargetsPerSecond"] == pytest.approx(8 / 3)
    assert report["bottlenecks"] == [
        {"target": "//app:compile", "meanDurationMs": 1700.0, "runs": 2},
        {"target": "//app:test", "meanDurationMs": 300.0, "runs": 1},
        {"target": "//app:link", "meanDurationMs": 200.0, "runs": 1},
    ]
    # c against a alone, not against the mean of a and b.
    [regression] = report["regressions"]
    assert (regression["sessionId"], regression["ratio"], regression["expectedMs"]) == (
        "c",
        3.0,
        1000.0,
    )


def test_recent_failed_builds_keep_the_seeds_layout(branched: Runner) -> None:
    result = branched("telemetry", "recent", "--status", "failed")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == (
        "Recent 1 Build:\n"
        "\n"
        "1. [✗] 2025-10-27T16:23:20 - 3000ms (cache: 50.0%)\n"
        "   Error: Compilation failed for //app:compile\n"
        "   Top bottlenecks:\n"
        "     • //app:compile: 3000ms\n"
    )


def test_export_of_one_tool(branched: Runner) -> None:
    csv = branched("telemetry", "export", "--format", "csv", "--tool", "bazel").stdout
    _, row, end = csv.split("\r\n")
    assert (row.split(",")[10], end) == ("b", "")  # sessionId, and b alone


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--label", "ci=true"], ["a"]),
        (["-l", "ci=true", "--tool", "ninja", "--branch", "main"], ["a"]),
        (["--status", "succeeded"], ["b", "a"]),
        (["--status", "succeeded", "--branch", "main"], ["a"]),
        (["--branch", "main"], ["c", "a"]),
        (["--branch", "feature/x"], ["b"]),
    ],
)
def test_filters_before_the_command_name_are_the_commands(
    branched: Runner, args: list[str], expected: list[str]
) -> None:
    before = branched("telemetry", *args, "recent", "--format", "json")
    after = branched("telemetry", "recent", *args, "--format", "json")
    assert before == after
    assert [b["sessionId"] for b in json.loads(after.stdout)["builds"]] == expected


def test_labels_before_and_after_the_command_name_must_all_match(
    branched: Runner, tmp_path: Path
) -> None:
    result = branched("telemetry", "--label", "ci=true", "recent", "--label", "ci=false")
    assert (result.code, result.stdout) == (
        0,
        f"No builds in {tmp_path}/telemetry match the selected filters.\n",
    )
    windowed = branched("telemetry", "summary", "--since", "2025-10-27T15:00", "--tool", "ninja")
    assert windowed.stdout == (
        f"No builds in {tmp_path}/telemetry in the selected time window match the selected "
        f"filters.\n"
    )


def test_an_option_after_the_command_name_wins(branched: Runner) -> None:
    result = branched("telemetry", "--branch", "feature/x", "export", "--branch", "main")
    assert [s["sessionId"] for s in json.loads(result.stdout)["sessions"]] == ["a", "c"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["summary", "--status", "done"],
            "Error: Invalid value for '--status': 'done' is not one of succeeded, failed.",
        ),
        (["recent", "--label", "ci"], "Error: --label must be KEY=VALUE, got 'ci'"),
        (["export", "--label", "=true"], "Error: --label must be KEY=VALUE, got '=true'"),
        (["--label", "ci", "show"], "Error: --label must be KEY=VALUE, got 'ci'"),
        (["show", "--branch", ""], "Error: --branch needs a name, got an empty one"),
        (["--tool", "ninja", "verify"],
         f"Error: --tool goes with {READERS} and regressions, not with verify"),
    ],
)  # fmt: skip
def test_an_unusable_filter_is_one_error_and_exit_2(
    branched: Runner, args: list[str], error: str
) -> None:
    result = branched("telemetry", *args)
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == error
    assert [line for line in result.stderr.splitlines() if line.startswith("Error")] == [error]


@pytest.mark.parametrize(
    "args",
    [
        ["recent", "--branch", "main"],
        ["recent", "1", "--status", "failed"],
        ["summary", "--tool", "ninja"],
        ["summary", "-l", "ci=true"],
        ["--label", "ci=true"],
        ["--status", "failed", "recent"],
        ["show"],
    ],
)
def test_filtered_command_lines_are_left_to_the_parser(args: list[str]) -> None:
    from telemetry.cli.fast import _report

    assert _report(args) is None


def test_the_status_choices_are_the_librarys_literal() -> None:
    import typer

    from telemetry.cli.commands import app
    from telemetry.window import BUILD_STATUSES, BuildStatus

    telemetry = typer.main.get_command(app).commands["telemetry"]  # type: ignore[attr-defined]
    commands = [telemetry, *(telemetry.commands[name] for name in _FILTERED)]
    for command in commands:
        [status] = [param for param in command.params if param.name == "status"]
        assert status.type_descriptor.annotation is BuildStatus
    assert BUILD_STATUSES == ("succeeded", "failed")


_FILTERED = ("summary", "recent", "export", "show")


# -- the generated history against DuckDB -----------------------------------------------------

TODAY = "2026-11-20"
REL = 1e-9

FILTERS: list[dict[str, Any]] = [
    {"branch": "main"},
    {"tool": "ninja"},
    {"labels": [("ci", "false")]},
    {"labels": [("ci", "true"), ("pipeline", "nightly")]},
    {"status": "failed"},
    {"branch": "release-2.5", "tool": "bazel", "status": "succeeded"},
    {"tool": "ninja", "since": "2026-10-15", "until": "2026-10-31"},
]


def _options(only: dict[str, Any]) -> list[str]:
    args = []
    for name in ("branch", "tool", "status", "since", "until"):
        if name in only:
            args += [f"--{name}", only[name]]
    for key, value in only.get("labels", []):
        args += ["--label", f"{key}={value}"]
    return args


def _chosen(only: dict[str, Any]) -> tuple[str, dict[str, object]]:
    """The WHERE clause that takes the sessions ``only`` asks for, and its parameters."""
    clauses = ["TRUE"]
    params: dict[str, object] = {}
    if "branch" in only:
        clauses.append("branch = $branch")
        params["branch"] = only["branch"]
    if "tool" in only:
        clauses.append("tool = $tool")
        params["tool"] = only["tool"]
    for n, (key, value) in enumerate(only.get("labels", [])):
        clauses.append(f"labels[$key{n}] = $value{n}")
        params |= {f"key{n}": key, f"value{n}": value}
    if "status" in only:
        clauses.append("succeeded = $succeeded")  # an interrupted build has succeeded false
        params["succeeded"] = only["status"] == "succeeded"
    if "since" in only:
        clauses.append("start_time >= $since::TIMESTAMPTZ")
        params["since"] = f"{only['since']} 00:00:00+00"
    if "until" in only:  # a date includes that whole day
        clauses.append("start_time < $until::TIMESTAMPTZ + INTERVAL 1 DAY")
        params["until"] = f"{only['until']} 00:00:00+00"
    return " AND ".join(clauses), params


def _sql(template: str, only: dict[str, Any]) -> tuple[str, dict[str, object]]:
    where, params = _chosen(only)
    return template.replace("{where}", where), params


CHOSEN = """
WITH chosen AS (SELECT * FROM sessions WHERE {where}),
counts AS (
    SELECT
        session_id,
        count(*) AS total,
        count(*) FILTER (WHERE status = 'cached') AS cached,
        count(*) FILTER (WHERE status IN ('built', 'cached', 'failed')) AS attempted
    FROM targets WHERE session_id IN (SELECT session_id FROM chosen)
    GROUP BY session_id
),
rated AS (
    SELECT
        c.*,
        CASE WHEN coalesce(n.total, 0) = 0 THEN NULL
             WHEN n.attempted > 0 THEN 100 * n.cached::DOUBLE / n.attempted ELSE 0.0
        END AS hit_rate,
        row_number() OVER (ORDER BY c.start_time, c.session_id) AS pos
    FROM chosen AS c LEFT JOIN counts AS n USING (session_id)
)
"""

TOTALS = (
    CHOSEN
    + """
SELECT
    count(*) AS total,
    count(*) FILTER (WHERE succeeded) AS successful,
    avg(duration_ms) AS average_ms,
    min(duration_ms) AS fastest,
    max(duration_ms) AS slowest,
    count(hit_rate) AS with_targets,
    avg(hit_rate) AS hit_rate
FROM rated
"""
)

IDS = CHOSEN + "SELECT session_id FROM rated ORDER BY pos"

BOTTLENECKS = (
    CHOSEN
    + """
SELECT target, avg(duration_ms) AS mean_ms, count(*) AS runs
FROM targets
WHERE status IN ('built', 'failed') AND session_id IN (SELECT session_id FROM chosen)
GROUP BY target ORDER BY mean_ms DESC, target LIMIT 5
"""
)

# Each of the latest builds (3 when there are 10 or more, else 1) against the mean duration
# of the builds of the selection before it.
REGRESSIONS = (
    CHOSEN
    + """,
history AS (
    SELECT *,
        avg(duration_ms::DOUBLE) OVER (
            ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS expected,
        count(*) OVER () AS n
    FROM rated
)
SELECT session_id, duration_ms / expected AS ratio, expected
FROM history
WHERE pos > n - (CASE WHEN n >= 10 THEN 3 ELSE 1 END) AND expected > 0
  AND duration_ms / expected >= 1.5
ORDER BY pos
"""
)

TARGETS = """
SELECT target, status, duration_ms, worker, error
FROM targets WHERE session_id = $session
ORDER BY duration_ms DESC, target, start_time
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """The generated history stored once, and DuckDB over its files."""
    root = tmp_path_factory.mktemp("filters")
    history = root / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--output", str(history), "--today", TODAY],
        check=True,
    )
    storage = TelemetryStorage(root / "telemetry")
    assert ingest_file(storage, history).sessions == 200
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in ("sessions", "targets"):
        con.register(name, ds.dataset(storage.dir / name, format="ipc", partitioning="hive"))
    yield storage.dir, con
    con.close()


def _rows(con: Any, sql: str, params: dict[str, object]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _json(cli: Runner, store: Path, *args: str) -> Any:
    result = cli("telemetry", *args, "--dir", str(store))
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("only", FILTERS, ids=[" ".join(_options(f)) for f in FILTERS])
def test_filters_match_sql(cli: Runner, generated: tuple[Path, Any], only: dict[str, Any]) -> None:
    store, con = generated
    options = _options(only)
    ids = [r["session_id"] for r in _rows(con, *_sql(IDS, only))]
    assert 0 < len(ids) < 200  # the filter leaves some builds out, and takes some

    exported = _json(cli, store, "export", *options)["sessions"]
    assert [s["sessionId"] for s in exported] == ids

    [totals] = _rows(con, *_sql(TOTALS, only))
    report = _json(cli, store, "summary", *options, "--format", "json")
    assert (report["totalBuilds"], report["successful"]) == (totals["total"], totals["successful"])
    assert (report["fastestBuildMs"], report["slowestBuildMs"]) == (
        totals["fastest"],
        totals["slowest"],
    )
    assert report["averageBuildTimeMs"] == pytest.approx(totals["average_ms"], rel=REL)
    assert report["buildsWithTargets"] == totals["with_targets"]
    assert report["averageCacheHitRate"] == pytest.approx(totals["hit_rate"], rel=REL)
    bottlenecks = _rows(con, *_sql(BOTTLENECKS, only))
    assert [(b["target"], b["runs"]) for b in report["bottlenecks"]] == [
        (b["target"], b["runs"]) for b in bottlenecks
    ]
    assert [b["meanDurationMs"] for b in report["bottlenecks"]] == pytest.approx(
        [b["mean_ms"] for b in bottlenecks], rel=REL
    )
    regressions = _rows(con, *_sql(REGRESSIONS, only))
    assert [r["sessionId"] for r in report["regressions"]] == [r["session_id"] for r in regressions]
    for got, want in zip(report["regressions"], regressions, strict=True):
        assert got["ratio"] == pytest.approx(want["ratio"], rel=REL)
        assert got["expectedMs"] == pytest.approx(want["expected"], rel=REL)

    recent = _json(cli, store, "recent", "5", *options, "--format", "json")["builds"]
    assert [b["sessionId"] for b in recent] == ids[::-1][:5]

    shown = _json(cli, store, "show", *options, "--format", "json")
    assert shown["sessionId"] == ids[-1]
    targets = _rows(con, TARGETS, {"session": ids[-1]})
    assert [
        (t["target"], t["status"], t["durationMs"], t["worker"], t["error"])
        for t in shown["targets"]
    ] == [tuple(t.values()) for t in targets]


def test_the_target_rows_of_days_without_a_chosen_build_are_not_read(
    branched: Runner, tmp_path: Path
) -> None:
    # A build of the next day; then the first day's targets file is damaged (cut in half).
    late = T0 + 30 * 3_600_000
    events = [
        {"event": "build_started", "session": "late", "ts": late, "tool": "make"},
        {"event": "target_finished", "session": "late", "ts": late + 70, "target": "//l",
         "status": "built", "duration_ms": 70},
        {"event": "build_finished", "session": "late", "ts": late + 100, "success": True},
    ]  # fmt: skip
    stdin = "\n".join(json.dumps(e) for e in events).encode()
    assert branched("telemetry", "ingest", "-", stdin=stdin).code == 0
    [damaged] = (tmp_path / "telemetry" / "targets" / "date=2025-10-27").glob("*.arrow")
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])

    everything = branched("telemetry", "summary")
    assert f"Warning: skipping {damaged}" in everything.stderr
    for args in (["summary", "--tool", "make"], ["show", "late"], ["show", "--tool", "make"]):
        result = branched("telemetry", *args)
        assert (result.code, result.stderr) == (0, ""), args
        assert "//l" in result.stdout


def test_a_compacted_store_answers_the_filters_as_before(
    cli: Runner, generated: tuple[Path, Any], tmp_path: Path
) -> None:
    # The daily rollups stand in for a day's target rows only when every build of the day is
    # chosen: a filter that leaves some out must read the rows, one that takes all may not.
    from pipelines.compaction import compact

    store = tmp_path / "telemetry"
    shutil.copytree(generated[0], store)
    asked = [
        [*_options(only), *extra]
        for only in FILTERS
        for extra in (["summary", "--format", "json", "--top", "10"], ["show", "--format", "json"])
    ]
    asked.append(["summary", "--status", "succeeded", "--format", "json", "--top", "10"])
    before = [_json(cli, store, *args) for args in asked]
    assert len(compact(TelemetryStorage(store))) == 60
    assert [_json(cli, store, *args) for args in asked] == before
