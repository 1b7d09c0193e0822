"""`builder telemetry trace`: one build as a Chrome trace, its events worked out by hand,
checked against the Trace Event Format's rules, and read back by the project's own trace
ingest.

No trace reader installs offline from PyPI (Perfetto's TraceProcessor downloads its binary
when first used), so the format's rules are checked here, as the trace viewer and Perfetto
apply them: the JSON object form, the fields of each phase, the viewer's reserved colour
names, slices that nest on each thread, flow arrows that each bind to a slice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.chrome_trace import (
    TraceError,
    trace_document,
    trace_file_name,
    trace_text,
    write_trace,
)
from telemetry.errors import TelemetryError
from telemetry.ingest import ingest_file, ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, FIXTURES, T0, Runner, process_env, small_history

# Build t started 250 ms into the second T0 (2025-10-27T14:23:20Z, a Monday) and ended at
# +1500 ms (times below are ms after T0):
#   worker 0: //gen [250, 650) built, then //cc a [650, 1450) failed ("a.c:1: error")
#   worker 1: //cc b [300, 1000) built
#   no worker: //lib a cache hit at 400; //py [400, 900) and //doc [800, 1100) built, told
#              by duration_ms; //app skipped at 1450
# //doc overlaps //py, so it spills to a second no-worker track. //lib (0 ms at 400) ends
# where //py starts, and //app starts after //py ended: both stay on the first.
T = T0
COMMIT = "0123abcdef" * 4  # the process name shows its first 12 characters


def _t_history(session: str = "t") -> list[str]:
    def event(kind: str, at: int, **fields: object) -> str:
        return json.dumps({"event": kind, "session": session, "ts": T + at, **fields})

    return [
        event("build_started", 250, tool="ninja", host="ci-7", commit=COMMIT, branch="main",
              labels={"ci": "true"}),
        event("target_started", 250, target="//gen", worker=0),
        event("target_started", 300, target="//cc b", worker=1),
        event("target_finished", 400, target="//lib", status="cached"),
        event("target_finished", 650, target="//gen", status="built"),
        event("target_started", 650, target="//cc a", worker=0),
        event("target_finished", 900, target="//py", status="built", duration_ms=500),
        event("target_finished", 1000, target="//cc b", status="built"),
        event("target_finished", 1100, target="//doc", status="built", duration_ms=300),
        event("target_finished", 1450, target="//cc a", status="failed", error="a.c:1: error"),
        event("target_finished", 1450, target="//app", status="skipped"),
        event("build_finished", 1500, success=False, error="1 target failed"),
    ]  # fmt: skip


def _x(name: str, status: str, ts_ms: int, dur_ms: int, tid: int, **args: object) -> dict[str, Any]:
    """A complete event: times in microseconds from T (the whole second the build began)."""
    colors = {"built": "good", "cached": "generic_work", "failed": "terrible", "skipped": "bad"}
    return {
        "name": name,
        "cat": status,
        "ph": "X",
        "ts": ts_ms * 1000,
        "dur": dur_ms * 1000,
        "pid": 1,
        "tid": tid,
        "cname": colors[status],
        "args": {"status": status, "duration_ms": dur_ms, **args},
    }


def _thread(tid: int, name: str) -> list[dict[str, Any]]:
    return [
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}},
        {"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": {"sort_index": tid}},
    ]


EXPECTED_T: dict[str, Any] = {
    "traceEvents": [
        {"name": "process_name", "ph": "M", "pid": 1,
         "args": {"name": "build t (ninja, main @ 0123abcdef01)"}},
        {"name": "process_labels", "ph": "M", "pid": 1,
         "args": {"labels": "failed after 1250 ms"}},
        *_thread(1, "worker 0"),
        *_thread(2, "worker 1"),
        *_thread(3, "no worker"),
        *_thread(4, "no worker (2)"),
        # Each track's slices in time order, the tracks in order.
        _x("//gen", "built", 250, 400, 1),
        _x("//cc a", "failed", 650, 800, 1, error="a.c:1: error"),
        _x("//cc b", "built", 300, 700, 2),
        _x("//lib", "cached", 400, 0, 3),
        _x("//py", "built", 400, 500, 3),
        _x("//app", "skipped", 1450, 0, 3),
        _x("//doc", "built", 800, 300, 4),
    ],
    "displayTimeUnit": "ms",
    "otherData": {
        "date": "Mon Oct 27 14:23:20 UTC 2025",
        "session_id": "t",
        "outcome": "failed",
        "start_time": "2025-10-27T14:23:20.250Z",
        "end_time": "2025-10-27T14:23:21.500Z",
        "duration_ms": 1250,
        "tool": "ninja",
        "host": "ci-7",
        "branch": "main",
        "commit": COMMIT,
        "error": "1 target failed",
        "labels": {"ci": "true"},
    },
}  # fmt: skip


@pytest.fixture
def t_store(storage: TelemetryStorage) -> TelemetryStorage:
    result = ingest_jsonl(storage, _t_history())
    assert result.sessions == 1 and not result.problems
    return storage


def test_the_events_of_a_small_build(t_store: TelemetryStorage) -> None:
    build = TelemetryAnalyzer(t_store).build("t")
    assert trace_document(build) == EXPECTED_T


def test_the_critical_path_is_marked_and_joined_by_flow_arrows(t_store: TelemetryStorage) -> None:
    build = TelemetryAnalyzer(t_store).build("t")
    document = trace_document(build, critical_path=["//gen", "//cc b", "//doc"])
    marked = [
        e["name"] for e in document["traceEvents"] if e["ph"] == "X" and e["args"].get("critical")
    ]
    assert marked == ["//gen", "//cc b", "//doc"]
    # Each arrow runs from halfway through one target to halfway through the next:
    # //gen [250, 650) -> 450 on worker 0 (tid 1); //cc b [300, 1000) -> 650 on tid 2;
    # //doc [800, 1100) -> 950 on the second no-worker track (tid 4).
    arrow = {"name": "critical path", "cat": "critical path", "pid": 1}
    assert [e for e in document["traceEvents"] if e["ph"] in ("s", "f")] == [
        {**arrow, "ph": "s", "id": 1, "ts": 450_000, "tid": 1},
        {**arrow, "ph": "f", "id": 1, "ts": 650_000, "tid": 2, "bp": "e"},
        {**arrow, "ph": "s", "id": 2, "ts": 650_000, "tid": 2},
        {**arrow, "ph": "f", "id": 2, "ts": 950_000, "tid": 4, "bp": "e"},
    ]
    # Otherwise the same trace.
    plain = [e for e in document["traceEvents"] if e["ph"] not in ("s", "f")]
    for event in plain:
        event.get("args", {}).pop("critical", None)
    assert plain == EXPECTED_T["traceEvents"]
    assert_trace_rules(document)


def test_a_critical_path_naming_no_target_of_the_build_is_refused(
    t_store: TelemetryStorage,
) -> None:
    build = TelemetryAnalyzer(t_store).build("t")
    with pytest.raises(TraceError, match="names '//nope', which is no target of build 't'"):
        trace_document(build, critical_path=["//gen", "//nope"])


# The trace viewer's reserved colour names (catapult, tracing/base/color_scheme.html): any
# other cname is an error there.
RESERVED_COLORS = frozenset((
    "thread_state_uninterruptible", "thread_state_iowait", "thread_state_running",
    "thread_state_runnable", "thread_state_sleeping", "thread_state_unknown",
    "background_memory_dump", "light_memory_dump", "detailed_memory_dump",
    "vsync_highlight_color", "generic_work", "good", "bad", "terrible", "black", "grey", "white",
    "yellow", "olive", "rail_response", "rail_animation", "rail_idle", "rail_load", "startup",
    "heap_dump_stack_frame", "heap_dump_object_type", "heap_dump_child_node_arrow",
    "cq_build_running", "cq_build_passed", "cq_build_failed", "cq_build_abandoned",
    "cq_build_attempt_runnig", "cq_build_attempt_passed", "cq_build_attempt_failed",
))  # fmt: skip
# What the trace viewer of 2015 knew too: the names this trace may use, so older viewers
# open it as well.
OLDEST_COLORS = frozenset((
    "thread_state_iowait", "thread_state_running", "thread_state_runnable",
    "thread_state_sleeping", "thread_state_unknown", "light_memory_dump", "detailed_memory_dump",
    "generic_work", "good", "bad", "terrible", "black",
))  # fmt: skip


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_trace_rules(document: object) -> None:
    """The Trace Event Format's rules, as the viewers apply them."""
    assert isinstance(document, dict)
    assert isinstance(document["traceEvents"], list)
    assert document["displayTimeUnit"] in ("ms", "ns")
    assert isinstance(document["otherData"], dict)
    events: list[dict[str, Any]] = document["traceEvents"]
    named: set[tuple[int, int]] = set()
    slices: dict[tuple[int, int], list[tuple[int, int]]] = {}
    flows: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for event in events:
        assert isinstance(event["name"], str) and isinstance(event["pid"], int)
        phase = event["ph"]
        if phase == "M":
            assert event["name"] in {
                "process_name",
                "process_labels",
                "thread_name",
                "thread_sort_index",
            }
            assert isinstance(event["args"], dict)
            if event["name"].startswith("thread_"):
                assert isinstance(event["tid"], int)
                named.add((event["pid"], event["tid"]))
        elif phase == "X":
            assert {"name", "ph", "ts", "dur", "pid", "tid"} <= event.keys()
            assert _number(event["ts"]) and _number(event["dur"]) and event["dur"] >= 0
            assert isinstance(event["tid"], int)
            assert event["cname"] in RESERVED_COLORS and event["cname"] in OLDEST_COLORS
            slices.setdefault((event["pid"], event["tid"]), []).append(
                (event["ts"], event["ts"] + event["dur"])
            )
        elif phase in ("s", "f"):
            assert _number(event["ts"]) and isinstance(event["tid"], int)
            key = (event["cat"], event["name"], event["id"])
            assert phase not in flows.setdefault(key, {})
            flows[key][phase] = event
        else:
            raise AssertionError(f"unexpected phase {phase!r}")
    # Every track is named, and its slices nest: each one lies inside the one open when it
    # starts, or starts once that one has ended.
    assert set(slices) <= named
    for spans in slices.values():
        open_: list[tuple[int, int]] = []
        for start, end in sorted(spans, key=lambda span: (span[0], -span[1])):
            while open_ and open_[-1][1] <= start and open_[-1] != (start, end):
                open_.pop()
            assert not open_ or end <= open_[-1][1], (start, end, open_)
            open_.append((start, end))
    # A flow's start and end each lie strictly inside a slice on their thread.
    for ends in flows.values():
        assert ends.keys() == {"s", "f"} and ends["f"]["bp"] == "e"
        for end in ends.values():
            spans = slices[(end["pid"], end["tid"])]
            assert any(start < end["ts"] < stop for start, stop in spans), end


