"""Input that never ends, or holds a line too long to keep: memory stays bounded, and the
reading stops at the line that passed the bound, naming it, with what came before stored."""

from __future__ import annotations

import gzip
import json
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BUILDER, process_env, small_history

# What a `builder telemetry ingest` may take of address space here: far below what keeping
# a 400 MiB line (or half a gigabyte read ahead) would.
# Attacks on the store: `just torture` runs them with the rest.
pytestmark = pytest.mark.torture

ADDRESS_SPACE = 1 << 30
TOO_LONG = "the line is longer than {} (the most a line may hold; see --max-line-bytes)"


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _ingest(
    store: Path, *args: str, stdin: bytes | None = None, limited: bool = False
) -> subprocess.CompletedProcess[str]:
    """A real ``builder telemetry ingest``; ``limited`` to :data:`ADDRESS_SPACE` (then it
    must store nothing: Arrow's writer threads need more room than that leaves)."""
    return subprocess.run(
        [BUILDER, "telemetry", "ingest", *args],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        env=process_env(store),
        preexec_fn=_limited if limited else None,
        check=False,
    )


@pytest.mark.parametrize("source", ["/dev/zero", "zeros.gz"])
def test_an_endless_line_ends_the_reading_with_one_error(tmp_path: Path, source: str) -> None:
    """/dev/zero never ends and holds no newline; a gzip of 400 MiB of zeros is small on
    disk. Both stop at the bound, in bounded memory, with one error naming line 1."""
    if source == "zeros.gz":
        member = gzip.compress(bytes(1 << 20), mtime=0)
        (tmp_path / source).write_bytes(member * 400)  # members of 1 MiB each, one stream
        source = str(tmp_path / source)
    done = _ingest(tmp_path / "store", source, limited=True)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: {source} holds no build events: none of its 1 lines could be read (line 1: "
        f"{TOO_LONG.format('16 MiB')}: reading stopped here); expected one JSON event per "
        "line\n"
    )
    assert not (tmp_path / "store" / "sessions").exists()


@pytest.mark.parametrize("route", ["file", "stdin"])
def test_builds_before_a_line_too_long_are_stored_and_the_line_named(
    tmp_path: Path, route: str
) -> None:
    """Three builds, then a line of 2,000 bytes with a bound of 1,000, then a fourth build:
    the three are stored, the line is named, nothing after it is read."""
    history = small_history()
    fourth = json.dumps({"event": "build_started", "session": "d", "ts": 1761585000000})
    data = "\n".join([*history, "x" * 2000, fourth]) + "\n"
    args = ["--max-line-bytes", "1000"]
    if route == "file":
        (tmp_path / "events.jsonl").write_text(data)
        done = _ingest(tmp_path / "store", *args, str(tmp_path / "events.jsonl"))
        name = str(tmp_path / "events.jsonl")
    else:
        done = _ingest(tmp_path / "store", *args, "-", stdin=data.encode())
        name = "<stdin>"
    line = len(history) + 1
    assert (done.returncode, done.stdout) == (1, f"Stored 3 builds from {len(history)} events.\n")
    assert done.stderr == (
        f"{name}:{line}: {TOO_LONG.format('1000 bytes')}: reading stopped here\n"
        "Skipped 1 malformed line.\n"
    )
    export = subprocess.run([BUILDER, "telemetry", "export"], capture_output=True, text=True,
                            env=process_env(tmp_path / "store"), check=True)  # fmt: skip
    assert [s["sessionId"] for s in json.loads(export.stdout)["sessions"]] == ["a", "b", "c"]


@pytest.mark.parametrize("excess", [-1, 0, 1])
@pytest.mark.parametrize("route", ["file", "stdin", "escaped"])
def test_a_line_at_the_bound_is_read_and_one_byte_more_is_not(
    tmp_path: Path, excess: int, route: str
) -> None:
    """The bound counts a line's bytes without its newline, the same whichever way the
    input is read: a file in segments, stdin whole in columns, or line by line (an escape
    makes the columns decline)."""
    history = small_history()
    if route == "escaped":
        history[0] = history[0].replace('"ninja"', '"n\\u0069nja"')
    bound = 400
    last = history[-1]  # build c's end, padded with blanks JSON allows
    history[-1] = last[:-1] + " " * (bound + excess - len(last)) + "}"
    assert len(history[-1]) == bound + excess
    data = "\n".join(history) + "\n"
    args = ["--max-line-bytes", str(bound)]
    if route == "stdin":
        done, name = _ingest(tmp_path / "store", *args, "-", stdin=data.encode()), "<stdin>"
    else:
        name = str(tmp_path / "events.jsonl")
        Path(name).write_text(data)
        done = _ingest(tmp_path / "store", *args, name)
    if excess <= 0:
        assert (done.returncode, done.stdout, done.stderr) == (
            0,
            f"Stored 3 builds from {len(history)} events.\n",
            "",
        )
    else:  # build c never finished: stored as interrupted, and the line named
        assert (done.returncode, done.stdout, done.stderr) == (
            1,
            f"Stored 3 builds (1 interrupted) from {len(history) - 1} events.\n",
            f"{name}:{len(history)}: {TOO_LONG.format('400 bytes')}: reading stopped here\n"
            "Skipped 1 malformed line.\n",
        )


def _waiting_for_input(pid: int) -> bool:
    """Whether the process's main thread sleeps in a read or a wait for input (its kernel
    wait channel), with other threads beside it (polars' and pyarrow's pools)."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
    except OSError:
        return False
    return threads > 1 and any(word in wchan for word in ("pipe", "select", "poll"))


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("sent", ["", "a build begun"])
def test_ctrl_c_ends_an_ingest_waiting_on_a_pipe(tmp_path: Path, sent: str) -> None:
    """`tail -f build.log | builder telemetry ingest -`, stopped with Ctrl-C (SIGINT) while
    the pipe is idle: it exits with 130 and no traceback. The system may hand the signal to
    any of the process's threads; it used to wait on the pipe for ever."""
    lines = [line for line in small_history() if '"a"' in line][:2] if sent else []
    process = subprocess.Popen(
        [BUILDER, "telemetry", "ingest", "-"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=process_env(tmp_path / "store"),
    )
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write("".join(line + "\n" for line in lines).encode())
    process.stdin.flush()
    deadline = time.monotonic() + 120  # a bound for a stuck start, not a timing
    while not _waiting_for_input(process.pid):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=60)
    finally:
        process.kill()
        process.stdin.close()
    assert code == 130
    assert b"Traceback" not in process.stderr.read()
    assert not (tmp_path / "store" / "sessions").exists()  # nothing finished, nothing stored
