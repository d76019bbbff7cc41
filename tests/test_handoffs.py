"""Hand-offs to a teammate: packs hold what git would see and warn about secret-looking
files; bundles import into the teammate's store; comparisons ignore where a run's working
copy happened to be."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from support.cli import cli, ok, records
from support.git_servers import commit
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