def test_the_document_obeys_the_formats_rules(t_store: TelemetryStorage) -> None:
    document = trace_document(TelemetryAnalyzer(t_store).build("t"))
    assert_trace_rules(document)
    text = trace_text(document)
    assert text.isascii() and json.loads(text) == document


def test_build_text_is_json_encoded(storage: TelemetryStorage) -> None:
    # A target name with a line break, an escape sequence and a bidirectional override; an
    # error with a quote: the text stays one event a line, ASCII, and the same values.
    name = 'gen\n\x1b[2J\u202e"x"'
    lines = [
        json.dumps({"event": "build_started", "session": "h", "ts": T0}),
        json.dumps({"event": "target_finished", "session": "h", "ts": T0 + 5, "target": name,
                    "status": "failed", "error": 'say "no"', "duration_ms": 5}),
        json.dumps({"event": "build_finished", "session": "h", "ts": T0 + 5, "success": False}),
    ]  # fmt: skip
    ingest_jsonl(storage, lines)
    document = trace_document(TelemetryAnalyzer(storage).build("h"))
    text = trace_text(document)
    assert text.isascii() and "\x1b" not in text
    # The header, 4 metadata events, 1 slice, and the three lines of the end.
    assert len(text.splitlines()) == 1 + 4 + 1 + 3
    [target] = [e for e in json.loads(text)["traceEvents"] if e["ph"] == "X"]
    assert (target["name"], target["args"]["error"]) == (name, 'say "no"')


