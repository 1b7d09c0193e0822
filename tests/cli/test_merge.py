"""`builder telemetry merge NAME=PATH... --into TEAM`: stores and Parquet and JSON exports of
several machines into one team store, each build once, tagged with its source's name.

The builds are small_history()'s on three days (a0..c2: 9 builds, 39 target runs). Three
sources overlap: store one holds days 0 and 1, store two days 1 and 2, and a Parquet export
days 0 and 2. The expected answers come from a store that ingested the 9 builds' events
directly, once each. A JSON export's builds are held against the store it was exported
from, read as every reader reads a store."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.storage import TelemetryStorage
from tests.conftest import T0, Runner, small_history_on

LABEL = "builder.source"
ROWS = (
    "select session_id, target, status, start_time, end_time, duration_ms, worker, error "
    "from targets order by all"
)


def _days(*days: int) -> bytes:
    return "\n".join(small_history_on(*days)).encode()


@pytest.fixture
def sources(cli: Runner, tmp_path: Path) -> Path:
    """The three sources, and the reference store, in ``tmp_path``."""
    for store, days in (("one", (0, 1)), ("two", (1, 2)), ("three", (0, 2)), ("all", (0, 1, 2))):
        stored = cli("telemetry", "ingest", "-", "--dir", store, stdin=_days(*days))
        assert stored.code == 0, stored.stderr
    exported = cli(
        "telemetry", "export", "--format", "parquet", "--output", "export", "--dir", "three"
    )
    assert exported.code == 0, exported.stderr
    return tmp_path


def _files(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _sessions(cli: Runner, store: str) -> list[dict[str, object]]:
    """The export's sessions, each without the source label."""
    exported = json.loads(cli("telemetry", "export", "--dir", store).stdout)["sessions"]
    for session in exported:
        session["labels"].pop(LABEL, None)
    return exported


def test_three_overlapping_sources_give_each_build_once_twice_in_a_row(
    cli: Runner, sources: Path
) -> None:
    merged = cli("telemetry", "merge", "one=one", "two=two", "laptop=export", "--into", "team")
    assert (merged.code, merged.stderr) == (0, "")
    assert merged.stdout == (
        "one: 6 builds in one (a store): 6 added, 0 there already; 26 target rows added\n"
        "two: 6 builds in two (a store): 3 added, 3 there already; 13 target rows added\n"
        "laptop: 6 builds in export (a parquet export): 0 added, 6 there already; "
        "0 target rows added\n"
        "Merged 3 sources into team: 9 builds added.\n"
    )
    # The same builds, targets and numbers as the store that ingested them once each.
    assert _sessions(cli, "team") == _sessions(cli, "all")
    assert cli("telemetry", "sql", ROWS, "--dir", "team").stdout == (
        cli("telemetry", "sql", ROWS, "--dir", "all").stdout
    )
    assert cli("telemetry", "--dir", "team").stdout == cli("telemetry", "--dir", "all").stdout
    # Each build tagged with the source it came from first.
    tags = cli(
        "telemetry", "sql", f"select session_id, labels['{LABEL}'] from sessions order by 1",
        "--format", "csv", "--dir", "team",
    ).stdout.split()[1:]  # fmt: skip
    assert tags == [f"{b}{d},{'one' if d < 2 else 'two'}" for b in "abc" for d in range(3)]

    before = _files(sources / "team")
    again = cli("telemetry", "merge", "one=one", "two=two", "laptop=export", "--into", "team")
    assert again.stdout.endswith("Merged 3 sources into team: 0 builds added.\n")
    assert _files(sources / "team") == before


def test_the_team_store_defaults_to_the_store_of_dir(cli: Runner, sources: Path) -> None:
    merged = cli("telemetry", "merge", "ci=one", "--dir", "team")
    assert merged.stdout.endswith("Merged 1 source into team: 6 builds added.\n")


def test_a_labelled_build_keeps_its_labels_beside_the_source(cli: Runner, sources: Path) -> None:
    assert cli("telemetry", "merge", "ci=one", "--into", "team").code == 0
    labels = cli(
        "telemetry", "sql", "select labels from sessions where session_id = 'a0'",
        "--format", "json", "--dir", "team",
    ).stdout  # fmt: skip
    assert json.loads(labels) == [{"labels": {"ci": "true", LABEL: "ci"}}]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["one"], "Error: a source is NAME=PATH, got 'one'; name each source"),
        (["a b=one"], "Error: a source's name is letters, digits"),
        (["x=nowhere"], "Error: nowhere does not exist; a source is a telemetry store's"),
        (["x=one", "x=two"], "Error: each source needs a name of its own: x is given twice"),
        (["x=empty"], "Error: empty holds no builds: neither a telemetry store"),
        (["x=team"], "Error: team is the team store itself"),
    ],
)
def test_unusable_sources_are_status_2_and_change_nothing(
    cli: Runner, sources: Path, args: list[str], said: str
) -> None:
    (sources / "empty").mkdir()
    (sources / "team").mkdir()
    result = cli("telemetry", "merge", *args, "--into", "team")
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr.startswith(said) and result.stderr.count("\n") == 1
    assert list((sources / "team").iterdir()) == []


