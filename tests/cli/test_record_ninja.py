"""`builder record -- ninja`: ninja's output passes through unchanged, through a pipe or a
pseudo-terminal, and the commands it reports as failed are stored as failed targets with
their error and the time they ran. A real ninja (the PyPI package, and the system's when
there is one) builds each project twice, once on its own and once under `builder`, and the
two runs are compared; the builds synchronise on files, never on time."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.ipc as ipc
import pytest

from tests.conftest import BUILDER, ninja_version, ninjas, process_env

COLUMNS = 40  # narrower than the status lines: ninja elides them to the terminal's width


NINJAS = ninjas()


@pytest.fixture(params=NINJAS, ids=[ninja_version(n) for n in NINJAS])
def ninja(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _fresh(project: Path, manifest: str) -> None:
    """The project as it was before either build: only its manifest."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    (project / "build.ninja").write_text(manifest)


def _rows(store: Path, dataset: str) -> list[dict[str, Any]]:
    """The stored rows of ``dataset``, once the recorded builds are folded into the store."""
    subprocess.run(
        [BUILDER, "telemetry", "export"], env=process_env(store), capture_output=True, check=True
    )
    rows: list[dict[str, Any]] = []
    for path in sorted((store / dataset).rglob("*.arrow")):
        rows += ipc.open_file(path).read_all().to_pylist()
    return rows


def _ms(moment: datetime) -> int:
    """A stored timestamp as epoch milliseconds."""
    return round(moment.timestamp() * 1000)


def _ran(path: Path) -> tuple[int, int]:
    """The epoch milliseconds a command wrote as it began and as it ended (`date +%s%N`),
    rounded down as stored times are."""
    began, ended = (int(line) for line in path.read_text().split())
    return began // 1_000_000, ended // 1_000_000


def _log(project: Path) -> dict[str, tuple[int, int]]:
    """Each output's start and end in ``.ninja_log``, as ninja wrote them."""
    lines = (project / ".ninja_log").read_text().splitlines()[1:]
    return {f[3]: (int(f[0]), int(f[1])) for f in (line.split("\t") for line in lines)}


# One compile fails while two others run: it waits until both have started (and the clock
# has passed the millisecond they wrote), so the three overlap. one.o ends once ninja has
# printed FAILED, and two.o once ninja has printed one.o as done, so ninja prints the same
# lines in the same order every time.
PARALLEL = """\
rule ok
  command = date +%s%3N > $out.now && mv $out.now $out.started && $
      until grep -q '$after' ../stdout; do sleep 0.01; done && touch $out
  description = OK $out
rule bad
  command = date +%s%N > $out.ran; $
      until [ -e one.o.started ] && [ -e two.o.started ] && $
          [ $$(date +%s%3N) -gt $$(cat one.o.started) ] && $
          [ $$(date +%s%3N) -gt $$(cat two.o.started) ]; do sleep 0.01; done; $
      echo "$$HOME/proj/bad.c:3:1: error: expected ';'"; $
      echo "1 error generated." >&2; date +%s%N >> $out.ran; exit 1
  description = CC $out
build one.o: ok
  after = FAILED
build bad.o: bad
build two.o: ok
  after = OK one.o
build app: ok one.o bad.o two.o
  after = never
"""