def test_a_build_without_targets_has_an_empty_timeline(storage: TelemetryStorage) -> None:
    lines = [
        json.dumps({"event": "build_started", "session": "m", "ts": T0 + 1999, "tool": "make"}),
        json.dumps({"event": "build_finished", "session": "m", "ts": T0 + 2500, "success": True}),
    ]
    ingest_jsonl(storage, lines)
    document = trace_document(TelemetryAnalyzer(storage).build("m"))
    assert document["traceEvents"] == [
        {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "build m (make)"}},
        {"name": "process_labels", "ph": "M", "pid": 1, "args": {"labels": "succeeded in 501 ms"}},
    ]
    # Time 0 is the whole second the build began in: T0 + 1 s.
    assert document["otherData"]["date"] == "Mon Oct 27 14:23:21 UTC 2025"
    assert_trace_rules(document)


def test_time_zero_precedes_a_target_that_began_before_its_build(
    storage: TelemetryStorage, tmp_path: Path
) -> None:
    # The build began at T + 250 ms; //early finished at T + 350 after 1200 ms, so it ran
    # over [T - 850, T + 350): time 0 is the second before T, and //early's ts is 150 ms.
    lines = [
        json.dumps({"event": "build_started", "session": "e", "ts": T + 250}),
        json.dumps({"event": "target_finished", "session": "e", "ts": T + 350,
                    "target": "//early", "status": "built", "duration_ms": 1200}),
        json.dumps({"event": "build_finished", "session": "e", "ts": T + 400, "success": True}),
    ]  # fmt: skip
    ingest_jsonl(storage, lines)
    document = trace_document(TelemetryAnalyzer(storage).build("e"))
    assert document["otherData"]["date"] == "Mon Oct 27 14:23:19 UTC 2025"
    [early] = [e for e in document["traceEvents"] if e["ph"] == "X"]
    assert (early["ts"], early["dur"]) == (150_000, 1_200_000)
    # Read back, it ran at the same milliseconds.
    write_trace(document, tmp_path / "e.json")
    fresh = TelemetryStorage(tmp_path / "fresh", retention_days=100_000)
    ingest_file(fresh, tmp_path / "e.json")
    [row] = _rows(fresh)
    t = datetime.fromtimestamp(T / 1000, UTC)
    ms = timedelta(milliseconds=1)
    assert ((row["start_time"] - t) // ms, (row["end_time"] - t) // ms) == (-850, 350)


@pytest.mark.parametrize(
    ("session", "name"),
    [
        ("ci-000042", "ci-000042.trace.json"),  # a safe id is its own name
        # Changed on the way: the first 8 hex digits of the id's SHA-256 follow (worked out
        # with sha256sum), so that ids made safe alike keep files of their own.
        ("dev/ws01 12:30", "dev_ws01_12_30-6cbd12c1.trace.json"),
        ("dev:ws01 12:30", "dev_ws01_12_30-1bf4c833.trace.json"),
        ("../../etc/passwd", "etc_passwd-3754d6cb.trace.json"),
        ("-rf", "rf-686c39ac.trace.json"),
        (".hidden", "hidden-16924190.trace.json"),
        ("..", "build-5ec1f7e7.trace.json"),
        ("\u202ebüild\n", "b_ild-9706bd67.trace.json"),
        ("x" * 300, "x" * 100 + "-0d4e2ca9.trace.json"),
    ],
)
def test_file_names_from_session_ids_are_safe(session: str, name: str) -> None:
    assert trace_file_name(session) == name


def test_writing_replaces_the_file_whole(tmp_path: Path, t_store: TelemetryStorage) -> None:
    document = trace_document(TelemetryAnalyzer(t_store).build("t"))
    path = tmp_path / "build.json"
    path.write_text("old")
    write_trace(document, path)
    assert json.loads(path.read_text()) == EXPECTED_T
    assert [p.name for p in tmp_path.iterdir() if p.name != "telemetry"] == ["build.json"]
    with pytest.raises(TelemetryError, match="cannot write"):
        write_trace(document, tmp_path / "missing" / "build.json")


# -- the round trip through the project's own trace ingest ---------------------------------


def _rows(storage: TelemetryStorage) -> list[dict[str, Any]]:
    _, rows = TelemetryAnalyzer(storage).targets()
    return rows.sort("start_time", "target").to_dicts()


def test_the_trace_ingest_reads_back_names_workers_and_times(cli: Runner, tmp_path: Path) -> None:
    """What survives: every target's name, start, end and duration to the millisecond, and
    its worker (the workers were 0 and 1; the no-worker tracks come back as workers 2 and 3,
    the next numbers). What does not: the statuses (a trace says nothing of them, so all are
    built), the build's own start, end, outcome and session id."""
    assert cli("telemetry", "ingest", "-", stdin="\n".join(_t_history()).encode()).code == 0
    written = cli("telemetry", "trace", "t", "--output", "t.json")
    assert (written.code, written.stderr) == (0, "")
    fresh = tmp_path / "fresh"
    again = cli("telemetry", "--dir", str(fresh), "ingest", "t.json")
    assert (again.code, again.stdout) == (0, "Stored 1 build from 16 events.\n")

    ms = timedelta(milliseconds=1)
    t = datetime.fromtimestamp(T / 1000, UTC)
    expected = [  # (target, worker, start, end, duration) in ms after T, from the history
        ("//gen", 0, 250, 650, 400),
        ("//cc b", 1, 300, 1000, 700),
        ("//lib", 2, 400, 400, 0),
        ("//py", 2, 400, 900, 500),
        ("//cc a", 0, 650, 1450, 800),
        ("//doc", 3, 800, 1100, 300),
        ("//app", 2, 1450, 1450, 0),
    ]
    rows = _rows(TelemetryStorage(fresh))
    assert [
        (r["target"], r["worker"], (r["start_time"] - t) // ms, (r["end_time"] - t) // ms,
         r["duration_ms"]) for r in rows
    ] == expected  # fmt: skip
    assert {r["status"] for r in rows} == {"built"}
    [session] = TelemetryAnalyzer(TelemetryStorage(fresh)).sessions().to_dicts()
    # The trace's build runs from its first target's start to its last one's end.
    assert (session["start_time"] - t) // ms == 250 and (session["end_time"] - t) // ms == 1450
    assert (session["tool"], session["succeeded"]) == ("trace", True)
    assert session["session_id"].startswith("trace-")


def test_the_demo_historys_builds_survive_the_round_trip(tmp_path: Path) -> None:
    """On generated builds (workers numbered from 0, cache hits and targets told by
    duration_ms without a worker): the same targets at the same times; each worker comes
    back as its rank among the build's workers, the targets without one after them."""
    history = tmp_path / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--builds", "12", "--today",
         "2026-11-20", "--output", str(history)],
        check=True,
    )  # fmt: skip
    store = TelemetryStorage(tmp_path / "demo", retention_days=100_000)
    ingest_file(store, history)
    analyzer = TelemetryAnalyzer(store)
    sessions = analyzer.sessions()["session_id"].to_list()
    assert len(sessions) == 12
    for number, session in enumerate(sessions):
        build = analyzer.build(session)
        document = trace_document(build)
        assert_trace_rules(document)
        path = tmp_path / f"{number}.json"
        write_trace(document, path)
        fresh = TelemetryStorage(tmp_path / f"fresh-{number}", retention_days=100_000)
        if not build.targets:  # nothing to read back: the ingest refuses such a trace
            with pytest.raises(TelemetryError, match="holds no complete"):
                ingest_file(fresh, path)
            continue
        assert ingest_file(fresh, path).sessions == 1
        workers = sorted({r.worker for r in build.targets if r.worker is not None})
        rank = {worker: n for n, worker in enumerate(workers)}
        original = Counter(
            (r.target, r.start_time, r.end_time, r.duration_ms, rank.get(r.worker))
            for r in build.targets
        )
        back = Counter(
            (r["target"], r["start_time"], r["end_time"], r["duration_ms"],
             r["worker"] if r["worker"] < len(workers) else None)
            for r in _rows(fresh)
        )  # fmt: skip
        assert back == original, session


