"""A full disk and a read-only store leave the store as it was.

Compaction, retention and ``builder record`` run on a small tmpfs (mounted in a user and
mount namespace of the test's own) filled to within a few pages of full, at fill levels
chosen from the sizes of the files each writes, so that the disk runs out in each of their
writes in turn. Whatever the level: the store answers exactly as before, ``verify`` finds
nothing damaged, no temporary file is left, every build is stored whole or not at all, and
the command says what went wrong in one line. ``builder record`` keeps the build's exit
status and output, at a full disk and in a read-only store.

On tmpfs a rename or a folder needs no data page, so a full disk fails the writes of files,
never a rename or a removal.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, process_env
from tests.test_reliability import _in_namespace as _namespace
from tests.test_reliability import _release, _run_unprivileged, _unprivileged_base

# A full disk is one of the attacks on the store: `just torture` runs these with the rest.
pytestmark = pytest.mark.torture

PAGE = os.sysconf("SC_PAGESIZE")  # what tmpfs allocates file data in
PAGE_KIB = PAGE // 1024
NO_NAMESPACE = "this machine allows no user namespace to mount a small disk in"
SUMMARY = f"{BUILDER} telemetry summary --format json --top 1000"  # every target's numbers

# Bash functions for the scripts run in the namespace.
#   fill DISK KIB: fill DISK up to its last KIB KiB (a multiple of the page size).
#   run NAME COMMAND...: the command's stdout, stderr and exit status into NAME.out, .err
#     and .status, whatever the status.
FUNCTIONS = """
    fill() {
        rm -f "$1/filler"
        local free=$(( $(stat -f -c '%a * %S' "$1") / 1024 ))
        dd if=/dev/zero of="$1/filler" bs=1K count=$(( free - $2 )) 2> /dev/null
        if [ $(( $(stat -f -c '%a * %S' "$1") / 1024 )) -ne "$2" ]; then
            echo "could not leave $2 KiB free on $1" >&2
            exit 1
        fi
    }
    run() {
        local name=$1
        shift
        if "$@" > "$name.out" 2> "$name.err"; then
            echo 0 > "$name.status"
        else
            echo $? > "$name.status"
        fi
    }
"""


def _in_namespace(script: str, *, env: dict[str, str]) -> str | None:
    """Run ``script`` as root of a new user and mount namespace, able to mount a tmpfs
    (None when the machine allows none), with no time limit to speak of: a script here runs
    a hundred commands, and a busy machine may take minutes over them."""
    return _namespace(script, map_root=True, env=env, timeout=3600)


@dataclass(slots=True, frozen=True)
class Build:
    """One generated build: its session id, how many days before today it ran, the day
    folder it belongs in, its target rows and its events as JSON lines."""

    session: str
    ago: int
    folder: str
    targets: int
    lines: tuple[str, ...]


def _builds(per_day: dict[int, int], *, targets: int, prefix: str = "") -> list[Build]:
    """``per_day[ago]`` builds on the day ``ago`` days before today (UTC), from 08:00 and a
    minute apart; the n-th of a day has ``targets + n`` targets of random status and
    duration (seeded by its session id)."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    builds = []
    for ago, count in per_day.items():
        day = midnight - timedelta(days=ago)
        for n in range(count):
            session = f"{prefix}d{ago}-{n}"
            rng = random.Random(session)
            start = int((day + timedelta(hours=8, minutes=n)).timestamp() * 1000)
            events: list[dict[str, object]] = [
                {"event": "build_started", "session": session, "ts": start, "parallelism": 4}
            ]
            end = start
            statuses = [rng.choice(("built", "built", "cached", "failed", "skipped"))
                        for _ in range(targets + n)]  # fmt: skip
            for number, status in enumerate(statuses):
                target = f"//pkg{number % 9}:target-{number}"
                begin = start + rng.randrange(30_000)
                if status in ("built", "failed"):
                    events.append({"event": "target_started", "session": session, "ts": begin,
                                   "target": target, "worker": number % 4})  # fmt: skip
                finish = begin + rng.randrange(1, 9_000)
                end = max(end, finish)
                events.append({"event": "target_finished", "session": session, "ts": finish,
                               "target": target, "status": status})  # fmt: skip
            events.append({"event": "build_finished", "session": session, "ts": end + 1,
                           "success": "failed" not in statuses})  # fmt: skip
            lines = tuple(json.dumps(event) for event in events)
            builds.append(Build(session, ago, f"date={day.date()}", targets + n, lines))
    return builds


