"""Ninja: a real ninja (the PyPI package, and the system's when there is one) builds a real C
project under `builder record`; the recorded targets are checked against what ninja did,
worked out by hand from the project's shape. Then `.ninja_log` on its own through ingest."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow.ipc as ipc
import pytest

from telemetry.errors import InputError
from telemetry.ingest.ninja import log_events, parse_log
from telemetry.ninja import NinjaRun
from tests.conftest import BUILDER, Runner, ninja_version, ninjas, process_env

SOURCES = ("lexer", "parser", "checker", "emitter")  # and main.c; app links all five objects


NINJAS = ninjas()
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


@pytest.fixture(params=NINJAS, ids=[ninja_version(n) for n in NINJAS])
def ninja(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _project(folder: Path, builddir: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        (folder / f"{name}.c").write_text(f"int {name}(void) {{ return 1; }}\n")
    calls = " + ".join(f"{name}()" for name in SOURCES)
    declarations = "".join(f"int {name}(void);\n" for name in SOURCES)
    (folder / "main.c").write_text(f"{declarations}int main(void) {{ return {calls} - 4; }}\n")
    objects = [f"{name}.o" for name in (*SOURCES, "main")]
    lines = [f"builddir = {builddir}"] if builddir else []
    lines += [
        "rule cc",
        "  command = cc -MD -MF $out.d -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = CC $out",
        "rule link",
        "  command = cc $in -o $out",
        "  description = LINK $out",
        *(f"build {obj}: cc {obj[:-2]}.c" for obj in objects),
        f"build app: link {' '.join(objects)}",
        "build everything: phony app",
        "default app",
    ]
    (folder / "build.ninja").write_text("\n".join(lines) + "\n")
    return folder


def _record(
    tmp_path: Path, *command: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUILDER, "record", "--", *command],
        capture_output=True,
        text=True,
        cwd=cwd or tmp_path,
        env=process_env(tmp_path / "store", **env),
        timeout=120,
        check=False,
    )


def _builds(tmp_path: Path, store: str = "store") -> list[dict[str, object]]:
    """Every build stored in ``tmp_path / store``, oldest first, with its targets' statuses
    read from the files."""
    exported = subprocess.run(
        [BUILDER, "telemetry", "export"],
        capture_output=True,
        text=True,
        env=process_env(tmp_path / store),
        check=True,
    )
    statuses: dict[str, dict[str, str]] = {}
    for path in (tmp_path / store / "targets").rglob("*.arrow"):
        table = ipc.open_file(path).read_all()
        for row in table.select(["session_id", "target", "status"]).to_pylist():
            statuses.setdefault(row["session_id"], {})[row["target"]] = row["status"]
    sessions = json.loads(exported.stdout)["sessions"]
    return [s | {"statuses": statuses.get(s["sessionId"], {})} for s in sessions]


def _counts(build: dict[str, object]) -> tuple[object, ...]:
    return tuple(build[k] for k in ("built", "cached", "failed", "skipped"))


def test_clean_then_incremental_then_a_compile_error(tmp_path: Path, ninja: str) -> None:
    project = _project(tmp_path / "src")
    clean = _record(tmp_path, ninja, "-C", str(project))
    assert clean.returncode == 0, clean.stderr
    assert clean.stderr == ""

    (project / "parser.c").write_text("int parser(void) { return 2 - 1; }\n")
    incremental = _record(tmp_path, ninja, "-C", str(project), "-j", "1")
    assert incremental.returncode == 0, incremental.stderr

    (project / "checker.c").write_text("int checker(void) { return undeclared; }\n")
    broken = _record(tmp_path, ninja, "-C", str(project), "-j", "1")
    assert broken.returncode == 1  # ninja's own status, passed through
    assert "FAILED: " in broken.stdout  # ninja's own output, untouched

    first, second, third = _builds(tmp_path)
    objects = {f"{name}.o" for name in (*SOURCES, "main")}
    # Clean: five compiles and the link ran.
    assert _counts(first) == (6, 0, 0, 0)
    assert first["statuses"] == dict.fromkeys(objects | {"app"}, "built")
    assert first["succeeded"] is True
    # Incremental: parser.o and the link ran; the other four objects were up to date.
    assert _counts(second) == (2, 4, 0, 0)
    assert second["statuses"] == dict.fromkeys(objects - {"parser.o"}, "cached") | {
        "parser.o": "built",
        "app": "built",
    }
    assert second["parallelism"] == 1
    # The error: checker.o failed, app was never attempted, the rest was up to date.
    assert _counts(third) == (0, 4, 1, 1)
    assert third["statuses"] == dict.fromkeys(objects - {"checker.o"}, "cached") | {
        "checker.o": "failed",
        "app": "skipped",
    }
    assert (third["succeeded"], third["error"]) == (False, "ninja exited with status 1")


def test_executed_targets_carry_ninjas_own_timings(tmp_path: Path, ninja: str) -> None:
    project = _project(tmp_path / "src")
    assert _record(tmp_path, ninja, "-C", str(project)).returncode == 0
    [build] = _builds(tmp_path)
    log = parse_log((project / ".ninja_log").read_bytes())
    durations = {e.output: e.end_ms - e.start_ms for e in log.entries}
    rows = {}
    for path in (tmp_path / "store" / "targets").rglob("*.arrow"):
        for row in ipc.open_file(path).read_all().to_pylist():
            rows[row["target"]] = row["duration_ms"]
    assert rows == durations
    assert build["durationMs"] >= max(e.end_ms for e in log.entries)  # type: ignore[operator]


def test_the_build_output_is_what_ninja_alone_prints(tmp_path: Path, ninja: str) -> None:
    direct = subprocess.run(
        [ninja, "-C", str(_project(tmp_path / "a")), "-j1"], capture_output=True, check=False
    )
    recorded = subprocess.run(
        [BUILDER, "record", "--", ninja, "-C", str(_project(tmp_path / "b")), "-j1"],
        capture_output=True,
        env=process_env(tmp_path / "store"),
        check=False,
    )
    assert direct.returncode == recorded.returncode == 0
    assert recorded.stdout == direct.stdout.replace(b"/a'", b"/b'")
    assert recorded.stderr == direct.stderr


def test_named_targets_builddir_and_a_recompacted_log(tmp_path: Path, ninja: str) -> None:
    project = _project(tmp_path / "src", builddir="out")
    assert _record(tmp_path, ninja, "-C", str(project), "lexer.o", "parser.o").returncode == 0
    log = project / "out" / ".ninja_log"
    # Pad the log with many stale duplicate lines: ninja rewrites (recompacts) it when it next
    # starts, so the lines of that build are not simply what was appended.
    text = log.read_text()
    stale = "".join(line + "\n" for line in text.splitlines()[1:] for _ in range(150))
    log.write_text(text + stale)
    size_before = log.stat().st_size
    (project / "lexer.c").write_text("int lexer(void) { return 3 - 2; }\n")
    assert _record(tmp_path, ninja, "-C", str(project), "everything").returncode == 0
    assert log.stat().st_size < size_before  # ninja did recompact it

    first, second = _builds(tmp_path)
    assert first["statuses"] == {"lexer.o": "built", "parser.o": "built"}
    objects = {f"{name}.o" for name in (*SOURCES, "main")}
    assert second["statuses"] == {
        "lexer.o": "built",  # changed
        "parser.o": "cached",  # built by the first build
        "checker.o": "built",
        "emitter.o": "built",
        "main.o": "built",
        "app": "built",
    }
    assert set(second["statuses"]) == objects | {"app"}  # the phony name is not a target


def test_a_parallel_clean_build_that_fails(tmp_path: Path, ninja: str) -> None:
    """With -k 1, ninja stops starting commands at the first failure: of the objects still
    out of date, all ready to run, only one was tried. Which one the log does not say; ninja's
    FAILED line does, and the others are skipped."""
    project = _project(tmp_path / "src")
    (project / "lexer.c").write_text("int lexer(void) { return undeclared; }\n")
    result = _record(tmp_path, ninja, "-C", str(project), "-j", "2")
    assert result.returncode == 1
    [build] = _builds(tmp_path)
    statuses = build["statuses"]
    assert isinstance(statuses, dict)
    log = parse_log((project / ".ninja_log").read_bytes())
    built = {entry.output for entry in log.entries}
    objects = {f"{name}.o" for name in (*SOURCES, "main")}
    assert "lexer.o" not in built
    left = objects - built
    expected = dict.fromkeys(built, "built") | {"app": "skipped"}
    expected |= dict.fromkeys(left, "skipped") | {"lexer.o": "failed"}
    assert statuses == expected


def test_with_k0_ninja_tries_everything_so_every_failure_is_known(
    tmp_path: Path, ninja: str
) -> None:
    project = _project(tmp_path / "src")
    (project / "lexer.c").write_text("int lexer(void) { return undeclared; }\n")
    (project / "emitter.c").write_text("int emitter(void) { return undeclared; }\n")
    assert _record(tmp_path, ninja, "-C", str(project), "-k", "0").returncode == 1
    [build] = _builds(tmp_path)
    assert build["statuses"] == {
        "lexer.o": "failed",
        "emitter.o": "failed",
        "parser.o": "built",
        "checker.o": "built",
        "main.o": "built",
        "app": "skipped",
    }


def _manifest(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "build.ninja").write_text(text)
    return folder


def test_commands_without_inputs_with_several_outputs_and_behind_a_phony(
    tmp_path: Path, ninja: str
) -> None:
    project = _manifest(
        tmp_path / "p",
        "rule touch\n  command = touch $out\n"
        "rule fail\n  command = false\n"
        "rule cp\n  command = cp $in $out\n"
        "build a: touch\n"  # no inputs, succeeds
        "build b: fail\n"  # no inputs, fails
        "build c: touch a b\n"  # waits for b
        "build gen1 gen2: fail a\n"  # two outputs, fails
        "build use2: cp gen2\n"  # waits for gen2
        "build libs: phony b\n"
        "build late: touch a || libs\n",  # waits for b through a phony name
    )
    assert _record(tmp_path, ninja, "-C", str(project), "-k", "0").returncode == 1
    [build] = _builds(tmp_path)
    assert build["statuses"] == {
        "a": "built",
        "b": "failed",
        "c": "skipped",
        "gen1": "failed",  # one command, named by its first output
        "use2": "skipped",
        "late": "skipped",
    }


def test_a_failed_regeneration_records_only_what_ran(tmp_path: Path, ninja: str) -> None:
    project = _manifest(
        tmp_path / "p",
        "rule touch\n  command = touch $out\n"
        "rule regen\n  command = false\n  generator = 1\n"
        "build build.ninja: regen config\n"
        "build a: touch\n",
    )
    (project / "config").write_text("")
    os.utime(project / "build.ninja", (1, 1))  # older than config: to be regenerated
    assert _record(tmp_path, ninja, "-C", str(project)).returncode == 1
    [build] = _builds(tmp_path)
    assert build["statuses"] == {"build.ninja": "failed"}  # the regeneration ran, and failed
    assert build["succeeded"] is False


def test_a_manifest_read_from_a_pipe_is_left_to_ninja(tmp_path: Path, ninja: str) -> None:
    manifest = "rule touch\n  command = touch $out\nbuild made: touch\n"
    done = subprocess.run(
        [BUILDER, "record", "--", ninja, "-f", "/dev/stdin"],
        input=manifest,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=process_env(tmp_path / "store"),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "made").exists()  # ninja read the whole manifest
    [build] = _builds(tmp_path)
    assert build["statuses"] == {}  # nothing can be asked of a manifest that is gone


def test_the_log_is_found_where_builddir_puts_it(tmp_path: Path, ninja: str) -> None:
    project = _manifest(
        tmp_path / "p",
        "root = .\n"
        "builddir = first\n"
        "include vars.ninja\n"
        "rule touch\n  command = touch $out\n"
        "build out/a: touch\n",
    )
    (project / "vars.ninja").write_text("builddir = ${root}/ou$\n  t\n")
    (project / "out").mkdir()
    assert _record(tmp_path, ninja, "-C", str(project)).returncode == 0
    assert (project / "out" / ".ninja_log").exists()
    [build] = _builds(tmp_path)
    assert build["statuses"] == {"out/a": "built"}


@pytest.mark.skipif(len(NINJAS) < 2, reason="needs two versions of ninja")
def test_a_wrapper_running_another_ninja_keeps_its_log(tmp_path: Path) -> None:
    """Asking a ninja of another version about a log makes it throw the log away; the
    questions are not asked then."""
    newer, older = NINJAS[0], NINJAS[1]
    project = _project(tmp_path / "src")
    wrapper = project / "wrap.sh"
    wrapper.write_text(f'#!/bin/sh\nexec {older} "$@"\n')
    wrapper.chmod(0o755)
    (project / "lexer.c").write_text("int lexer(void) { return undeclared; }\n")
    env = process_env(tmp_path / "store") | {"PATH": f"{Path(newer).parent}:/usr/bin:/bin"}
    done = subprocess.run(
        [BUILDER, "record", "--source", "ninja", "--", "./wrap.sh", "-k", "0"],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "is not the ninja that wrote" in done.stderr
    log = parse_log((project / ".ninja_log").read_bytes())  # still there
    [build] = _builds(tmp_path)
    built = dict.fromkeys((e.output for e in log.entries), "built")
    assert build["statuses"] == built | {"lexer.o": "failed"}  # as the wrapper's ninja said


def test_an_interrupted_ninja_is_stored_as_interrupted(tmp_path: Path, ninja: str) -> None:
    project = _manifest(
        tmp_path / "p", "rule wait\n  command = touch started && sleep 30\nbuild slow: wait\n"
    )
    process = subprocess.Popen(
        [BUILDER, "record", "--", ninja, "-C", str(project)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=process_env(tmp_path / "store"),
    )
    deadline = time.monotonic() + 20
    while not (project / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) != 0
    [build] = _builds(tmp_path)
    assert (build["interrupted"], build["statuses"]) == (True, {})


@pytest.mark.parametrize(
    "command",
    [
        ["ninja", "-t", "clean"],
        ["ninja", "-n"],
        ["ninja", "--version"],
        ["ninja", "-h"],
        ["make", "-C", "out"],
    ],
)
def test_commands_that_are_not_ninja_builds(command: list[str]) -> None:
    assert NinjaRun.prepare(command, environ=os.environ) is None


def test_ninja_command_lines_are_read_as_ninja_reads_them(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "main.ninja").write_text("builddir = obj\n")
    env = {"PATH": str(Path(NINJAS[0]).parent)}
    run = NinjaRun.prepare(
        [
            "ninja",
            "-Ca",
            f"-C{tmp_path / 'b'}",
            "-fmain.ninja",
            "-j8",
            "-k",
            "0",
            "app",
            "--",
            "-x",
        ],
        environ=env,
    )
    assert run is not None
    assert (run.directory, run.manifest, run.parallelism) == (tmp_path / "b", "main.ninja", 8)
    assert run.targets == ("app", "-x")
    assert run.log_path == tmp_path / "b" / "obj" / ".ninja_log"
    run.close()
    out = tmp_path / "out"
    out.mkdir()
    (out / "build.ninja").write_text("")
    shell = NinjaRun.prepare(["/bin/sh", "-c", f"ninja -C {out} -j3 -k0"], environ=env)
    assert shell is not None
    assert (shell.directory, shell.parallelism, shell.failures_allowed) == (out, 3, 0)
    and_then = ["/bin/sh", "-c", f"ninja -C {out} && echo done"]
    assert NinjaRun.prepare(and_then, environ=env) is None
    wrapper = NinjaRun.prepare(["./build.sh", "-C", str(out)], environ=env, source="ninja")
    assert wrapper is not None and (wrapper.directory, wrapper.same_binary) == (out, False)
    assert NinjaRun.prepare(["ninja", "-C", str(out)], environ=env, source="none") is None
    assert NinjaRun.prepare(["ninja", "-C", str(tmp_path / "nowhere")], environ=env) is None
    for run in (shell, wrapper):
        run.close()


# -- .ninja_log through ingest ---------------------------------------------------------------

# Two runs by hand: the second starts where an end time goes back (12 -> 7). Times 0 are
# placed by the outputs' mtimes: run 1 wrote a.o at 1_700_000_000_010 ms (end 10), so its
# time 0 is 1_700_000_000_000; run 2's b.o was written at 1_700_000_100_007 (end 7).
LOG = (
    b"# ninja log v5\n"
    b"0\t10\t1700000000010000000\ta.o\t1\n"
    b"2\t12\t1700000000012000000\tb.o\t2\n"
    b"1\t7\t1700000100007000000\tb.o\t3\n"
)


def test_a_ninja_log_is_one_build_per_run(cli: Runner, tmp_path: Path) -> None:
    path = tmp_path / ".ninja_log"
    path.write_bytes(LOG)
    assert cli("telemetry", "ingest", str(path)).code == 0
    sessions = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert [(s["startTime"], s["durationMs"], s["built"]) for s in sessions] == [
        ("2023-11-14T22:13:20", 12, 2),
        ("2023-11-14T22:15:00", 6, 1),
    ]
    again = cli("telemetry", "ingest", "--format", "ninja-log", str(path))
    assert again.code == 0 and "Skipped 2 builds already stored." in again.stderr


def test_damaged_ninja_log_lines_are_named_and_skipped(cli: Runner, tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(LOG + b"garbage line\n5\t4\t0\tc.o\t1\n")
    result = cli("telemetry", "ingest", str(path))
    assert result.code == 1
    assert f"{path}:5: expected 5 tab-separated fields" in result.stderr
    assert f"{path}:6: implausible entry" in result.stderr
    assert len(json.loads(cli("telemetry", "export").stdout)["sessions"]) == 2


@pytest.mark.parametrize(
    "data",
    [b"# ninja log v3\n", b"# ninja log v99\n", b"", b"# ninja log v5\n"],
)
def test_unusable_ninja_logs_are_one_error(data: bytes) -> None:
    with pytest.raises(InputError):
        log_events(data)


def test_a_recorded_build_stores_no_user_home_host_or_environment(tmp_path: Path) -> None:
    """Every stored byte of a recorded ninja build (absolute output paths under the home
    directory, in the build directory and out of it, labels naming it) is scanned for the
    user name, the home directory, the host name and an environment secret."""
    import hashlib
    import socket

    user = "qzvxwuser"
    home = tmp_path / "home" / user
    project = _project(home / "src")
    manifest = project / "build.ninja"
    absolute = home / "src" / "stamp"
    elsewhere = home / "elsewhere" / "stamp"
    elsewhere.parent.mkdir()
    manifest.write_text(
        manifest.read_text()
        + f"rule stamp\n  command = touch $out\nbuild {absolute}: stamp\nbuild {elsewhere}: stamp\n"
    )
    env = process_env(
        tmp_path / "store",
        HOME=str(home),
        USER=user,
        LOGNAME=user,
        SECRET_TOKEN="tok-8f2e61d0c4",
        BUILDER_CACHE=f"{home}/cache",
    )
    secrets = [user.encode(), str(home).encode(), b"tok-8f2e61d0c4"]
    host = socket.gethostname().encode()
    command = [BUILDER, "record", "--", NINJAS[0], "-C", str(project), "everything"]
    for opt_in in ("0", "1"):
        done = subprocess.run(
            [*command, str(absolute), str(elsewhere)],
            capture_output=True,
            env=env | {"BUILDER_TELEMETRY_HOST": opt_in},
            cwd=home,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        subprocess.run(["touch", str(absolute.with_name("lexer.c"))], check=True)
    first, second = _builds(tmp_path)
    # Stored relative to the build directory, or else without the home directory.
    statuses = first["statuses"]
    assert isinstance(statuses, dict) and {"stamp", "~/elsewhere/stamp"} <= set(statuses)
    assert first["host"] is None
    assert second["host"] == "sha256:" + hashlib.sha256(host).hexdigest()[:16]
    # The files are compressed: their bytes, and every value they hold decoded, are searched.
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    raw = b"".join(p.read_bytes() for p in files)
    values = [
        value
        for p in files
        if p.suffix == ".arrow"
        for row in ipc.open_file(p).read_all().to_pylist()
        for value in _strings(row)
    ]
    decoded = "\n".join(values).encode()
    for secret in secrets:
        assert secret not in raw and secret not in decoded
    assert host.decode() not in values  # a short host name would match anything as a part
    if len(host) > 3:
        assert host not in raw and host not in decoded


def _strings(value: object) -> list[str]:
    """Every string in a row: values, and the keys and values of maps (labels)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def test_a_real_log_is_split_into_its_runs_also_when_ingested_between_them(
    tmp_path: Path, ninja: str, cli: Runner
) -> None:
    project = _manifest(
        tmp_path / "p",
        "rule touch\n  command = touch $out\n"
        "rule slow\n  command = sleep 0.2 && touch $out\n"
        "build a: touch\nbuild b: slow\n",
    )
    log = project / ".ninja_log"
    subprocess.run([ninja, "-C", str(project), "a"], check=True, capture_output=True)
    assert cli("telemetry", "ingest", str(log)).code == 0
    # b ends later than a did: only the origins tell that a second run began.
    subprocess.run([ninja, "-C", str(project), "b"], check=True, capture_output=True)
    again = cli("telemetry", "ingest", str(log))
    assert again.code == 0 and "Skipped 1 build already stored." in again.stderr
    sessions = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert [(s["built"], s["totalTargets"]) for s in sessions] == [(1, 1), (1, 1)]
    assert sessions[1]["durationMs"] >= 200


