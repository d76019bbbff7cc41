"""Environments share no writable file with each other or with a package cache: a run that
writes into its own environment changes nothing another project imports
(docs/security.md, isolated environments)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner import cache
from support.cli import cli
from support.projects import make_project

APPEND = (
    "import sys, six\n"
    "print(six.__file__)\n"
    "if sys.argv[1:] == ['write']:\n"
    "    open(six.__file__, 'a').write('\\nCANARY = 1\\n')\n"
)


@pytest.fixture(autouse=True)
def _hardlinks_asked(shared_uv_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_LINK_MODE", "hardlink")  # the user's choice cannot undo isolation


def six_project(root: Path, requirements: str) -> Path:
    return make_project(
        root,
        {
            "MLproject": (
                "name: p\npython_env: python_env.yaml\nentry_points:\n  main:\n"
                "    parameters: {how: {type: string, default: read}}\n"
                "    command: python touch_six.py {how}\n"
            ),
            "python_env.yaml": f"python: '3.11'\ndependencies: [{requirements}]\n",
            "touch_six.py": APPEND,
        },
    )


def six_file(root: Path, *args: str) -> Path:
    result = cli(str(root), *args)
    assert result.code == 0, result.text
    return Path(result.out.strip().splitlines()[-1])


def inodes(tree: Path) -> dict[tuple[int, int], Path]:
    found = {}
    for dirpath, _dirs, names in os.walk(tree):
        for name in names:
            info = os.lstat(os.path.join(dirpath, name))
            found[(info.st_dev, info.st_ino)] = Path(dirpath, name)
    return found


def test_a_run_writing_its_env_changes_no_other_env_and_not_uv_cache(
    tmp_path: Path, uv_cache: Path
) -> None:
    first = six_file(six_project(tmp_path / "a", "six==1.17.0"))
    other = six_file(six_project(tmp_path / "b", "six==1.17.0, idna==3.10"))
    assert first != other  # two environments (different requirements)
    cached = [p for p in uv_cache.rglob("six.py") if "archive" in str(p)]
    assert cached, "uv's cache holds six.py"
    before = {p: p.read_bytes() for p in [other, *cached]}

    six_file(six_project(tmp_path / "a", "six==1.17.0"), "-P", "how=write")

    assert b"CANARY" in first.read_bytes()
    assert {p: p.read_bytes() for p in before} == before
    env_a, env_b = first.parents[3], other.parents[3]  # <entry>/lib/pythonX.Y/site-packages
    shared = inodes(env_a).keys() & (inodes(env_b).keys() | inodes(uv_cache).keys())
    assert not shared, [inodes(env_a)[k] for k in list(shared)[:5]]
    assert first.stat().st_nlink == 1 and other.stat().st_nlink == 1


def test_own_files_copies_a_hardlinked_file_and_keeps_its_mode(tmp_path: Path) -> None:
    outside = tmp_path / "package-cache" / "mod.py"
    outside.parent.mkdir()
    outside.write_text("x = 1\n")
    outside.chmod(0o444)
    entry = tmp_path / "entry"
    entry.mkdir()
    os.link(outside, entry / "mod.py")
    (entry / "alone.py").write_text("y = 2\n")

    assert cache.own_files(entry) == 1
    mine = entry / "mod.py"
    assert mine.stat().st_ino != outside.stat().st_ino and mine.stat().st_nlink == 1
    assert mine.read_text() == "x = 1\n" and mine.stat().st_mode & 0o777 == 0o444
    assert outside.stat().st_nlink == 1


@pytest.mark.usefixtures("conda_settings")
def test_two_conda_envs_share_no_file_with_each_other_or_the_package_cache(
    tmp_path: Path,
) -> None:
    from support.conda import project

    for name, deps in (("a", ["python", "alpha <2"]), ("b", ["python", "alpha >=2"])):
        result = cli(str(project(tmp_path / name, deps)))
        assert result.code == 0, result.text
    area = tmp_path / "cache" / "envs" / "conda"
    envs = sorted(p.parent for p in area.glob("*/.run-project-complete"))
    assert len(envs) == 2
    cached = [p for p in (tmp_path / "cache").rglob("VERSION") if not p.is_relative_to(area)]
    assert cached, "the conda package cache holds the packages' files"
    for env in envs:  # one link each: shared with nothing, neither the other env nor the cache
        linked = [p for p in inodes(env).values() if os.lstat(p).st_nlink > 1]
        assert not linked, linked[:5]
