"""Make the pictures of docs/terminal.md: the commands the page shows, run in a real terminal
(tmux), captured with their colours (``tmux capture-pane -e``) and drawn by headless
Chromium, then made smaller by pngquant when it is there.

Run from the top of the repository, with builder installed (``pip install -e .``), tmux,
chromium and the DejaVu fonts (Debian: ``apt-get install tmux chromium fonts-dejavu-core
pngquant``)::

    python docs/images/terminal-images.py

Each picture is taken when the screen shows what it is about (the prompt back after the
command, or a bar part way): the script waits on the screen's content, not on a clock.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
COLUMNS = 80
SOCKET = "builder-terminal-images"
FONT_PX = 15
LINE_PX = 19
PAD_PX = 14
# VS Code's dark terminal colours: black, red, green, yellow, blue, magenta, cyan, white,
# then the bright ones.
PALETTE = (
    *("#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5"),
    *("#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"),
)
FOREGROUND, BACKGROUND = "#cccccc", "#1e1e1e"
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def main() -> None:
    for tool in ("tmux", "chromium"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install {tool}")
    with tempfile.TemporaryDirectory(prefix="terminal-images-") as temporary:
        folder = Path(temporary)
        # The page's commands name data-fixtures/generate.py as seen from the repository.
        (folder / "data-fixtures").symlink_to(REPO / "data-fixtures")
        run(folder, "python data-fixtures/generate.py --today 2026-11-20 --output history.jsonl")
        run(folder, "builder telemetry ingest history.jsonl")
        summary = "builder telemetry summary"
        shoot(folder, "terminal-summary", [summary], done=prompt_back)
        shoot(folder, "terminal-summary-no-color", [f"NO_COLOR=1 {summary}"], done=prompt_back)
        shoot(
            folder, "terminal-summary-latin-1", [f"PYTHONIOENCODING=latin-1 {summary}"],
            done=prompt_back,
        )  # fmt: skip
        big = folder / "big"
        big.mkdir()
        (big / "data-fixtures").symlink_to(REPO / "data-fixtures")
        shoot(
            big,
            "terminal-ingest",
            [
                "python data-fixtures/generate.py --builds 5000 --output big.jsonl",
                "builder telemetry ingest big.jsonl",
            ],
            done=part_way("ingest"),
        )
        shoot(folder, "terminal-jobs", ["builder telemetry jobs run all"], done=part_way())


def environment(folder: Path) -> dict[str, str]:
    """A clean environment (none of ours: no NO_COLOR, no store of ours), in which the
    demo history, generated for 2026-11-20, outlives the 90 days kept by default."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "PS1": "$ ",
        "BUILDER_TELEMETRY_RETENTION_DAYS": "100000",
    }