def test_a_log_ninja_recompacted_is_one_build_per_run(
    tmp_path: Path, ninja: str, cli: Runner
) -> None:
    names = [f"out{i:02}" for i in range(40)]
    project = _manifest(
        tmp_path / "p",
        "rule touch\n  command = touch $out\n" + "".join(f"build {n}: touch\n" for n in names),
    )
    subprocess.run([ninja, "-C", str(project), "-j", "8"], check=True, capture_output=True)
    subprocess.run([ninja, "-C", str(project), "-t", "recompact"], check=True)
    assert cli("telemetry", "ingest", str(project / ".ninja_log")).code == 0
    [session] = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert session["built"] == 40


# -- one command, one target -----------------------------------------------------------------
# Ninja writes a log line for every output of a command. The commands ninja ran are counted
# from its own status lines ("[N/M] ..."), and the commands a build needs from
# `ninja -t commands`; neither comes from the log.

CMAKE = shutil.which("cmake")
# ninja's default status format, whatever the environment says.
STATUS = "[%f/%t] "


def _ran(output: str) -> int:
    """How many commands ninja ran, from its last status line ``[N/M]`` (N is M there)."""
    counts = re.findall(r"^\[(\d+)/(\d+)\] ", output, flags=re.MULTILINE)
    if not counts:
        assert "ninja: no work to do." in output
        return 0
    finished, total = counts[-1]
    assert finished == total
    return int(total)