def _store(path: Path, builds: list[Build]) -> None:
    """Store each build in files of its own, as ``builder record`` does."""
    storage = TelemetryStorage(path)  # no retention
    for build in builds:
        result = ingest_jsonl(storage, build.lines)
        assert (result.sessions, result.problems) == (1, ())


def _history(path: Path, builds: list[Build]) -> Path:
    path.write_text("".join(line + "\n" for build in builds for line in build.lines))
    return path


def _stem(name: str) -> str:
    return re.sub(r"-n\d+\.arrow$", "", name)


def _column(path: Path, name: str) -> list[str]:
    with ipc.open_file(str(path)) as reader:
        values: list[str] = reader.read_all().column(name).to_pylist()
    return values


def _stored(store: Path) -> dict[str, tuple[str, int]]:
    """Each build in ``store`` (a store of uncompacted files): its day folder and its target
    rows, read with pyarrow from the files themselves. Fails on a temporary or half-removed
    file left behind, a targets file without its sessions file (the commit marker), and a
    build stored twice. (What retention takes out is kept an hour in hidden folders.)"""
    left = [p.name for p in store.rglob("*") if p.name.startswith(".tmp-")]
    assert left == []
    folders: dict[str, str] = {}
    committed = set()
    for path in sorted(store.glob("sessions/date=*/[!.]*.arrow")):
        committed.add((path.parent.name, _stem(path.name)))
        for session in _column(path, "session_id"):
            assert session not in folders, f"{session} is stored twice"
            folders[session] = path.parent.name
    rows = dict.fromkeys(folders, 0)
    for path in sorted(store.glob("targets/date=*/[!.]*.arrow")):
        assert (path.parent.name, _stem(path.name)) in committed, f"{path}: no sessions file"
        for session in _column(path, "session_id"):
            rows[session] += 1
    return {session: (folders[session], rows[session]) for session in folders}


def _whole(builds: list[Build]) -> dict[str, tuple[str, int]]:
    """What :func:`_stored` finds when ``builds`` are stored, each with all its targets."""
    return {build.session: (build.folder, build.targets) for build in builds}


@dataclass(slots=True, frozen=True)
class Ran:
    """What a command did: its exit status, stdout and stderr."""

    status: int
    out: str
    err: str


def _ran(prefix: Path) -> Ran:
    """What the ``run`` function of :data:`FUNCTIONS` recorded under ``prefix``."""
    status = int(prefix.with_name(prefix.name + ".status").read_text())
    out = prefix.with_name(prefix.name + ".out").read_text()
    return Ran(status, out, prefix.with_name(prefix.name + ".err").read_text())


def _one_line(said: str, *, file: str, why: str, prefix: str = "Error: ") -> None:
    """``said`` is one line (no traceback) saying that the file matching the regular
    expression ``file`` could not be written, and ``why``."""
    [line] = said.splitlines()
    assert line.startswith(prefix), line
    assert why in line, line
    assert re.search(rf"could not write {file}: ", line), line


def _under(folder: Path, *, directly: bool = False, suffix: str = ".arrow") -> str:
    """A regular expression for a data file (or a file ending in ``suffix``) in ``folder``
    (or in a folder below it)."""
    name = r"[^/]+" if directly else r"\S+"
    return re.escape(f"{folder}/") + name + re.escape(suffix)


# -- compaction -----------------------------------------------------------------------------


