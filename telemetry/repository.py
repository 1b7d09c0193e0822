"""The git commit and branch a build ran on, read from the ``.git`` folder itself.

``record`` runs around every build, so no ``git`` process is started (it would cost more
than the rest of recording, and may not be installed): ``HEAD``, the ref it names (a loose
file or a line of ``packed-refs``) and, in a linked work tree, the ``gitdir:`` and
``commondir`` files are read directly. Anything unexpected means "not known", never an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")  # SHA-1, or SHA-256
_MAX_DEPTH = 5  # a symbolic ref naming another, at most this deep
_MAX_BYTES = 1 << 16  # of HEAD, a loose ref or a .git file


class Revision(NamedTuple):
    """The commit checked out (None when unknown, e.g. a repository without commits) and the
    branch (None when detached)."""

    commit: str | None
    branch: str | None


def revision(folder: Path) -> Revision | None:
    """The revision of the git work tree holding ``folder``, or None outside one.

    >>> revision(Path("."))  # doctest: +SKIP
    Revision(commit='3f9a1c2b7d4e...', branch='main')
    """
    found = _git_dir(folder)
    if found is None:
        return None
    git_dir, common = found
    head = _read(git_dir / "HEAD")
    if head is None:
        return None
    ref: str | None = None
    for _ in range(_MAX_DEPTH):
        if not head.startswith("ref:"):
            break
        ref = head[4:].strip()
        if not ref.startswith("refs/") or ".." in ref:
            return Revision(None, None)
        head = _ref(git_dir, common, ref) or ""
    commit = head if _SHA.match(head) else None
    branch = ref.removeprefix("refs/heads/") if ref and ref.startswith("refs/heads/") else None
    if branch == ".invalid":  # a reftable repository: its refs are not files we read
        return Revision(None, None)
    return Revision(commit, branch)


def _git_dir(folder: Path) -> tuple[Path, Path] | None:
    """The git folder of the work tree around ``folder``, and the folder its refs are shared
    in (the same but in a linked work tree)."""
    folder = Path(os.path.abspath(folder))
    for candidate in (folder, *folder.parents):
        dot = candidate / ".git"
        if dot.is_dir():
            return dot, dot
        if dot.is_file():  # a linked work tree or a submodule: "gitdir: <path>"
            text = _read(dot)
            if text is None or not text.startswith("gitdir:"):
                return None
            git_dir = candidate / text[7:].strip()
            common = _read(git_dir / "commondir")
            return git_dir, (git_dir / common if common else git_dir)
    return None


def _ref(git_dir: Path, common: Path, ref: str) -> str | None:
    # HEAD-like refs live in the work tree's own folder, branches in the shared one.
    for base in dict.fromkeys((git_dir, common)):
        loose = _read(base / ref)
        if loose is not None:
            return loose
    # A large repository's packed-refs runs to megabytes: read line by line, not whole.
    try:
        with open(common / "packed-refs", "rb") as packed:
            wanted = ref.encode()
            for line in packed:
                sha, _, name = line.rstrip(b"\r\n").partition(b" ")
                if name == wanted:
                    return sha.decode("ascii", "replace")
    except OSError:
        pass
    return None


def _read(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(_MAX_BYTES).decode("utf-8", "replace").strip()
    except OSError:
        return None