# -- the command line --------------------------------------------------------------------


def test_the_command_writes_the_trace_named_by_the_session(cli: Runner, tmp_path: Path) -> None:
    assert cli("telemetry", "ingest", "-", stdin="\n".join(_t_history()).encode()).code == 0
    done = cli("telemetry", "trace", "t")
    assert (done.code, done.stdout, done.stderr) == (
        0,
        "Wrote t.trace.json: build t, 7 targets on 4 tracks.\n",
        "",
    )
    assert json.loads((tmp_path / "t.trace.json").read_text()) == EXPECTED_T


def test_the_command_writes_to_stdout(cli: Runner) -> None:
    assert cli("telemetry", "ingest", "-", stdin="\n".join(_t_history()).encode()).code == 0
    done = cli("telemetry", "trace", "t", "-o", "-")
    assert (done.code, done.stderr) == (0, "")
    assert json.loads(done.stdout) == EXPECTED_T


def test_the_newest_build_and_the_filters(small_cli: Runner, tmp_path: Path) -> None:
    # small_history(): a (ninja) then b (bazel) then c (failed), an hour apart.
    done = small_cli("telemetry", "trace")
    assert done.stdout == "Wrote c.trace.json: build c, 4 targets on 2 tracks.\n"
    done = small_cli("telemetry", "trace", "--tool", "ninja", "--output", "build.json")
    assert done.stdout == "Wrote build.json: build a, 4 targets on 3 tracks.\n"
    assert json.loads((tmp_path / "build.json").read_text())["otherData"]["session_id"] == "a"
    done = small_cli("telemetry", "trace", "--status", "succeeded", "-o", "-")
    assert json.loads(done.stdout)["otherData"]["session_id"] == "b"