# What compacting a day writes, in this order: its merged files, then a Parquet copy of each.
MERGED = ("targets", "daily_targets", "sessions")
COPIED = ("sessions", "targets", "daily_targets")
COPIES = ".parquet"  # the folder of a day that holds its copies


@dataclass(slots=True, frozen=True)
class Day:
    """One day folder of the compaction case, and the pages compacting it writes (its
    merged targets file, rollup and merged sessions file, then their Parquet copies, in the
    order of :data:`COPIED`) and takes out (the files merged, kept an hour for the readers
    that listed them: they free no space meanwhile)."""

    folder: str
    targets: int
    rollup: int
    sessions: int
    copies: tuple[int, int, int]
    freed: int


@dataclass(slots=True, frozen=True)
class Compaction:
    """Compactions of one store, three closed days of one file pair per build, on a small
    disk with each of ``levels`` pages left free. ``before`` is the store's answers (export,
    summary); ``pristine`` its files and ``merged`` its files once compacted on a roomy disk
    (path: SHA-256). ``ran`` holds what each command did and ``files`` every file of the
    store after it, by ``<free>-compact``, ``<free>-again`` (a second compaction once the
    disk was freed) and the like."""

    store: Path
    days: list[Day]
    levels: list[int]
    before: tuple[Ran, Ran]
    pristine: dict[str, str]
    merged: dict[str, str]
    ran: dict[str, Ran]
    files: dict[str, dict[str, str]]


def _answers(store: Path) -> tuple[Ran, Ran]:
    """``export`` and ``summary --format json`` of ``store``."""
    found = []
    for command in (f"{BUILDER} telemetry export", SUMMARY):
        done = subprocess.run(command.split(), env=process_env(store), capture_output=True,
                              text=True, check=False)  # fmt: skip
        found.append(Ran(done.returncode, done.stdout, done.stderr))
    return found[0], found[1]


