"""Local directories: run in place with commit, dirty flag and the uncommitted diff (and
untracked files) saved with the run; `-v REV` uses a separate working copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from support.cli import cli, last_record
from support.git_servers import commit, git

MLPROJECT = "entry_points:\n  main:\n    command: 'python show.py'\n"
SHOW = "import os; print('version', open('VERSION').read().strip(), os.getcwd())\n"


def _repo(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    sha = commit(repo, {"MLproject": MLPROJECT, "show.py": SHOW, "VERSION": "committed\n",
                        "sub/MLproject": MLPROJECT, "sub/show.py": SHOW,
                        "sub/VERSION": "sub\n"})  # fmt: skip
    git("tag", "v1", cwd=repo)
    return repo, sha


def test_clean_repository_records_its_commit_and_no_diff(tmp_path: Path) -> None:
    repo, sha = _repo(tmp_path)
    result = cli(str(repo))
    assert result.code == 0 and f"version committed {repo}" in result.out, result.text
    record = last_record()
    assert record["source"]["commit"] == sha and record["source"]["dirty"] is False
    assert "uncommitted" not in record["source"]
    assert not (tmp_path / "store" / "artifacts" / record["id"] / "source").exists()


def test_dirty_repository_saves_a_replayable_diff_and_untracked_files(tmp_path: Path) -> None:
    repo, sha = _repo(tmp_path)
    (repo / "VERSION").write_text("edited\n")
    (repo / "sub" / "VERSION").write_text("staged\n")
    git("add", "sub/VERSION", cwd=repo)
    (repo / "notes.txt").write_text("untracked\n")
    (repo / "secret-link").symlink_to(tmp_path / "outside-secret")
    (tmp_path / "outside-secret").write_text("do not copy\n")
    result = cli(str(repo))
    assert result.code == 0 and "version edited" in result.out
    assert "secret-link" in result.err  # named as not saved
    record = last_record()
    source = record["source"]
    assert source["dirty"] is True and source["commit"] == sha
    saved = tmp_path / "store" / "artifacts" / record["id"] / source["uncommitted"]
    diff = (saved / "uncommitted.diff").read_text()
    assert "+edited" in diff and "+staged" in diff
    assert (saved / "untracked" / "notes.txt").read_text() == "untracked\n"
    assert not (saved / "untracked" / "secret-link").exists()
    from runner.project.schemas import schema_errors

    assert schema_errors("run-record", record) == []
    clone = tmp_path / "replay"
    git("clone", "-q", str(repo), str(clone))
    git("checkout", "-q", sha, cwd=clone)
    git("apply", str(saved / "uncommitted.diff"), cwd=clone)
    assert (clone / "VERSION").read_text() == "edited\n"


def test_version_on_a_local_repository_never_touches_its_working_tree(tmp_path: Path) -> None:
    repo, sha = _repo(tmp_path)
    commit(repo, {"VERSION": "later\n"})
    (repo / "VERSION").write_text("uncommitted\n")
    (repo / "scratch.txt").write_text("mine\n")
    status_before = git("status", "--porcelain", cwd=repo)
    index_before = (repo / ".git" / "index").stat().st_mtime_ns
    result = cli(str(repo), "-v", "v1")
    assert result.code == 0 and "version committed" in result.out, result.text
    assert str(repo) not in result.out  # it ran in its own working copy
    assert last_record()["source"]["commit"] == sha
    assert (repo / "VERSION").read_text() == "uncommitted\n"
    assert (repo / ".git" / "index").stat().st_mtime_ns == index_before
    assert git("status", "--porcelain", cwd=repo) == status_before
    sub = cli(str(repo / "sub"), "-v", "v1")
    assert sub.code == 0 and "version sub" in sub.out
    assert last_record()["source"]["subdirectory"] == "sub"


def test_hash_subdirectory_and_plain_directories(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path)
    assert "version sub" in cli(f"{repo}#sub").out
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "MLproject").write_text(MLPROJECT)
    (plain / "show.py").write_text(SHOW)
    (plain / "VERSION").write_text("plain\n")
    assert "version plain" in cli(str(plain)).out
    assert last_record()["source"]["commit"] is None
    refused = cli(str(plain), "-v", "main")
    assert refused.code == 2 and "not in a git repository" in refused.err


def test_unknown_location_says_what_is_accepted(tmp_path: Path) -> None:
    result = cli(str(tmp_path / "nowhere"))
    assert result.code == 125 and "git URL" in result.err and ".zip" in result.err


def test_renames_and_untracked_only_changes_are_both_recorded(tmp_path: Path) -> None:
    repo, sha = _repo(tmp_path)
    git("mv", "sub/VERSION", "sub/VERSION.old", cwd=repo)  # a staged rename: two paths in -z
    (repo / "sub" / "VERSION").write_text("sub\n")
    odd = "tab\there new\nline"
    (repo / "data").mkdir()
    (repo / "data" / odd).write_text("x\n")
    assert cli(str(repo)).code == 0
    source = last_record()["source"]
    assert source["dirty"] is True and source["commit"] == sha
    assert source["untracked"] == [f"data/{odd}", "sub/VERSION"]

    only_untracked, _ = _repo(tmp_path / "second")
    (only_untracked / "notes.txt").write_text("untracked\n")
    assert cli(str(only_untracked)).code == 0
    record = last_record()
    assert record["source"]["dirty"] is True and record["source"]["untracked"] == ["notes.txt"]
    saved = tmp_path / "store" / "artifacts" / record["id"] / record["source"]["uncommitted"]
    assert not (saved / "uncommitted.diff").exists()  # nothing tracked changed: no diff


def test_a_repository_without_commits_records_no_commit(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git("init", "-q", str(repo))
    (repo / "MLproject").write_text(MLPROJECT)
    (repo / "show.py").write_text(SHOW)
    (repo / "VERSION").write_text("unborn\n")
    assert cli(str(repo)).code == 0
    source = last_record()["source"]
    assert "commit" not in source or source["commit"] is None
    assert source["dirty"] is True
    assert sorted(source["untracked"]) == ["MLproject", "VERSION", "show.py"]


def test_recording_a_run_never_rewrites_the_users_index(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path)
    index = repo / ".git" / "index"
    os.utime(repo / "VERSION")  # same bytes, newer mtime: `git status` would refresh the index
    before = (index.stat().st_mtime_ns, index.read_bytes())
    assert cli(str(repo)).code == 0
    assert last_record()["source"]["dirty"] is False
    assert (index.stat().st_mtime_ns, index.read_bytes()) == before


def test_a_clean_repository_costs_one_git_process(tmp_path: Path) -> None:
    """Real git behind a logging wrapper on PATH: status answers commit, changes and untracked
    files at once; `git diff` runs only when tracked files changed."""
    repo, _ = _repo(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "git-calls.log"
    real = shutil.which("git")
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    assert cli(str(repo), env=env).code == 0  # the first run also asks git for its version
    log.unlink()
    assert cli(str(repo), env=env).code == 0
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and " status " in calls[0], calls
    (repo / "VERSION").write_text("edited\n")
    log.unlink()
    assert cli(str(repo), env=env).code == 0
    verbs = [next(v for v in ("status", "diff", c) if f" {v} " in f" {c} ")
             for c in log.read_text().splitlines()]  # fmt: skip
    assert verbs == ["status", "diff"], verbs
