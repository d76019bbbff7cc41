"""`pack --with-deps` of a conda project: every conda package and pip wheel the lock names
travels in the bundle, which then runs with the channel and the index unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.project.schemas import schema_errors
from support.bundles import OFFLINE, manifest_of
from support.cli import cli, last_record
from support.conda import project
from support.git_servers import commit

pytestmark = pytest.mark.usefixtures("conda_settings")

DEAD = "http://127.0.0.1:9/"  # nothing listens on the discard port


@pytest.mark.slow
def test_pack_with_deps_of_a_conda_project_runs_with_the_channel_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = project(tmp_path / "p", ["python", "alpha <2"], pip=["six==1.17.0"])
    (proj / "show.py").write_text(
        (proj / "show.py").read_text() + "import six\nprint('six', six.__version__)\n"
    )
    commit(proj, {})
    bundle = tmp_path / "project.tar.gz"
    packed = cli("pack", str(proj), "-o", str(bundle), "--with-deps")
    assert packed.code == 0, packed.text
    info = manifest_of(bundle, ".run-project-bundle/bundle.json")
    assert schema_errors("bundle", info) == []
    assert info["env"] == {"kind": "conda", "lock": "conda-lock.yml", "with_deps": True}
    files = sorted(w["file"] for w in info["wheels"])
    assert any(f.startswith("conda/alpha-1.") for f in files), files
    assert any(f.startswith("conda/python-") for f in files), files
    assert "wheels/six-1.17.0-py2.py3-none-any.whl" in files
    conda = sum(f.startswith("conda/") for f in files)
    assert f"with {conda} conda packages and 1 wheel;" in packed.out, packed.out
    # The teammate's machine: fresh caches, the channel alias and the index unreachable.
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "teammate-cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "teammate-uv"))
    monkeypatch.setenv("RUN_PROJECT_CHANNEL_ALIAS", DEAD)
    result = cli(str(bundle), env=OFFLINE)
    assert result.code == 0, result.text
    assert "no solve" in result.err and "alpha 1.0\nbeta 1.0\n" in result.out
    assert "six 1.17.0" in result.out
    assert last_record()["env"]["kind"] == "conda"


def test_a_bundled_conda_archive_is_still_hash_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tarfile

    proj = project(tmp_path / "p", ["python", "alpha <2"])
    commit(proj, {})
    bundle = tmp_path / "project.tar.gz"
    packed = cli("pack", str(proj), "-o", str(bundle), "--with-deps")
    assert packed.code == 0, packed.text
    conda = len(manifest_of(bundle, ".run-project-bundle/bundle.json")["wheels"])
    assert f"with {conda} conda packages;" in packed.out and "wheel" not in packed.out
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(unpacked, filter="data")
    top = next(unpacked.iterdir())
    archive = next((top / ".run-project-bundle" / "conda").glob("alpha-*"))
    archive.write_bytes(archive.read_bytes() + b"\0")
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "teammate-cache"))
    monkeypatch.setenv("RUN_PROJECT_CHANNEL_ALIAS", DEAD)
    refused = cli(str(top), env=OFFLINE)
    assert refused.code != 0 and "differs" in refused.err, refused.text


def test_pack_a_conda_project_for_another_platform_solves_for_that_subdir(
    tmp_path: Path,
) -> None:
    import tarfile

    import yaml

    from runner.bundles.platforms import this_platform

    target = "linux-aarch64" if this_platform() != "linux-aarch64" else "linux-64"
    proj = project(tmp_path / "p", ["alpha <2"])
    commit(proj, {})
    bundle = tmp_path / "project.tar.gz"
    packed = cli("pack", str(proj), "-o", str(bundle), "--with-deps", "--platform", target)
    assert packed.code == 0, packed.text
    assert f"for {target}" in packed.err
    info = manifest_of(bundle, ".run-project-bundle/bundle.json")
    assert schema_errors("bundle", info) == [] and info["platform"]["target"] == target
    with tarfile.open(bundle) as tar:
        name = next(n for n in tar.getnames() if n.endswith("/conda-lock.yml"))
        handle = tar.extractfile(name)
        assert handle is not None
        lock = yaml.safe_load(handle)
    assert lock["metadata"]["platforms"] == [target]
    found = {(p["name"], p["version"], p["platform"]) for p in lock["package"]}
    assert found == {("alpha", "1.0", target), ("beta", "1.0", target)}
    refused = cli(str(bundle))
    assert refused.code == 125 and f"packed for {target}; this machine is" in refused.err


@pytest.mark.slow
def test_a_shipped_lock_beside_conda_yaml_in_a_subdirectory_is_the_one_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.conda import lock_of

    assert cli(str(project(tmp_path / "a", ["python", "alpha <2"]))).code == 0
    lock = lock_of(last_record()).read_text()
    proj = project(tmp_path / "b", ["python", "alpha"])
    (proj / "env").mkdir()
    (proj / "conda.yaml").rename(proj / "env" / "conda.yaml")
    (proj / "env" / "conda-lock.yml").write_text(lock)
    (proj / "MLproject").write_text((proj / "MLproject").read_text().replace(
        "conda_env: conda.yaml", "conda_env: env/conda.yaml"))  # fmt: skip
    commit(proj, {})
    bundle = tmp_path / "project.tar.gz"
    packed = cli("pack", str(proj), "-o", str(bundle), "--with-deps")
    assert packed.code == 0, packed.text
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "teammate-cache"))
    monkeypatch.setenv("RUN_PROJECT_CHANNEL_ALIAS", DEAD)
    result = cli(str(bundle), env=OFFLINE)
    assert result.code == 0, result.text
    assert "alpha 1.0\nbeta 1.0\n" in result.out  # the lock's versions, from the bundle
