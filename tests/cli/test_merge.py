"""`builder telemetry merge NAME=PATH... --into TEAM`: stores and Parquet exports of several
machines into one team store, each build once, tagged with its source's name.

The builds are small_history()'s on three days (a0..c2: 9 builds, 39 target runs). Three
sources overlap: store one holds days 0 and 1, store two days 1 and 2, and a Parquet export
days 0 and 2. The expected answers come from a store that ingested the 9 builds' events
directly, once each."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Runner, small_history_on

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
