"""Progress bars on stderr: the line a bar draws, when it is drawn (a terminal that is not a
dumb one, after its delay, throttled, once more at the end) and erased; and in a real
terminal (a pseudo-terminal), ``ingest`` and ``jobs run all`` with their bars, which leave
nothing behind, while piped runs write exactly what they did before."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from telemetry.cli.progress import ERASE, Bar, Line, bar, job_bars, render
from tests.conftest import BUILDER, Runner, process_env, small_history, small_history_on
from tests.test_progress import noisy_history

# -- the line ----------------------------------------------------------------------------------


def test_a_bar_of_bytes_with_a_total() -> None:
    # 60 columns, the last left empty: 59. Around the bar: "ingest [" (8), "] " (2), " 45%" (4),
    # "  " (2) and "12.3/27.0 MB" (12): 28, so the bar is 31 wide, 31 * 12.3 / 27 = 14.1 of
    # it filled; 12.3 / 27 = 45.6%, shown as 45 (never 100 before the end).
    assert render("ingest", "bytes", 12_300_000, 27_000_000, 60) == (
        "ingest [" + "#" * 14 + "." * 17 + "]  45%  12.3/27.0 MB"
    )


def test_a_bar_of_days_at_the_default_width() -> None:
    # 79 columns: "compact [" (9), "] " (2), "  5%" (4), "  " (2), " 3/60 days" (10: the
    # count as wide as the total, so the bar keeps its length) leave 52, 52 * 3 / 60 = 2.6
    # of them filled.
    line = render("compact", "days", 3, 60, 80)
    assert line == "compact [##" + "." * 50 + "]   5%   3/60 days"
    assert len(line) == 79
    assert len(render("compact", "days", 59, 60, 80)) == 79


def test_the_end_of_a_bar_and_big_counts() -> None:
    # 39 - len("months [] 100%  3/3 days") = 15.
    assert render("months", "days", 3, 3, 40) == "months [" + "#" * 15 + "] 100%  3/3 days"
    # Nothing to do is all done.
    # 39 - len("retention [] 100%  0/0 days") = 12.
    assert render("retention", "days", 0, 0, 40) == "retention [" + "#" * 12 + "] 100%  0/0 days"
    assert render("export", "builds", 1000, 2500, 60) == (
        # 59 - len("export [") - len("] ") - len(" 40%") - 2 - len("1,000/2,500 builds")
        # = 59 - 8 - 2 - 4 - 2 - 18 = 25, 25 * 0.4 = 10 of them filled
        "export [" + "#" * 10 + "." * 15 + "]  40%  1,000/2,500 builds"
    )


def test_a_narrow_terminal_drops_the_bar_then_cuts_the_line() -> None:
    # 30 columns leave a bar of 29 - 28 = 1: too short to read, so none.
    assert render("ingest", "bytes", 12_300_000, 27_000_000, 30) == "ingest   45%  12.3/27.0 MB"
    assert render("ingest", "bytes", 12_300_000, 27_000_000, 12) == "ingest   45"


def test_no_total_is_the_amount_alone() -> None:
    assert render("ingest", "bytes", 12_345_678, None, 80) == "ingest  12.3 MB"
    assert render("compact", "days", 2, None, 80) == "compact  2 days"


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_waits_its_delay_then_redraws_ten_times_a_second() -> None:
    stream, clock = _Terminal(), _Clock()
    line = Line(stream, width=40, delay=0.5, clock=clock)
    shown = Bar(line, "compact", "days")
    shown(0, 4)
    clock.now += 0.4
    shown(1, 4)  # still within the delay: nothing, not even the end
    line.erase()  # nothing on the line: nothing to erase
    assert stream.getvalue() == ""
    clock.now += 0.2  # 0.6 s in
    shown(2, 4)
    clock.now += 0.05
    shown(3, 4)  # 0.05 s after the last: not drawn
    shown(4, 4)  # the end: drawn all the same
    line.erase()
    # 39 - 7 - 2 - 2 - 4 - 2 - len("2/4 days") = 14: 7 filled at 2 of 4, all 14 at 4.
    assert stream.getvalue() == (
        "\rcompact [#######.......]  50%  2/4 days\x1b[K"
        "\rcompact [##############] 100%  4/4 days\x1b[K"
        "\r\x1b[K"
    )


def test_what_comes_too_soon_is_drawn_at_the_next_tick() -> None:
    stream, clock = _Terminal(), _Clock()
    line = Line(stream, width=40, delay=0.5, clock=clock)
    shown = Bar(line, "ingest", "bytes")
    shown(0, None)
    line.tick()  # still within the delay
    assert stream.getvalue() == ""
    clock.now += 0.5
    line.tick()  # the delay is over: what is pending shows, though nothing came since
    shown(2_000_000, None)  # too soon after
    assert stream.getvalue() == "\ringest  0.0 MB\x1b[K"
    clock.now += 0.1
    line.tick()
    line.tick()  # nothing new: nothing drawn
    line.erase(redraw=True)  # a warning goes there
    stream.write("Warning: w\n")
    line.tick()  # and the bar comes back under it
    line.erase()
    line.tick()
    assert stream.getvalue() == (
        "\ringest  0.0 MB\x1b[K\ringest  2.0 MB\x1b[K\r\x1b[KWarning: w\n"
        "\ringest  2.0 MB\x1b[K\r\x1b[K"
    )


def _on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> _Terminal:
    """stderr a terminal 60 columns wide, bars at once. (Set in the test itself: pytest
    puts its own stderr back between a fixture and the test.)"""
    stream = _Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("BUILDER_PROGRESS_DELAY", "0")
    monkeypatch.delenv("NO_COLOR", raising=False)
    return stream


FIRST = "\ringest [" + "." * 31 + "]   0%   0.0/27.0 MB\x1b[K"
LAST = "\ringest [" + "#" * 31 + "] 100%  27.0/27.0 MB\x1b[K"


def test_a_bar_draws_its_start_and_end_then_erases_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _on_a_terminal(monkeypatch)
    with bar("ingest", "bytes") as told:
        told(0, 27_000_000)
        told(27_000_000, 27_000_000)
        assert terminal.getvalue() == FIRST + LAST
    assert terminal.getvalue() == FIRST + LAST + ERASE


def test_a_bar_is_erased_when_the_work_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _on_a_terminal(monkeypatch)
    with pytest.raises(KeyboardInterrupt), bar("ingest", "bytes") as told:
        told(0, 27_000_000)
        raise KeyboardInterrupt
    assert terminal.getvalue() == FIRST + ERASE


def test_no_redraw_comes_between_the_erase_and_a_slow_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A warning written while the redrawing thread ticks (a slow terminal, the GIL
    elsewhere) still follows the erase directly: the warning waits for a tick of that
    thread to finish before it writes. Under the line's lock the tick cannot finish until
    the warning is written, so the wait ends unanswered and the order holds; without the
    lock the tick would draw the bar first."""
    terminal = _on_a_terminal(monkeypatch)
    ticked = threading.Event()
    tick = Line.tick

    def told_tick(self: Line) -> None:
        tick(self)
        ticked.set()

    monkeypatch.setattr(Line, "tick", told_tick)

    def slow(message: Warning | str, *args: object, **kwargs: object) -> None:
        ticked.clear()
        ticked.wait(1.0)  # a tick that ends before this warning is written, if one can
        terminal.write(f"Warning: {message}\n")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", slow)
        with bar("ingest", "bytes") as told:
            told(0, 27_000_000)
            warnings.warn("skipping a damaged file", UserWarning, stacklevel=1)
            told(27_000_000, 27_000_000)
    assert terminal.getvalue().startswith(FIRST + ERASE + "Warning: skipping a damaged file\n")


