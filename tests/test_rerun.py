"""`run-project rerun`: the recorded commit + diff + untracked files, typed params (overrides
recorded), inputs checked, a verdict on the outputs; docs/security.md#git and #reruns-and-bundles."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from runner.project.schemas import schema_errors
from support.cli import cli, last_record, ok, records
from support.git_servers import commit, git
from support.projects import RERUN_MLPROJECT, make_repo

NOISY = "import os\nopen('model.txt', 'w').write(os.urandom(8).hex())\n"


def test_rerun_of_a_dirty_local_run_reproduces_its_outputs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    ok(cli(str(repo), "-P", "lr=0.5"))
    first = last_record()
    assert first["source"]["dirty"] is True
    (repo / "train.py").write_text("raise SystemExit('later edit')\n")  # the tree moves on
    (repo / "helper.py").unlink()
    result = ok(cli("rerun", first["id"][:10]))
    assert "outputs identical (1 files, hash for hash)" in result.out
    second = last_record()
    assert second["rerun_of"] == first["id"]
    assert second["rerun_verdict"]["identical"] is True
    assert schema_errors("run-record", second) == []
    assert second["source"]["commit"] == first["source"]["commit"]
    assert second["params"]["lr"] == {"type": "float", "value": 0.5, "source": "rerun"}
    assert second["outputs"][0]["sha256"] == first["outputs"][0]["sha256"]
    assert (repo / "train.py").read_text().startswith("raise")  # the user's tree untouched


@pytest.mark.slow
def test_a_param_override_is_recorded_and_named_in_the_verdict(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    ok(cli(str(repo)))
    first = last_record()
    result = ok(cli("rerun", first["id"], "-P", "lr=0.25"))
    second = last_record()
    assert second["params"]["lr"] == {"type": "float", "value": 0.25, "source": "cli"}
    assert "differs: workdir/model.txt" in result.out and "runs diff" in result.out


def test_a_changed_input_stops_the_rerun_with_a_list(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    data = tmp_path / "outside.csv"
    data.write_text("x\n1\n")
    ok(cli(str(repo), "-P", f"data={data}"))
    first = last_record()
    data.write_text("x\n2\n")
    stopped = cli("rerun", first["id"])
    assert stopped.code == 125 and "inputs differ from the recorded run" in stopped.err
    assert f"{data}: changed" in stopped.err and "--allow-changed-inputs" in stopped.err
    assert len(records()) == 1  # nothing ran
    data.unlink()
    assert f"{data}: missing" in cli("rerun", first["id"]).err
    data.write_text("x\n3\n")
    allowed = ok(cli("rerun", first["id"], "--allow-changed-inputs"))
    assert "input differs (allowed)" in allowed.err and "differs: workdir/model.txt" in allowed.out


def test_a_nondeterministic_project_gets_a_verdict_naming_the_file(tmp_path: Path) -> None:
    repo = tmp_path / "noisy"
    commit(repo, {"noisy.py": NOISY})
    ok(cli(str(repo), "-e", "noisy.py"))
    result = ok(cli("rerun", last_record()["id"]))
    assert "outputs differ (1 of 1 files)" in result.out
    assert "differs: workdir/model.txt" in result.out
    assert last_record()["rerun_verdict"]["differ"] == ["workdir/model.txt"]


def test_rerun_on_a_fresh_cache_and_a_copied_store_works_from_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "proj")
    ok(cli(str(repo), "-P", "lr=0.3"))
    first = last_record()
    shutil.copytree(tmp_path / "store", tmp_path / "store2")
    shutil.rmtree(tmp_path / "cache")
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setenv("RUN_PROJECT_STORE", str(tmp_path / "store2"))
    result = ok(cli("rerun", first["id"]))
    assert "outputs identical" in result.out
    assert last_record(tmp_path / "store2")["rerun_of"] == first["id"]


def test_rerun_after_the_tag_moved_uses_the_recorded_sha(tmp_path: Path) -> None:
    """docs/security.md#git: the record has the full SHA; the rerun uses it and says the tag moved."""
    work = tmp_path / "work"
    old = commit(work, {"MLproject": "entry_points:\n  main:\n    command: python v.py\n",
                        "v.py": "open('out.txt', 'w').write('one')\n"})  # fmt: skip
    git("tag", "v1", cwd=work)
    bare = tmp_path / "served.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    ok(cli(f"file://{bare}", "-v", "v1"))
    first = last_record()
    assert first["source"]["commit"] == old
    new = commit(work, {"v.py": "open('out.txt', 'w').write('two')\n"})
    git("tag", "-f", "v1", cwd=work)
    git("push", "-q", "--force", str(bare), "refs/tags/v1", cwd=work)
    result = ok(cli("rerun", first["id"]))
    assert f"'v1' moved: it now points to {new}" in result.err and old in result.err
    assert "outputs identical" in result.out
    assert last_record()["source"]["commit"] == old


def test_an_edited_record_param_is_validated_like_command_line_input(tmp_path: Path) -> None:
    """docs/security.md#reruns-and-bundles: a float param edited to `$(touch C)` in a shared store is refused."""
    repo = make_repo(tmp_path / "proj")
    shell = repo / "MLproject"
    shell.write_text(RERUN_MLPROJECT.replace('"python train.py {lr} {data}"',
                                       '"python train.py {lr} {data} && echo done"'))  # fmt: skip
    ok(cli(str(repo), "-P", "lr=0.5"))
    first = last_record()
    canary = tmp_path / "C"
    db = sqlite3.connect(tmp_path / "store" / "runs.db")
    (text,) = db.execute("SELECT record FROM runs WHERE id = ?", (first["id"],)).fetchone()
    record = json.loads(text)
    record["params"]["lr"]["value"] = f"$(touch {canary})"
    db.execute("UPDATE runs SET record = ? WHERE id = ?", (json.dumps(record), first["id"]))
    db.commit()
    db.close()
    refused = cli("rerun", first["id"])
    assert refused.code == 2 and "parameter 'lr'" in refused.err and "float" in refused.err
    assert not canary.exists() and len(records()) == 1


def test_backend_is_passed_to_the_pipeline_and_bad_targets_are_named(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    ok(cli(str(repo)))
    first = last_record()
    elsewhere = cli("rerun", first["id"], "--backend", "no-such-backend")
    assert elsewhere.code == 2 and "no-such-backend" in elsewhere.err
    unknown = cli("rerun", "abcdef12")
    assert unknown.code == 125 and "no run abcdef12" in unknown.err
    missing = cli("rerun", str(tmp_path / "gone.tar.gz"))
    assert missing.code == 125 and "gone.tar.gz does not exist" in missing.err
