"""Hostile git sources (docs/security.md#git): each plants a canary that the attack would
create and asserts it stays absent, with an error that names the input and says what to do."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from support.cli import cli
from support.git_servers import (
    Served,
    commit,
    git,
    publish,
    runner_env,
)

PROJECT = {"MLproject": "entry_points:\n  main:\n    command: 'python -c \"print(42)\"'\n"}


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "CANARY"


@pytest.mark.parametrize("ext_allowed", [False, True])
@pytest.mark.parametrize("template", ["ext::sh -c touch% {c}", "fd::3", "ext::sh -c touch% {c}#x"])
def test_transport_syntax_urls_are_refused_before_git_runs(
    tmp_path: Path, canary: Path, template: str, ext_allowed: bool
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if ext_allowed:  # even a user who allows ext:: in their gitconfig is protected
        (home / ".gitconfig").write_text('[protocol "ext"]\n\tallow = always\n')
    result = cli(template.format(c=canary), env={"HOME": str(home)})
    assert result.code == 125 and "transport syntax" in result.err and "hint:" in result.err
    assert not canary.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--", "--upload-pack=touch {c}"],
        ["--", "-utouch {c}"],
        ["--", "--template={t}"],
        ["{url}", "--version=--upload-pack=touch {c}"],
        ["{url}", "--version=-utouch {c}"],
        ["git://127.0.0.1:9/--upload-pack=touch {c}"],
        ["git://127.0.0.1:9/x.git\n--upload-pack=touch {c}"],
    ],
)
def test_option_looking_urls_and_revisions_are_refused(
    served: Served, tmp_path: Path, canary: Path, argv: list[str]
) -> None:
    url = f"{served.daemon.url}/proj.git"
    args = [a.format(c=canary, t=tmp_path, url=url) for a in argv]
    result = cli(*args)
    # A -v that cannot be a revision is a usage error; a location git must not take is the
    # source's (docs/tracking.md#exit-codes).
    usage = any(arg.startswith("--version") for arg in argv)
    assert result.code == (2 if usage else 125) and "hint:" in result.err, result.text
    assert not canary.exists()
    assert not (tmp_path / "cache" / "git").exists()  # refused before any fetch


@pytest.mark.parametrize(
    "url",
    [
        "ssh://-oProxyCommand=touch {c}/x",
        "ssh://git@-oProxyCommand=touch {c}/x",
        "git+ssh://-oProxyCommand=touch%20{c}/x",
        "-oProxyCommand=touch {c}:x",
        "ssh://%2DoProxyCommand=touch%20{c}/x",
        "ssh://git@%2doProxyCommand=touch%20{c}/x",
        "ssh://%2DoProxyCommand=touch%20{c}@host/x",
        "git+ssh://host/%2Dx",
        "ssh://host%0A-oProxyCommand=x/x",
    ],
)
def test_ssh_hosts_that_look_like_options_are_refused(
    canary: Path, url: str, tmp_path: Path
) -> None:
    result = cli("--", url.format(c=canary))
    assert result.code == 125 and ("invalid host" in result.err or "option" in result.err)
    assert not canary.exists()
    assert not (tmp_path / "cache" / "git").exists()  # refused before any git command


def _tree_with(repo: Path, entries: list[tuple[str, str, str]]) -> None:
    """Add raw index entries (mode, sha, path): gitlinks and symlinks an attacker would craft."""
    for mode, sha, path in entries:
        git("update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}", cwd=repo)
    git("commit", "-q", "-m", "hostile", cwd=repo)


def _hook_repo(served: Served, tmp_path: Path, canary: Path) -> str:
    """A repository whose files are hooks that would touch the canary if git ran them."""
    hook = f"#!/bin/sh\ntouch {canary}\n"
    work = tmp_path / "hookwork"
    files = {f"{d}/{h}": hook for d in ("hooks", "y/hooks", "modules/x/hooks")
             for h in ("post-checkout", "post-merge")}  # fmt: skip
    sha = commit(work, files, "hooks")
    for path in work.rglob("post-*"):
        path.chmod(0o755)
    git("add", "-A", cwd=work)
    git("commit", "-q", "--amend", "-m", "hooks", cwd=work)
    publish(work, served.root, f"hook-{tmp_path.name}.git")
    return git("rev-parse", "HEAD", cwd=work) or sha


def _blob(repo: Path, text: str) -> str:
    proc = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=text,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return proc.stdout.strip()


def _attack_repo(served: Served, tmp_path: Path, canary: Path, kind: str) -> str:
    hook_sha = _hook_repo(served, tmp_path, canary)
    hook_url = f"{served.daemon.url}/hook-{tmp_path.name}.git"
    work = tmp_path / f"attack-{kind}"
    if kind == "cve-2024-32002":  # symlinked module dir (case-folding on macOS/Windows)
        modules = f'[submodule "x"]\n\tpath = A/modules/x\n\turl = {hook_url}\n'
        commit(work, {**PROJECT, ".gitmodules": modules})
        _tree_with(work, [("160000", hook_sha, "A/modules/x"),
                          ("120000", _blob(work, ".git"), "a")])  # fmt: skip
    else:  # CVE-2025-48384: a carriage return at the end of the submodule path
        modules = f'[submodule "sub"]\n\tpath = "sub\r"\n\turl = {hook_url}\n'
        commit(work, {**PROJECT, ".gitmodules": modules})
        _tree_with(work, [("160000", hook_sha, "sub\r"),
                          ("120000", _blob(work, ".git/modules/sub/hooks"), "sub")])  # fmt: skip
    publish(work, served.root, f"attack-{kind}-{tmp_path.name}.git")
    return f"{served.daemon.url}/attack-{kind}-{tmp_path.name}.git"


@pytest.mark.parametrize("kind", ["cve-2024-32002", "cve-2025-48384"])
def test_submodule_attacks_fetch_nothing_by_default_and_run_no_hook(
    served: Served, tmp_path: Path, canary: Path, kind: str
) -> None:
    url = _attack_repo(served, tmp_path, canary, kind)
    plain = cli(url, "-e", "main")
    assert plain.code == 0, plain.text
    mirrors = [p.name for p in (tmp_path / "cache" / "git").iterdir() if p.is_dir()]
    assert len(mirrors) == 1 and mirrors[0].startswith("attack")  # the submodule was not fetched
    recursed = cli(url, "--recurse-submodules", "--keep-checkout")
    if kind == "cve-2025-48384":
        assert recursed.code == 125 and "submodule" in recursed.err and "hint:" in recursed.err
    assert not canary.exists()
    for path in (tmp_path / "cache" / "work").rglob("*"):
        assert path.name != ".git", "a working copy must never get a .git a hook could live in"


def test_safe_submodules_are_fetched_when_asked(served: Served, tmp_path: Path) -> None:
    lib = commit(tmp_path / "lib", {"value.txt": "from the submodule\n"})
    publish(tmp_path / "lib", served.root, f"lib-{tmp_path.name}.git")
    work = tmp_path / "top"
    modules = f'[submodule "lib"]\n\tpath = lib\n\turl = ../lib-{tmp_path.name}.git\n'
    script = "print(open('lib/value.txt').read().strip())\n"
    commit(work, {"MLproject": "entry_points:\n  main:\n    command: 'python show.py'\n",
                  "show.py": script, ".gitmodules": modules})  # fmt: skip
    _tree_with(work, [("160000", lib, "lib")])
    publish(work, served.root, f"top-{tmp_path.name}.git")
    url = f"{served.daemon.url}/top-{tmp_path.name}.git"
    assert cli(url).code != 0  # without the flag the submodule stays empty
    result = cli(url, "--recurse-submodules")
    assert result.code == 0 and "from the submodule" in result.out, result.text


def _plant_bare(directory: Path, canary: Path) -> None:
    git("init", "-q", "--bare", str(directory))
    with open(directory / "config", "a") as config:
        config.write(f"[core]\n\tfsmonitor = touch {canary}\n")


def test_nested_bare_repository_with_fsmonitor_never_runs(
    served: Served, tmp_path: Path, canary: Path
) -> None:
    repo = tmp_path / "repo"
    commit(repo, PROJECT)
    nested = repo / "nested"
    _plant_bare(nested, canary)
    (nested / "MLproject").write_text(PROJECT["MLproject"])
    assert cli(str(nested)).code == 0  # a local run, inside a work tree that is now dirty
    assert cli(str(repo)).code == 0
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "plant", cwd=repo)
    publish(repo, served.root, f"nested-{tmp_path.name}.git")
    result = cli(f"{served.daemon.url}/nested-{tmp_path.name}.git#nested")
    assert result.code == 0, result.text
    alone = tmp_path / "alone"  # a bare repository that is itself the project directory
    _plant_bare(alone, canary)
    (alone / "MLproject").write_text(PROJECT["MLproject"])
    assert cli(str(alone)).code == 0
    assert not canary.exists()


def test_old_git_gets_one_warning_line_unless_silenced(tmp_path: Path) -> None:
    version = tuple(int(x) for x in re.findall(r"\d+", git("--version"))[:3])
    project = tmp_path / "p"
    commit(project, PROJECT)
    env = {k: v for k, v in runner_env().items() if k != "RUN_PROJECT_IGNORE_OLD_GIT"}
    loud = subprocess.run([*_runner(), str(project)], env=env, capture_output=True, text=True)
    warnings = [ln for ln in loud.stderr.splitlines() if "lacks the fixes" in ln]
    if version >= (2, 50, 1):
        assert warnings == []
        return
    assert len(warnings) == 1 and "CVE-2025-48384" in warnings[0]
    assert "RUN_PROJECT_IGNORE_OLD_GIT" in warnings[0]
    quiet = cli(str(project))
    assert quiet.code == 0 and "lacks the fixes" not in quiet.err


@pytest.mark.slow
def test_old_git_warning_comes_once_a_day_only_where_git_is_used(tmp_path: Path) -> None:
    if tuple(int(x) for x in re.findall(r"\d+", git("--version"))[:3]) >= (2, 50, 1):
        pytest.skip("this git has the fixes: there is no warning to rate-limit")
    project = tmp_path / "p"
    commit(project, PROJECT)
    plain = tmp_path / "plain"  # not in a git repository: git is never run for it
    plain.mkdir()
    (plain / "MLproject").write_text(PROJECT["MLproject"])
    env = {k: v for k, v in runner_env().items() if k != "RUN_PROJECT_IGNORE_OLD_GIT"}

    def warned(*args: str) -> bool:
        done = subprocess.run([*_runner(), *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return "lacks the fixes" in done.stderr

    assert not warned(str(plain))
    assert not warned(str(project), "-q")  # about the machine, not the run: -q leaves it out
    assert warned(str(project))
    assert not warned(str(project))  # the same day, the same cache
    stamp = Path(env["RUN_PROJECT_CACHE"]) / "old-git-warned"
    day_ago = stamp.stat().st_mtime - 86400 - 60
    os.utime(stamp, (day_ago, day_ago))
    assert warned(str(project))


def _runner() -> list[str]:
    import sys

    return [sys.executable, "-m", "runner"]
