"""The critical path of a build (telemetry/critical_path.py): chains worked out by hand from
each target's times and deps, and the same read back from a store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.critical_path import build_critical_path, critical_path
from telemetry.ingest import ingest_jsonl
from telemetry.model import CriticalPath, PathStep, TargetRun
from telemetry.storage import TelemetryStorage
from tests.conftest import T0

START = datetime.fromtimestamp(T0 / 1000, UTC)


def _at(ms: int) -> datetime:
    return START + timedelta(milliseconds=ms)


def _run(
    name: str, start: int, end: int, deps: list[str] | None, status: str = "built"
) -> TargetRun:
    """A target of a build started at T0, over [start, end) ms after it."""
    deps_ = None if deps is None else tuple(deps)
    return TargetRun(name, status, _at(start), _at(end), end - start, None, None, deps_)


def _chain(path: CriticalPath | None) -> list[tuple[str, int, float | None]]:
    assert path is not None
    return [(step.target, step.duration_ms, step.share) for step in path.steps]


def test_a_diamond_follows_the_branch_that_finished_last() -> None:
    # gen [0,100); a [100,400) and b [100,600) both wait for gen; link [600,900) for both.
    # link waited for b (600 > 400), b for gen: 100 + 500 + 300 = 900 of 1000 ms.
    targets = [
        _run("//link", 600, 900, ["//a", "//b"]),
        _run("//a", 100, 400, ["//gen"]),
        _run("//b", 100, 600, ["//gen"]),
        _run("//gen", 0, 100, []),
    ]
    path = critical_path(targets, build_ms=1000)
    assert _chain(path) == [("//gen", 100, 0.1), ("//b", 500, 0.5), ("//link", 300, 0.3)]
    assert path == CriticalPath(
        steps=(
            PathStep("//gen", "built", _at(0), _at(100), 100, 0.1),
            PathStep("//b", "built", _at(100), _at(600), 500, 0.5),
            PathStep("//link", "built", _at(600), _at(900), 300, 0.3),
        ),
        duration_ms=900,
        build_ms=1000,
        share=0.9,
        complete=True,
    )


def test_ties_go_to_the_name_that_sorts_first() -> None:
    # //y and //x end together at 500, last of the build: the path ends at //x. //x waited
    # for //q and //p, which ended together at 200: //p. //p waited for nothing.
    targets = [
        _run("//y", 300, 500, ["//q"]),
        _run("//x", 200, 500, ["//q", "//p"]),
        _run("//q", 0, 200, []),
        _run("//p", 50, 200, []),
    ]
    assert _chain(critical_path(targets, build_ms=500)) == [("//p", 150, 0.3), ("//x", 300, 0.6)]


def test_a_failed_target_ends_the_path_of_the_build_it_failed() -> None:
    # gen [0,100), then compile failed over [100,700); link and test were skipped (their 0 ms
    # at the end do not count: they did not run). The build ended at 800.
    targets = [
        _run("//gen", 0, 100, []),
        _run("//compile", 100, 700, ["//gen"], status="failed"),
        _run("//link", 800, 800, ["//compile"], status="skipped"),
        _run("//test", 800, 800, ["//link"], status="skipped"),
    ]
    path = critical_path(targets, build_ms=800)
    assert _chain(path) == [("//gen", 100, 0.125), ("//compile", 600, 0.75)]
    assert path is not None
    assert [step.status for step in path.steps] == ["built", "failed"]
    assert (path.duration_ms, path.share) == (700, 0.875)


def test_a_cached_dependency_is_never_on_the_path() -> None:
    # //lib was a cache hit that took 400 ms to fetch and ended at 450, after //cc ended
    # at 300; //link [450,600) waited for both. A cache hit did not run: the path goes
    # through //cc. A cached target that ended last (//docs at 700) does not end it either.
    targets = [
        _run("//lib", 50, 450, [], status="cached"),
        _run("//cc", 0, 300, []),
        _run("//link", 450, 600, ["//lib", "//cc"]),
        _run("//docs", 0, 700, None, status="cached"),
    ]
    assert _chain(critical_path(targets, build_ms=700)) == [
        ("//cc", 300, 300 / 700),
        ("//link", 150, 150 / 700),
    ]


def test_a_build_whose_targets_reported_no_deps_has_no_known_path() -> None:
    targets = [_run("//a", 0, 100, None), _run("//b", 100, 300, None)]
    assert critical_path(targets, build_ms=300) is None
    assert critical_path([], build_ms=300) is None  # no targets: nothing reported


def test_names_of_no_target_of_the_build_are_passed_over() -> None:
    # //app waited for //lib (not built in this build: nothing of it is stored) and for
    # //gen, which ran; //gen for //tools:protoc, not in the build either.
    targets = [
        _run("//gen", 0, 250, ["//tools:protoc"]),
        _run("//app", 250, 400, ["//lib", "//gen"]),
    ]
    path = critical_path(targets, build_ms=500)
    assert _chain(path) == [("//gen", 250, 0.5), ("//app", 150, 0.3)]
    assert path is not None and path.complete


def test_a_path_that_reaches_a_target_of_unknown_deps_says_so() -> None:
    # //link reported its deps, //cc (reported by its finish alone) did not.
    targets = [_run("//cc", 0, 400, None), _run("//link", 400, 500, ["//cc"])]
    path = critical_path(targets, build_ms=500)
    assert _chain(path) == [("//cc", 400, 0.8), ("//link", 100, 0.2)]
    assert path is not None and not path.complete


def test_deps_known_but_nothing_ran_is_an_empty_path() -> None:
    targets = [_run("//a", 0, 0, [], status="cached"), _run("//b", 0, 0, ["//a"], "skipped")]
    assert critical_path(targets, build_ms=40) == CriticalPath((), 0, 40, 0.0, complete=True)


def test_a_build_that_took_no_time_has_no_shares() -> None:
    path = critical_path([_run("//a", 0, 0, [])], build_ms=0)
    assert path == CriticalPath(
        (PathStep("//a", "built", _at(0), _at(0), 0, None),), 0, 0, None, complete=True
    )


def test_dependencies_that_cannot_have_held_a_target_up_are_passed_over() -> None:
    # //z [600,1000) waited for //b [100,600), which says it waited for //a, but //a ended
    # at 900, after //b did (wrong times or deps), and for //c [0,100): //c is taken. //c
    # names //a (passed over again) and the targets after it.
    targets = [
        _run("//z", 600, 1000, ["//b"]),
        _run("//b", 100, 600, ["//a", "//c"]),
        _run("//a", 0, 900, ["//c"]),
        _run("//c", 0, 100, ["//a", "//b", "//z"]),
    ]
    assert _chain(critical_path(targets, build_ms=1000)) == [
        ("//c", 100, 0.1),
        ("//b", 500, 0.5),
        ("//z", 400, 0.4),
    ]


def test_deps_that_go_round_in_a_circle_end_the_walk() -> None:
    # //q [0,50) and //p [50,100) name each other: //p waited for //q, and //p had not
    # finished when //q started, so the walk stops at //q.
    targets = [_run("//p", 50, 100, ["//q"]), _run("//q", 0, 50, ["//p"])]
    assert _chain(critical_path(targets, build_ms=100)) == [("//q", 50, 0.5), ("//p", 50, 0.5)]
    # Two runs that took no time at 5 ms, naming each other: each ended by the other's
    # start. The path ends at //a (the name first), takes //b, and does not take //a again.
    instants = [_run("//a", 5, 5, ["//b"]), _run("//b", 5, 5, ["//a"])]
    assert _chain(critical_path(instants, build_ms=10)) == [("//b", 0, 0.0), ("//a", 0, 0.0)]
    # A target naming itself.
    assert _chain(critical_path([_run("//s", 0, 10, ["//s"])], build_ms=10)) == [("//s", 10, 1.0)]


def test_a_dependency_still_running_when_its_dependent_started_is_not_on_the_path() -> None:
    # //a [0,900) and //b [100,1000), which names //a: //a had not finished when //b began,
    # so it did not hold //b up; the path is //b alone, and never longer than the build.
    targets = [_run("//a", 0, 900, []), _run("//b", 100, 1000, ["//a"])]
    path = critical_path(targets, build_ms=1000)
    assert _chain(path) == [("//b", 900, 0.9)]
    assert path is not None and path.duration_ms <= path.build_ms


def test_a_target_run_twice_waits_for_the_run_that_finished_before_it() -> None:
    # //t ran [0,100) and again [500,900); //u [100,300) waited for //t: its first run.
    targets = [
        _run("//t", 0, 100, []),
        _run("//t", 500, 900, []),
        _run("//u", 100, 300, ["//t"]),
    ]
    assert _chain(critical_path(targets, build_ms=900)) == [("//t", 400, 4 / 9)]
    assert _chain(critical_path(targets[:1] + targets[2:], build_ms=300)) == [
        ("//t", 100, 1 / 3),
        ("//u", 200, 2 / 3),
    ]


def _event(kind: str, ts: int, **fields: object) -> str:
    return json.dumps({"event": kind, "session": "d", "ts": T0 + ts, **fields})


def test_the_path_of_a_stored_build(storage: TelemetryStorage) -> None:
    """The diamond again, sent as events and read back from the store: deps are stored as
    sent, null where a target_started said nothing or none was sent."""
    lines = [
        _event("build_started", 0, parallelism=2),
        _event("target_started", 0, target="//gen", deps=[]),
        _event("target_finished", 100, target="//gen", status="built"),
        _event("target_started", 100, target="//a", deps=["//gen"]),
        _event("target_started", 100, target="//b", deps=["//gen"]),
        _event("target_finished", 400, target="//a", status="built"),
        _event("target_finished", 550, target="//zlib", status="cached"),
        _event("target_finished", 600, target="//b", status="built"),
        _event("target_started", 600, target="//link", deps=["//a", "//b", "//zlib"]),
        _event("target_finished", 900, target="//link", status="built"),
        _event("build_finished", 1000, success=True),
    ]
    assert ingest_jsonl(storage, lines).sessions == 1
    build = TelemetryAnalyzer(storage).build("d")
    assert {run.target: run.deps for run in build.targets} == {
        "//gen": (),
        "//a": ("//gen",),
        "//b": ("//gen",),
        "//zlib": None,
        "//link": ("//a", "//b", "//zlib"),
    }
    assert _chain(build_critical_path(build)) == [
        ("//gen", 100, 0.1),
        ("//b", 500, 0.5),
        ("//link", 300, 0.3),
    ]


@pytest.mark.parametrize("targets", [1, 2_000])
def test_a_long_chain_is_walked_whole(targets: int) -> None:
    # t0 <- t1 <- ... each 5 ms, each waiting for the one before: all of them are the path.
    runs = [_run(f"//t{i}", 5 * i, 5 * i + 5, [f"//t{i - 1}"] if i else []) for i in range(targets)]
    path = critical_path(runs[::-1], build_ms=5 * targets)
    assert path is not None
    assert [step.target for step in path.steps] == [f"//t{i}" for i in range(targets)]
    assert (path.duration_ms, path.share) == (5 * targets, 1.0)
