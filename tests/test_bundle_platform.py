"""`pack --platform`: locks (and with --with-deps, wheels) resolved for another platform,
recorded in bundle.json; such a bundle refuses to run on this machine, naming both."""

from __future__ import annotations

import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from runner.bundles.platforms import this_platform
from runner.project.schemas import schema_errors
from support.bundles import manifest_of
from support.cli import cli, ok
from support.git_servers import commit
from support.projects import make_project

YAML_PROJECT = {
    "MLproject": "name: y\nentry_points:\n  main:\n    command: python -c 'import yaml'\n",
    "requirements.txt": "pyyaml==6.0.2\n",
}


pytestmark = pytest.mark.usefixtures("shared_uv_cache")


def lock_in(bundle: Path) -> dict[str, Any]:
    with tarfile.open(bundle) as tar:
        name = next(n for n in tar.getnames() if n.endswith("/pylock.toml"))
        handle = tar.extractfile(name)
        assert handle is not None
        return tomllib.loads(handle.read().decode())


def test_pack_for_linux_aarch64_bundles_its_wheels_and_refuses_to_run_here(
    tmp_path: Path,
) -> None:
    target = "linux-aarch64" if this_platform() != "linux-aarch64" else "linux-64"
    arch = {"linux-aarch64": "aarch64", "linux-64": "x86_64"}[target]
    project = make_project(tmp_path / "y", YAML_PROJECT)
    commit(project, {})
    bundle = tmp_path / "y.tar.gz"
    packed = ok(cli("pack", str(project), "-o", str(bundle), "--with-deps", "--platform", target))
    assert f"for {target}" in packed.err
    info = manifest_of(bundle, ".run-project-bundle/bundle.json")
    assert schema_errors("bundle", info) == []
    assert info["platform"]["target"] == target
    [wheel] = info["wheels"]
    assert wheel["name"] == "pyyaml" and arch in wheel["file"], wheel
    [package] = lock_in(bundle)["packages"]
    assert package["wheels"] == [{"name": wheel["file"], "hashes": {"sha256": wheel["sha256"]},
                                  "path": f".run-project-bundle/wheels/{wheel['file']}"}]  # fmt: skip
    refused = cli(str(bundle))
    assert refused.code == 125, refused.text
    assert f"packed for {target}; this machine is {this_platform()}" in refused.err


def test_pack_without_platform_records_this_machine_and_a_bad_platform_is_named(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "p", {"MLproject": "entry_points:\n  main:\n"
                                            "    command: python -c pass\n"})  # fmt: skip
    bundle = tmp_path / "p.tar.gz"
    ok(cli("pack", str(project), "-o", str(bundle)))
    info = manifest_of(bundle, ".run-project-bundle/bundle.json")
    assert info["platform"]["target"] == this_platform()
    bad = cli("pack", str(project), "-o", str(bundle), "--platform", "amiga-68k")
    assert bad.code == 2 and "'amiga-68k'" in bad.err and "linux-aarch64" in bad.err