def _files(store: Path) -> dict[str, str]:
    """Every file of ``store`` (its path in the store), with its SHA-256."""
    return {
        str(path.relative_to(store)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in store.rglob("*")
        if path.is_file()
    }


def _data(files: dict[str, str]) -> dict[str, str]:
    """The data files among ``files``: what readers read (not what maintenance took out,
    kept hidden for an hour); fails on a temporary file."""
    assert [p for p in files if Path(p).name.startswith(".tmp-")] == []
    return {
        path: digest
        for path, digest in files.items()
        if path.endswith(".arrow") and "/.trash-" not in path
    }


def _shape(files: dict[str, str], merged: set[str]) -> list[tuple[str, str]]:
    """The data files among ``files`` by path and content; in the day folders ``merged``,
    by folder and content (a merged file's name is new each time)."""
    shape = []
    for path, digest in _data(files).items():
        folder = Path(path).parent
        shape.append((str(folder) if folder.name in merged else path, digest))
    return sorted(shape)


def _outcome(days: list[Day], free: int) -> tuple[int, str]:
    """How many days are merged when compaction runs out of space with ``free`` pages, and
    in which file: a dataset's merged file of the next day (``"targets"``), or the Parquet
    copy of a file of the last day merged (``"targets/.parquet"``); ``(len(days), "")``
    when it never does. Days are compacted oldest first; what one merged is kept an hour
    for the readers that listed it, so it frees nothing here."""
    for number, day in enumerate(days):
        for dataset, pages in zip(MERGED, (day.targets, day.rollup, day.sessions), strict=True):
            if free < pages:
                return number, dataset
            free -= pages
        for dataset, pages in zip(COPIED, day.copies, strict=True):
            if free < pages:
                return number + 1, f"{dataset}/{COPIES}"
            free -= pages
    return len(days), ""


@pytest.fixture(scope="module")
def compaction(tmp_path_factory: pytest.TempPathFactory) -> Compaction | None:
    root = tmp_path_factory.mktemp("compaction")
    pristine = root / "pristine"
    # The second day needs more room than the first frees: a disk can fill up between days.
    _store(pristine, _builds({3: 2, 2: 6, 1: 2}, targets=400))
    before = _answers(pristine)
    assert before[0].status == before[1].status == 0
    # The same files compacted on a roomy disk: compaction writes the same bytes each time.
    measured = root / "measured"
    shutil.copytree(pristine, measured)
    subprocess.run([BUILDER, "telemetry", "compact"], env=process_env(measured), check=True,
                   capture_output=True)  # fmt: skip
    assert _answers(measured) == before

    def pages(store: Path, folder: str, dataset: str = "*", files: str = "*.arrow") -> int:
        found = store.glob(f"{dataset}/{folder}/{files}")
        return sum(math.ceil(path.stat().st_size / PAGE) for path in found)

    days = []
    for folder in sorted(path.name for path in pristine.glob("sessions/date=*")):
        t, r, s = (pages(measured, folder, dataset) for dataset in MERGED)
        c1, c2, c3 = (pages(measured, folder, d, f"{COPIES}/*.parquet") for d in COPIED)
        days.append(Day(folder, t, r, s, (c1, c2, c3), freed=pages(pristine, folder)))
    first, second = days[0], days[1]
    t, r, s = first.targets, first.rollup, first.sessions
    assert t >= 4 and second.targets + second.rollup + second.sessions > 0
    assert all(first.copies)
    # Free pages: none, within the first day's merged targets file, at the edges of each of
    # its three files and of their three copies, in the second day's files, and enough for
    # every file of the whole compaction.
    edges = {0, t // 2, t - 1, t, t + r - 1, t + r, t + r + s - 1, t + r + s}
    written = t + r + s
    for copy in first.copies:
        edges |= {written + copy - 1, written + copy}
        written += copy
    edges.add(written + second.targets + second.rollup)
    # (and a page for the run log's first line: without it, the log is a warning)
    edges.add(sum(day.targets + day.rollup + day.sessions + sum(day.copies) for day in days) + 1)
    spare = iter(range(1, t))
    while len(edges) < 10:
        edges.add(next(spare))
    levels = sorted(edges)

    disk, out = root / "disk", root / "out"
    disk.mkdir()
    out.mkdir()
    store = disk / "store"
    script = f"""
        mount -t tmpfs -o size=2m tmpfs {disk} || exit 97
        {FUNCTIONS}
        files() {{
            (cd {store} && find . -type f -exec sha256sum {{}} +) > "$1.files"
        }}
        for free in {" ".join(map(str, levels))}; do
            rm -rf {store}
            cp -a {pristine} {store}
            fill {disk} $(( free * {PAGE_KIB} ))
            run {out}/$free-compact {BUILDER} telemetry compact
            # Three readers at once: they change nothing, and the disk is shared.
            run {out}/$free-export {BUILDER} telemetry export &
            run {out}/$free-summary {SUMMARY} &
            run {out}/$free-verify {BUILDER} telemetry verify &
            wait
            files {out}/$free-compact
            rm {disk}/filler
            run {out}/$free-again {BUILDER} telemetry compact
            files {out}/$free-again
        done
    """
    if _in_namespace(script, env=process_env(store)) is None:
        return None
    ran = {p.stem: _ran(out / p.stem) for p in out.glob("*.status")}
    files = {}
    for listing in out.glob("*.files"):
        lines = [line.split("  ./", 1) for line in listing.read_text().splitlines()]
        files[listing.stem] = {path: digest for digest, path in lines}
    return Compaction(store, days, levels, before, _files(pristine), _files(measured), ran, files)


def _check_compaction(run: Compaction, free: int) -> tuple[int, str]:
    """Check what compacting with ``free`` pages left did; returns which day's compaction
    ran out of space, and in which dataset's file (see :func:`_outcome`)."""
    number, full = _outcome(run.days, free)
    compacted = run.ran[f"{free}-compact"]
    if full.endswith(COPIES):  # the day merged, and its copies up to that one
        assert (compacted.status, compacted.out) == (1, "")
        folder = run.store / full.split("/")[0] / run.days[number - 1].folder / COPIES
        file = _under(folder, directly=True, suffix=".parquet")
        _one_line(compacted.err, file=file, why="No space left on device")
    elif full:
        assert (compacted.status, compacted.out) == (1, "")
        folder = run.store / full / run.days[number].folder
        _one_line(compacted.err, file=_under(folder, directly=True), why="No space left on device")
    else:
        assert (compacted.status, compacted.err) == (0, "")
        assert compacted.out.startswith(f"Compacted {len(run.days)} days in ")
    # The days before stay merged; the rest is left exactly as it was, to the byte and
    # the file name.
    merged = {day.folder for day in run.days[:number]}
    expected = {p: d for p, d in run.pristine.items() if Path(p).parent.name not in merged}
    expected |= {p: d for p, d in run.merged.items() if Path(p).parent.name in merged}
    assert _shape(run.files[f"{free}-compact"], merged) == _shape(expected, merged)
    # Exactly the same answers, at the full disk.
    assert (run.ran[f"{free}-export"], run.ran[f"{free}-summary"]) == run.before
    assert run.ran[f"{free}-verify"].status == 0
    assert run.ran[f"{free}-verify"].out.endswith(": all readable.\n")
    # Once the disk is freed, compacting again gives the files a roomy disk gives from the
    # start, whose answers are the same too.
    again = run.ran[f"{free}-again"]
    assert (again.status, again.err) == (0, "")
    everything = {day.folder for day in run.days}
    assert _shape(run.files[f"{free}-again"], everything) == _shape(run.merged, everything)
    return number, full


def test_compaction_at_a_full_disk_leaves_the_store_as_it_was(
    compaction: Compaction | None,
) -> None:
    if compaction is None:
        pytest.skip(NO_NAMESPACE)
    outcomes = {_check_compaction(compaction, free) for free in compaction.levels}
    # The disk ran out in each file of the first day and in each of their copies, in the
    # second day, and never.
    assert {(0, "targets"), (0, "daily_targets"), (0, "sessions")} < outcomes
    assert {(1, f"{dataset}/{COPIES}") for dataset in COPIED} < outcomes
    assert {number for number, _ in outcomes} == {0, 1, len(compaction.days)}


def test_a_rollup_that_does_not_fit_leaves_the_store_as_it_was(
    compaction: Compaction | None,
) -> None:
    if compaction is None:
        pytest.skip(NO_NAMESPACE)
    # The merged targets file fits; the rollup's last page does not.
    first = compaction.days[0]
    free = first.targets + first.rollup - 1
    assert free in compaction.levels
    assert _check_compaction(compaction, free) == (0, "daily_targets")


# -- retention ------------------------------------------------------------------------------


def test_retention_at_a_full_disk_removes_whole_days_or_nothing(tmp_path: Path) -> None:
    # Three days past the 6 days kept, two days within them; then three new builds.
    old = _builds({12: 2, 11: 2, 10: 2, 3: 2, 2: 2}, targets=30)
    new = _builds({2: 1, 1: 2}, targets=30, prefix="new-")
    pristine, out, disk = tmp_path / "pristine", tmp_path / "out", tmp_path / "disk"
    _store(pristine, old)
    out.mkdir()
    disk.mkdir()
    store = disk / "store"
    old_events, new_events = (
        _history(tmp_path / "old.jsonl", old),
        _history(tmp_path / "new.jsonl", new),
    )
    levels = [0, 1, 3, 12]  # free pages for the new builds' two file pairs
    script = f"""
        mount -t tmpfs -o size=2m tmpfs {disk} || exit 97
        {FUNCTIONS}
        cp -a {pristine} {store}
        # Every build of the old history is stored already: the ingest only applies
        # retention, to a disk full to the last page.
        fill {disk} 0
        run {out}/kept {BUILDER} telemetry ingest {old_events}
        cp -a {store} {out}/kept.store
        for free in {" ".join(map(str, levels))}; do
            rm -rf {store}
            cp -a {out}/kept.store {store}
            fill {disk} $(( free * {PAGE_KIB} ))
            run {out}/$free-tight {BUILDER} telemetry ingest {new_events}
            cp -a {store} {out}/$free-tight.store
            rm {disk}/filler
            run {out}/$free-roomy {BUILDER} telemetry ingest {new_events}
            cp -a {store} {out}/$free-roomy.store
        done
    """
    env = process_env(
        store, BUILDER_TELEMETRY_RETENTION_DAYS="6", BUILDER_TELEMETRY_MAX_SESSIONS="5"
    )
    if _in_namespace(script, env=env) is None:
        pytest.skip(NO_NAMESPACE)
    keeping = "(keeping 6 days and at most 5 builds)."
    kept = _ran(out / "kept")
    assert kept.status == 0
    assert kept.out == f"Stored 0 builds from {sum(len(b.lines) for b in old)} events.\n"
    assert kept.err.splitlines() == [
        "Skipped 10 builds already stored.",
        f"Retention removed 6 builds in 3 day partitions {keeping}",
    ]
    recent = [b for b in old if b.ago < 6]
    assert _stored(out / "kept.store") == _whole(recent)
    for gone in {b.folder for b in old if b.ago >= 6}:
        assert list((out / "kept.store").glob(f"*/{gone}")) == []  # of no dataset
    # Once the new builds are in, the oldest day goes: 7 builds are more than 5.
    final = _whole([b for b in [*recent, *new] if b.ago != 3])
    outcomes = set()
    for free in levels:
        tight, stored = _ran(out / f"{free}-tight"), _stored(out / f"{free}-tight.store")
        if tight.status == 0:
            assert tight.err == f"Retention removed 2 builds in 1 day partition {keeping}\n"
            assert stored == final
        else:
            # No retention after a failed write; what was written is whole days of builds.
            assert (tight.status, tight.out) == (1, "")
            _one_line(tight.err, file=_under(store), why="No space left on device")
            arrived = _whole([b for b in new if b.session in stored])
            assert stored == _whole(recent) | arrived
            for day in {b.folder for b in new}:
                assert len({b.session in stored for b in new if b.folder == day}) == 1
        outcomes.add(tight.status)
        roomy = _ran(out / f"{free}-roomy")
        assert roomy.status == 0, roomy.err
        assert _stored(out / f"{free}-roomy.store") == final
    assert outcomes == {0, 1}


# -- record ---------------------------------------------------------------------------------

BUILD = "sh -c 'echo out; echo err >&2; exit 7'"


def _assert_build_untouched(ran: Ran) -> list[str]:
    """The build's status and output are its own; returns what telemetry said on stderr."""
    assert (ran.status, ran.out) == (7, "out\n")
    first, *said = ran.err.splitlines()
    assert first == "err"
    return said


def test_record_at_a_full_disk_keeps_the_builds_status_output_and_the_history(
    tmp_path: Path,
) -> None:
    """``record`` writes the build as a small pending file; the next reader (here
    ``export``) folds it into the Arrow files. The disk runs out in either step, or not."""
    history = _builds({3: 2, 2: 2, 1: 2}, targets=20)
    pristine, out, disk = tmp_path / "pristine", tmp_path / "out", tmp_path / "disk"
    _store(pristine, history)
    out.mkdir()
    disk.mkdir()
    store = disk / "store"
    levels = [0, 1, 2, 8]  # free pages for the pending file, then the two Arrow files
    script = f"""
        mount -t tmpfs -o size=2m tmpfs {disk} || exit 97
        {FUNCTIONS}
        cp -a {pristine} {store}
        run {out}/before {BUILDER} telemetry export
        for free in {" ".join(map(str, levels))}; do
            rm -rf {store}
            cp -a {pristine} {store}
            fill {disk} $(( free * {PAGE_KIB} ))
            run {out}/$free-record {BUILDER} record -- {BUILD}
            run {out}/$free-export {BUILDER} telemetry export
            cp -a {store} {out}/$free.store
            rm -f {disk}/filler
            run {out}/$free-later {BUILDER} telemetry export
        done
    """
    if _in_namespace(script, env=process_env(store)) is None:
        pytest.skip(NO_NAMESPACE)
    before = _ran(out / "before")
    assert len(json.loads(before.out)["sessions"]) == len(history)
    outcomes = set()
    for free in levels:
        said = _assert_build_untouched(_ran(out / f"{free}-record"))
        exported, later = _ran(out / f"{free}-export"), _ran(out / f"{free}-later")
        kept = out / f"{free}.store"
        pending = sorted(kept.glob("pending/*.jsonl"))
        if said:  # not even the pending file fitted: the build is not recorded
            outcomes.add("record")
            assert len(said) == 1
            _one_line(said[0], file=re.escape(f"{store}/pending/") + r"\S+\.jsonl",
                      why="No space left on device",
                      prefix="Warning: telemetry could not store build ")  # fmt: skip
            assert (pending, exported, later) == ([], before, before)
            assert _stored(kept) == _whole(history)
            continue
        # Recorded: a reader shows it as soon as the disk lets it be folded in.
        *old, recorded = json.loads(later.out)["sessions"]
        assert old == json.loads(before.out)["sessions"]
        assert (recorded["tool"], recorded["succeeded"], recorded["error"]) == (
            "sh", False, "sh exited with status 7"
        )  # fmt: skip
        if pending:  # the fold ran out of room: the history is shown, the build stays
            outcomes.add("fold")
            assert exported.out == before.out and exported.status == 0
            [warning] = exported.err.splitlines()
            assert warning.startswith("Warning: a recorded build stays pending in "), warning
            assert "No space left on device" in warning, warning
            assert _stored(kept) == _whole(history)
        else:
            outcomes.add("stored")
            assert (exported.out, exported.err) == (later.out, "")
            stored = _whole(history) | {recorded["sessionId"]: (f"date={_today()}", 0)}
            assert _stored(kept) == stored
    assert outcomes == {"record", "fold", "stored"}


def _today() -> str:
    return str(datetime.now(UTC).date())


def test_a_read_only_store_keeps_the_builds_status_output_and_the_history(
    tmp_path: Path,
) -> None:
    base = _unprivileged_base(tmp_path)
    try:
        history = _builds({3: 2, 2: 2, 1: 2}, targets=20)
        store = base / "store"
        _store(store, history)
        before = subprocess.run([BUILDER, "telemetry", "export"], env=process_env(store),
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        files = _files(store)
        for folder in [store, *[p for p in store.rglob("*") if p.is_dir()]]:
            folder.chmod(0o555)
        script = f"""
            {BUILDER} --help > /dev/null 2>&1 || exit 97
            {FUNCTIONS}
            run {base}/record {BUILDER} record -- {BUILD}
            run {base}/compact {BUILDER} telemetry compact
            find {store} -name '.tmp-*' | wc -l
            {BUILDER} telemetry export
        """
        output = _run_unprivileged(script, process_env(store))
        if output is None:
            pytest.skip("no unprivileged user can run builder here")
        said = _assert_build_untouched(_ran(base / "record"))
        _one_line("\n".join(said), file=re.escape(f"{store}/pending/") + r"\S+\.jsonl",
                  why="Permission denied",
                  prefix="Warning: telemetry could not store build ")  # fmt: skip
        compacted = _ran(base / "compact")
        assert (compacted.status, compacted.out) == (1, "")
        [error] = compacted.err.splitlines()
        assert error.startswith("Error: ") and "Permission denied" in error, error
        partials, exported = output.split("\n", 1)
        assert (partials.strip(), exported) == ("0", before)
        assert _data(_files(store)) == _data(files)
        assert _stored(store) == _whole(history)
    finally:
        _release(base, tmp_path)
