"""How a virtualenv is built fast (envs/venv_build.py, envs/uv_index.py): resolution and install
answered from uv's cache when that is as fresh as PyPI allows, the network used only for what
the cache lacks, and a broken interpreter still explained after the faster install fails."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from support.cli import EXAMPLES, cli, last_record
from support.envs import fake_python
from support.projects import make_project

MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"
DEAD = "http://127.0.0.1:9"  # nothing listens: any request through this proxy fails
NO_NETWORK = {"HTTPS_PROXY": DEAD, "HTTP_PROXY": DEAD, "ALL_PROXY": DEAD,
              "https_proxy": DEAD, "http_proxy": DEAD}  # fmt: skip


@pytest.fixture(autouse=True)
def _shared_uv_cache(uv_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))


def output(result: Any) -> dict[str, Any]:
    assert result.code == 0, result.text
    data: dict[str, Any] = json.loads(result.out.strip().splitlines()[-1])
    return data


def lock_of(tmp_path: Path) -> str:
    run_id = str(last_record()["id"])
    return (tmp_path / "store" / "artifacts" / run_id / "env" / "pylock.toml").read_text()


def copy_example(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLES / "python_env", tmp_path / "python_env"))


def test_a_cold_build_soon_after_another_needs_no_network(tmp_path: Path) -> None:
    """Resolution and install of a new env come from uv's cache while the index pages in it
    are younger than PyPI's own 10 minutes (the mirror here strips PyPI's cache headers, so
    without the restored policy uv asks the index again and the dead proxy fails the build)."""
    private = {"UV_CACHE_DIR": str(tmp_path / "uv-cache")}  # fresh pages, stored just now
    project = copy_example(tmp_path)
    first = output(cli(str(project), env=private))
    lock = lock_of(tmp_path)
    shutil.rmtree(tmp_path / "cache" / "envs")  # an empty env cache; uv's cache stays warm
    again = output(cli(str(project), env={**private, **NO_NETWORK}))
    assert last_record()["env"]["built"] is True
    assert (again["six"], again["idna"]) == (first["six"], first["idna"]) == ("1.17.0", "3.10")
    assert lock_of(tmp_path) == lock


@pytest.mark.slow
def test_uv_gets_pypis_cache_policy_only_when_pypi_is_its_only_index(tmp_path: Path) -> None:
    """Another index, or any uv config file uv would read (project or parent directory),
    is left to uv untouched: a --config-file would replace it."""
    project = copy_example(tmp_path / "a")
    policy = ".run-project/uv-pypi.toml"

    def built_with_policy(env: dict[str, str] | None = None) -> bool:
        shutil.rmtree(tmp_path / "cache" / "envs", ignore_errors=True)
        output(cli(str(project), env=env))
        area = tmp_path / "cache" / "envs" / "virtualenv"
        (entry,) = [p for p in area.iterdir() if (p / ".run-project-complete").is_file()]
        return (entry / policy).is_file()

    assert built_with_policy()
    assert not built_with_policy({"UV_INDEX_URL": "https://pypi.org/simple"})
    (tmp_path / "a" / "uv.toml").write_text("# settings for everything under a/\n")
    assert not built_with_policy()
    (tmp_path / "a" / "uv.toml").unlink()
    (project / "pyproject.toml").write_text("[tool.uv]\nnative-tls = false\n")
    assert not built_with_policy()


def test_a_lock_naming_files_missing_from_uvs_cache_is_installed_online(tmp_path: Path) -> None:
    """The install tries uv's cache alone first; what it lacks is then downloaded."""
    project = copy_example(tmp_path)
    output(cli(str(project)))
    (project / "pylock.toml").write_text(lock_of(tmp_path))
    shutil.rmtree(tmp_path / "cache" / "envs")
    data = output(cli(str(project), env={"UV_CACHE_DIR": str(tmp_path / "empty-uv-cache")}))
    assert (data["six"], data["idna"]) == ("1.17.0", "3.10")
    assert last_record()["env"]["built"] is True
    assert any((tmp_path / "empty-uv-cache").iterdir())  # downloaded into that cache


def test_an_interpreter_that_cannot_start_is_named_after_the_install_fails(
    tmp_path: Path,
) -> None:
    """uv remembers a base interpreter, so `uv venv` still succeeds once it is broken; the
    install then fails and the message says the interpreter cannot start, with the fix."""
    bin_dir = fake_python(tmp_path / "fakepy")
    project = make_project(tmp_path / "p", {
        "MLproject": "python_env: python_env.yaml\nentry_points:\n  main: {command: python -c 'print(1)'}\n",
        "python_env.yaml": f'python: "{MINOR}"\ndependencies: [six]\n',
    })  # fmt: skip
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    assert cli(str(project), env=env).code == 0
    shutil.rmtree(tmp_path / "cache" / "envs")
    (tmp_path / "fakepy" / "lib" / f"python{MINOR}" / "encodings").unlink()
    broken = cli(str(project), env=env)
    assert broken.code == 125 and "cannot start" in broken.err, broken.err
    assert "hint: repair or reinstall" in broken.err
    area = tmp_path / "cache" / "envs" / "virtualenv"
    assert [p for p in area.iterdir() if p.is_dir()] == []
