"""Flaky targets: targets whose outcome flips between failed and built across builds of the
same commit, where the code did not change and the result did.

The store keeps no input hash, so builds are compared by the ``commit`` they were built
from; a build without one cannot be compared with anything and is counted, never guessed.
Only executed runs (built or failed) say anything: a cache hit replays an earlier result and
a skipped target was not attempted.

Per target, over the window's builds that have a commit:

- its executed runs are grouped by commit and put in time order within each commit (the
  builds' start, then the run's end);
- a commit where it ran at least twice is *judged*; one where it both failed and built is
  a *flaky commit*;
- ``flips`` = the changes of outcome between consecutive runs at the same commit, summed
  over the judged commits;
- ``flip_rate`` = 100 · flips / Σ (runs at the commit − 1) over the judged commits
  (= 100 · flips / (runs − judged commits)): 100% when every run differs from the one
  before it, 0% when a commit's runs all agree;
- it is reported when it has at least ``min_runs`` runs at judged commits and at least
  ``min_commits`` flaky commits, ranked by flip rate, then by flaky commits, then by name.

A target that fails at one commit and builds at the next is not flaky: the change between
them is the likely cause. One that fails and builds at the same commit is, as Bazel's and
Develocity's reports call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import polars as pl

from telemetry.errors import ConfigError
from telemetry.events import EXECUTED, TIME_FORMAT
from telemetry.text import printable

if TYPE_CHECKING:
    from telemetry.analyzer import TelemetryAnalyzer

DEFAULT_MIN_RUNS: Final = 5
# One commit where the same code both failed and built already shows that the outcome does
# not depend on the code alone (Bazel's, BuildBuddy's and Develocity's definition); the
# runs threshold keeps out a target seen too rarely for its flip rate to mean anything.
DEFAULT_MIN_COMMITS: Final = 1
DEFAULT_TOP: Final = 10
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


@dataclass(slots=True, frozen=True)
class FlakyTarget:
    """A target whose outcome flipped at the same commit, and by how much."""

    target: str
    commits: int  # judged: commits where it ran at least twice
    flaky_commits: int  # of those, the ones where it both failed and built
    runs: int  # executed runs at the judged commits
    failures: int  # of those runs, the failed ones
    flips: int
    flip_rate: float  # percent: 100 · flips / (runs − commits)
    newest_flaky_commit: str
    newest_flaky_time: datetime  # the start of its newest build at that commit
    # The newest error text of its failures at flaky commits, and the build it came from;
    # None when none of them gave one.
    newest_error: str | None
    newest_error_session: str | None


@dataclass(slots=True, frozen=True)
class FlakyReport:
    """The flaky targets of a window of builds, the most flaky first."""

    builds: int  # in the window, as the filter takes them
    builds_without_commit: int  # left out: they cannot be compared with any other build
    commits: int  # distinct commits of the other builds
    judged_targets: int  # targets with at least min_runs runs at judged commits
    flaky_targets: int  # of those, the ones with at least min_commits flaky commits
    targets: tuple[FlakyTarget, ...]  # the top ones of them, ranked
    min_runs: int
    min_commits: int


def flaky_targets(
    analyzer: TelemetryAnalyzer,
    *,
    min_runs: int = DEFAULT_MIN_RUNS,
    min_commits: int = DEFAULT_MIN_COMMITS,
    top: int = DEFAULT_TOP,
) -> FlakyReport:
    """The targets of the analyzer's builds whose outcome flipped at the same commit.

    >>> report = flaky_targets(TelemetryAnalyzer(TelemetryStorage("store")))  # doctest: +SKIP
    >>> [(t.target, t.flip_rate) for t in report.targets]  # doctest: +SKIP
    [('//net:test', 75.0)]
    """
    # A flip needs two runs; a target with no flaky commit has no flip to rank.
    for name, value, least in (("min_runs", min_runs, 2), ("min_commits", min_commits, 1)):
        if value < least:
            raise ConfigError(f"{name} must be at least {least}, got {value}")
    if top < 1:
        raise ConfigError(f"top must be at least 1, got {top}")
    sessions, rows = analyzer.targets()
    commit = pl.col("commit")
    known = commit.is_not_null() & (commit.str.strip_chars() != "")
    builds = sessions.select(
        builds=pl.len(),
        without=(~known).sum(),
        commits=commit.filter(known).n_unique(),
    ).row(0, named=True)
    ranked = _ranked(_judged(_runs(sessions.filter(known), rows)), min_runs)
    flaky = ranked.filter(pl.col("flaky_commits") >= min_commits)
    return FlakyReport(
        builds=int(builds["builds"]),
        builds_without_commit=int(builds["without"]),
        commits=int(builds["commits"]),
        judged_targets=ranked.height,
        flaky_targets=flaky.height,
        targets=tuple(
            FlakyTarget(**row)
            for row in flaky.head(top).select(FlakyTarget.__slots__).iter_rows(named=True)
        ),
        min_runs=min_runs,
        min_commits=min_commits,
    )


def _runs(sessions: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The executed runs of ``sessions`` with their build's commit and start, in time order:
    the builds' (as ``sessions`` lists them, oldest first), then each run's end, then the
    order the build stored them in."""
    builds = sessions.select(
        "session_id", "commit", build_time="start_time", _build=pl.int_range(pl.len())
    ).unique(
        # A session id stored for two builds (two stores' day folders copied into one): the
        # analyzer gives its target rows once, so they join its first build only, not each.
        "session_id",
        keep="first",
        maintain_order=True,
    )
    return (
        rows.filter(pl.col("status").is_in(sorted(EXECUTED)))
        .with_columns(_row=pl.int_range(pl.len()))
        .join(builds, on="session_id", how="inner")
        .sort("_build", "end_time", "_row", nulls_last=True)
        .select("target", "commit", "session_id", "build_time", "status", "error")
    )