def _needed(ninja: str, directory: Path) -> int:
    """How many commands the default targets need: the lines of ``ninja -t commands``."""
    listed = subprocess.run(
        [ninja, "-C", str(directory), "-t", "commands"], capture_output=True, text=True, check=True
    )
    return len(listed.stdout.splitlines())


def _changed(source: Path, output: Path) -> None:
    """Change ``source`` and date ``output`` a second before it, so ninja finds the output
    out of date without waiting for the clock to move on (and never dated ahead of it)."""
    source.write_text(source.read_text() + "\n")
    earlier = source.stat().st_mtime_ns - 1_000_000_000
    os.utime(output, ns=(earlier, earlier))


def _build_twice_and_ingest(
    tmp_path: Path, ninja: str, directory: Path, changes: list[tuple[Path, Path]]
) -> tuple[list[int], list[dict[str, object]], list[dict[str, object]]]:
    """A clean build, then one per change (a source changed, an output it makes dated
    before it), each recorded; then the log ingested on its own. The commands ninja ran,
    the recorded and the ingested builds."""
    ran = []
    for change in [None, *changes]:
        if change is not None:
            _changed(*change)
        done = _record(
            tmp_path, ninja, "-C", os.path.relpath(directory, tmp_path), NINJA_STATUS=STATUS
        )
        assert done.returncode == 0, done.stdout + done.stderr
        ran.append(_ran(done.stdout))
    ingest = subprocess.run(
        [BUILDER, "telemetry", "ingest", str(directory / ".ninja_log")],
        capture_output=True,
        text=True,
        env=process_env(tmp_path / "ingested"),
        check=False,
    )
    assert ingest.returncode == 0, ingest.stderr
    return ran, _builds(tmp_path), _builds(tmp_path, "ingested")


