"""Hand-offs to a teammate: packs hold what git would see and warn about secret-looking
files; bundles import into the teammate's store; comparisons ignore where a run's working
copy happened to be."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from support.cli import cli, ok, records
from support.git_servers import commit, git
from support.projects import make_project

PLAIN = {"MLproject": "entry_points:\n  main:\n    command: python -c pass\n"}


def _packed_names(bundle: Path) -> set[str]:
    with tarfile.open(bundle) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


def test_pack_in_a_git_tree_holds_what_git_sees_and_warns_about_secrets(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    commit(repo, {**PLAIN, "train.py": "print(1)\n", ".gitignore": ".env\nout/\n"})
    (repo / ".env").write_text("API_KEY=s3cr3t\n")  # ignored: never packed
    (repo / "out").mkdir()
    (repo / "out" / "model.bin").write_text("big")  # ignored output
    (repo / "notes.txt").write_text("untracked, not ignored\n")
    (repo / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\n")  # not ignored: warned
    bundle = tmp_path / "b.tar.gz"
    packed = ok(cli("pack", str(repo), "-o", str(bundle)))
    names = _packed_names(bundle)
    assert {"MLproject", "train.py", ".gitignore", "notes.txt", "deploy.pem"} <= names
    assert ".env" not in names and "out/model.bin" not in names
    assert "uncommitted changes" in packed.err
    assert "look like secrets: deploy.pem" in packed.err and ".run-projectignore" in packed.err
    (repo / ".run-projectignore").write_text("*.pem\n")
    again = ok(cli("pack", str(repo), "-o", str(bundle)))
    assert "deploy.pem" not in _packed_names(bundle) and "secrets" not in again.err


def test_pack_holds_a_checked_out_submodule(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    commit(lib, {"util.py": "X = 1\n"})
    repo = tmp_path / "proj"
    commit(repo, PLAIN)
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib",
        cwd=repo)  # fmt: skip
    git("commit", "-qm", "submodule", cwd=repo)
    bundle = tmp_path / "b.tar.gz"
    ok(cli("pack", str(repo), "-o", str(bundle)))
    names = _packed_names(bundle)
    assert "vendor/lib/util.py" in names and ".gitmodules" in names
    assert not [n for n in names if n.endswith("/.git") or "/.git/" in n], names


def test_pack_outside_git_honours_gitignore_and_warns_about_secrets(tmp_path: Path) -> None:
    project = make_project(tmp_path / "plain", {**PLAIN, ".gitignore": "data/\n*.log\n",
                                                "train.py": "print(1)\n"})  # fmt: skip
    (project / "data").mkdir()
    (project / "data" / "big.csv").write_text("1\n")
    (project / "run.log").write_text("log\n")
    (project / ".env").write_text("API_KEY=s3cr3t\n")
    (project / "sub").mkdir()
    (project / "sub" / "credentials.json").write_text("{}\n")
    bundle = tmp_path / "b.tar.gz"
    packed = ok(cli("pack", str(project), "-o", str(bundle)))
    names = _packed_names(bundle)
    assert {"MLproject", "train.py", ".env", "sub/credentials.json"} <= names
    assert "data/big.csv" not in names and "run.log" not in names
    assert "look like secrets: .env, sub/credentials.json" in packed.err


READS_DATA = {
    "MLproject": """\
        entry_points:
          main:
            parameters:
              data: {type: path, default: data.csv}
            command: "python train.py {data}"
        """,
    "train.py": "import sys\nprint(open(sys.argv[1]).read())\nprint(open('extra.txt').read())\n",
    "data.csv": "a,b\n1,2\n",
    "extra.txt": "read by the code\n",
}


def test_diff_of_two_runs_of_one_commit_shows_no_change(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, READS_DATA)
    ok(cli(str(repo), "-v", "main"))  # each run its own working copy
    ok(cli(str(repo), "-v", "main"))
    first, second = records()[1], records()[0]
    assert first["source"]["path"] != second["source"]["path"]
    assert first["params"]["data"]["relative_path"] == "data.csv"
    assert {i.get("relative_path") for i in first["inputs"]} == {"data.csv", "extra.txt"}
    shown = ok(cli("runs", "diff", first["id"], second["id"])).out
    assert "params: no change" in shown and "inputs: no change" in shown, shown
    table = ok(cli("runs", "compare", first["id"], second["id"])).out
    assert "<project>/data.csv" in table and "* param.data" not in table


def test_compare_derives_the_relative_key_for_records_without_it() -> None:
    from runner.tracking.compare import diff

    def old_record(run_id: str, work: str) -> dict[str, Any]:
        return {"id": run_id, "source": {"path": work, "commit": "a" * 40, "dirty": False},
                "params": {"data": {"type": "path", "value": f"{work}/data.csv"}},
                "inputs": [{"path": f"{work}/data.csv", "sha256": "b" * 64}]}  # fmt: skip

    shown = diff(old_record("1" * 32, "/tmp/w1/proj"), old_record("2" * 32, "/tmp/w2/proj"))
    assert "params: no change" in shown and "inputs: no change" in shown, shown


LOGS_METRICS = {
    "MLproject": "entry_points:\n  main:\n    command: python train.py\n",
    "train.py": "import run_project_client as rp\n"
    "for step in range(3):\n"
    "    rp.log_metric('loss', 1.0 / (step + 1), step=step)\n"
    "open('model.txt', 'w').write('weights')\n",
    ".gitignore": "model.txt\n",
}


def _export(run_id: str, bundle: Path, *flags: str, store: Path | None = None) -> None:
    where = ["--store", str(store)] if store else []
    ok(cli("runs", "export", run_id, "-o", str(bundle), *flags, *where))


def test_runs_import_brings_record_metrics_and_files_once(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    commit(repo, LOGS_METRICS)
    ok(cli(str(repo)))
    run = records()[0]
    bundle = tmp_path / "run.tar.gz"
    _export(run["id"], bundle, "--with-outputs")
    other = tmp_path / "teammate"
    first = ok(cli("runs", "import", str(bundle), "--store", str(other)))
    assert f"imported run {run['id'][:8]}" in first.out
    again = ok(cli("runs", "import", str(bundle), "--store", str(other)))
    assert "already in the store" in again.out
    assert [r["id"] for r in records(other)] == [run["id"]]
    exported = json.loads(ok(cli("runs", "export", run["id"], "--store", str(other))).out)
    assert [p[0] for p in exported["metric_points"]["loss"]] == [0, 1, 2]
    assert (other / "artifacts" / run["id"] / "workdir" / "model.txt").read_text() == "weights"
    assert (other / "artifacts" / run["id"] / "logs").is_dir()


def test_rerun_of_a_bundle_imports_the_original_and_its_export_reruns(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    commit(repo, LOGS_METRICS)
    (repo / "train.py").write_text((repo / "train.py").read_text() + "print('edited')\n")
    ok(cli(str(repo)))
    original = records()[0]
    bundle = tmp_path / "run.tar.gz"
    _export(original["id"], bundle)
    shutil.rmtree(repo)  # the teammate's machine has neither the project nor the run
    other = tmp_path / "teammate"
    rerun = ok(cli("rerun", str(bundle), "--store", str(other)))
    second = records(other)[0]
    assert second["rerun_of"] == original["id"]
    assert ok(cli("runs", "diff", original["id"][:8], second["id"][:8], "--store", str(other)))
    # The teammate passes the rerun on: its working copy is gone, the original's tree is kept.
    again = tmp_path / "rerun.tar.gz"
    exported = ok(cli("runs", "export", second["id"], "-o", str(again), "--store", str(other)))
    assert "will not hold" not in exported.err, exported.text
    third = tmp_path / "third"
    assert "outputs identical" in ok(cli("rerun", str(again), "--store", str(third))).out
    assert "imported the original" in rerun.err


def test_export_of_a_subproject_holds_only_that_subproject(tmp_path: Path) -> None:
    repo = tmp_path / "mono"
    commit(repo, {"a/MLproject": LOGS_METRICS["MLproject"], "a/train.py": "print(1)\n",
                  "b/MLproject": PLAIN["MLproject"], "b/secret_model.py": "print(2)\n"})  # fmt: skip
    (repo / "a" / "notes.txt").write_text("a's untracked file\n")
    (repo / "b" / "output.bin").write_text("b's untracked output\n")
    (repo / "a" / "train.py").write_text("print('a edited')\n")
    (repo / "b" / "secret_model.py").write_text("print('b edited')\n")
    ok(cli(str(repo / "a")))
    run = records()[0]
    assert run["source"]["subdirectory"] == "a"
    bundle = tmp_path / "a.tar.gz"
    _export(run["id"], bundle)
    names = _packed_names(bundle)
    assert "project/a/train.py" in names and "source/untracked/a/notes.txt" in names
    assert not [n for n in names if n.startswith(("project/b", "source/untracked/b"))], names
    with tarfile.open(bundle) as tar:
        diff = next(n for n in tar.getnames() if n.endswith("uncommitted.diff"))
        handle = tar.extractfile(diff)
        assert handle is not None
        text = handle.read().decode()
    assert "a edited" in text and "b edited" not in text
    shutil.rmtree(repo)
    rerun = ok(cli("rerun", str(bundle), "--store", str(tmp_path / "other")))
    assert "outputs identical" in rerun.out and "a edited" in rerun.out, rerun.text
    assert "b/output.bin" not in rerun.text, rerun.text


@pytest.mark.slow
def test_rerun_from_the_recorded_lock_reuses_the_env_that_made_it(
    tmp_path: Path, uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    project = make_project(tmp_path / "six-demo", {
        "MLproject": "entry_points:\n  main:\n    command: python -c 'import six; print(six.__version__)'\n",
        "requirements.txt": "six==1.17.0\n",
    })  # fmt: skip
    commit(project, {})
    ok(cli(str(project)))
    first = records()[0]
    assert first["env"]["built"] is True
    rerun = ok(cli("rerun", first["id"]))
    second = records()[0]
    assert second["env"]["key"] == first["env"]["key"] and second["env"]["built"] is False
    assert "building virtualenv" not in rerun.err, rerun.err
    envs = [p for p in (tmp_path / "cache" / "envs" / "virtualenv").iterdir() if p.is_dir()]
    assert len(envs) == 1, envs


def test_rerun_points_path_params_into_its_own_working_copy(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, {**READS_DATA, "train.py": "import sys\n"
                  "open('model.txt', 'w').write(open(sys.argv[1]).read())\n",
                  ".gitignore": "model.txt\n"})  # fmt: skip
    ok(cli(".", "-P", "data=extra.txt", cwd=repo))  # in place: the user's own directory
    first = records()[0]
    assert first["params"]["data"]["relative_path"] == "extra.txt"
    (repo / "extra.txt").write_text("edited since the run\n")  # the rerun reads its own copy
    rerun = ok(cli("rerun", first["id"]))
    assert "outputs identical" in rerun.out, rerun.text
    second = records()[0]
    assert second["params"]["data"]["value"] == f"{second['source']['path']}/extra.txt"


def test_export_of_a_local_rerun_holds_the_project_and_reruns(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    commit(repo, LOGS_METRICS)
    (repo / "train.py").write_text((repo / "train.py").read_text() + "print('edited')\n")
    ok(cli(str(repo)))
    ok(cli("rerun", records()[0]["id"]))  # ran in a working copy that is gone now
    bundle = tmp_path / "rerun.tar.gz"
    exported = ok(cli("runs", "export", records()[0]["id"], "-o", str(bundle)))
    assert "will not hold" not in exported.err, exported.text
    again = ok(cli("rerun", str(bundle), "--store", str(tmp_path / "other")))
    assert "outputs identical" in again.out and "edited" in again.out, again.text