def _judged(runs: pl.DataFrame) -> pl.DataFrame:
    """Per target and commit where it ran at least twice: its runs, failures and flips, when
    its newest build there started, whether it is flaky there, and its newest error text."""
    failed = pl.col("status") == "failed"
    has_error = failed & pl.col("error").is_not_null() & (pl.col("error") != "")
    # Nearly every (target, commit) holds one run on a busy CI: drop those before grouping.
    # filter and group_by keep the rows of each group in the frame's (time) order.
    return (
        runs.filter(pl.len().over("target", "commit") >= 2)
        .group_by("target", "commit")
        .agg(
            runs=pl.len(),
            failures=failed.sum(),
            flips=(pl.col("status") != pl.col("status").shift(1)).sum(),
            newest=pl.col("build_time").max(),
            error=pl.col("error").filter(has_error).last(),
            error_session=pl.col("session_id").filter(has_error).last(),
            error_time=pl.col("build_time").filter(has_error).last(),
        )
        .with_columns(flaky=(pl.col("failures") > 0) & (pl.col("failures") < pl.col("runs")))
    )


def _ranked(judged: pl.DataFrame, min_runs: int) -> pl.DataFrame:
    """Per target with at least ``min_runs`` runs at judged commits: its counts, flip rate
    and newest flaky commit, the most flaky first."""
    flaky = pl.col("flaky")
    # The newest error of the flaky commits: the one seen in the newest build.
    erred = flaky & pl.col("error").is_not_null()
    newest_error = [pl.col("error_time").filter(erred), pl.col("error_session").filter(erred)]
    return (
        # group_by keeps this order within each target: its newest commit last.
        judged.sort("newest", "commit")
        .group_by("target")
        .agg(
            commits=pl.len(),
            flaky_commits=flaky.sum(),
            runs=pl.col("runs").sum(),
            failures=pl.col("failures").sum(),
            flips=pl.col("flips").sum(),
            newest_flaky_commit=pl.col("commit").filter(flaky).last(),
            newest_flaky_time=pl.col("newest").filter(flaky).last(),
            newest_error=pl.col("error").filter(erred).sort_by(newest_error).last(),
            newest_error_session=pl.col("error_session").filter(erred).sort_by(newest_error).last(),
        )
        .filter(pl.col("runs") >= min_runs)
        # Σ (runs at a commit − 1) over the judged commits is runs − commits, at least 1.
        .with_columns(flip_rate=100 * pl.col("flips") / (pl.col("runs") - pl.col("commits")))
        .sort(
            ["flip_rate", "flaky_commits", "target"],
            descending=[True, True, False],
        )
    )


