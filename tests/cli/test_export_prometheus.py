"""`builder telemetry export --format prometheus|openmetrics`, read back by the Prometheus
client's own parsers, and `--compress zstd`, read back by zstandard (and the zstd tool)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus
from prometheus_client.samples import Timestamp

from tests.conftest import BUILDER, Runner, process_env, small_history

# The builds' starts: 2025-10-27T14:23:20Z and one and two hours later, in epoch milliseconds.
A, B, C = 1761575000000, 1761578600000, 1761582200000
A_LABELS = {"session": "a", "tool": "ninja"}
B_LABELS = {"session": "b", "tool": "bazel"}
C_LABELS = {"session": "c"}  # c names no tool and no build names a branch

# Every sample of small_history, from the numbers worked out by hand in tests/test_analyzer.py
# (test_per_session_metrics_by_hand): durations in seconds, percentages as ratios.
Key = tuple[str, frozenset[tuple[str, str]]]
EXPECTED: dict[Key, tuple[float, int]] = {}


def _expect(name: str, labels: dict[str, str], value: float, at: int) -> None:
    EXPECTED[(name, frozenset(labels.items()))] = (value, at)


for _labels, _at, _row in (
    # seconds, (built, cached, failed, skipped), hit ratio, utilization ratio, targets/s, ok
    (A_LABELS, A, (1.0, (3, 1, 0, 0), 0.25, 0.45, 4.0, 1)),
    (B_LABELS, B, (2.0, (3, 2, 0, 0), 0.40, 0.675, 2.5, 1)),
    (C_LABELS, C, (3.0, (0, 1, 1, 2), 0.50, 0.25, 4 / 3, 0)),
):
    _seconds, _counts, _hits, _utilization, _speed, _ok = _row
    _expect("builder_build_duration_seconds", _labels, _seconds, _at)
    for _status, _count in zip(("built", "cached", "failed", "skipped"), _counts, strict=True):
        _expect("builder_build_targets", {**_labels, "status": _status}, _count, _at)
    _expect("builder_build_cache_hit_ratio", _labels, _hits, _at)
    _expect("builder_build_parallelism_utilization_ratio", _labels, _utilization, _at)
    _expect("builder_build_targets_per_second", _labels, _speed, _at)
    _expect("builder_build_succeeded", _labels, _ok, _at)


def _approx(samples: dict[Key, tuple[float, int]]) -> dict[Key, tuple[object, int]]:
    """The values to within a float's rounding (a percentage over 100 is not always the
    nearest float to the ratio), the timestamps exactly."""
    return {key: (pytest.approx(value), at) for key, (value, at) in samples.items()}


def _samples(text: str, *, openmetrics: bool = False) -> dict[Key, tuple[float, int]]:
    """Every sample as (value, timestamp in ms), checking each family is one gauge."""
    parse = parse_openmetrics if openmetrics else parse_prometheus
    found: dict[Key, tuple[float, int]] = {}
    for family in parse(text):
        assert family.type == "gauge" and family.documentation
        for sample in family.samples:
            assert sample.name == family.name
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found
            stamp = sample.timestamp
            # The classic parser gives seconds as a float, OpenMetrics' an exact Timestamp.
            if isinstance(stamp, Timestamp):
                ms = stamp.sec * 1000 + stamp.nsec // 1_000_000
            else:
                assert isinstance(stamp, float)
                ms = round(stamp * 1000)
            found[key] = (sample.value, ms)
    return found


def test_prometheus_text_has_every_builds_numbers(small_cli: Runner) -> None:
    result = small_cli("telemetry", "export", "--format", "prometheus")
    assert (result.code, result.stderr) == (0, "")
    assert _samples(result.stdout) == _approx(EXPECTED)
    # Integer milliseconds, as Prometheus reads them (it rejects a date or a fraction).
    assert all(line.rsplit(" ", 1)[1].isdigit() for line in _sample_lines(result.stdout))
    assert '\nbuilder_build_duration_seconds{session="a",tool="ninja"} 1.0 1761575000000\n' in (
        result.stdout
    )


def test_openmetrics_has_the_same_samples_in_seconds_and_ends_in_eof(small_cli: Runner) -> None:
    result = small_cli("telemetry", "export", "--format", "openmetrics")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout.endswith("\n# EOF\n")
    assert _samples(result.stdout, openmetrics=True) == _approx(EXPECTED)
    assert all(line.endswith(".000") for line in _sample_lines(result.stdout))


def _sample_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


HOSTILE = 'q"uo\\te\nnext'


def test_labels_are_escaped_milliseconds_kept_unknown_rates_left_out(cli: Runner) -> None:
    # A build with awkward label values that starts 123 ms into a second, and one that
    # reported no targets (as `record -- make` stores it): no rates, counts of 0.
    events = [
        {"event": "build_started", "session": HOSTILE, "ts": A + 123, "tool": "t\\", "branch": "b"},
        {"event": "target_finished", "session": HOSTILE, "ts": A + 623, "target": "//x",
         "status": "built", "duration_ms": 500},
        {"event": "build_finished", "session": HOSTILE, "ts": A + 1123, "success": True},
        {"event": "build_started", "session": "make", "ts": B, "tool": "make"},
        {"event": "build_finished", "session": "make", "ts": B + 250, "success": False},
    ]  # fmt: skip
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(map(json.dumps, events)).encode())
    assert stored.code == 0, stored.stderr
    hostile = {"session": HOSTILE, "tool": "t\\", "branch": "b"}
    make = {"session": "make", "tool": "make"}
    expected: dict[Key, tuple[float, int]] = {}
    for labels, at, samples in (
        # 1 target built, 500 ms on 1 worker (the peak) in 1000 ms; 1 target in 1 s.
        (hostile, A + 123, {"duration_seconds": 1.0, "cache_hit_ratio": 0.0,
                            "parallelism_utilization_ratio": 0.5, "targets_per_second": 1.0,
                            "succeeded": 1}),
        (make, B, {"duration_seconds": 0.25, "succeeded": 0}),
    ):  # fmt: skip
        for name, value in samples.items():
            expected[(f"builder_build_{name}", frozenset(labels.items()))] = (value, at)
        for status, count in zip(
            ("built", "cached", "failed", "skipped"),
            (1, 0, 0, 0) if labels is hostile else (0, 0, 0, 0),
            strict=True,
        ):
            expected[("builder_build_targets", frozenset({**labels, "status": status}.items()))] = (
                count,
                at,
            )
    for fmt in ("prometheus", "openmetrics"):
        result = cli("telemetry", "export", "--format", fmt)
        assert (result.code, result.stderr) == (0, "")
        assert _samples(result.stdout, openmetrics=fmt == "openmetrics") == expected
    assert 'session="q\\"uo\\\\te\\nnext",tool="t\\\\",branch="b"' in result.stdout


def test_an_empty_store_is_a_valid_empty_exposition(cli: Runner) -> None:
    for fmt in ("prometheus", "openmetrics"):
        result = cli("telemetry", "export", "--format", fmt)
        assert result.code == 0
        assert _samples(result.stdout, openmetrics=fmt == "openmetrics") == {}


@pytest.mark.parametrize("fmt", ["json", "csv", "prometheus"])
def test_compress_writes_one_zstd_frame_of_the_same_bytes(
    small_cli: Runner, tmp_path: Path, fmt: str
) -> None:
    plain, named, flagged = tmp_path / "plain", tmp_path / f"out.{fmt}.zst", tmp_path / "flagged"
    assert small_cli("telemetry", "export", "--format", fmt, "--output", str(plain)).code == 0
    # A name ending in .zst asks for zstd by itself; --compress asks for it whatever the name.
    assert small_cli("telemetry", "export", "--format", fmt, "-o", str(named)).code == 0
    flags = ("--format", fmt, "-o", str(flagged), "--compress", "zstd")
    assert small_cli("telemetry", "export", *flags).code == 0
    expected = plain.read_bytes()
    assert expected.startswith(b"{" if fmt == "json" else b"startTime" if fmt == "csv" else b"#")
    for compressed in (named, flagged):
        frame = compressed.read_bytes()
        assert frame.startswith(b"\x28\xb5\x2f\xfd")  # the zstd frame's magic number
        assert zstandard.ZstdDecompressor().decompress(frame) == expected
        zstd = shutil.which("zstd")
        if zstd:  # the reference tool, where it is installed
            done = subprocess.run([zstd, "-dc", str(compressed)], capture_output=True, check=True)
            assert done.stdout == expected


def test_compress_to_a_pipe(tmp_path: Path) -> None:
    store = tmp_path / "telemetry"
    env = process_env(store)
    history = "\n".join(small_history()).encode()
    subprocess.run([BUILDER, "telemetry", "ingest", "-"], input=history, env=env, check=True)
    run = [BUILDER, "telemetry", "export", "--format", "csv"]
    plain = subprocess.run(run, capture_output=True, env=env, check=True)
    packed = subprocess.run([*run, "--compress", "zstd"], capture_output=True, env=env, check=True)
    assert packed.stderr == b""
    assert zstandard.ZstdDecompressor().decompress(packed.stdout) == plain.stdout


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
@pytest.mark.parametrize("how", [("--compress", "zstd"), ("--output", "builds.zst")])
def test_binary_formats_refuse_compression(
    small_cli: Runner, tmp_path: Path, fmt: str, how: tuple[str, str]
) -> None:
    result = small_cli("telemetry", "export", "--format", fmt, *how)
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {fmt} compresses inside the file; ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "builds.zst").exists()
