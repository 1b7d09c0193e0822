"""`builder record -- COMMAND` and `builder build`, run as real processes around real commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BUILDER, Runner, process_env


def _builder(
    args: list[str], tmp_path: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUILDER, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=process_env(tmp_path / "t", **env),
        timeout=60,
        check=False,
    )


def _sessions(tmp_path: Path) -> list[dict[str, object]]:
    exported = _builder(["telemetry", "export"], tmp_path)
    return list(json.loads(exported.stdout)["sessions"])


def test_the_build_keeps_its_streams_and_its_exit_status(tmp_path: Path) -> None:
    script = 'read line; echo "out:$line"; echo err >&2; exit 3'
    result = _builder(["record", "--", "sh", "-c", script], tmp_path, stdin="hello\n")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out:hello\n", "err\n")
    [session] = _sessions(tmp_path)
    assert (session["succeeded"], session["interrupted"], session["tool"]) == (False, False, "sh")
    assert session["error"] == "sh exited with status 3"


def test_a_successful_build_with_labels(tmp_path: Path) -> None:
    before = time.time()
    result = _builder(
        ["record", "-l", "ci=true", "--label", "config=a=b", "--", "sleep", "0.2"], tmp_path
    )
    after = time.time()
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    [session] = _sessions(tmp_path)
    assert session["succeeded"] is True
    assert session["labels"] == {"ci": "true", "config": "a=b"}
    assert 200 <= session["durationMs"] <= (after - before) * 1000  # type: ignore[operator]


def test_disabled_telemetry_runs_the_build_and_records_nothing(tmp_path: Path) -> None:
    result = _builder(
        ["record", "--", "sh", "-c", "exit 4"], tmp_path, BUILDER_TELEMETRY_ENABLED="0"
    )
    assert (result.returncode, result.stderr) == (4, "")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("env", "warning"),
    [
        (
            {"BUILDER_TELEMETRY_MAX_SESSIONS": "abc"},
            "Warning: telemetry is off for this build: BUILDER_TELEMETRY_MAX_SESSIONS must be",
        ),
        ({"BUILDER_TELEMETRY_DIR": "/dev/null/t"}, "Warning: telemetry could not store build"),
    ],
)
def test_recording_problems_never_change_the_builds_result(
    tmp_path: Path, env: dict[str, str], warning: str
) -> None:
    for status in (0, 5):
        result = _builder(
            ["record", "--", "sh", "-c", f"echo built; exit {status}"], tmp_path, **env
        )
        assert (result.returncode, result.stdout) == (status, "built\n")
        assert result.stderr.startswith(warning) and result.stderr.count("\n") == 1


def test_a_missing_command_is_an_error_like_a_shells(tmp_path: Path) -> None:
    result = _builder(["record", "--", "no-such-build-tool"], tmp_path)
    assert (result.returncode, result.stderr) == (
        127,
        "Error: no-such-build-tool: command not found\n",
    )
    assert not (tmp_path / "t" / "sessions").exists()


def _started(tmp_path: Path, *, new_group: bool) -> subprocess.Popen[str]:
    marker = tmp_path / "started"
    process = subprocess.Popen(
        [BUILDER, "record", "--", "sh", "-c", f"touch {marker}; exec sleep 30"],
        cwd=tmp_path,
        env=process_env(tmp_path / "t"),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=new_group,
    )
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    return process


def test_sigterm_reaches_the_build_and_it_is_stored_as_interrupted(tmp_path: Path) -> None:
    process = _started(tmp_path, new_group=False)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    # builder ends the way the build did: by the signal, so its caller sees it too.
    assert (process.returncode, stderr) == (-signal.SIGTERM, "")
    [session] = _sessions(tmp_path)
    assert (session["interrupted"], session["succeeded"], session["error"]) == (
        True,
        False,
        "interrupted",
    )


def test_ctrl_c_in_a_terminal_interrupts_the_build_once(tmp_path: Path) -> None:
    # Ctrl-C sends SIGINT to the whole foreground process group: builder and the build.
    process = _started(tmp_path, new_group=True)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (-signal.SIGINT, "")
    [session] = _sessions(tmp_path)
    assert session["interrupted"] is True


def test_a_bad_label_is_a_usage_error(tmp_path: Path) -> None:
    result = _builder(["record", "--label", "novalue", "--", "true"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: Invalid value for '--label': a label is KEY=VALUE")


def test_build_runs_the_configured_command(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.builder]\nbuild = "echo building \\"$0\\" && exit 0"\n'
    )
    result = _builder(["build", "--label", "ci=true"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "building /bin/sh\n", "")
    (tmp_path / "builder.toml").write_text('build = ["sh", "-c", "echo toml $1; exit 2", "sh"]\n')
    result = _builder(["build", "--", "extra arg"], tmp_path)
    assert (result.returncode, result.stdout) == (2, "toml extra arg\n")
    sessions = _sessions(tmp_path)
    assert [(s["succeeded"], s["labels"]) for s in sessions] == [
        (True, {"ci": "true"}),
        (False, {}),
    ]


def test_build_without_a_configured_command_says_how_to_add_one(tmp_path: Path) -> None:
    result = _builder(["build"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: no build command configured in ")
    assert "[tool.builder] build" in result.stderr and result.stderr.count("\n") == 1


def test_builder_settings_become_labels_for_ab_comparisons(tmp_path: Path) -> None:
    # The seed's A/B use case: BUILDER_PARALLEL=4 builder build, then =8.
    (tmp_path / "builder.toml").write_text('build = "exit 0"\n')
    for jobs in ("4", "8"):
        assert _builder(["build"], tmp_path, BUILDER_PARALLEL=jobs).returncode == 0
    assert [s["labels"] for s in _sessions(tmp_path)] == [
        {"BUILDER_PARALLEL": "4"},
        {"BUILDER_PARALLEL": "8"},
    ]


def test_the_build_starts_with_default_signal_dispositions(tmp_path: Path) -> None:
    # builder handles SIGINT itself while the build runs; the build must not inherit an
    # "ignore" (it would survive Ctrl-C). /proc shows the child's ignored-signal mask.
    script = "grep SigIgn /proc/$$/status"
    direct = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    recorded = _builder(["record", "--", "sh", "-c", script], tmp_path)
    assert recorded.stdout == direct.stdout


def test_a_calling_script_stops_on_ctrl_c_as_without_builder(tmp_path: Path) -> None:
    # bash goes on after a child that exits 130, and stops when the child died of SIGINT.
    loop = f"for i in 1 2; do '{BUILDER}' record -- sleep 5; echo next; done"
    process = subprocess.Popen(
        ["bash", "-c", loop],
        cwd=tmp_path,
        text=True,
        env=process_env(tmp_path / "t"),
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    time.sleep(1.5)
    os.killpg(process.pid, signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)
    assert (process.returncode, stdout) == (-signal.SIGINT, "")


def test_a_crash_is_a_failure_not_an_interruption(tmp_path: Path) -> None:
    result = _builder(["record", "--", "sh", "-c", "kill -USR1 $$"], tmp_path)
    assert result.returncode == 128 + signal.SIGUSR1
    [session] = _sessions(tmp_path)
    assert (session["interrupted"], session["error"]) == (False, "sh was killed by SIGUSR1")


def test_a_build_that_handles_sigterm_and_finishes_is_not_interrupted(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    # Short sleeps: the trap runs as soon as the current one ends, and no process is left
    # behind holding the output open (a background sleep can be forked as the signal comes).
    script = f"trap 'echo cleaned up; exit 0' TERM; touch {marker}; while :; do sleep 0.05; done"
    process = subprocess.Popen(
        [BUILDER, "record", "--", "sh", "-c", script],
        cwd=tmp_path,
        env=process_env(tmp_path / "t"),
        text=True,
        stdout=subprocess.PIPE,
    )
    while not marker.exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=30)
    assert (process.returncode, stdout) == (0, "cleaned up\n")
    [session] = _sessions(tmp_path)
    assert (session["succeeded"], session["interrupted"]) == (True, False)


def test_the_build_keeps_its_file_descriptors(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", "-c", f"'{BUILDER}' record -- sh -c 'echo to-three >&3' 3>fd3.txt"],
        cwd=tmp_path,
        env=process_env(tmp_path / "t"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, (tmp_path / "fd3.txt").read_text()) == (0, "to-three\n")


def test_signals_the_caller_ignores_stay_ignored(tmp_path: Path) -> None:
    # nohup, or `&` in a script: the build must inherit the ignored signals as it would.
    script = "trap '' HUP INT; {}grep SigIgn /proc/self/status"
    env = process_env(tmp_path / "t")
    direct = subprocess.run(
        ["bash", "-c", script.format("")], capture_output=True, text=True, env=env, check=True
    )
    recorded = subprocess.run(
        ["bash", "-c", script.format(f"'{BUILDER}' record -- ")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert recorded.stdout == direct.stdout
    assert int(direct.stdout.split()[1], 16) & (1 << (signal.SIGHUP - 1))


def test_a_script_without_a_shebang_runs_as_in_a_shell(tmp_path: Path) -> None:
    script = tmp_path / "build.sh"
    script.write_text("echo plain script\nexit 3\n")
    script.chmod(0o755)
    result = _builder(["record", "--", str(script)], tmp_path)
    assert (result.returncode, result.stdout) == (3, "plain script\n")


def test_a_label_that_cannot_be_stored_is_left_out_and_the_build_kept(tmp_path: Path) -> None:
    result = _builder(
        ["record", "-l", "ok=1", "-l", "big=" + "x" * 70_000, "--", "sleep", "0.1"], tmp_path
    )
    assert result.returncode == 0
    assert result.stderr.startswith("Warning: label 'big' not recorded: label 'big' is 70000")
    [session] = _sessions(tmp_path)
    assert session["labels"] == {"ok": "1"} and session["durationMs"] >= 100  # type: ignore[operator]


def test_an_unusable_home_in_the_directory_setting_still_runs_the_build(tmp_path: Path) -> None:
    result = _builder(
        ["record", "--", "sh", "-c", "echo ran; exit 3"],
        tmp_path,
        BUILDER_TELEMETRY_DIR="~no-such-user-here/t",
    )
    assert (result.returncode, result.stdout) == (3, "ran\n")
    assert result.stderr.startswith(
        "Warning: telemetry is off for this build: BUILDER_TELEMETRY_DIR names a home directory"
    )


def test_builder_toml_must_hold_the_build(tmp_path: Path) -> None:
    (tmp_path / "builder.toml").write_text("# empty\n")
    (tmp_path / "pyproject.toml").write_text('[tool.builder]\nbuild = "true"\n')
    result = _builder(["build"], tmp_path)
    assert (result.returncode, result.stderr) == (
        1,
        f'Error: {tmp_path / "builder.toml"} has no build command: add build = "..."\n',
    )


def test_the_tool_is_the_first_word_of_a_configured_command_line(tmp_path: Path) -> None:
    (tmp_path / "builder.toml").write_text('build = "true --quiet && echo done"\n')
    assert _builder(["build"], tmp_path).returncode == 0
    [session] = _sessions(tmp_path)
    assert session["tool"] == "true"


def test_settings_are_stored_without_home_or_user_name(tmp_path: Path) -> None:
    home = tmp_path / "home" / "qzvxw"
    env = {
        "HOME": str(home),
        "USER": "qzvxw",
        "LOGNAME": "qzvxw",
        "BUILDER_CACHE": f"{home}/cache",
        "BUILDER_OWNER": "team-qzvxw-builds",
    }
    assert _builder(["record", "--", "true"], tmp_path, **env).returncode == 0
    [session] = _sessions(tmp_path)
    assert session["labels"] == {"BUILDER_CACHE": "~/cache", "BUILDER_OWNER": "team-<user>-builds"}
    for path in (tmp_path / "t").rglob("*.arrow"):
        data = path.read_bytes()
        assert str(home).encode() not in data and b"qzvxw" not in data


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--", "make", "-j8"], ({}, "auto", None, ["make", "-j8"])),
        (["make", "-l", "x"], ({}, "auto", None, ["make", "-l", "x"])),  # the build's own options
        (["-l", "a=b", "--label=c=d=e", "-lf=", "--", "x"], ({"a": "b", "c": "d=e", "f": ""},
                                                             "auto", None, ["x"])),
        (["--source", "none", "ninja"], ({}, "none", None, ["ninja"])),
        (["--source=ninja", "--", "./b.sh"], ({}, "ninja", None, ["./b.sh"])),
        (["--session", "ci-7-1", "make"], ({}, "auto", "ci-7-1", ["make"])),
        (["--session=a b", "--", "x"], ({}, "auto", "a b", ["x"])),
        (["--help"], None),
        (["-l", "novalue", "--", "x"], None),
        (["--source", "make", "--", "x"], None),
        (["--label"], None),
        (["--session", "", "x"], None),
        (["--session", "\udcff", "x"], None),  # a byte that is not UTF-8, as Python passes it
        (["-x", "--", "true"], None),
    ],
)  # fmt: skip
def test_plain_record_command_lines_skip_the_full_parser(
    args: list[str], expected: tuple[object, ...] | None
) -> None:
    """The fast reading of `record` gives what the full parser would, and leaves everything
    else (help, mistakes) to it."""
    from telemetry.cli.fast import _parse

    assert _parse(args) == expected


def test_record_help_and_mistakes_still_come_from_the_full_parser(tmp_path: Path) -> None:
    helped = _builder(["record", "--help"], tmp_path)
    assert helped.returncode == 0 and "--source" in helped.stdout
    wrong = _builder(["record", "--source", "make", "--", "true"], tmp_path)
    assert wrong.returncode == 2 and "Error: Invalid value for '--source'" in wrong.stderr
    assert not (tmp_path / "t").exists()  # nothing ran, nothing was stored


def test_a_build_recorded_under_a_given_session_id_is_named_by_it(tmp_path: Path) -> None:
    result = _builder(["record", "--session", "ci-1234-2", "--", "true"], tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    (tmp_path / "pyproject.toml").write_text('[tool.builder]\nbuild = "exit 0"\n')
    assert _builder(["build", "--session=nightly-7"], tmp_path).returncode == 0
    assert [s["sessionId"] for s in _sessions(tmp_path)] == ["ci-1234-2", "nightly-7"]
    shown = _builder(["telemetry", "show", "ci-1234-2", "--format", "json"], tmp_path)
    assert json.loads(shown.stdout)["sessionId"] == "ci-1234-2"
    # Its outcome and limits, not how fast `exit 0` ran beside `true`: no regression rule.
    checked = _builder(
        ["telemetry", "check", "--session", "nightly-7", "--threshold", "1e9", "--format", "json"],
        tmp_path,
    )
    assert json.loads(checked.stdout)["build"]["sessionId"] == "nightly-7"


def test_a_session_id_already_stored_is_refused_before_the_build_runs(tmp_path: Path) -> None:
    """A retried CI job that reuses its id: the second build is not run, and the gate still
    names one build."""
    assert _builder(["record", "--session", "ci-7-1", "--", "true"], tmp_path).returncode == 0
    again = _builder(["record", "--session", "ci-7-1", "--", "touch", "ran"], tmp_path)
    assert again.returncode == 2
    assert again.stderr.startswith(
        "Error: Invalid value for '--session': a build 'ci-7-1' is already stored in "
    )
    assert len(again.stderr.splitlines()) == 1
    assert not (tmp_path / "ran").exists()
    assert [s["sessionId"] for s in _sessions(tmp_path)] == ["ci-7-1"]


@pytest.mark.parametrize("command", ["record", "build"])
def test_an_empty_session_id_is_a_usage_error_and_nothing_runs(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.builder]\nbuild = "touch ran"\n')
    args = [command, "--session", ""] + (["--", "touch", "ran"] if command == "record" else [])
    result = _builder(args, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: Invalid value for '--session': session must be")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "ran").exists() and not (tmp_path / "t").exists()


@pytest.mark.parametrize("command", ["record", "build"])
def test_the_full_parser_takes_and_refuses_session_ids_as_the_fast_reading_does(
    cli: Runner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    """The same command lines through typer (the fast reading switched off)."""
    import telemetry.cli.fast

    monkeypatch.setattr(telemetry.cli.fast, "try_fast", lambda argv: None)
    (tmp_path / "pyproject.toml").write_text('[tool.builder]\nbuild = "touch ran"\n')
    args = [command, "--session", "ci-8-1"] + (
        ["--", "touch", "ran"] if command == "record" else []
    )
    assert cli(*args).code == 0
    assert (tmp_path / "ran").exists()
    exported = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert [s["sessionId"] for s in exported] == ["ci-8-1"]
    (tmp_path / "ran").unlink()
    again = cli(*args)
    assert again.code == 2
    assert again.stderr.startswith(
        "Error: Invalid value for '--session': a build 'ci-8-1' is already stored in "
    )
    assert not (tmp_path / "ran").exists()