# -- rendering --------------------------------------------------------------------------------


def render_flaky(report: FlakyReport, *, color: bool = False) -> str:
    """The report for people and ``grep``: what was compared, then the flaky targets ranked,
    ending in a newline."""
    title = "=== Flaky Targets ==="
    lines = [f"{_BOLD}{title}{_RESET}" if color else title, ""]
    lines.append(f"Builds: {_count(report.builds, 'build')} at {_count(report.commits, 'commit')}")
    if report.builds_without_commit:
        lines.append(
            f"Left out: {_count(report.builds_without_commit, 'build')} without a commit "
            "(nothing to compare them with)"
        )
    if 0 < report.builds == report.builds_without_commit:
        lines.append(
            "  builder record stores the commit of the git work tree it runs in; other tools "
            'send "commit" in build_started'
        )
    lines.append(
        f"Judged: {_count(report.judged_targets, 'target')} with at least {report.min_runs} "
        "runs at commits where they ran twice or more"
    )
    if not report.targets:
        lines += ["", "No flaky targets."]
        return "\n".join(lines) + "\n"
    shown = (
        ""
        if len(report.targets) == report.flaky_targets
        else f"; the top {len(report.targets)} shown"
    )
    lines += [
        f"Flaky: {_count(report.flaky_targets, 'target')} that failed and built at the same "
        f"commit ({_count(report.min_commits, 'commit')} or more){shown}",
        "",
    ]
    width = len(str(len(report.targets)))
    pad = " " * (width + 2)
    for rank, t in enumerate(report.targets, start=1):
        lines += [
            f"{rank:>{width}}. {printable(t.target)}",
            f"{pad}Flip rate: {t.flip_rate:.1f}% ({_count(t.flips, 'flip')} in "
            f"{_count(t.runs, 'run')}, {t.failures} failed)",
            f"{pad}Flaky commits: {t.flaky_commits} of {t.commits}, newest "
            f"{printable(t.newest_flaky_commit)} ({t.newest_flaky_time.strftime(TIME_FORMAT)})",
        ]
        if t.newest_error is not None:
            lines.append(f"{pad}Newest error: {printable(' '.join(t.newest_error.split()))}")
    return "\n".join(lines) + "\n"


def flaky_json(report: FlakyReport) -> str:
    """The report as a JSON object, the flip rates unrounded."""
    import json

    document = {
        "builds": report.builds,
        "buildsWithoutCommit": report.builds_without_commit,
        "commits": report.commits,
        "minRuns": report.min_runs,
        "minCommits": report.min_commits,
        "judgedTargets": report.judged_targets,
        "flakyTargets": report.flaky_targets,
        "targets": [
            {
                "target": t.target,
                "flipRate": t.flip_rate,
                "flips": t.flips,
                "runs": t.runs,
                "failures": t.failures,
                "commits": t.commits,
                "flakyCommits": t.flaky_commits,
                "newestFlakyCommit": t.newest_flaky_commit,
                "newestFlakyTime": t.newest_flaky_time.strftime(TIME_FORMAT),
                "newestError": t.newest_error,
                "newestErrorSession": t.newest_error_session,
            }
            for t in report.targets
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


__all__ = ["FlakyReport", "FlakyTarget", "flaky_json", "flaky_targets", "render_flaky"]