def test_a_warning_meanwhile_erases_the_bar_first(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _on_a_terminal(monkeypatch)

    def show(message: Warning | str, *args: object, **kwargs: object) -> None:
        terminal.write(f"Warning: {message}\n")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", show)
        with bar("ingest", "bytes") as told:
            told(0, 27_000_000)
            warnings.warn("skipping a damaged file", UserWarning, stacklevel=1)
            told(27_000_000, 27_000_000)
        assert warnings.showwarning is show  # put back
    # The bar comes back under the warning: at the end, or sooner when a tick comes first.
    said = terminal.getvalue()
    assert said.startswith(FIRST + ERASE + "Warning: skipping a damaged file\n")
    assert said.endswith(LAST + ERASE)
    assert said.count(LAST) == 1 and said.count(FIRST) in (1, 2)


def test_each_job_draws_over_the_one_before(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _on_a_terminal(monkeypatch)
    with job_bars() as start:
        start("compact")(1, 1)
        start("retention")
    # 59 - 7 - 2 - 2 - 4 - 2 - len("1/1 days") = 34.
    assert terminal.getvalue() == (
        "\rcompact\x1b[K\rcompact [" + "#" * 34 + "] 100%  1/1 days\x1b[K\rretention\x1b[K" + ERASE
    )


@pytest.mark.parametrize(
    ("env", "stream"),
    [({}, io.StringIO()), ({"TERM": "dumb"}, _Terminal())],
    ids=["not-a-terminal", "a-dumb-terminal"],
)
def test_nothing_at_all_where_nobody_watches(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], stream: io.StringIO
) -> None:
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("BUILDER_PROGRESS_DELAY", "0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with bar("ingest", "bytes") as told, job_bars() as start:
        told(0, 10)
        told(10, 10)
        start("compact")(1, 1)
    with bar("export", "builds", shown=False) as told:  # the export goes to the terminal
        told(1, 1)
    assert stream.getvalue() == ""


def test_no_color_does_not_turn_a_bar_off(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _on_a_terminal(monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    with bar("ingest", "bytes") as told:
        told(0, 27_000_000)
    assert terminal.getvalue() == FIRST + ERASE


@pytest.mark.parametrize(
    "value", ["soon", "-1", "nan", "1_0"], ids=["words", "negative", "nan", "underscore"]
)
def test_an_unusable_delay_is_an_error_where_a_bar_would_show(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from telemetry.errors import ConfigError

    _on_a_terminal(monkeypatch)
    monkeypatch.setenv("BUILDER_PROGRESS_DELAY", value)
    expected = (
        "BUILDER_PROGRESS_DELAY must be a number of seconds of at least 0 (e.g. 0.5), "
        f"got {value!r}"
    )
    with pytest.raises(ConfigError) as raised, bar("ingest", "bytes"):
        pass
    assert str(raised.value) == expected


def test_an_unusable_delay_is_not_read_where_nobody_watches(cli: Runner, tmp_path: Path) -> None:
    # stderr is not a terminal here: no bar, so the setting has nothing to say.
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    done = cli("telemetry", "ingest", str(events), env={"BUILDER_PROGRESS_DELAY": "soon"})
    stored = f"Stored 3 builds from {len(small_history())} events.\n"  # an event a line
    assert (done.code, done.stdout, done.stderr) == (0, stored, "")


# -- in a real terminal ------------------------------------------------------------------------

COLUMNS = 72
# Every build of the tests' histories kept, whatever their number.
KEEP = {"BUILDER_TELEMETRY_MAX_SESSIONS": "1000000"}
FRAME = re.compile(r"\r([^\r\n]*)\x1b\[K")


def _run_in_terminal(
    args: list[str],
    tmp_path: Path,
    *,
    stdin: int | None = None,
    watch: Callable[[str, subprocess.Popen[bytes]], None] | None = None,
    **env: str,
) -> tuple[int, str]:
    """Run builder with stdout and stderr on a pseudo-terminal COLUMNS wide (stdin too,
    unless given); returns (status, screen), the screen exactly the bytes builder wrote.
    ``watch`` sees the screen as it grows."""
    environment = process_env(tmp_path / "t", TERM="xterm", BUILDER_PROGRESS_DELAY="0", **KEEP)
    environment |= env
    for name in ("COLUMNS", "LINES"):  # the terminal's own size, not the one we run in
        environment.pop(name, None)
    controller, terminal = os.openpty()
    modes = termios.tcgetattr(terminal)
    modes[1] &= ~termios.OPOST  # no CR added before LF
    termios.tcsetattr(terminal, termios.TCSANOW, modes)
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [BUILDER, *args],
        stdin=terminal if stdin is None else stdin,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        close_fds=True,
    )
    os.close(terminal)
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
            if watch is not None:
                watch(screen.decode(errors="replace"), process)
        elif process.poll() is not None:
            break
    os.close(controller)
    return process.wait(timeout=60), screen.decode()


def _piped(args: list[str], tmp_path: Path, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    done = subprocess.run(
        [BUILDER, *args], env=process_env(tmp_path / "t", **KEEP), input=stdin, capture_output=True
    )
    return done.returncode, done.stdout, done.stderr


def _frames(screen: str) -> list[str]:
    return FRAME.findall(screen)


def test_ingest_in_a_terminal_shows_its_bar_and_leaves_the_result(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip.compress(noisy_history(2000), mtime=0))
    code, screen = _run_in_terminal(["telemetry", "ingest", str(path)], tmp_path)
    assert code == 0
    frames = _frames(screen)
    bars = frames[:-1]
    # The first and the last are always drawn; each fits the terminal (71 columns).
    mb = f"{path.stat().st_size / 1e6:.1f}"
    assert re.fullmatch(rf"ingest \[\.+\]   0%  +0\.0/{mb} MB", bars[0])
    assert re.fullmatch(rf"ingest \[#+\] 100%  {mb}/{mb} MB", bars[-1])
    assert all(len(frame) == COLUMNS - 1 for frame in bars)
    percents = [int(re.search(r"(\d+)%", frame)[1]) for frame in bars]  # type: ignore[index]
    assert percents == sorted(percents)
    # Erased, then what a pipe gets (nothing on stderr), and nothing else.
    assert frames[-1] == ""
    assert screen.endswith("\r\x1b[KStored 2000 builds from 4000 events.\n")
    assert FRAME.sub("", screen) == "Stored 2000 builds from 4000 events.\n"
    shutil.rmtree(tmp_path / "t")
    assert _piped(["telemetry", "ingest", str(path)], tmp_path) == (
        0,
        b"Stored 2000 builds from 4000 events.\n",
        b"",
    )


def test_a_dumb_terminal_gets_no_bar(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip.compress(noisy_history(300), mtime=0))
    code, screen = _run_in_terminal(["telemetry", "ingest", str(path)], tmp_path, TERM="dumb")
    assert (code, screen) == (0, "Stored 300 builds from 600 events.\n")


def test_ctrl_c_erases_the_bar_and_leaves_nothing(tmp_path: Path) -> None:
    # The input comes down a pipe, and Ctrl-C once the bar shows a megabyte or more read (no
    # total: the amount alone). Then the pipe ends: a read that waits on a pipe is not cut
    # short by Ctrl-C once polars runs threads of its own, so the interrupt is taken as the
    # read returns.
    reading, writing = os.pipe()
    interrupted = threading.Event()

    def feed() -> None:
        with contextlib.suppress(OSError):  # the reader went away
            os.write(writing, noisy_history(1000))
        interrupted.wait(120)
        os.close(writing)

    def watch(screen: str, process: subprocess.Popen[bytes]) -> None:
        if not interrupted.is_set() and re.search(r"\ringest  [1-9]\.\d MB\x1b\[K", screen):
            process.send_signal(signal.SIGINT)
            interrupted.set()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        code, screen = _run_in_terminal(
            ["telemetry", "ingest", "-"], tmp_path, stdin=reading, watch=watch
        )
    finally:
        interrupted.set()
        feeder.join(timeout=60)
        os.close(reading)
    assert code == 130
    assert screen.endswith(ERASE)
    assert FRAME.sub("", screen) == ""  # no half bar, no message, no traceback
    assert all(re.fullmatch(r"ingest  \d+\.\d MB", f) for f in _frames(screen)[:-1])


def test_jobs_run_all_shows_one_bar_per_job(tmp_path: Path) -> None:
    events = "\n".join(small_history_on(0, 1, 2)).encode()
    assert _piped(["telemetry", "ingest", "-"], tmp_path, stdin=events)[0] == 0
    shutil.copytree(tmp_path / "t", tmp_path / "copy")
    code, screen = _run_in_terminal(["telemetry", "jobs", "run", "all"], tmp_path)
    assert code == 0
    frames = _frames(screen)
    # Each job's name as it starts, and its end, are always drawn: three days compacted,
    # rolled up and packed (71 columns: a bar of 71 - len("compact [] 100%  3/3 days") =
    # 46, 47 for rollup and months), and retention, which removed no day, done.
    expected = [
        "compact",
        "compact [" + "#" * 46 + "] 100%  3/3 days",
        "rollup",
        "rollup [" + "#" * 47 + "] 100%  3/3 days",
        "retention",
        "retention [" + "#" * 44 + "] 100%  0/0 days",
        "months",
        "months [" + "#" * 47 + "] 100%  3/3 days",
        "",
    ]
    assert [frame for frame in frames if frame in expected] == expected
    assert frames[-1] == ""
    # Then what a pipe gets of the same run, on the same store.
    shutil.rmtree(tmp_path / "t")
    (tmp_path / "copy").rename(tmp_path / "t")
    piped_code, out, err = _piped(["telemetry", "jobs", "run", "all"], tmp_path)
    assert (piped_code, err) == (0, b"")
    assert _no_seconds(FRAME.sub("", screen)) == _no_seconds(out.decode())
    assert screen.endswith(ERASE + FRAME.sub("", screen))
    assert "compact: compacted 3 days: 9 builds" in out.decode()


def _no_seconds(text: str) -> str:
    return re.sub(r" \(\d+\.\d s\)$", " (? s)", text, flags=re.MULTILINE)


def test_report_shows_its_steps_then_what_a_pipe_gets(tmp_path: Path) -> None:
    events = "\n".join(small_history_on(0, 1, 2)).encode()
    assert _piped(["telemetry", "ingest", "-"], tmp_path, stdin=events)[0] == 0
    args = ["telemetry", "report", "--output", str(tmp_path / "report.html")]
    code, screen = _run_in_terminal(args, tmp_path)
    assert code == 0
    frames = _frames(screen)
    # Its six steps (report/data.py STEPS): the first and the last are always drawn, at the
    # terminal's width less one (71 - len("report [] 100%  6/6 steps") = 46 for the bar).
    assert re.fullmatch(r"report \[\.+\]   0%  0/6 steps", frames[0])
    assert "report [" + "#" * 46 + "] 100%  6/6 steps" in frames
    assert frames[-1] == ""  # erased before the result
    said = FRAME.sub("", screen)
    assert said.startswith(f"Wrote {tmp_path / 'report.html'}: 9 builds started from ")
    piped_code, out, err = _piped(args, tmp_path)
    assert (piped_code, out.decode(), err) == (0, said, b"")
