"""`builder telemetry verify [--repair]`: every file read in full, damaged ones moved aside."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Runner


def test_a_sound_store_verifies(small_cli: Runner, tmp_path: Path) -> None:
    result = small_cli("telemetry", "verify")
    assert (result.code, result.stdout) == (
        0,
        f"Checked 2 files in {tmp_path / 'telemetry'}: all readable.\n",
    )


def test_damaged_files_are_reported_then_quarantined(small_cli: Runner, tmp_path: Path) -> None:
    store = tmp_path / "telemetry"
    [good] = (store / "targets").rglob("*.arrow")
    data = good.read_bytes()
    broken = good.with_name("20251027T000000Z-0123456789ab-n7.arrow")
    broken.write_bytes(data[: len(data) // 2])
    foreign = store / "sessions" / "date=2025-10-27" / "notes.arrow"
    foreign.write_bytes(b"not arrow at all")

    result = small_cli("telemetry", "verify")
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert sorted(line.split(": ")[1] for line in lines[:2]) == sorted([str(broken), str(foreign)])
    assert lines[2] == "Checked 4 files: 2 damaged files; run with --repair to move them aside."

    repaired = small_cli("telemetry", "verify", "--repair")
    assert repaired.code == 0
    moved = store / "quarantine" / "targets" / "date=2025-10-27" / broken.name
    assert f"moved: {broken} -> {moved}" in repaired.stdout
    assert moved.read_bytes() == data[: len(data) // 2]  # kept as it was, not deleted
    assert not broken.exists() and not foreign.exists()
    assert small_cli("telemetry", "verify").code == 0
    assert "Total Builds: 3" in small_cli("telemetry", "summary").stdout


def test_an_empty_store_verifies(cli: Runner, tmp_path: Path) -> None:
    result = cli("telemetry", "verify")
    assert (result.code, result.stdout) == (
        0,
        f"Checked 0 files in {tmp_path / 'telemetry'}: all readable.\n",
    )


def test_clear_removes_the_quarantine_too(small_cli: Runner, tmp_path: Path) -> None:
    store = tmp_path / "telemetry"
    (store / "sessions" / "date=2025-10-27" / "junk.arrow").write_bytes(b"junk")
    small_cli("telemetry", "verify", "--repair")
    assert (store / "quarantine").is_dir()
    small_cli("telemetry", "clear")
    assert not (store / "quarantine").exists()
