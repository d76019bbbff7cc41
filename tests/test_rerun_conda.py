"""A rerun of a conda run installs the recorded conda-lock.yml exactly (no solve), on a
fresh cache, after the project's conda.yaml moved on."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import cli, last_record
from support.conda import project
from support.git_servers import commit

pytestmark = pytest.mark.usefixtures("conda_settings")


@pytest.mark.slow
def test_rerun_installs_the_recorded_conda_lock_without_solving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = project(tmp_path / "p", ["python", "alpha <2"])
    commit(proj, {})
    first = cli(str(proj))
    assert first.code == 0, first.text
    original = last_record()
    assert original["env"]["lock_name"] == "conda-lock.yml"
    commit(proj, {"conda.yaml": "name: t\ndependencies:\n  - python\n  - alpha >=2\n"})
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "fresh-cache"))
    result = cli("rerun", original["id"])
    assert result.code == 0, result.text
    assert "no solve" in result.err and "solving" not in result.err
    assert result.out.count("alpha 1.") == 1 and "outputs identical" in result.out
    assert last_record()["rerun_of"] == original["id"]


@pytest.mark.slow
def test_rerun_takes_channel_alias_like_run(
    tmp_path: Path, channel: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUN_PROJECT_CHANNEL_ALIAS", "http://127.0.0.1:9/")  # nothing listens
    proj = project(tmp_path / "p", ["python", "alpha <2"])
    commit(proj, {})
    first = cli(str(proj), "--channel-alias", channel[0])
    assert first.code == 0, first.text
    original = last_record()
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "fresh-cache"))  # fetched again
    result = cli("rerun", original["id"], "--channel-alias", channel[0])
    assert result.code == 0, result.text
    assert "no solve" in result.err and "outputs identical" in result.out
    assert last_record()["rerun_of"] == original["id"]
    bad = cli("rerun", original["id"], "--channel-alias", "ftp://x")
    assert bad.code != 0 and "channel alias" in bad.err and "ftp://x" in bad.err