def test_a_command_with_two_outputs_is_one_target(tmp_path: Path, ninja: str) -> None:
    """One command writes gen.h, named by its absolute path first and then by its relative
    one (as CMake names its custom commands' outputs): two log lines, one command."""
    project = tmp_path / "p"
    _manifest(
        project,
        "rule gen\n  command = cp $in gen.h\n  description = GEN gen.h\n"
        "rule copy\n  command = cp $in $out\n"
        f"build {project / 'gen.h'} gen.h: gen spec.txt\n"
        f"build first.txt: copy {project / 'gen.h'}\n"
        "build second.txt: copy gen.h\n"
        "build lone.txt: copy lone.in\n",
    )
    (project / "spec.txt").write_text("spec\n")
    (project / "lone.in").write_text("lone\n")
    assert _needed(ninja, project) == 4
    changes = [
        (project / "lone.in", project / "lone.txt"),
        (project / "spec.txt", project / "gen.h"),
    ]
    ran, recorded, ingested = _build_twice_and_ingest(tmp_path, ninja, project, changes)

    assert ran == [4, 1, 3]  # all; lone.txt; gen.h with its two copies
    # Worked out from the manifest: the generator is one target, named by its first output
    # made relative to the build directory.
    commands = {"gen.h", "first.txt", "second.txt", "lone.txt"}
    assert [b["statuses"] for b in recorded] == [
        dict.fromkeys(commands, "built"),
        dict.fromkeys(commands - {"lone.txt"}, "cached") | {"lone.txt": "built"},
        dict.fromkeys(commands - {"lone.txt"}, "built") | {"lone.txt": "cached"},
    ]
    assert [(b["built"], b["totalTargets"]) for b in recorded] == [(4, 4), (1, 4), (3, 4)]
    # The log alone holds what ran, one target per command, under the same names.
    assert [b["statuses"] for b in ingested] == [
        dict.fromkeys(commands, "built"),
        {"lone.txt": "built"},
        dict.fromkeys(commands - {"lone.txt"}, "built"),
    ]
    log = parse_log((project / ".ninja_log").read_bytes())
    assert len(log.entries) == 5 + 1 + 4  # a line per output: more lines than commands


