"""Shared fixtures: a hand-computed event stream, temporary stores, and a CLI runner."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage

REPO = Path(__file__).resolve().parent.parent
# The console script installed beside this interpreter (the venv's bin/).
BUILDER = str(Path(sys.executable).with_name("builder"))
FIXTURES = REPO / "data-fixtures"
T0 = 1761575000000  # 2025-10-27T14:23:20Z
HOUR = 3_600_000


def _event(kind: str, session: str, ts: int, **fields: object) -> str:
    return json.dumps({"event": kind, "session": session, "ts": ts, **fields})


def small_history() -> list[str]:
    """Three builds whose every metric is worked out by hand in tests/test_analyzer.py.

    a: parallelism 2, compile [0,400) test [0,300) link 200 ms by duration_ms, util cached.
    b: no parallelism, compile [0,1000) test [500,1600) link [1400,2000), two cache hits.
    c: parallelism 4, compile fails over [0,3000), two targets skipped, one cache hit.
    """
    a, b, c = T0, T0 + HOUR, T0 + 2 * HOUR
    return [
        _event("build_started", "a", a, parallelism=2, tool="ninja", labels={"ci": "true"}),
        _event("target_started", "a", a, target="//app:compile", worker=0),
        _event("target_started", "a", a, target="//app:test", worker=1),
        _event("target_finished", "a", a + 300, target="//app:test", status="built"),
        _event("target_finished", "a", a + 310, target="//lib:util", status="cached"),
        _event("target_finished", "a", a + 400, target="//app:compile", status="built"),
        _event(
            "target_finished", "a", a + 700, target="//app:link", status="built", duration_ms=200
        ),
        _event("build_finished", "a", a + 1000, success=True),
        _event("build_started", "b", b, tool="bazel"),
        _event("target_started", "b", b, target="//app:compile", worker=0),
        _event("target_finished", "b", b + 5, target="//lib:util", status="cached"),
        _event("target_started", "b", b + 500, target="//app:test", worker=1),
        _event("target_finished", "b", b + 1000, target="//app:compile", status="built"),
        _event("target_started", "b", b + 1400, target="//app:link", worker=0),
        _event("target_finished", "b", b + 1600, target="//app:test", status="built"),
        _event("target_finished", "b", b + 1700, target="//lib:extra", status="cached"),
        _event("target_finished", "b", b + 2000, target="//app:link", status="built"),
        _event("build_finished", "b", b + 2000, success=True),
        _event("build_started", "c", c, parallelism=4),
        _event("target_finished", "c", c + 10, target="//lib:util", status="cached"),
        _event("target_started", "c", c, target="//app:compile", worker=0),
        _event(
            "target_finished", "c", c + 3000, target="//app:compile", status="failed", error="boom"
        ),
        _event("target_finished", "c", c + 3000, target="//app:test", status="skipped"),
        _event("target_finished", "c", c + 3000, target="//app:link", status="skipped"),
        _event(
            "build_finished",
            "c",
            c + 3000,
            success=False,
            error="Compilation failed for //app:compile",
        ),
    ]


def small_history_on(*days: int) -> list[str]:
    """small_history() again on each of ``days`` (days after 2025-10-27): its builds a, b and
    c as a0, b0, c0 on the first, a1, b1, c1 on the next, and so on."""
    lines = []
    for day in days:
        for line in small_history():
            event = json.loads(line)
            event["session"] += str(day)
            event["ts"] += day * 86_400_000
            lines.append(json.dumps(event))
    return lines


def late_build(day: int = 0) -> list[str]:
    """Build a of small_history() again as build ``late``, ``day`` days after its own."""
    lines = []
    for line in small_history():
        event = json.loads(line)
        if event["session"] == "a":
            event["session"] = "late"
            event["ts"] += day * 86_400_000
            lines.append(json.dumps(event))
    return lines


def ninjas() -> list[str]:
    """The ninjas to test with: PyPI's, beside this interpreter, and the system's when it is
    another one (Debian's 1.11 writes an older log format)."""
    found = [str(Path(sys.executable).with_name("ninja"))]
    system = shutil.which("ninja", path="/usr/bin:/usr/local/bin")
    if system and os.path.realpath(system) != os.path.realpath(found[0]):
        found.append(system)
    return [n for n in found if os.access(n, os.X_OK)]


def ninja_version(ninja: str) -> str:
    """``1.13.2`` or ``1.11.1``, as ``ninja --version`` says it (without a git suffix)."""
    done = subprocess.run([ninja, "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip().split(".git")[0]


def process_env(store: Path, **extra: str) -> dict[str, str]:
    """The environment for a real ``builder`` process: ours without BUILDER_* and NO_COLOR,
    with ``store`` as the telemetry directory and retention out of the way (the hand-made
    histories lie in 2025)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDER_", "NO_COLOR"))}
    env["BUILDER_TELEMETRY_DIR"] = str(store)
    env["BUILDER_TELEMETRY_RETENTION_DAYS"] = "100000"
    return env | extra


@pytest.fixture
def storage(tmp_path: Path) -> TelemetryStorage:
    """An empty store with no retention (the hand-made history lies in 2025)."""
    return TelemetryStorage(tmp_path / "telemetry")


@pytest.fixture
def small_store(storage: TelemetryStorage) -> TelemetryStorage:
    result = ingest_jsonl(storage, small_history())
    assert result.sessions == 3 and not result.problems
    return storage


@dataclass(slots=True, frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


Runner = Callable[..., Result]


@pytest.fixture
def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> Iterator[Runner]:
    """Run ``builder`` in this process against a store in ``tmp_path``."""
    from telemetry.cli import main

    monkeypatch.setenv("BUILDER_TELEMETRY_DIR", str(tmp_path / "telemetry"))
    monkeypatch.setenv("BUILDER_TELEMETRY_RETENTION_DAYS", "100000")
    monkeypatch.delenv("BUILDER_TELEMETRY_MAX_SESSIONS", raising=False)
    monkeypatch.delenv("BUILDER_TELEMETRY_REGRESSION_THRESHOLD", raising=False)
    monkeypatch.delenv("BUILDER_TELEMETRY_ENABLED", raising=False)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Result:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capsysbinary.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        out, err = capsysbinary.readouterr()
        code = exit_info.value.code
        return Result(code if isinstance(code, int) else 1, out.decode(), err.decode())

    yield run


@pytest.fixture
def small_cli(cli: Runner) -> Runner:
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(small_history()).encode())
    assert stored.code == 0, stored.stderr
    return cli


def spark_unavailable(reason: str) -> NoReturn:
    """Skip the Spark tests for ``reason`` (no pyspark, no Java); in CI, fail: it must run them."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the Spark tests", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@contextlib.contextmanager
def local_spark(app: str) -> Iterator[Any]:
    """A local Spark session on two cores, in UTC, quiet, with the builder-telemetry source
    registered (start one per test module: Spark starts slowly)."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        spark_unavailable("no Java runtime to run Spark (install a Java 17 JRE)")
    from pyspark.sql import SparkSession

    from telemetry.spark import register

    # Spark's Python workers run this interpreter (it would take python3 from the PATH).
    before = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName(app)
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    register(session)
    try:
        yield session
    finally:
        session.stop()
        if before is None:
            os.environ.pop("PYSPARK_PYTHON", None)
        else:
            os.environ["PYSPARK_PYTHON"] = before
