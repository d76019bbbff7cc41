"""Hand-offs to a teammate: packs hold what git would see and warn about secret-looking
files; bundles import into the teammate's store; comparisons ignore where a run's working
copy happened to be."""

from __future__ import annotations

import tarfile
from pathlib import Path

from support.cli import cli, ok
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
