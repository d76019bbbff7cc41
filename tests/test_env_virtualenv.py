"""The virtualenv kind: inputs in a fixed order, uv builds, pylock.toml records, cache reuse,
interpreters, and paths that try to leave the project (docs/security.md#environments)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.envs.python.uvtool import uv_bin
from support.cli import EXAMPLES, cli, last_record, records
from support.projects import make_project

MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"
SHOW = (
    "import json, sys\n"
    "mods = {}\n"
    "for name in sys.argv[1:]:\n"
    "    m = __import__(name)\n"
    "    mods[name] = getattr(m, '__version__', None)\n"
    "print(json.dumps({'prefix': sys.prefix, 'python': '%d.%d.%d' % sys.version_info[:3],"
    " 'mods': mods}))\n"
)


pytestmark = pytest.mark.usefixtures("shared_uv_cache")


def output(result: Any) -> dict[str, Any]:
    """The JSON line the project printed."""
    assert result.code == 0, result.text
    data: dict[str, Any] = json.loads(result.out.strip().splitlines()[-1])
    return data


def env_entries(tmp_path: Path) -> list[Path]:
    area = tmp_path / "cache" / "envs" / "virtualenv"
    return sorted(p for p in area.iterdir() if p.is_dir()) if area.is_dir() else []


def lock_of(record: dict[str, Any], tmp_path: Path) -> str:
    return (
        tmp_path / "store" / "artifacts" / str(record["id"]) / "env" / "pylock.toml"
    ).read_text()


def copy_example(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLES / "python_env", tmp_path / "python_env"))


def test_python_env_project_builds_a_venv_and_records_a_pylock(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    data = output(cli(str(project), "-P", "word=hi"))
    assert data["prefix"].startswith(str(tmp_path / "cache" / "envs" / "virtualenv"))
    assert (data["six"], data["idna"], data["word"]) == ("1.17.0", "3.10", "hi")
    assert data["python"].startswith(MINOR)
    record = last_record()
    assert record["env"]["kind"] == "virtualenv" and record["env"]["built"] is True
    assert record["env"]["lock_name"] == "pylock.toml"
    lock = lock_of(record, tmp_path)
    assert 'name = "six"' in lock and 'version = "1.17.0"' in lock and "sha256" in lock
    assert 'name = "idna"' in lock and 'version = "3.10"' in lock


def test_a_cached_env_is_reused_with_no_install_step(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    first = cli(str(project))
    assert first.code == 0, first.text and "building virtualenv" in first.err
    marker = env_entries(tmp_path)[0] / ".run-project-complete"
    stamp = marker.stat().st_mtime_ns
    second = cli(str(project), "-P", "word=again")
    assert output(second)["word"] == "again"
    assert "building virtualenv" not in second.err and "resolving" not in second.err
    assert last_record()["env"]["built"] is False
    assert marker.stat().st_mtime_ns == stamp and len(env_entries(tmp_path)) == 1
    assert last_record()["env"]["key"] == records()[1]["env"]["key"]


def test_requirements_txt_without_manifest_env_selects_a_virtualenv(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"show.py": SHOW, "requirements.txt": "six==1.16.0\n"})
    data = output(cli(str(project), "-e", "show.py"))
    assert last_record()["env"]["kind"] == "virtualenv"
    assert data["prefix"].startswith(str(tmp_path / "cache"))
    bare = make_project(tmp_path / "bare", {"show.py": SHOW})
    output(cli(str(bare), "-e", "show.py"))
    assert last_record()["env"]["kind"] == "local"


def test_pyproject_dependencies_are_installed_without_the_project(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "show.py": SHOW.replace("sys.argv[1:]", "['six']"),
        "pyproject.toml": '[project]\nname = "demo"\nversion = "0.1"\ndependencies = ["six==1.16.0"]\n',
    })  # fmt: skip
    data = output(cli(str(project), "-e", "show.py"))
    assert data["mods"] == {"six": "1.16.0"}
    assert last_record()["env"]["inputs"] == "pyproject.toml"


def test_a_project_pylock_wins_and_is_installed_exactly(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "show.py": SHOW.replace("sys.argv[1:]", "['six']"),
        "requirements.txt": "six==1.17.0\n",
        "pylock.in": "six==1.16.0\n",
    })  # fmt: skip
    subprocess.run([uv_bin(), "pip", "compile", "-q", "--format", "pylock.toml", "pylock.in",
                    "-o", "pylock.toml"], cwd=project, check=True)  # fmt: skip
    result = cli(str(project), "-e", "show.py")
    assert output(result)["mods"] == {"six": "1.16.0"}
    assert "pylock.toml is installed exactly" in result.err
    assert lock_of(last_record(), tmp_path) == (project / "pylock.toml").read_text()


def test_a_project_uv_lock_is_installed_as_locked_not_as_declared(tmp_path: Path) -> None:
    pyproject = '[project]\nname = "demo"\nversion = "0.1"\nrequires-python = ">=3.10"\n'
    project = make_project(tmp_path / "p", {
        "show.py": SHOW.replace("sys.argv[1:]", "['six']"),
        "pyproject.toml": pyproject + 'dependencies = ["six<1.17"]\n',
    })  # fmt: skip
    subprocess.run([uv_bin(), "lock", "-q"], cwd=project, check=True)
    # The declaration moves on; the lock is what gets installed (uv export --frozen).
    (project / "pyproject.toml").write_text(pyproject + 'dependencies = ["six"]\n')
    assert output(cli(str(project), "-e", "show.py"))["mods"] == {"six": "1.16.0"}
    assert "demo" not in lock_of(last_record(), tmp_path)


def test_conda_yaml_under_virtualenv_converts_as_mlflow_does(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "MLproject": "conda_env: env/conda.yaml\nentry_points:\n  main: {command: python show.py six}\n",
        "show.py": SHOW,
        "env/conda.yaml": f"""\
            name: demo
            channels: [conda-forge]
            dependencies:
              - python={MINOR}
              - pip
              - numpy=1.26
              - pip:
                - six==1.16.0
            """,
    })  # fmt: skip
    result = cli(str(project), "--env-manager", "virtualenv")
    data = output(result)
    assert data["mods"] == {"six": "1.16.0"} and data["python"].startswith(MINOR)
    assert "conda packages not installed in a virtualenv: numpy=1.26" in result.err
    assert "pip" in lock_of(last_record(), tmp_path)  # pip became a build dependency
    uv = cli(str(project), "--env-manager", "uv")
    assert uv.code == 0 and last_record()["env"]["built"] is False


def test_a_missing_python_version_lists_the_versions_found(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "MLproject": "python_env: python_env.yaml\nentry_points:\n  main: {command: 'python -V'}\n",
        "python_env.yaml": 'python: "3.4"\ndependencies: [six]\n',
    })  # fmt: skip
    result = cli(str(project))
    assert result.code == 125
    assert "Python 3.4 (python_env.yaml) was not found on this machine; found:" in result.err
    assert f"{MINOR}." in result.err and "hint: install Python 3.4" in result.err
    assert last_record()["status"] == "FAILED" and env_entries(tmp_path) == []


def test_an_exact_patch_not_here_uses_the_same_minor_with_a_warning(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "MLproject": "python_env: python_env.yaml\nentry_points:\n  main: {command: python show.py}\n",
        "python_env.yaml": f'python: "{MINOR}.999"\n',
        "show.py": SHOW,
    })  # fmt: skip
    result = cli(str(project))
    assert output(result)["python"].startswith(MINOR)
    assert f"Python {MINOR}.999 (python_env.yaml) is not on this machine; using" in result.err


def test_another_installed_python_version_is_found(tmp_path: Path) -> None:
    from runner.envs.python import interpreters

    others = [i for i in interpreters.available() if not i.version.startswith(MINOR + ".")
              and i.version >= "3.8"]  # fmt: skip
    if not others:
        pytest.skip(f"only Python {MINOR} on this machine (no pyenv/uv/PATH interpreters)")
    want = others[-1].version
    project = make_project(tmp_path / "p", {
        "MLproject": "python_env: python_env.yaml\nentry_points:\n  main: {command: python show.py}\n",
        "python_env.yaml": f'python: "{want}"\n',
        "show.py": SHOW,
    })  # fmt: skip
    assert output(cli(str(project)))["python"] == want
    assert last_record()["env"]["python"] == want


def test_changing_a_file_named_by_r_makes_a_new_env(tmp_path: Path) -> None:
    """docs/security.md#environments: python_env.yaml stays the same; the -r file (and a file it includes)
    changes; the key changes and the new env has the new pins."""
    project = copy_example(tmp_path)
    (project / "requirements.txt").write_text("-r more.txt\n")
    (project / "more.txt").write_text("idna==3.10\n")
    assert output(cli(str(project)))["idna"] == "3.10"
    key1 = last_record()["env"]["key"]
    (project / "more.txt").write_text("idna==3.7\n")
    assert output(cli(str(project)))["idna"] == "3.7"
    key2 = last_record()["env"]["key"]
    assert key1 != key2 and last_record()["env"]["built"] is True
    assert len(env_entries(tmp_path)) == 2


def test_same_inputs_elsewhere_share_one_env(tmp_path: Path) -> None:
    first = Path(shutil.copytree(EXAMPLES / "python_env", tmp_path / "a"))
    second = Path(shutil.copytree(EXAMPLES / "python_env", tmp_path / "b"))
    output(cli(str(first)))
    output(cli(str(second)))
    assert last_record()["env"]["built"] is False and len(env_entries(tmp_path)) == 1


OUTSIDE = "SECRET-CANARY-4\n"


@pytest.mark.parametrize(
    ("files", "name"),
    [
        ({"MLproject": "python_env: ../outside.yaml\nentry_points: {main: {command: 'true'}}\n"},
         "../outside.yaml"),
        ({"MLproject": "python_env: /etc/passwd\nentry_points: {main: {command: 'true'}}\n"},
         "/etc/passwd"),
        ({"MLproject": "python_env: link.yaml\nentry_points: {main: {command: 'true'}}\n"},
         "link.yaml"),
        ({"MLproject": "python_env: env.yaml\nentry_points: {main: {command: 'true'}}\n",
          "env.yaml": "python: '3'\ndependencies: ['-r ../outside.yaml']\n"}, "../outside.yaml"),
        ({"MLproject": "python_env: env.yaml\nentry_points: {main: {command: 'true'}}\n",
          "env.yaml": "dependencies: ['--requirement=reqs.txt']\n",
          "reqs.txt": "-c ../../outside.yaml\n"}, "../../outside.yaml"),
        ({"MLproject": "conda_env: ../outside.yaml\nentry_points: {main: {command: 'true'}}\n"},
         "../outside.yaml"),
        ({"requirements.txt": "-r link.yaml\n", "t.py": ""}, "link.yaml"),
        ({"MLproject": "python_env: env.yaml\nentry_points: {main: {command: 'true'}}\n",
          "env.yaml": "dependencies: ['pkg @ file:///etc']\n"}, "file:///etc"),
        ({"MLproject": "python_env: env.yaml\nentry_points: {main: {command: 'true'}}\n",
          "env.yaml": "dependencies: ['-e /etc']\n"}, "/etc"),
        ({"requirements.txt": "-e ../\n", "t.py": ""}, "../"),
        ({"requirements.txt": "six\npkg@file:%2E%2E/%2E%2E\n", "t.py": ""}, "file:%2E%2E/%2E%2E"),
        ({"requirements.txt": "--editable=/etc\n", "t.py": ""}, "/etc"),
    ],
)  # fmt: skip
def test_env_files_that_leave_the_project_are_refused(
    tmp_path: Path, files: dict[str, str], name: str
) -> None:
    """docs/security.md#environments: python_env, conda_env and -r/-c paths out of the project (directly,
    absolute, or through a symlink) are refused; the outside file is never read."""
    (tmp_path / "outside.yaml").write_text(OUTSIDE)
    project = make_project(tmp_path / "proj" / "p", files)
    (tmp_path / "proj" / "outside.yaml").write_text(OUTSIDE)
    (project / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    entry = ["-e", "t.py"] if "t.py" in files else []
    result = cli(str(project), *entry, "--env-manager", "virtualenv")
    assert result.code == 125, result.text
    assert f"{name!r} leaves the project directory" in result.err
    assert "hint: name a file inside the project" in result.err
    assert "CANARY" not in result.text and env_entries(tmp_path) == []
    assert all(r["status"] == "FAILED" for r in records())


def test_python_env_with_an_unknown_key_is_refused_with_its_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "MLproject": "python_env: python_env.yaml\nentry_points: {main: {command: 'true'}}\n",
        "python_env.yaml": "python: '3'\ndependancies: [six]\n",
    })  # fmt: skip
    result = cli(str(project))
    assert result.code == 125 and "python_env.yaml:2: unknown key 'dependancies'" in result.err


def test_index_settings_are_part_of_the_key(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    output(cli(str(project)))
    other = cli(str(project), env={"UV_INDEX_STRATEGY": "unsafe-best-match"})
    assert other.code == 0 and last_record()["env"]["built"] is True
    assert len(env_entries(tmp_path)) == 2
    assert "unsafe" not in json.dumps(last_record())  # values are hashed, never recorded


def test_offline_rebuild_from_a_recorded_pylock_with_a_warm_uv_cache(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    output(cli(str(project)))
    lock = lock_of(last_record(), tmp_path)
    (project / "pylock.toml").write_text(lock)  # what a rerun does with the recorded lock
    shutil.rmtree(tmp_path / "cache" / "envs")
    dead = "http://127.0.0.1:9"
    offline = {"UV_OFFLINE": "1", "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "ALL_PROXY": dead,
               "https_proxy": dead, "http_proxy": dead}  # fmt: skip
    data = output(cli(str(project), env=offline))
    assert (data["six"], data["idna"]) == ("1.17.0", "3.10")
    assert last_record()["env"]["built"] is True
    assert lock_of(last_record(), tmp_path) == lock


def test_progress_is_line_based_off_a_terminal_and_live_on_one(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    plain = cli(str(project))
    assert "\r" not in plain.err and "run-project: building virtualenv" in plain.err
    assert "run-project: virtualenv ready" in plain.err
    shutil.rmtree(tmp_path / "cache" / "envs")
    master, slave = os.openpty()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.run([sys.executable, "-m", "runner", str(project)], stderr=slave,
                          stdout=subprocess.PIPE, env=env, timeout=120, check=False)  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "\r\x1b[2K" in text and "s)" in text
    assert "Installed" in text or "Prepared" in text or "Resolved" in text