def test_a_damaged_file_of_a_source_is_named_and_the_rest_merged(
    cli: Runner, sources: Path
) -> None:
    [victim] = (sources / "one" / "sessions").glob("date=2025-10-28/*.arrow")
    victim.write_bytes(victim.read_bytes()[:-20])
    merged = cli("telemetry", "merge", "one=one", "--into", "team")
    assert merged.code == 0
    assert merged.stderr.startswith(f"Warning: skipping {victim.relative_to(sources)}: ")
    assert merged.stdout.startswith(
        "one: 3 builds in one (a store): 3 added, 0 there already; 13 target rows added\n"
    )


def test_builds_the_team_store_would_remove_are_not_added_again_and_again(
    cli: Runner, sources: Path
) -> None:
    """A team store capped at 5 builds keeps the newest day (3 builds) of the 9: the other
    6 are not added (they would be removed at once, and added by every merge)."""
    env = {"BUILDER_TELEMETRY_MAX_SESSIONS": "5"}
    merged = cli("telemetry", "merge", "one=one", "two=two", "--into", "team", env=env)
    assert merged.stdout == (
        "one: 6 builds in one (a store): 0 added, 0 there already, 6 past the team store's "
        "retention; 0 target rows added\n"
        "two: 6 builds in two (a store): 3 added, 0 there already, 3 past the team store's "
        "retention; 13 target rows added\n"
        "Merged 2 sources into team: 3 builds added.\n"
    )
    before = _files(sources / "team")
    again = cli("telemetry", "merge", "one=one", "two=two", "--into", "team", env=env)
    assert again.stdout.endswith("Merged 2 sources into team: 0 builds added.\n")
    assert _files(sources / "team") == before


def test_a_build_stored_twice_in_a_source_gives_its_targets_once(
    cli: Runner, sources: Path
) -> None:
    """Two stores copied into one: the same build in two writes of the same day."""
    day = sources / "one" / "sessions" / "date=2025-10-27"
    for dataset in ("sessions", "targets"):
        [stored] = (sources / "one" / dataset / day.name).glob("*.arrow")
        twin = stored.name.replace(stored.name[17:29], "0123456789ab")
        shutil.copy(stored, stored.with_name(twin))
    merged = cli("telemetry", "merge", "one=one", "--into", "team")
    assert merged.stdout.startswith(
        "one: 6 builds in one (a store): 6 added, 0 there already; 26 target rows added\n"
    )
    assert cli("telemetry", "sql", "select count(*) from targets", "--dir", "team").stdout == (
        "count_star()\n------------\n          26\n"
    )


def test_a_damaged_export_is_one_error_line(cli: Runner, sources: Path) -> None:
    [part] = (sources / "export" / "sessions").glob("date=2025-10-27/*.parquet")
    part.write_bytes(part.read_bytes()[:100])
    merged = cli("telemetry", "merge", "x=export", "--into", "team")
    assert (merged.code, merged.stdout) == (1, "")
    assert merged.stderr.startswith(
        f"Error: could not read the export export/sessions/{part.parent.name}: "
    )
    assert merged.stderr.count("\n") == 1


def test_an_export_of_a_newer_schema_is_refused_and_nothing_merged(
    cli: Runner, sources: Path
) -> None:
    # Its columns may hold what this version does not know and would drop without a word.
    from telemetry.parquet import MARKER
    from telemetry.schema import SCHEMA_VERSION

    marker = sources / "export" / MARKER
    said = json.loads(marker.read_text())
    marker.write_text(json.dumps(said | {"schema_version": SCHEMA_VERSION + 1}))
    merged = cli("telemetry", "merge", "x=export", "--into", "team")
    # An unusable source, as one that does not exist: exit status 2.
    assert (merged.code, merged.stdout) == (2, "")
    assert merged.stderr == (
        f"Error: export was exported with schema version {SCHEMA_VERSION + 1}, newer than "
        f"this version's {SCHEMA_VERSION}; upgrade builder-telemetry to merge it\n"
    )
    assert not (sources / "team").exists()


