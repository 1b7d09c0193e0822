"""Configuration from the environment: defaults, valid values, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.config import TelemetryConfig, find_dir
from telemetry.errors import ConfigError
from telemetry.window import Window


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".builder-cache").mkdir()
    monkeypatch.chdir(tmp_path)
    assert TelemetryConfig.from_env({}) == TelemetryConfig(
        enabled=True,
        dir=Path(".builder-cache/telemetry"),
        max_sessions=1000,
        retention_days=90,
        regression_threshold=1.5,
    )


def test_values() -> None:
    config = TelemetryConfig.from_env(
        {
            "BUILDER_TELEMETRY_ENABLED": "off",
            "BUILDER_TELEMETRY_DIR": "/data/t",
            "BUILDER_TELEMETRY_MAX_SESSIONS": " 500 ",
            "BUILDER_TELEMETRY_RETENTION_DAYS": "30",
            "BUILDER_TELEMETRY_REGRESSION_THRESHOLD": "2",
            "BUILDER_TELEMETRY_ROLLUP_RETENTION_DAYS": "365",
        }
    )
    assert config == TelemetryConfig(
        False, Path("/data/t"), 500, 30, 2.0, rollup_retention_days=365
    )
    assert TelemetryConfig.from_env({}).rollup_retention_days == 730


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF"])
def test_disabled_spellings(value: str) -> None:
    assert TelemetryConfig.from_env({"BUILDER_TELEMETRY_ENABLED": value}).enabled is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "BUILDER_TELEMETRY_MAX_SESSIONS",
            "abc",
            "BUILDER_TELEMETRY_MAX_SESSIONS must be a whole number from 1 to 1000000000, got 'abc'",
        ),
        ("BUILDER_TELEMETRY_MAX_SESSIONS", "0", "from 1 to 1000000000, got '0'"),
        ("BUILDER_TELEMETRY_RETENTION_DAYS", "1.5", "from 1 to 100000, got '1.5'"),
        ("BUILDER_TELEMETRY_ROLLUP_RETENTION_DAYS", "2y", "from 1 to 100000, got '2y'"),
        ("BUILDER_TELEMETRY_REGRESSION_THRESHOLD", "fast", "greater than 1"),
        ("BUILDER_TELEMETRY_REGRESSION_THRESHOLD", "0.5", "greater than 1"),
        ("BUILDER_TELEMETRY_REGRESSION_THRESHOLD", "nan", "greater than 1"),
        ("BUILDER_TELEMETRY_REGRESSION_THRESHOLD", "1_5", "greater than 1"),  # not 15
        ("BUILDER_TELEMETRY_RETENTION_DAYS", "9_0", "from 1 to 100000, got '9_0'"),  # not 90
        ("BUILDER_TELEMETRY_ENABLED", "maybe", "must be one of 1/true/yes/on"),
    ],
)
def test_bad_values_name_the_variable_and_the_value(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as error:
        TelemetryConfig.from_env({name: value})
    assert name in str(error.value)


def test_window_parsing() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    window = Window.parse("7d", "2026-11-24", now=now)
    assert window.since == datetime(2026, 11, 18, 12, tzinfo=UTC)
    assert window.until == datetime(2026, 11, 25, tzinfo=UTC)
    assert (window.first_day, window.last_day) == (
        datetime(2026, 11, 18).date(),
        datetime(2026, 11, 24).date(),
    )
    assert Window.parse("2026-11-01T10:00:00+02:00", None).since == datetime(
        2026, 11, 1, 8, tzinfo=UTC
    )
    with pytest.raises(ConfigError, match="--since must be a date"):
        Window.parse("last tuesday", None)
    with pytest.raises(ConfigError, match="must be earlier than --until"):
        Window.parse("2026-11-02", "2026-11-01")


def test_basic_iso_dates_are_whole_days_too() -> None:
    from datetime import UTC, datetime

    assert Window.parse(None, "20251027").until == datetime(2025, 10, 28, tzinfo=UTC)
    assert Window.parse("20251027", None).since == datetime(2025, 10, 27, tzinfo=UTC)


def test_a_blank_directory_means_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")
    assert TelemetryConfig.from_env({"BUILDER_TELEMETRY_DIR": "  "}).dir == (
        tmp_path / ".builder-cache" / "telemetry"
    )


# -- where the store is, found as git finds .git ----------------------------------------------


def _markers_above(folder: Path) -> list[Path]:
    """The .builder-cache and .git entries above ``folder``, which this machine decides."""
    return [
        marker
        for parent in folder.parents
        for marker in (parent / ".builder-cache", parent / ".git")
        if marker.exists()
    ]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """repo/ with src/app/ inside; the working directory is src/app."""
    deep = tmp_path / "repo" / "src" / "app"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    return tmp_path / "repo"


def test_the_nearest_builder_cache_up_from_here_holds_the_store(tree: Path) -> None:
    (tree / ".git").mkdir()
    (tree / ".builder-cache").mkdir()
    assert find_dir() == tree / ".builder-cache" / "telemetry"
    (tree / "src" / ".builder-cache").mkdir()  # nearer than the top
    assert find_dir() == tree / "src" / ".builder-cache" / "telemetry"
    (tree / "src" / "app" / ".builder-cache").mkdir()  # here: said as git says .git
    assert find_dir() == Path(".builder-cache/telemetry")


def test_a_builder_cache_beats_the_top_of_the_work_tree(tree: Path) -> None:
    # A store kept above the work tree (say, for several checkouts) is still found.
    (tree / ".builder-cache").mkdir()
    (tree / "src" / ".git").mkdir()
    assert find_dir() == tree / ".builder-cache" / "telemetry"


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_without_one_the_top_of_the_git_work_tree(tree: Path, kind: str) -> None:
    # A linked work tree or a submodule has a .git file ("gitdir: ...") instead of a folder.
    if kind == "folder":
        (tree / ".git").mkdir()
    else:
        (tree / ".git").write_text("gitdir: /elsewhere/.git/worktrees/repo\n")
    assert find_dir() == tree / ".builder-cache" / "telemetry"
    assert find_dir(tree) == tree / ".builder-cache" / "telemetry"  # asked from elsewhere


def test_at_the_top_of_the_work_tree_the_path_is_relative(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tree / ".git").mkdir()
    monkeypatch.chdir(tree)
    assert find_dir() == Path(".builder-cache/telemetry")


def test_outside_any_work_tree_the_current_directory(tree: Path) -> None:
    if _markers_above(tree):
        pytest.skip(f"this machine has {_markers_above(tree)} above the test folder")
    assert find_dir() == Path(".builder-cache/telemetry")


def test_a_removed_current_directory_means_the_plain_default(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tree / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert find_dir() == Path(".builder-cache/telemetry")


def test_the_variable_is_used_as_given(tree: Path) -> None:
    (tree / ".git").mkdir()
    assert TelemetryConfig.from_env({}).dir == tree / ".builder-cache" / "telemetry"
    # A relative value is relative to the current directory, as every path a user types.
    assert TelemetryConfig.from_env({"BUILDER_TELEMETRY_DIR": "t"}).dir == Path("t")


def test_window_bounds_are_whole_milliseconds_as_the_stored_times() -> None:
    from datetime import UTC, datetime

    window = Window.parse("2025-10-27T14:23:20.0005", "2025-10-27T14:23:20.9999")
    assert window.since == datetime(2025, 10, 27, 14, 23, 20, tzinfo=UTC)
    assert window.until == datetime(2025, 10, 27, 14, 23, 20, 999000, tzinfo=UTC)
