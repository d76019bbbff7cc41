"""Settings: flag, then variable, then run-project.toml (the user's own files only)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from support.cli import cli, records
from support.projects import make_project


def test_project_config_of_a_local_directory_chooses_the_store(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RUN_PROJECT_STORE")
    project = make_project(tmp_path / "p", {
        "t.py": "print('hi')\n",
        "run-project.toml": f'store = "{tmp_path / "configured"}"\n',
    })  # fmt: skip
    assert cli(str(project), "-e", "t.py").code == 0
    assert len(records(tmp_path / "configured")) == 1


def test_a_fetched_archive_cannot_choose_the_store(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RUN_PROJECT_STORE")
    evil = tmp_path / "chosen-by-archive"
    project = make_project(tmp_path / "src" / "proj", {
        "t.py": "print('hi')\n",
        "run-project.toml": f'store = "{evil}"\ncache = "{evil}/cache"\n',
    })  # fmt: skip
    archive = tmp_path / "proj.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(project, arcname="proj")
    result = cli(str(archive), "-e", "t.py")
    assert result.code == 0, result.text
    assert not evil.exists()
    assert records(tmp_path / "runs")[0]["source"]["kind"] == "archive"


@pytest.mark.parametrize(("line", "suggested"), [
    ('stroe = "elsewhere"', "store"),
    ("grace-secnds = 3", "grace-seconds"),
    ("heartbeat_secs = 3", "heartbeat_seconds"),
])  # fmt: skip
def test_an_unknown_key_in_the_settings_file_is_an_error_with_a_suggestion(
    tmp_path: Path, line: str, suggested: str
) -> None:
    project = make_project(tmp_path / "p", {"t.py": "print('hi')\n", "run-project.toml": line})
    result = cli(str(project), "-e", "t.py")
    key = line.split()[0]
    assert result.code != 0, result.text
    assert f"unknown setting '{key}' in settings file {project / 'run-project.toml'}" in result.err
    assert f"did you mean `{suggested}`?" in result.err, result.err
    assert records() == [] and "Traceback" not in result.err


def test_an_unknown_key_in_the_users_settings_file_stops_runs_list(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "run-project").mkdir(parents=True)
    (config / "run-project" / "run-project.toml").write_text('stroe = "x"\n')
    result = cli("runs", "list", env={"XDG_CONFIG_HOME": str(config), "RUN_PROJECT_STORE": ""})
    assert result.code != 0 and "unknown setting 'stroe'" in result.err, result.text
    assert "did you mean `store`?" in result.err