def test_a_session_id_cannot_choose_where_the_file_goes(cli: Runner, tmp_path: Path) -> None:
    history = [
        line.replace('"session": "t"', '"session": "../up/\\u001b[31mt"') for line in _t_history()
    ]
    assert cli("telemetry", "ingest", "-", stdin="\n".join(history).encode()).code == 0
    done = cli("telemetry", "trace", "../up")
    assert (done.code, done.stdout) == (
        0,
        # The id's SHA-256 (sha256sum) begins 867fc2e1.
        "Wrote up_31mt-867fc2e1.trace.json: build ../up/\\x1b[31mt, 7 targets on 4 tracks.\n",
    )
    assert (tmp_path / "up_31mt-867fc2e1.trace.json").is_file()
    assert not (tmp_path.parent / "up").exists()


def test_an_unknown_session_is_an_error(small_cli: Runner, tmp_path: Path) -> None:
    done = small_cli("telemetry", "trace", "zz")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: no build 'zz' in {tmp_path / 'telemetry'}; builder telemetry recent lists "
        "the newest builds with their session ids\n"
    )
    assert not list(tmp_path.glob("*.json"))


def test_an_empty_store_is_an_error(cli: Runner, tmp_path: Path) -> None:
    done = cli("telemetry", "trace")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr.startswith("Error: No telemetry data yet in ")
    assert done.stderr.count("\n") == 1


