"""The commit and branch read from `.git` equal what git itself says, in every layout git
leaves them in; and `record` stores them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from telemetry.repository import Revision, revision
from tests.conftest import BUILDER, process_env

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

QUIET = {
    "GIT_AUTHOR_NAME": "a",
    "GIT_AUTHOR_EMAIL": "a@example.com",
    "GIT_COMMITTER_NAME": "a",
    "GIT_COMMITTER_EMAIL": "a@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/bin:/bin",
}


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=folder, env=QUIET, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


def _as_git_says(folder: Path) -> Revision:
    """The second route: git's own answer."""
    head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=folder, env=QUIET,
                          capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return Revision(head or None, _git(folder, "branch", "--show-current") or None)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    _git(folder, "init", "-q", "-b", "trunk")
    return folder


def _commit(folder: Path, message: str) -> None:
    (folder / "file").write_text(message)
    _git(folder, "add", "file")
    _git(folder, "commit", "-q", "-m", message)


def test_every_layout_reads_as_git_says(repo: Path) -> None:
    seen = [revision(repo)]
    assert seen[0] == _as_git_says(repo) == Revision(None, "trunk")  # no commit yet
    _commit(repo, "one")
    (repo / "deep" / "er").mkdir(parents=True)
    assert revision(repo / "deep" / "er") == _as_git_says(repo)  # from a subfolder
    _git(repo, "checkout", "-q", "-b", "feature/x-1")
    _commit(repo, "two")
    assert revision(repo) == _as_git_says(repo)
    _git(repo, "pack-refs", "--all")  # the branch now only in packed-refs
    assert not (repo / ".git" / "refs" / "heads" / "feature" / "x-1").exists()
    assert revision(repo) == _as_git_says(repo)
    _git(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert revision(repo) == _as_git_says(repo) == Revision(_git(repo, "rev-parse", "HEAD"), None)
    _git(repo, "checkout", "-q", "trunk")
    linked = repo.parent / "linked"
    _git(repo, "worktree", "add", "-q", "-b", "other", str(linked), "feature/x-1")
    expected = Revision(_git(repo, "rev-parse", "feature/x-1"), "other")
    assert revision(linked) == _as_git_says(linked) == expected
    assert revision(repo) == _as_git_says(repo)


def test_outside_a_work_tree_nothing_is_known(tmp_path: Path) -> None:
    assert revision(tmp_path) is None
    (tmp_path / ".git").write_text("not what git writes")
    assert revision(tmp_path) is None


def test_record_stores_the_commit_and_branch(repo: Path, tmp_path: Path) -> None:
    _commit(repo, "one")
    store = tmp_path / "store"
    subprocess.run([BUILDER, "record", "--", "true"], cwd=repo, env=process_env(store),
                   check=True)  # fmt: skip
    exported = subprocess.run([BUILDER, "telemetry", "export"], cwd=repo, env=process_env(store),
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    [session] = json.loads(exported)["sessions"]
    assert (session["commit"], session["branch"]) == tuple(_as_git_says(repo))


def test_a_branch_late_in_a_large_packed_refs_file_is_found(repo: Path) -> None:
    _commit(repo, "one")
    head = _git(repo, "rev-parse", "HEAD")
    many = "".join(f"create refs/heads/branch-{n:05d} {head}\n" for n in range(3000))
    subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, env=QUIET, input=many, text=True,
                   check=True)  # fmt: skip
    _git(repo, "checkout", "-q", "-b", "zz-last")
    _git(repo, "pack-refs", "--all")
    assert (repo / ".git" / "packed-refs").stat().st_size > 1 << 17
    assert revision(repo) == _as_git_says(repo) == Revision(head, "zz-last")
