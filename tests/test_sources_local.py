"""Local directories: run in place with commit, dirty flag and the uncommitted diff (and
untracked files) saved with the run; `-v REV` uses a separate working copy."""

from __future__ import annotations

from pathlib import Path

from conftest import cli, last_record
from sources_servers import commit, git

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
    from runner.schemas import schema_errors

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
    assert result.code == 2 and "git URL" in result.err and ".zip" in result.err
