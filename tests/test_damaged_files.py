"""Files whose footer was damaged: checked before polars reads them, named in one warning,
left out of every answer (which is that of the store without them), listed by ``verify`` and
moved aside by ``verify --repair``; never a panic or a traceback."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pipelines.compaction import compact
from telemetry.ingest import ingest_jsonl
from telemetry.snapshot import StoredFile, readable
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, process_env

DAY = 86_400_000
T0 = 1761523200000  # 2025-10-27T00:00:00Z
LATER = datetime(2026, 1, 1, tzinfo=UTC)
DATASETS = ("sessions", "targets", "daily_targets")
VICTIM_DAY = "date=2025-10-28"
# The commands, and the datasets each reads on the damaged day: the summary of every day
# takes a whole day's bottlenecks from its rollup, one that cuts the day from its target rows.
COMMANDS: dict[str, tuple[list[str], set[str]]] = {
    "summary": (["summary"], {"sessions", "daily_targets"}),
    "cut summary": (["summary", "--since", "2025-10-28T02:00"], {"sessions", "targets"}),
    "recent": (["recent", "20"], {"sessions", "targets"}),
    "export": (["export", "--format", "json"], {"sessions"}),
    # Read without pyarrow, through arro3: the footers are checked all the same.
    "sql": (
        ["sql", "select (select count(*) from sessions), (select count(*) from targets)"],
        {"sessions", "targets"},
    ),
}


def _events() -> list[str]:
    """Three days of four builds, with targets built, cached, failed and skipped."""
    events: list[dict[str, object]] = []
    for day in range(3):
        for n in range(4):
            session, clock = f"d{day}-{n}", T0 + day * DAY + n * 3_600_000
            events.append({"event": "build_started", "session": session, "ts": clock,
                           "parallelism": 2})  # fmt: skip
            for t in range(6):
                status = ("cached", "built", "failed", "skipped")[(t + n) % 4]
                target = f"//pkg:t{t}"
                if status in ("built", "failed"):
                    events.append({"event": "target_started", "session": session, "ts": clock,
                                   "target": target, "worker": 0})  # fmt: skip
                    clock += 100 * (t + day + 1) + 37 * n
                events.append({"event": "target_finished", "session": session, "ts": clock,
                               "target": target, "status": status})  # fmt: skip
            events.append({"event": "build_finished", "session": session, "ts": clock + 1,
                           "success": n != 3})  # fmt: skip
    return [json.dumps(e) for e in events]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compacted store: each day one sessions file, one targets file and one rollup."""
    store = tmp_path_factory.mktemp("pristine") / "telemetry"
    storage = TelemetryStorage(store, clock=lambda: LATER)
    assert ingest_jsonl(storage, _events(), apply_retention=False).sessions == 12
    assert len(compact(storage)) == 3
    return store


def _victim(store: Path, dataset: str) -> Path:
    [path] = (store / dataset / VICTIM_DAY).glob("*.arrow")
    return path


# -- the footer, read by hand (Arrow's File.fbs), independently of the code under test --------


def _footer(data: bytes) -> tuple[int, int]:
    """Where the footer starts, and its length."""
    length = struct.unpack_from("<i", data, len(data) - 10)[0]
    return len(data) - 10 - length, length


def _blocks_at(data: bytes, field: int) -> tuple[int, int]:
    """Where the footer's vector of blocks ``field`` (2 dictionaries, 3 record batches)
    starts in the file, and how many blocks it holds."""
    start, _ = _footer(data)
    table = start + struct.unpack_from("<I", data, start)[0]
    vtable = table - struct.unpack_from("<i", data, table)[0]
    slot = table + struct.unpack_from("<H", data, vtable + 4 + 2 * field)[0]
    vector = slot + struct.unpack_from("<I", data, slot)[0]
    return vector + 4, struct.unpack_from("<I", data, vector)[0]


def _past_the_end(data: bytes) -> bytes:
    at, count = _blocks_at(data, 3)
    assert count == 1
    damaged = bytearray(data)
    struct.pack_into("<q", damaged, at, len(data) + 4096)  # the record batch's offset
    return bytes(damaged)


def _overwritten(data: bytes) -> bytes:
    at, _ = _blocks_at(data, 3)
    damaged = bytearray(data)
    damaged[at + 8 : at + 24] = b"\xff" * 16  # the record batch's lengths
    return bytes(damaged)


def _shorter_length(data: bytes) -> bytes:
    _, length = _footer(data)
    damaged = bytearray(data)
    struct.pack_into("<i", damaged, len(data) - 10, length // 2)
    return bytes(damaged)


def _batch_shortened(data: bytes) -> bytes:
    """The record batch's metadata said 64 bytes shorter: still inside the file."""
    at, _ = _blocks_at(data, 3)
    damaged = bytearray(data)
    length = struct.unpack_from("<i", data, at + 8)[0]
    struct.pack_into("<i", damaged, at + 8, length - 64)
    return bytes(damaged)


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "batch offset past the end": _past_the_end,
    "bytes overwritten inside the footer": _overwritten,
    "footer length cut short": _shorter_length,
    "batch length changed": _batch_shortened,
}