# The log ninja 1.13.2 wrote for the manifest above (built in /home/ana/proj) on Linux 6.18,
# its time stamps moved back by one constant to put the first run at 1_700_000_000_000 ms.
# Ninja 1.12 on stamps a line with the mtime of `.ninja_lock`, which it creates as it starts
# a run's first command and removes when the run ends; a file just created gets the kernel's
# coarse clock. So gen.h, started first, is stamped ...999_994_834_585: its origin (the stamp
# less the start) is 6 ms behind those the other lines of its run give (...000 and ...001).
REAL_V7 = (
    b"# ninja log v7\n"
    b"0\t2\t1699999999994834585\t/home/ana/proj/gen.h\t64e0a37df5f79c11\n"
    b"0\t2\t1699999999994834585\tgen.h\t64e0a37df5f79c11\n"
    b"1\t6\t1700000000001732958\tlone.txt\tbe6ac46bf384fa39\n"
    b"2\t7\t1700000000003595144\tfirst.txt\tc078c8772027e130\n"
    b"6\t8\t1700000000006855600\tsecond.txt\tadb0143e39d03eeb\n"
    b"1\t9\t1700000000106834584\tlone.txt\tbe6ac46bf384fa39\n"
    b"0\t2\t1700000000202834583\t/home/ana/proj/gen.h\t64e0a37df5f79c11\n"
    b"0\t2\t1700000000202834583\tgen.h\t64e0a37df5f79c11\n"
    b"3\t5\t1700000000210788065\tsecond.txt\tadb0143e39d03eeb\n"
    b"2\t7\t1700000000210163237\tfirst.txt\tc078c8772027e130\n"
)