def test_merging_again_reads_no_target_file(
    cli: Runner, sources: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a merge adds is chosen from the session rows: a source with nothing new costs the
    reading of its sessions only, however many target rows it holds."""
    import pyarrow.parquet as pq

    from telemetry.snapshot import Snapshot

    assert cli("telemetry", "merge", "one=one", "x=export", "--into", "team").code == 0
    read: list[str] = []
    snapshot_read, parquet_read = Snapshot.read, pq.read_table

    def reading(self: Snapshot, stored: Any, dataset: str) -> Any:
        read.append(dataset)
        return snapshot_read(self, stored, dataset)

    def reading_parquet(source: Any, *args: Any, **kwargs: Any) -> Any:
        read.append(Path(source).parent.name)
        return parquet_read(source, *args, **kwargs)

    monkeypatch.setattr(Snapshot, "read", reading)
    monkeypatch.setattr(pq, "read_table", reading_parquet)
    again = cli("telemetry", "merge", "one=one", "x=export", "--into", "team")
    assert again.stdout.endswith("Merged 2 sources into team: 0 builds added.\n")
    assert "targets" not in read and read.count("sessions") > 0


# -- JSON exports ---------------------------------------------------------------------------

# Beside small_history() on days 0 to 2: a build killed after a target (interrupted: stored
# with the error "interrupted"), started off a whole second and given a host, a commit, a
# branch and labels; and one with the source label already, as a team store's export has.
_MORE = [
    {"event": "build_started", "session": "k", "ts": T0 + 7_200_123, "parallelism": 3,
     "tool": "gradle", "host": "ws06", "commit": "e708a99", "branch": "main",
     "labels": {"z": "last", "a": "first"}},
    {"event": "target_started", "session": "k", "ts": T0 + 7_200_130, "target": "//k:x"},
    {"event": "target_finished", "session": "k", "ts": T0 + 7_200_877, "target": "//k:x",
     "status": "built"},
    {"event": "build_started", "session": "t", "ts": T0 + 86_400_999,
     "labels": {LABEL: "ci"}},
    {"event": "build_finished", "session": "t", "ts": T0 + 86_401_998, "success": True},
]  # fmt: skip


@pytest.fixture
def exported(cli: Runner, tmp_path: Path) -> Path:
    """Store ``mine`` (11 builds, 40 target runs, on 3 days), and its JSON export as
    mine.json and, compressed, as mine.json.zst."""
    events = [*small_history_on(0, 1, 2), *map(json.dumps, _MORE)]
    stored = cli("telemetry", "ingest", "-", "--dir", "mine", stdin="\n".join(events).encode())
    assert stored.code == 0, stored.stderr
    for name in ("mine.json", "mine.json.zst"):
        done = cli("telemetry", "export", "--dir", "mine", "--output", name)
        assert done.code == 0, done.stderr
    return tmp_path


def _rows(store: Path) -> list[dict[str, Any]]:
    """A store's session rows as every report reads them, without the source label."""
    rows = TelemetryAnalyzer(TelemetryStorage(store)).sessions().to_dicts()
    for row in rows:
        row["labels"].pop(LABEL, None)
    return rows


@pytest.mark.parametrize("name", ["mine.json", "mine.json.zst"])
def test_a_json_export_gives_the_stores_session_rows_once(
    cli: Runner, exported: Path, name: str
) -> None:
    merged = cli("telemetry", "merge", f"laptop={name}", "--into", "team")
    assert (merged.code, merged.stderr) == (0, "")
    assert merged.stdout == (
        f"laptop: 11 builds in {name} (a JSON export): 11 added, 0 there already; "
        "no target rows: a JSON export holds none\n"
        "Merged 1 source into team: 11 builds added.\n"
    )
    team, mine = _rows(exported / "team"), _rows(exported / "mine")
    assert [row["session_id"] for row in team] == [row["session_id"] for row in mine]
    for column in mine[0]:
        assert [row[column] for row in team] == [row[column] for row in mine], column
    # The interrupted build and the one off a whole second, to the millisecond.
    [killed] = [row for row in team if row["session_id"] == "k"]
    assert (killed["interrupted"], killed["error"], killed["start_time"].microsecond) == (
        True, "interrupted", 123_000,
    )  # fmt: skip
    assert list(killed["labels"]) == ["z", "a"]
    tags = TelemetryAnalyzer(TelemetryStorage(exported / "team")).sessions()["labels"]
    assert {labels[LABEL] for labels in tags.to_list()} == {"laptop"}
    # The summary's numbers are the store's; its bottlenecks need target rows, which a JSON
    # export does not hold.
    summary = json.loads(cli("telemetry", "summary", "--format", "json", "--dir", "mine").stdout)
    assert summary["bottlenecks"] != []
    assert json.loads(cli("telemetry", "summary", "--format", "json", "--dir", "team").stdout) == (
        summary | {"bottlenecks": []}
    )
    assert cli("telemetry", "sql", "select count(*) from targets", "--dir", "team").stdout == (
        "count_star()\n------------\n           0\n"
    )

    before = _files(exported / "team")
    again = cli("telemetry", "merge", f"laptop={name}", "--into", "team")
    assert again.stdout == (
        f"laptop: 11 builds in {name} (a JSON export): 0 added, 11 there already; "
        "no target rows: a JSON export holds none\n"
        "Merged 1 source into team: 0 builds added.\n"
    )
    assert _files(exported / "team") == before


def test_a_json_export_and_its_stores_folder_give_each_build_once(
    cli: Runner, exported: Path
) -> None:
    merged = cli("telemetry", "merge", "ws06=mine", "laptop=mine.json", "--into", "team")
    assert merged.stdout == (
        "ws06: 11 builds in mine (a store): 11 added, 0 there already; 40 target rows added\n"
        "laptop: 11 builds in mine.json (a JSON export): 0 added, 11 there already; "
        "no target rows: a JSON export holds none\n"
        "Merged 2 sources into team: 11 builds added.\n"
    )
    # The other way round, the export's builds come first, and the store's are there.
    other = cli("telemetry", "merge", "laptop=mine.json", "ws06=mine", "--into", "other")
    assert other.stdout.endswith(
        "ws06: 11 builds in mine (a store): 0 added, 11 there already; 0 target rows added\n"
        "Merged 2 sources into other: 11 builds added.\n"
    )
    for store in ("team", "other"):
        assert _rows(exported / store) == _rows(exported / "mine")


def test_a_json_export_skips_what_the_team_stores_retention_removes(
    cli: Runner, exported: Path
) -> None:
    """Capped at 5 builds, the team store keeps the newest day (a2, b2, c2) of the 11: days 0
    and 1 hold 4 builds each (k and t on them)."""
    env = {"BUILDER_TELEMETRY_MAX_SESSIONS": "5"}
    merged = cli("telemetry", "merge", "laptop=mine.json", "--into", "team", env=env)
    assert merged.stdout.startswith(
        "laptop: 11 builds in mine.json (a JSON export): 3 added, 0 there already, 8 past the "
        "team store's retention; no target rows: a JSON export holds none\n"
    )
    assert [row["session_id"] for row in _rows(exported / "team")] == ["a2", "b2", "c2"]


def _damaged(export: dict[str, Any]) -> dict[str, Any]:
    export["sessions"][3]["built"] = "3"
    return export


def _older(export: dict[str, Any]) -> dict[str, Any]:
    for session in export["sessions"]:
        for key in ("startTimeMs", "endTimeMs", "executedMs", "peakConcurrency"):
            del session[key]
    return export


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (lambda export: json.dumps(export)[:200], "could not read the JSON export bad.json: "),
        (lambda export: export["sessions"], 'bad.json is not a JSON export: it holds no {"sess'),
        (lambda export: {"builds": export["sessions"]}, "bad.json is not a JSON export: "),
        (_damaged, 'bad.json is not a JSON export of this version: its session 4 has built "3", '
         "not an integer"),
        (_older, "bad.json was exported by an older version, without the keys a stored build is "
         "rebuilt from (startTimeMs, endTimeMs, executedMs, peakConcurrency); export it again "
         "with this version"),
    ],
    ids=["malformed", "a list", "no sessions", "a wrong value", "an older version"],
)  # fmt: skip
def test_a_json_file_that_is_no_export_is_one_error_line_and_nothing_is_merged(
    cli: Runner, exported: Path, content: Any, said: str
) -> None:
    export = json.loads((exported / "mine.json").read_text())
    written = content(export)
    (exported / "bad.json").write_text(written if isinstance(written, str) else json.dumps(written))
    merged = cli("telemetry", "merge", "ws06=mine", "x=bad.json", "--into", "team")
    assert (merged.code, merged.stdout) == (1, "")
    assert merged.stderr.startswith(f"Error: {said}") and merged.stderr.count("\n") == 1
    assert list((exported / "team").rglob("*.arrow")) == []