def run(folder: Path, command: str) -> None:
    subprocess.run(
        ["bash", "-c", command], cwd=folder, env=environment(folder), check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def tmux(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["tmux", "-L", SOCKET, "-f", "/dev/null", *args],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def shoot(
    folder: Path, name: str, commands: list[str], *, done: Callable[[list[str]], bool]
) -> None:
    """Type ``commands`` in a new terminal in ``folder``, each once the prompt is back, and
    take the picture once ``done`` says the screen (its lines, colours left out) shows it."""
    rows = 40
    env = environment(folder)
    tmux(
        "new-session", "-d", "-s", "docs", "-x", str(COLUMNS), "-y", str(rows), "-c",
        str(folder), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
        "bash", "--norc", "--noprofile",
        env=env,
    )  # fmt: skip
    try:
        wait(prompt_back)
        for number, command in enumerate(commands):
            tmux("send-keys", "-t", "docs", "-l", command)
            tmux("send-keys", "-t", "docs", "Enter")
            if number < len(commands) - 1:
                wait(prompt_back)
        screen = wait(done)
    finally:
        tmux("kill-server")
    lines = [line.rstrip() for line in screen.rstrip("\n").split("\n")]
    while lines and not plain(lines[-1]).strip():
        lines.pop()
    if done is prompt_back:
        lines.pop()  # the prompt after the output
    draw(lines, HERE / f"{name}.png")


def wait(done: Callable[[list[str]], bool], timeout: float = 300) -> str:
    """The screen with its colours, as soon as ``done`` holds for its lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-e", "-t", "docs")
        if done([plain(line) for line in screen.split("\n")]):
            return screen
        time.sleep(0.05)
    raise SystemExit(f"the screen never showed what was waited for:\n{screen}")


def plain(line: str) -> str:
    return SGR.sub("", line)


def prompt_back(lines: list[str]) -> bool:
    """The prompt alone on the last line, after a command (or as the shell starts)."""
    shown = [line.rstrip() for line in lines if line.strip()]
    return bool(shown) and shown[-1] == "$" and (len(shown) == 1 or shown[-2] != "$")


def part_way(label: str = r"\w+") -> Callable[[list[str]], bool]:
    """A bar (of ``label``) between 40% and 70%."""
    bar = re.compile(rf"^{label} \[[#.]+\] +[4-6]\d%")
    return lambda lines: any(bar.match(line) for line in lines)


def draw(lines: list[str], path: Path) -> None:
    """The lines (with their colour codes) as a terminal shows them, in a PNG."""
    body = "\n".join(to_html(line) for line in lines)
    width = round(COLUMNS * FONT_PX * 1233 / 2048) + 2 * PAD_PX + 2  # DejaVu Sans Mono
    height = len(lines) * LINE_PX + 2 * PAD_PX
    page = path.with_suffix(".html")
    page.write_text(
        "<!doctype html><meta charset=utf-8><style>"
        f"html,body{{margin:0;background:{BACKGROUND}}}"
        f"pre{{margin:0;padding:{PAD_PX}px;color:{FOREGROUND};"
        f"font:{FONT_PX}px/{LINE_PX}px 'DejaVu Sans Mono',monospace}}"
        f"</style><pre>{body}</pre>",
        encoding="utf-8",
    )
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
    try:
        subprocess.run(
            ["chromium", "--headless", *sandbox, "--hide-scrollbars",
             "--force-device-scale-factor=1", f"--window-size={width},{height}",
             f"--screenshot={path}", page.as_uri()],
            check=True, capture_output=True,
        )  # fmt: skip
    finally:
        page.unlink()
    if shutil.which("pngquant"):
        subprocess.run(
            ["pngquant", "--force", "--skip-if-larger", "--quality", "60-90", "--output",
             str(path), str(path)],
            check=False,
        )  # fmt: skip
    print(f"{path.relative_to(REPO)}: {path.stat().st_size:,} bytes")


def to_html(line: str) -> str:
    """One line with its SGR colour codes as spans."""
    out: list[str] = []
    style: dict[str, str] = {}
    position = 0
    for found in SGR.finditer(line):
        out.append(_span(line[position : found.start()], style))
        style = _restyle(style, found[1])
        position = found.end()
    out.append(_span(line[position:], style))
    return "".join(out)


def _span(text: str, style: dict[str, str]) -> str:
    if not text:
        return ""
    escaped = html.escape(text)
    if not style:
        return escaped
    css = ";".join(f"{key}:{value}" for key, value in sorted(style.items()))
    return f'<span style="{css}">{escaped}</span>'


def _restyle(style: dict[str, str], parameters: str) -> dict[str, str]:
    style = dict(style)
    codes = [int(code) if code else 0 for code in parameters.split(";")]
    while codes:
        code = codes.pop(0)
        if code == 0:
            style.clear()
        elif code == 1:
            style["font-weight"] = "bold"
        elif code == 22:
            style.pop("font-weight", None)
        elif 30 <= code <= 37 or 90 <= code <= 97:
            style["color"] = PALETTE[code - 30 if code < 90 else code - 82]
        elif 40 <= code <= 47 or 100 <= code <= 107:
            style["background"] = PALETTE[code - 40 if code < 100 else code - 92]
        elif code in (38, 48) and codes[:1] == [5] and len(codes) >= 2:
            index = codes[1]
            del codes[:2]
            if index < 16:
                style["color" if code == 38 else "background"] = PALETTE[index]
        elif code in (38, 48) and codes[:1] == [2] and len(codes) >= 4:
            red, green, blue = codes[1:4]
            del codes[:4]
            style["color" if code == 38 else "background"] = f"rgb({red},{green},{blue})"
        elif code == 39:
            style.pop("color", None)
        elif code == 49:
            style.pop("background", None)
    return style


if __name__ == "__main__":
    main()
