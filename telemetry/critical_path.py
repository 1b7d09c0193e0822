"""The critical path of a build: the chain of targets that decided when it ended.

It is read backwards from the end, from what the build recorded (each target's times and
its ``deps``, the targets its ``target_started`` said it waited for):

- it ends at the executed target (built or failed) that finished last;
- each target's predecessor is, among its deps that ran in this build (built or failed),
  the one that finished last: the dependency it was waiting for when it could start;
- it begins at a target none of whose deps ran (or that has none).

Ties go to the target whose name sorts first. Cached and skipped targets did not run: they
are never on the path, as they have no weighted time (:mod:`telemetry.weighted`). A name in
deps that is no target of the build is passed over, and so is a run of a dependency that
had not finished when its dependent started (the times or the deps are wrong, or it is
another run of that target: it cannot have held this one up), or one already on the path
(deps that go round in a circle): the steps never overlap, and the path never takes longer
than the build. Each step has its duration and
its share of the build's wall time (``durationMs``); the path's duration is the sum of its
steps', the time the build could not have been shorter by, however many workers it had,
unless one of these targets got faster.

The path is **unknown** (None) when no target of the build reported its deps: it is never
guessed from the times alone. When only some did, the path may begin at a target whose
deps are not known (:attr:`CriticalPath.complete` is then False): it may reach further
back than it shows.

Bazel's critical path (``CriticalPathComponent``) is the chain of actions whose summed
run time is longest: each action's child is the input-producing action with the longest
such chain behind it, less any overlap with the action itself. Ninja (from 1.12) schedules
by a critical path looking ahead, the longest chain of commands from a command to the
targets asked for (weighted by depth, and in later versions by the times the log recorded),
to start the commands on it first. The chain here follows the dependency each target
actually waited for: where every target starts as soon as its last dependency is done,
it is the longest chain too; where a target waited for a free worker, the gap before it
shows time the build lost to its workers rather than to its dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from telemetry.events import EXECUTED
from telemetry.model import BuildDetails, CriticalPath, PathStep, TargetRun

__all__ = ["CriticalPath", "PathStep", "build_critical_path", "critical_path"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)


def critical_path(targets: Sequence[TargetRun], *, build_ms: int) -> CriticalPath | None:
    """The critical path through one build's ``targets`` (rows as :meth:`TelemetryAnalyzer.
    build` gives them, in any order), with shares of its wall time ``build_ms``; None when
    none of them reported its deps.

    >>> from datetime import datetime, UTC
    >>> def run(name, start, end, deps):
    ...     at = lambda ms: datetime.fromtimestamp(ms / 1000, UTC)
    ...     return TargetRun(name, "built", at(start), at(end), end - start, None, None, deps)
    >>> path = critical_path(
    ...     [run("gen", 0, 200, []), run("cc", 200, 700, ["gen"]), run("ld", 700, 900, ["cc"])],
    ...     build_ms=1000,
    ... )
    >>> [(s.target, s.duration_ms, s.share) for s in path.steps], path.duration_ms
    ([('gen', 200, 0.2), ('cc', 500, 0.5), ('ld', 200, 0.2)], 900)
    """
    if all(run.deps is None for run in targets):
        return None
    ran = [i for i, run in enumerate(targets) if run.status in EXECUTED]
    if not ran:
        return CriticalPath((), 0, build_ms, _share(0, build_ms), complete=True)
    ends = {i: (targets[i].end_time - _EPOCH) // _MILLISECOND for i in ran}
    starts = {i: (targets[i].start_time - _EPOCH) // _MILLISECOND for i in ran}
    runs_of: dict[str, list[int]] = {}
    for i in ran:
        runs_of.setdefault(targets[i].target, []).append(i)

    def last(candidates: list[int]) -> int:
        """The one that finished last; ties by name, then as stored."""
        return min(candidates, key=lambda i: (-ends[i], targets[i].target, i))

    chain = [last(ran)]
    on_path = set(chain)
    complete = True
    while True:
        current = chain[-1]
        deps = targets[current].deps
        if deps is None:
            complete = False  # not known what it waited for
            break
        candidates = [
            i
            for name in set(deps)
            for i in runs_of.get(name, ())
            if i not in on_path and ends[i] <= starts[current]
        ]
        if not candidates:
            break
        chain.append(last(candidates))
        on_path.add(chain[-1])
    steps = tuple(
        PathStep(
            target=run.target,
            status=run.status,
            start_time=run.start_time,
            end_time=run.end_time,
            duration_ms=run.duration_ms,
            share=_share(run.duration_ms, build_ms),
        )
        for run in (targets[i] for i in reversed(chain))
    )
    total = sum(step.duration_ms for step in steps)
    return CriticalPath(steps, total, build_ms, _share(total, build_ms), complete=complete)


def build_critical_path(build: BuildDetails) -> CriticalPath | None:
    """The critical path of one build (as :meth:`TelemetryAnalyzer.build` gives it), with
    shares of its duration; None when none of its targets reported its deps.

    >>> path = build_critical_path(analyzer.build("ci-0013"))  # doctest: +SKIP
    >>> [step.target for step in path.steps]  # doctest: +SKIP
    ['//proto:gen', '//app:compile', '//app:link']
    """
    return critical_path(build.targets, build_ms=build.duration_ms)


def _share(ms: int, build_ms: int) -> float | None:
    return ms / build_ms if build_ms > 0 else None