def test_a_real_v7_log_whose_first_stamp_lags_is_one_build_per_run(
    cli: Runner, tmp_path: Path
) -> None:
    path = tmp_path / ".ninja_log"
    path.write_bytes(REAL_V7)
    assert cli("telemetry", "ingest", str(path)).code == 0
    # By hand: an origin is the stamp in ms less the start; a run's time 0, their median.
    # Run 1: 994, 994, 001 - 1, 003 - 2, 006 - 6: 000; from 0 to 8.
    # Run 2: lone.txt ends at 9, after 8, but its origin, 106 - 1, is past 000 + 8; 1 to 9.
    # Run 3, where the end goes back to 2: 202, 202, 210 - 3, 210 - 2: 207; from 0 to 7.
    commands = {"gen.h", "first.txt", "second.txt", "lone.txt"}
    builds = _builds(tmp_path, "telemetry")
    assert [(b["startTime"], b["durationMs"], b["statuses"]) for b in builds] == [
        ("2023-11-14T22:13:20", 8, dict.fromkeys(commands, "built")),
        ("2023-11-14T22:13:20", 8, {"lone.txt": "built"}),
        ("2023-11-14T22:13:20", 7, dict.fromkeys(commands - {"lone.txt"}, "built")),
    ]


@pytest.mark.parametrize("version", [5, 6, 7])
def test_a_time_stamp_behind_by_two_clock_ticks_stays_in_its_run(
    cli: Runner, tmp_path: Path, version: int
) -> None:
    """A file's time stamp comes from a coarse clock, up to two of its ticks behind (8 ms at
    Linux's 250 Hz; up to 6.12 for every file, from 6.13 for a new one): the outputs' up to
    v5, `.ninja_log`'s from v6. A run that begins 30 ms after the last one ended is still
    one of its own, though its end does not go back."""
    origin = 1_700_000_000_000
    lines = [  # start, end, output, how far its stamp lags, the run's time 0
        (0, 2, "gen.h", 8, origin),
        (1, 6, "lone.txt", 0, origin),
        (2, 7, "first.txt", 0, origin),
        (0, 9, "late.txt", 0, origin + 7 + 30),
    ]
    text = f"# ninja log v{version}\n"
    for start, end, output, lag, zero in lines:
        stamp = (zero + (start if version >= 6 else end) - lag) * 1_000_000
        text += f"{start}\t{end}\t{stamp}\t{output}\t{output}\n"
    path = tmp_path / ".ninja_log"
    path.write_text(text)
    assert cli("telemetry", "ingest", str(path)).code == 0
    builds = _builds(tmp_path, "telemetry")
    assert [(b["durationMs"], b["statuses"]) for b in builds] == [
        (7, dict.fromkeys(["gen.h", "lone.txt", "first.txt"], "built")),
        (9, {"late.txt": "built"}),
    ]