def _run_to_file(argv: list[str], project: Path, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    stdout = project.parent / "stdout"
    with stdout.open("wb") as handle:
        done = subprocess.run(
            argv, cwd=project, env=env, stdout=handle, stderr=subprocess.PIPE, timeout=60
        )
    return done.returncode, stdout.read_bytes(), done.stderr


def test_a_failing_command_among_parallel_ones_is_a_failed_target(
    tmp_path: Path, ninja: str
) -> None:
    home = tmp_path / "home" / "qzvxw"
    store = tmp_path / "store"
    env = process_env(store, HOME=str(home))
    project = tmp_path / "proj"
    _fresh(project, PARALLEL)
    direct = _run_to_file([ninja, "-j3"], project, env)
    _fresh(project, PARALLEL)
    recorded = _run_to_file([BUILDER, "record", "--", ninja, "-j3"], project, env)

    # The build's exit status, stdout and stderr are ninja's own, byte for byte.
    assert recorded == direct
    assert direct[0] == 1 and b"FAILED: " in direct[1]

    [session] = _rows(store, "sessions")
    targets = {row["target"]: row for row in _rows(store, "targets")}
    assert {name: row["status"] for name, row in targets.items()} == {
        "one.o": "built",
        "two.o": "built",
        "bad.o": "failed",
        "app": "skipped",  # never attempted: one of its inputs failed
    }
    assert (session["built"], session["failed"], session["skipped"]) == (2, 1, 1)
    # What the compile printed, without the home directory; never the user's name.
    assert targets["bad.o"]["error"] == "~/proj/bad.c:3:1: error: expected ';'\n1 error generated."
    for path in store.rglob("*"):
        assert path.is_dir() or b"qzvxw" not in path.read_bytes()

    # The failed compile ran over the time it says it ran, and counts in concurrency: the
    # three ran at once, and its time is in the build's executed time beside the others'.
    bad = targets["bad.o"]
    began, ended = _ran(project / "bad.o.ran")
    assert _ms(bad["start_time"]) <= began and _ms(bad["end_time"]) >= ended
    assert bad["duration_ms"] == _ms(bad["end_time"]) - _ms(bad["start_time"])
    log = _log(project)
    assert set(log) == {"one.o", "two.o"}
    assert session["peak_concurrency"] == 3
    built = sum(end - start for start, end in log.values())
    assert session["executed_ms"] == built + bad["duration_ms"]


def test_a_broken_incremental_build_counts_the_time_its_compile_ran(
    tmp_path: Path, ninja: str
) -> None:
    # The one command left to run fails after a while: the build executed for that while.
    manifest = (
        "rule cc\n"
        "  command = date +%s%N > $out.ran; until [ -e ../go ]; do sleep 0.01; done; "
        "echo 'main.c:1: error'; date +%s%N >> $out.ran; exit 1\n"
        "build main.o: cc\n"
    )
    store = tmp_path / "store"
    project = tmp_path / "proj"
    _fresh(project, manifest)
    process = subprocess.Popen(
        [BUILDER, "record", "--", ninja],
        cwd=project,
        env=process_env(store),
        stdout=subprocess.PIPE,
    )
    _until((project / "main.o.ran").exists)
    (tmp_path / "go").touch()
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 1 and b"main.c:1: error" in stdout

    [session] = _rows(store, "sessions")
    [target] = _rows(store, "targets")
    began, ended = _ran(project / "main.o.ran")
    assert (target["target"], target["status"], target["error"]) == (
        "main.o",
        "failed",
        "main.c:1: error",
    )
    assert _ms(target["start_time"]) <= began and _ms(target["end_time"]) >= ended
    assert session["executed_ms"] == target["duration_ms"] >= ended - began
    assert session["peak_concurrency"] == 1


def _on_a_terminal(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    on_output: Callable[[bytes, int], None] = lambda output, terminal: None,
) -> tuple[int, bytes]:
    """Run ``argv`` with a new pseudo-terminal, ``COLUMNS`` wide, as its controlling terminal
    and standard streams, as a terminal emulator does; its exit status and all it printed.
    ``on_output`` sees what was printed so far after each read, with the terminal's side to
    type on."""
    pid, terminal = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    output = bytearray()
    while True:
        try:
            data = os.read(terminal, 65536)
        except OSError:  # EIO: everyone on the terminal has gone
            break
        if not data:
            break
        output += data
        on_output(bytes(output), terminal)
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    return os.waitstatus_to_exitcode(status), bytes(output)


# A pool runs one command at a time: bad.o starts only once gate.o has ended, which ninja's
# manifest says and its graph does not. The test lets gate.o end once ninja has shown it.
POOLED = """\
pool serial
  depth = 1
rule gate
  command = until [ -e ../go ]; do sleep 0.01; done; touch $out
  description = GATE $out, which takes a long description
  pool = serial
rule bad
  command = date +%s%N > $out.ran; echo 'bad.c:1: error: nope'; date +%s%N >> $out.ran; exit 1
  description = CC $out, which takes a long description too
  pool = serial
build gate.o: gate
build bad.o: bad
build app: gate gate.o bad.o
"""


def test_on_a_terminal_ninja_still_sees_one_and_its_failures_are_read(
    tmp_path: Path, ninja: str
) -> None:
    store = tmp_path / "store"
    env = process_env(store, TERM="xterm")
    project = tmp_path / "proj"

    def let_the_gate_end(output: bytes, terminal: int) -> None:
        if b"GATE" in output:
            (tmp_path / "go").touch()

    runs = []
    for argv in ([ninja, "-j4"], [BUILDER, "record", "--", ninja, "-j4"]):
        _fresh(project, POOLED)
        (tmp_path / "go").unlink(missing_ok=True)
        runs.append(_on_a_terminal(argv, cwd=project, env=env, on_output=let_the_gate_end))
    direct, recorded = runs

    # Everything ninja printed reached the terminal as it was: its one-line status (redrawn
    # with "\r" and erased to the end of the line), cut to the terminal's width, and its
    # colours, which ninja only uses on a terminal.
    assert recorded == direct
    assert direct[0] == 1
    assert b"\x1b[K" in direct[1] and b"\x1b[31mFAILED: " in direct[1]
    assert b"..." in direct[1]  # elided to COLUMNS

    targets = {row["target"]: row for row in _rows(store, "targets")}
    assert {name: row["status"] for name, row in targets.items()} == {
        "gate.o": "built",
        "bad.o": "failed",
        "app": "skipped",
    }
    bad = targets["bad.o"]
    assert bad["error"] == "bad.c:1: error: nope"
    _, ended = _ran(project / "bad.o.ran")
    # Ninja writes the status line before it starts the command, and FAILED: after it
    # exited; each is stored when read, which on a busy machine may be a few milliseconds
    # after the command began: the end is after the command's, the start not before the
    # line could be written (after gate.o, below), and no later than the end.
    assert _ms(bad["end_time"]) >= ended and _ms(bad["start_time"]) <= _ms(bad["end_time"])
    assert bad["duration_ms"] == _ms(bad["end_time"]) - _ms(bad["start_time"])
    # On a terminal ninja shows each command as it starts: bad.o is known to have started
    # after gate.o ended, though no input of its says so.
    assert _ms(bad["start_time"]) >= _ms(targets["gate.o"]["end_time"])
    [session] = _rows(store, "sessions")
    assert session["peak_concurrency"] == 1


# The command says which process it is, then becomes `sleep`: a shell between two commands
# carries on after a Ctrl-C that its child survived, as ninja's own would.
WAITING = """\
rule wait
  command = echo $$$$ > ../pid && mv ../pid ../started && exec sleep 30
build slow: wait
"""


# A console-pool command has the terminal ninja has. It waits (a guard: at most 10 s) until
# that terminal is the size the test gives its own, then says the size it sees.
RESIZED = """\
rule size
  command = touch ../ready; for i in $$(seq 1000); do $
      [ "$$(stty size -F /proc/$$$$/fd/1)" = "30 100" ] && break; sleep 0.01; done; $
      stty size -F /proc/$$$$/fd/1
  pool = console
build x: size
"""


def test_a_change_of_the_terminals_size_reaches_ninjas_terminal(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    _fresh(project, RESIZED)
    resized: list[None] = []

    def resize(output: bytes, terminal: int) -> None:
        # As a terminal emulator does when its window changes: the kernel then sends
        # SIGWINCH to the terminal's foreground process group.
        if not resized:
            _until((tmp_path / "ready").exists)
            fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            resized.append(None)

    status, output = _on_a_terminal(
        [BUILDER, "record", "--", NINJAS[0]],
        cwd=project,
        env=process_env(tmp_path / "store", TERM="xterm"),
        on_output=resize,
    )
    assert status == 0
    assert b"30 100\r\n" in output


def _until(condition: Callable[[], bool]) -> None:
    """Wait for what a build does (a guard against a hang, not a timer)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "the build never got there"
        time.sleep(0.01)


def _sleeping(marker: Path) -> bool:
    """Whether the command that wrote ``marker`` has become `sleep`."""
    if not marker.exists():
        return False
    cmdline = Path(f"/proc/{marker.read_text().strip()}/cmdline")
    return cmdline.exists() and cmdline.read_bytes().startswith(b"sleep\0")


def _ctrl_c_once(marker: Path) -> Callable[[bytes, int], None]:
    typed: list[int] = []

    def ctrl_c(output: bytes, terminal: int) -> None:
        # Typed on the terminal: its line discipline sends SIGINT to its foreground process
        # group, builder and ninja alike.
        if not typed:
            _until(lambda: _sleeping(marker))
            typed.append(os.write(terminal, b"\x03"))

    return ctrl_c


def test_ctrl_c_on_a_terminal_stops_ninja_as_without_builder(tmp_path: Path, ninja: str) -> None:
    store = tmp_path / "store"
    env = process_env(store, TERM="xterm")
    project = tmp_path / "proj"
    marker = tmp_path / "started"
    runs = []
    for argv in ([ninja], [BUILDER, "record", "--", ninja]):
        _fresh(project, WAITING)
        marker.unlink(missing_ok=True)
        runs.append(_on_a_terminal(argv, cwd=project, env=env, on_output=_ctrl_c_once(marker)))
    direct, recorded = runs
    assert recorded == direct
    assert b"interrupted by user" in direct[1]
    [session] = _rows(store, "sessions")
    assert (session["interrupted"], session["succeeded"]) == (True, False)


def test_ctrl_c_to_the_process_group_stops_ninja_as_without_builder(
    tmp_path: Path, ninja: str
) -> None:
    store = tmp_path / "store"
    project = tmp_path / "proj"
    runs = []
    for argv in ([ninja], [BUILDER, "record", "--", ninja]):
        _fresh(project, WAITING)
        marker = tmp_path / "started"
        marker.unlink(missing_ok=True)
        process = subprocess.Popen(
            argv,
            cwd=project,
            env=process_env(store),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        _until(lambda: _sleeping(marker))  # noqa: B023 - called before the loop moves on
        os.killpg(process.pid, signal.SIGINT)  # as a terminal sends Ctrl-C
        stdout, stderr = process.communicate(timeout=60)
        runs.append((process.returncode, stdout, stderr))
    direct, recorded = runs
    assert recorded == direct
    assert direct[1] == b"ninja: build stopped: interrupted by user.\n"
    [session] = _rows(store, "sessions")
    assert (session["interrupted"], session["succeeded"]) == (True, False)


def test_a_line_like_ninjas_in_a_commands_output_is_not_a_failure(tmp_path: Path) -> None:
    manifest = "rule say\n  command = echo 'FAILED: elsewhere ' && touch $out\nbuild said: say\n"
    project = tmp_path / "proj"
    _fresh(project, manifest)
    done = subprocess.run(
        [BUILDER, "record", "--", NINJAS[0]],
        cwd=project,
        env=process_env(tmp_path / "store"),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0 and b"\nFAILED: elsewhere \n" in done.stdout
    assert [(row["target"], row["status"]) for row in _rows(tmp_path / "store", "targets")] == [
        ("said", "built")
    ]


# A console-pool command has ninja's own stdout: it says what that is.
CONSOLE = """\
rule where
  command = echo $$(readlink /proc/$$$$/fd/1) > ../where
  pool = console
build x: where
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize(
    ("options", "stdout"),
    [([], "pipe:"), (["--source", "none"], "file"), (["--source", "ninja"], "pipe:")],
)
def test_ninjas_stdout_is_read_only_when_its_targets_are_recorded(
    tmp_path: Path, options: list[str], stdout: str
) -> None:
    project = tmp_path / "proj"
    _fresh(project, CONSOLE)
    out = tmp_path / "out"
    with out.open("wb") as handle:
        done = subprocess.run(
            [BUILDER, "record", *options, "--", NINJAS[0]],
            cwd=project,
            env=process_env(tmp_path / "store"),
            stdout=handle,
            check=False,
        )
    assert done.returncode == 0
    where = (tmp_path / "where").read_text().strip()
    assert where == str(out) if stdout == "file" else where.startswith(stdout)


def test_other_builds_keep_builders_stdout_and_load_nothing_to_read_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted({'telemetry.ninja_output', 'termios', 'pty'}"
        " & set(sys.modules)), file=sys.stderr))\n"
        "from telemetry.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    with out.open("wb") as handle:
        done = subprocess.run(
            [sys.executable, "-c", code, "record", "--", "sh", "-c", "readlink /proc/$$/fd/1"],
            env=process_env(tmp_path / "store"),
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert (done.returncode, done.stderr) == (0, "[]\n")
    assert out.read_text() == f"{out}\n"


def test_what_the_output_says_when_read_by_itself() -> None:
    """The reading on its own, fed what ninja 1.11 and 1.13 print on a terminal: escapes
    removed before matching, the exit code of 1.13 left out, a failed command's start taken
    from its status line only when that description was shown once before."""
    from telemetry.ninja_output import Failure, FailureReader

    reader = FailureReader(environ={"HOME": "/home/ana"}, terminal=True)
    stream = [
        (b"\r[0/3] CC a.o\x1b[K\r[0/3] CC b.o\x1b[K", 10),
        (b"\r[1/3] CC a.o\x1b[K\n\x1b[31mFAILED: [code=1] \x1b[0ma.o \ncc -c a.c\n", 30),
        (b"\x1b[1m/home/ana/a.c:1:\x1b[0m error: \x1b[31mbad\x1b[0m\n\n", 31),
        (b"\r[2/3] CC b.o\x1b[K\n\x1b[31mFAILED: \x1b[0mb.o \ncc -c b.c\n", 40),
        (b"ninja: build stopped: subcommand failed.\n", 41),
    ]
    for data, at in stream:
        reader.feed(data, at)
    assert reader.failures() == [
        Failure("a.o", 30, 10, "~/a.c:1: error: bad"),
        Failure("b.o", 40, 10, None),
    ]
    piped = FailureReader(environ={})  # ninja prints a status line as a command ends
    piped.feed(b"[1/2] CC a.o\nFAILED: a.o \ncc -c a.c\n" + b"x\n" * 30, 5)
    [failure] = piped.failures()
    assert (failure.start_ms, failure.error) == (None, "\n".join(["x"] * 20) + "\n...")
    assert json.dumps(failure.error)  # storable text


def test_a_process_the_build_leaves_writing_does_not_keep_record_waiting(
    ninja: str, tmp_path: Path
) -> None:
    """Something the build starts in the background and that keeps writing to its stdout
    (`yes &`) is not waited for without end: `record` stops reading a while after the build
    exited and exits with its status; the writer then gets SIGPIPE, as a closed pipe gives."""
    project = tmp_path / "p"
    _fresh(project, "rule touch\n  command = touch $out\nbuild a: touch\n")
    store = tmp_path / "store"
    script = "ninja && (yes 2> /dev/null &) ; exit 5"
    env = process_env(store, PATH=f"{Path(ninja).parent}:{os.environ['PATH']}")
    # (The timeout only keeps a regression from hanging the suite.)
    done = subprocess.run([BUILDER, "record", "--source", "ninja", "--", "sh", "-c", script],
                          cwd=project, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=300)  # fmt: skip
    assert (done.returncode, done.stderr) == (5, b"")
    [session] = _rows(store, "sessions")
    assert (session["succeeded"], session["built"]) == (False, 1)