def test_no_build_taken_by_the_filters_is_an_error(small_cli: Runner, tmp_path: Path) -> None:
    done = small_cli("telemetry", "trace", "--branch", "nope")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: No builds in {tmp_path / 'telemetry'} match the selected filters.\n"
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("",), "Error: SESSION must be a session id or its first characters, got ''\n"),
        (("--since", "soon"), "Error: --since must be a date (2025-10-27), a UTC time "),
        (("--status", "green"), "Error: Invalid value for '--status': 'green' is not one of "),
    ],
)
def test_a_bad_option_value_is_a_usage_error(
    small_cli: Runner, args: tuple[str, ...], said: str
) -> None:
    done = small_cli("telemetry", "trace", *args)
    assert (done.code, done.stdout) == (2, "")
    assert done.stderr.startswith(said) and done.stderr.count("\n") == 1


def test_an_output_that_cannot_be_written_is_an_error(small_cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    done = small_cli("telemetry", "trace", "c", "--output", "folder")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr == "Error: folder is a directory; give a file name to --output\n"


def test_the_window_and_filters_may_come_before_the_command(tmp_path: Path) -> None:
    """As for the other commands that read a window of builds: `builder telemetry --tool T
    trace` is `builder telemetry trace --tool T`."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    env = process_env(tmp_path / "t")
    subprocess.run([BUILDER, "telemetry", "ingest", str(events)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    before = subprocess.run(
        [BUILDER, "telemetry", "--tool", "bazel", "trace", "--output", "-"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    after = subprocess.run(
        [BUILDER, "telemetry", "trace", "--tool", "bazel", "--output", "-"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (before.returncode, before.stderr) == (0, "")
    assert before.stdout == after.stdout
    # Build b is the small history's only bazel build (the newest, c, is not).
    names = [e["args"]["name"] for e in json.loads(before.stdout)["traceEvents"]
             if e["name"] == "process_name"]  # fmt: skip
    assert names == ["build b (bazel)"]


def test_a_target_named_like_a_metadata_event_is_no_track(cli: Runner) -> None:
    history = [line.replace('"//gen"', '"thread_name"') for line in _t_history()]
    assert sum('"thread_name"' in line for line in history) == 2
    assert cli("telemetry", "ingest", "-", stdin="\n".join(history).encode()).code == 0
    done = cli("telemetry", "trace", "-o", "x.json")
    assert done.stdout.endswith(", 7 targets on 4 tracks.\n")


def test_an_empty_output_is_a_usage_error(small_cli: Runner, tmp_path: Path) -> None:
    done = small_cli("telemetry", "trace", "--output", "")
    assert (done.code, done.stderr) == (
        2,
        "Error: --output must be a path, or - for stdout, got ''\n",
    )
    assert not list(tmp_path.glob("*.trace.json"))


def test_a_run_that_took_no_time_on_the_path_gets_no_arrow(t_store: TelemetryStorage) -> None:
    # //lib is a cache hit at 400 ms (0 ms), between //gen (250-650) and //cc a (650-1450):
    # its instant has no inside, so the one arrow goes from //gen to //cc a.
    build = TelemetryAnalyzer(t_store).build("t")
    document = trace_document(build, critical_path=["//gen", "//lib", "//cc a"])
    assert_trace_rules(document)
    flows = [(e["ph"], e["ts"]) for e in document["traceEvents"] if e["ph"] in ("s", "f")]
    # Halfway through each, in µs from the whole second the build began in (T): //gen's
    # middle at 450 ms, //cc a's at 1050 ms.
    assert flows == [("s", 450_000), ("f", 1_050_000)]
    critical = [e["name"] for e in document["traceEvents"] if e.get("args", {}).get("critical")]
    assert sorted(critical) == ["//cc a", "//gen", "//lib"]


def test_the_command_marks_the_critical_path_when_deps_are_known(cli: Runner) -> None:
    # //cc a (650-1450, the last to finish of those that ran) waited for //gen (250-650),
    # which waited for nothing: the path is //gen, then //cc a.
    history = [
        line.replace('"target": "//cc a", "worker": 0', '"target": "//cc a", "worker": 0, '
                     '"deps": ["//gen", "//lib"]')
        .replace('"target": "//gen", "worker": 0', '"target": "//gen", "worker": 0, "deps": []')
        for line in _t_history()
    ]  # fmt: skip
    assert sum('"deps"' in line for line in history) == 2
    assert cli("telemetry", "ingest", "-", stdin="\n".join(history).encode()).code == 0
    done = cli("telemetry", "trace", "t", "--output", "-")
    assert done.code == 0
    events = json.loads(done.stdout)["traceEvents"]
    critical = [e["name"] for e in events if e["ph"] == "X" and e["args"].get("critical")]
    assert sorted(critical) == ["//cc a", "//gen"]
    assert [(e["ph"], e["ts"]) for e in events if e["ph"] in ("s", "f")] == [
        ("s", 450_000),
        ("f", 1_050_000),
    ]