@pytest.mark.skipif(
    CMAKE is None and not os.environ.get("CI"), reason="cmake is not installed (CI installs it)"
)
def test_a_cmake_custom_command_with_two_outputs_is_one_target(tmp_path: Path, ninja: str) -> None:
    """CMake's Ninja generator lists a custom command's outputs by their relative paths and
    again by their absolute ones: four outputs, one command."""
    source, build = tmp_path / "src", tmp_path / "build"
    source.mkdir()
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\n"
        "project(twice C)\n"
        "add_custom_command(\n"
        "  OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/gen/version.h gen/stamp.txt\n"
        "  COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_CURRENT_SOURCE_DIR}/version.in gen/version.h\n"
        "  COMMAND ${CMAKE_COMMAND} -E touch gen/stamp.txt\n"
        "  DEPENDS version.in)\n"
        "add_executable(app main.c ${CMAKE_CURRENT_BINARY_DIR}/gen/version.h)\n"
        "target_include_directories(app PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/gen)\n"
    )
    (source / "version.in").write_text("#define VERSION 1\n")
    (source / "main.c").write_text('#include "version.h"\nint main(void) { return VERSION - 1; }\n')
    subprocess.run(
        [
            str(CMAKE),
            "-S",
            str(source),
            "-B",
            str(build),
            "-G",
            "Ninja",
            f"-DCMAKE_MAKE_PROGRAM={ninja}",
        ],
        capture_output=True,
        check=True,
        env=process_env(tmp_path / "unused"),
    )
    assert _needed(ninja, build) == 3  # the custom command, the compile, the link
    changes = [
        (source / "main.c", build / "CMakeFiles" / "app.dir" / "main.c.o"),
        (source / "version.in", build / "gen" / "version.h"),
    ]
    ran, recorded, ingested = _build_twice_and_ingest(tmp_path, ninja, build, changes)

    assert ran == [3, 2, 3]  # all; compile and link; all again, the header having changed
    # The custom command is one target, named by its first output (relative), in every build.
    commands = {"gen/version.h", "CMakeFiles/app.dir/main.c.o", "app"}
    assert [b["statuses"] for b in recorded] == [
        dict.fromkeys(commands, "built"),
        dict.fromkeys(commands, "built") | {"gen/version.h": "cached"},
        dict.fromkeys(commands, "built"),
    ]
    assert [(b["built"], b["totalTargets"]) for b in recorded] == [(3, 3), (2, 3), (3, 3)]
    assert [b["statuses"] for b in ingested] == [
        dict.fromkeys(commands, "built"),
        dict.fromkeys(commands - {"gen/version.h"}, "built"),
        dict.fromkeys(commands, "built"),
    ]


def _log(version: int, lines: list[tuple[int, int, str, str]], origin_ms: int) -> bytes:
    """A log as ninja ``version`` writes it for one run that began at ``origin_ms``: up to
    v5 the time stamp is the output's mtime, taken when the command ended; from v6 the
    moment the command started (nanoseconds either way)."""
    text = f"# ninja log v{version}\n"
    for start, end, output, digest in lines:
        stamp = (origin_ms + (start if version >= 6 else end)) * 1_000_000
        text += f"{start}\t{end}\t{stamp}\t{output}\t{digest}\n"
    return text.encode()


def _ingested_targets(store: Path) -> dict[str, int]:
    rows = {}
    for path in (store / "targets").rglob("*.arrow"):
        for row in ipc.open_file(path).read_all().to_pylist():
            rows[row["target"]] = row["duration_ms"]
    return rows


# One run by hand, lines in the order they finished: a compile named by its absolute path,
# a stamp under a home directory outside the build, and a custom command whose two outputs
# CMake names both ways (four lines with one start, end and hash).
OUT = "/home/ana/proj/out/"
ONE_RUN = [
    (3, 25, OUT + "x.o", "bb"),
    (5, 30, "/home/ana/.cache/tool/stamp", "cc"),
    (0, 40, "gen/a.h", "aa"),
    (0, 40, "gen/b.h", "aa"),
    (0, 40, OUT + "gen/a.h", "aa"),
    (0, 40, OUT + "gen/b.h", "aa"),
]


@pytest.mark.parametrize("version", [5, 6, 7])
def test_the_lines_of_one_command_are_one_target(cli: Runner, tmp_path: Path, version: int) -> None:
    path = tmp_path / ".ninja_log"
    path.write_bytes(_log(version, ONE_RUN, 1_700_000_000_000))
    assert cli("telemetry", "ingest", str(path)).code == 0
    [session] = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert (session["startTime"], session["durationMs"]) == ("2023-11-14T22:13:20", 40)
    assert (session["built"], session["totalTargets"]) == (3, 3)
    # The build directory is where gen/a.h's absolute name ends in its relative one.
    assert _ingested_targets(tmp_path / "telemetry") == {
        "x.o": 25 - 3,
        "~/.cache/tool/stamp": 30 - 5,
        "gen/a.h": 40 - 0,
    }


def test_a_recompacted_log_keeps_a_commands_lines_together(cli: Runner, tmp_path: Path) -> None:
    """Ninja rewrites a compacted log in no order: a command's lines need not be next to
    each other."""
    shuffled = [ONE_RUN[2], ONE_RUN[0], ONE_RUN[5], ONE_RUN[1], ONE_RUN[4], ONE_RUN[3]]
    path = tmp_path / ".ninja_log"
    path.write_bytes(_log(7, shuffled, 1_700_000_000_000))
    assert cli("telemetry", "ingest", str(path)).code == 0
    [session] = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert (session["built"], session["durationMs"]) == (3, 40)
    assert set(_ingested_targets(tmp_path / "telemetry")) == {
        "x.o",
        "~/.cache/tool/stamp",
        "gen/a.h",
    }


