"""Bundles: `runs export -o` → `rerun run.tar.gz` into another store, and `pack --with-deps`
run with the package index unreachable in a fresh cache; manifests are checked on read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from runner.project.schemas import schema_errors
from support.bundles import OFFLINE, manifest_of
from support.cli import cli, last_record, ok, records
from support.git_servers import commit, git
from support.projects import make_project, make_repo
from support.services import require

SIX_PROJECT = {
    "MLproject": """\
        name: six-demo
        entry_points:
          train:
            parameters:
              lr: {type: float, default: 0.01}
            command: "python train.py {lr}"
        """,
    "requirements.txt": "six==1.17.0\n",
    "train.py": """\
        import sys, six
        open('model.txt', 'w').write(f'{sys.argv[1]} {six.__version__}')
        print('six', six.__version__, 'lr', sys.argv[1])
        """,
}


pytestmark = pytest.mark.usefixtures("shared_uv_cache")


def test_export_then_rerun_the_bundle_into_another_store(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    data = tmp_path / "outside.csv"
    data.write_text("x\n1\n")
    ok(cli(str(repo), "-P", "lr=0.7", "-P", f"data={data}"))
    first = last_record()
    bundle = tmp_path / "run.tar.gz"
    ok(cli("runs", "export", first["id"][:8], "-o", str(bundle), "--with-inputs"))
    info = manifest_of(bundle, "/bundle.json")
    assert schema_errors("bundle", info) == [] and info["kind"] == "run"
    shutil.rmtree(repo)  # another machine: neither the project nor the input are here
    data.unlink()
    other = tmp_path / "other-store"
    result = ok(cli("rerun", str(bundle), "--store", str(other)))
    assert "using the bundled copy" in result.err and "outputs identical" in result.out
    second = last_record(other)
    assert second["rerun_of"] == first["id"] and second["source"]["commit"]
    assert second["params"]["lr"]["value"] == 0.7
    assert schema_errors("run-record", second) == []
    assert len(records()) == 1  # the first store did not get the rerun


def test_a_damaged_run_bundle_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    ok(cli(str(repo)))
    bundle = tmp_path / "run.tar.gz"
    ok(cli("runs", "export", last_record()["id"], "-o", str(bundle)))
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(unpacked, filter="data")
    top = next(unpacked.iterdir())
    record = json.loads((top / "record.json").read_text())
    record["params"]["lr"]["value"] = "$(touch C)"
    (top / "record.json").write_text(json.dumps(record))
    edited = tmp_path / "edited.tar.gz"
    with tarfile.open(edited, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    refused = cli("rerun", str(edited))
    assert refused.code == 125 and "record.json is missing or differs" in refused.err


@pytest.mark.parametrize("added", ["inputs/" + "0" * 64, "project/extra.py", "project/alias"])
def test_a_member_not_listed_in_bundle_json_is_refused(tmp_path: Path, added: str) -> None:
    repo = make_repo(tmp_path / "proj")
    ok(cli(str(repo)))
    bundle = tmp_path / "run.tar.gz"
    ok(cli("runs", "export", last_record()["id"], "-o", str(bundle), "--with-inputs"))
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(unpacked, filter="data")
    top = next(unpacked.iterdir())
    extra = top / added
    extra.parent.mkdir(exist_ok=True)
    if added.endswith("alias"):
        extra.symlink_to("../record.json")
    else:
        extra.write_text("open('CANARY', 'w')\n")
    edited = tmp_path / "edited.tar.gz"
    with tarfile.open(edited, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    refused = cli("rerun", str(edited))
    assert refused.code == 125, refused.text
    assert f"{added} is not listed in bundle.json" in refused.err and "hint:" in refused.err
    assert len(records()) == 1


def test_pack_with_deps_runs_with_the_index_unreachable_in_a_fresh_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "six-demo", SIX_PROJECT)
    commit(project, {})
    bundle = tmp_path / "project.tar.gz"
    packed = ok(cli("pack", str(project), "-o", str(bundle), "--with-deps"))
    assert "with 1 wheel;" in packed.out
    info = manifest_of(bundle, ".run-project-bundle/bundle.json")
    assert schema_errors("bundle", info) == []
    assert info["env"] == {"kind": "virtualenv", "lock": "pylock.toml", "with_deps": True}
    assert [w["name"] for w in info["wheels"]] == ["six"]
    # The teammate's machine: a new cache, an empty uv cache, no index, no proxy.
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "teammate-cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "teammate-uv"))
    result = ok(cli(str(bundle), "-e", "train", "-P", "lr=0.1", env=OFFLINE))
    assert "six 1.17.0 lr 0.1" in result.out
    record = last_record()
    assert record["source"]["kind"] == "archive" and record["env"]["kind"] == "virtualenv"


def test_rerun_builds_the_env_from_the_recorded_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "six-demo", SIX_PROJECT)
    commit(project, {})
    ok(cli(str(project), "-e", "train"))
    first = last_record()
    (project / "requirements.txt").write_text("six==1.16.0\n")  # the tree moves on
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "fresh-cache"))
    result = ok(cli("rerun", first["id"]))
    assert "resolving" not in result.err and "from pylock.toml" in result.err
    assert "six 1.17.0" in result.out and "outputs identical" in result.out


def test_an_edited_packed_project_is_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": "entry_points:\n  main:\n"
                                            "    command: python -c pass\n"})  # fmt: skip
    bundle = tmp_path / "p.tar.gz"
    ok(cli("pack", str(project), "-o", str(bundle)))
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(unpacked, filter="data")
    top = next(unpacked.iterdir())
    (top / "MLproject").write_text("entry_points:\n  main:\n    command: python -c 'import os'\n")
    refused = cli(str(top))
    assert refused.code == 125 and "MLproject is missing or differs" in refused.err


@pytest.mark.slow
def test_pack_image_builds_a_docker_image_that_runs_the_entry_points(tmp_path: Path) -> None:
    from support.docker_image import docker_ready, ensure_base_image

    why = docker_ready()
    if why is not None:
        require("docker", why)
    project = make_project(tmp_path / "imaged", {
        "MLproject": "entry_points:\n  train:\n    command: python train.py {lr}\n"
                     "    parameters:\n      lr: {type: float, default: 0.1}\n",
        "train.py": "import os, sys\nimport run_project_client as rp\n"
                    "rp.log_metric('lr', float(sys.argv[1]))\n"
                    "open('model.txt', 'w').write('in /project')\n"
                    "open(os.path.join(rp.output_dir(), 'model.txt'), 'w').write('kept')\n"
                    "print('image trained', sys.argv[1])\n",
    })  # fmt: skip
    tag = f"run-project-test/packed:{tmp_path.name.lower()[-20:]}"
    packed = ok(cli("pack", str(project), "--image", tag,
                    env={"RUN_PROJECT_DOCKER_IMAGE": ensure_base_image()}))  # fmt: skip
    try:
        line = next(x for x in packed.out.splitlines() if x.strip().startswith("train: "))
        printed = line.split("train: ", 1)[1].replace("{lr}", "0.5")
        teammate = tmp_path / "teammate"
        teammate.mkdir()
        ran = subprocess.run(["sh", "-c", printed], cwd=teammate, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PWD": str(teammate)})  # fmt: skip
        assert ran.returncode == 0 and "image trained 0.5" in ran.stdout, (printed, ran.stderr)
        assert (teammate / "outputs" / "model.txt").read_text() == "kept"
        assert '"key":"lr"' in (teammate / "outputs" / "events.jsonl").read_text()
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_pack_at_a_revision_holds_that_commit_and_runs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    old = commit(repo, {"MLproject": "entry_points:\n  main:\n    command: python v.py\n",
                        "v.py": "print('version one')\n"})  # fmt: skip
    git("tag", "v1", cwd=repo)
    commit(repo, {"v.py": "print('version two')\n"})
    bundle = tmp_path / "old.tar.gz"
    ok(cli("pack", str(repo), "-v", "v1", "-o", str(bundle)))
    info = manifest_of(bundle, ".run-project-bundle/bundle.json")
    assert info["source"]["commit"] == old and info["entry_points"] == ["main"]
    assert "version one" in ok(cli(str(bundle))).out
    assert cli("pack", str(repo)).code == 2  # neither -o nor --image