_EXPECTED: dict[tuple[str, str], str] = {}


def _run(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDER, "telemetry", *args], capture_output=True, text=True,
                          env=process_env(store), timeout=120, check=False)  # fmt: skip


def _expected(pristine: Path, tmp_path: Path, dataset: str, command: str) -> str:
    """What ``command`` prints on the same store without the damaged file."""
    if (dataset, command) not in _EXPECTED:
        without = tmp_path / f"without-{dataset}"
        if not without.exists():
            shutil.copytree(pristine, without)
            _victim(without, dataset).unlink()
        done = _run(without, *COMMANDS[command][0])
        assert (done.returncode, done.stderr) == (0, "")
        _EXPECTED[dataset, command] = done.stdout
    return _EXPECTED[dataset, command]


@pytest.mark.torture
@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("dataset", DATASETS)
def test_a_damaged_footer_is_named_once_left_out_and_moved_aside(
    pristine: Path, tmp_path: Path, dataset: str, damage: str
) -> None:
    store = tmp_path / "telemetry"
    shutil.copytree(pristine, store)
    victim = _victim(store, dataset)
    broken = DAMAGES[damage](victim.read_bytes())
    victim.write_bytes(broken)

    # By hand: a rollup or a targets file left out changes no total (the rollup stands in
    # for target rows, and a build's totals are in its session row); a sessions file left
    # out takes its day's four builds, three of them successful, with it.
    builds, successful = (8, 6) if dataset == "sessions" else (12, 9)
    summary = _expected(pristine, tmp_path, dataset, "summary")
    assert f"Total Builds: {builds}\nSuccessful: {successful} (75.0%)\n" in summary
    for command, (args, reads) in COMMANDS.items():
        done = _run(store, *args)
        assert "panicked" not in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 0, (command, done.stderr)
        warned = done.stderr.splitlines()
        if dataset in reads:
            assert len(warned) == 1, (command, warned)
            assert warned[0].startswith(f"Warning: skipping {victim}: "), (command, warned)
        else:
            assert warned == [], (command, warned)
        assert done.stdout == _expected(pristine, tmp_path, dataset, command), command

    found = _run(store, "verify")
    assert found.returncode == 1 and found.stderr == ""
    assert [line.split(": ")[:2] for line in found.stdout.splitlines()[:-1]] == [
        ["damaged", str(victim)]
    ]
    assert found.stdout.splitlines()[-1] == (  # 9 files, and a Parquet copy of each
        "Checked 18 files: 1 damaged file; run with --repair to move them aside."
    )
    repaired = _run(store, "verify", "--repair")
    moved = store / "quarantine" / dataset / VICTIM_DAY / victim.name
    assert repaired.returncode == 0 and repaired.stderr == ""
    assert f"moved: {victim} -> {moved}\n" in repaired.stdout
    assert moved.read_bytes() == broken and not victim.exists()
    after = _run(store, "summary")
    assert (after.returncode, after.stderr) == (0, "")
    assert after.stdout == _expected(pristine, tmp_path, dataset, "summary")


@pytest.mark.torture
@pytest.mark.parametrize("dataset", DATASETS)
def test_no_single_byte_of_a_footer_makes_polars_panic(
    pristine: Path, tmp_path: Path, dataset: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every byte of the footer (and of the length and magic after it) changed in turn:
    either the file is refused before polars opens it, or polars reads every row as they
    were, or it fails with an error (which the readers answer by checking each file)."""
    store = tmp_path / "telemetry"
    shutil.copytree(pristine, store)
    victim = _victim(store, dataset)
    data = victim.read_bytes()
    rows = pl.read_ipc(victim)
    start, _ = _footer(data)
    stored = StoredFile(victim, datetime(2025, 10, 28).date(), None)
    outcomes = {"refused": 0, "read as it was": 0, "polars error": 0}
    for at in range(start, len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        victim.write_bytes(damaged)
        if not readable(dataset, [stored], warn=False):
            outcomes["refused"] += 1
            continue
        try:
            frame = pl.scan_ipc(victim).collect()
        except pl.exceptions.PanicException:
            pytest.fail(f"polars panicked with byte {at - start} of the footer changed")
        except pl.exceptions.PolarsError:
            outcomes["polars error"] += 1
            continue
        assert frame.equals(rows), f"byte {at - start} of the footer changed the rows"
        outcomes["read as it was"] += 1
    assert "panicked" not in capfd.readouterr().err
    assert outcomes["refused"] > 0 and outcomes["read as it was"] > 0, outcomes