# Commands with their inputs drawn every way ninja's graph draws them: none (gen.h, tool),
# one input and one output (main.o, the phony name headers), explicit, implicit (| tool)
# and order-only (|| gen.h) inputs, a dependency behind a phony name (b.o on headers). The
# sleeps make one chain the longest by a wide margin: gen.h 100 ms, then b.o 300 ms, then
# lib.a and app 100 ms each; a.o (100 ms) and main.o (50 ms) finish long before.
DEPS = """\
rule gen
  command = sleep 0.1 && touch $out
rule cc
  command = sleep $t && touch $out
rule link
  command = sleep 0.1 && touch $out
build gen.h: gen
build tool: gen
build headers: phony gen.h
build a.o: cc a.src | tool || gen.h
  t = 0.1
build b.o: cc b.src || headers
  t = 0.3
build main.o: cc main.src
  t = 0.05
build lib.a: link a.o b.o
build app: link lib.a main.o
default app
"""
# The targets each command waited for, by hand from the manifest: the commands making its
# inputs (behind phony names too), in the order it names them.
DEPS_BY_HAND = {
    "gen.h": [],
    "tool": [],
    "a.o": ["tool", "gen.h"],
    "b.o": ["gen.h"],
    "main.o": [],
    "lib.a": ["a.o", "b.o"],
    "app": ["lib.a", "main.o"],
}


def _deps_rows(store: Path) -> Any:
    """``show --format json`` of the newest build stored (export folds the recorded builds
    in first)."""
    subprocess.run([BUILDER, "telemetry", "export"], env=process_env(store), check=True,
                   capture_output=True)  # fmt: skip
    shown = subprocess.run(
        [BUILDER, "telemetry", "show", "--format", "json"],
        env=process_env(store),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(shown.stdout)


def test_a_recorded_build_stores_each_commands_deps_from_ninjas_graph(
    tmp_path: Path, ninja: str
) -> None:
    project = _manifest(tmp_path / "p", DEPS)
    for name in ("a", "b", "main"):
        (project / f"{name}.src").write_text(name)
    assert _record(tmp_path, ninja, "-C", str(project), "-j", "4").returncode == 0
    clean = _deps_rows(tmp_path / "store")
    assert {t["target"]: t["deps"] for t in clean["targets"]} == DEPS_BY_HAND
    # The path, from the log's times: app waited for lib.a (main.o ended long before), lib.a
    # for b.o (a.o too), b.o for gen.h.
    log = {e.output: e for e in parse_log((project / ".ninja_log").read_bytes()).entries}
    path = clean["criticalPath"]
    assert [(t["target"], t["durationMs"]) for t in path["targets"]] == [
        (name, log[name].end_ms - log[name].start_ms) for name in ("gen.h", "b.o", "lib.a", "app")
    ]
    assert path["complete"] is True

    # Incremental: b.o, lib.a and app ran again; the others were up to date (cached, and
    # sent no start, so their deps are not known); b.o still names gen.h, which did not run.
    (project / "b.src").write_text("b, changed")
    assert _record(tmp_path, ninja, "-C", str(project), "-j", "4").returncode == 0
    again = _deps_rows(tmp_path / "store")
    assert {t["target"]: (t["status"], t["deps"]) for t in again["targets"]} == {
        name: ("built", DEPS_BY_HAND[name]) if name in ("b.o", "lib.a", "app") else ("cached", None)
        for name in DEPS_BY_HAND
    }
    assert [t["target"] for t in again["criticalPath"]["targets"]] == ["b.o", "lib.a", "app"]

    # The log ingested on its own tells nothing of the graph: no deps, no path.
    other = tmp_path / "ingested"
    subprocess.run([BUILDER, "telemetry", "ingest", str(project / ".ninja_log")],
                   env=process_env(other), check=True, capture_output=True)  # fmt: skip
    ingested = _deps_rows(other)
    assert ingested["criticalPath"] is None
    assert {t["deps"] for t in ingested["targets"]} == {None}


def test_a_failed_build_keeps_the_deps_of_what_ran(tmp_path: Path, ninja: str) -> None:
    # b.o fails: lib.a and app are skipped (not attempted, no start, no deps); with -k 0
    # ninja runs the rest.
    project = _manifest(
        tmp_path / "p",
        DEPS.replace("sleep $t && touch $out", "sleep $t && test $in != b.src && touch $out"),
    )
    for name in ("a", "b", "main"):
        (project / f"{name}.src").write_text(name)
    assert _record(tmp_path, ninja, "-C", str(project), "-k", "0").returncode == 1
    shown = _deps_rows(tmp_path / "store")
    assert {t["target"]: (t["status"], t["deps"]) for t in shown["targets"]} == {
        "gen.h": ("built", []),
        "tool": ("built", []),
        "a.o": ("built", ["tool", "gen.h"]),
        "b.o": ("failed", ["gen.h"]),
        "main.o": ("built", []),
        "lib.a": ("skipped", None),
        "app": ("skipped", None),
    }
    # The build ended with b.o's failure, which waited for gen.h.
    assert [t["target"] for t in shown["criticalPath"]["targets"]] == ["gen.h", "b.o"]
