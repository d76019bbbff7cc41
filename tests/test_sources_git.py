"""Git sources against real servers: every URI form, revisions, subdirectories, the mirror cache
(offline reuse, parallel runs, kill -9 mid-fetch), working copies, helpful errors, credentials."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli import cli, last_record, records
from support.git_servers import (
    Served,
    Sshd,
    commit,
    git,
    publish,
    runner_env,
    start_daemon,
    start_http,
    start_sshd,
)


def _output(result: Any) -> dict[str, Any]:
    assert result.code == 0, result.text
    line = [ln for ln in result.out.splitlines() if ln.startswith("{")][-1]
    data: dict[str, Any] = json.loads(line)
    return data


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 (the served repositories are paths on this machine)."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.server.stop()


def _forms(served: Served) -> dict[str, str]:
    return {
        "git": f"{served.daemon.url}/proj.git",
        "http": f"{served.http.url}/proj.git",
        "file": f"file://{served.root}/proj.git",
        "ssh": f"ssh://rp-sshd{served.root}/proj.git",
        "scp": f"rp-sshd:{served.root}/proj.git",
        "path": str(served.root / "proj.git"),
    }


@pytest.mark.parametrize(
    "form", ["git", "http", "file", "ssh", pytest.param("scp", marks=pytest.mark.slow), "path"]
)
def test_every_uri_form_runs_the_default_branch_and_records_the_full_sha(
    served: Served, sshd: Sshd, form: str
) -> None:
    url = _forms(served)[form]
    args = [url, "-P", "lr=0.5"] + (["-v", "main"] if form == "path" else [])
    out = _output(cli(*args, env=sshd.env))
    assert out["version"] == "two" and out["argv"] == ["0.5"]
    record = last_record()
    source = record["source"]
    assert source["kind"] == "git" and source["commit"] == served.second
    assert source["uri"] == url

    from runner.project.schemas import schema_errors

    assert schema_errors("run-record", record) == []


@pytest.mark.parametrize(
    ("rev", "expected"),
    [("feature", "feature"), ("v1", "one"), ("main", "two"), ("short", "feature"),
     ("full", "one")],
)  # fmt: skip
def test_version_takes_a_branch_tag_or_sha(served: Served, rev: str, expected: str) -> None:
    rev = {"short": served.feature[:8], "full": served.first}.get(rev, rev)
    out = _output(cli(f"{served.daemon.url}/proj.git", "-v", rev))
    assert out["version"] == expected
    source = last_record()["source"]
    assert len(source["commit"]) == 40 and source["version"] == rev


def test_hash_subdirectory_selects_the_project_inside_the_repository(served: Served) -> None:
    out = _output(cli(f"{served.http.url}/proj.git#sub/dir"))
    assert out["version"] == "subdir" and out["cwd"].endswith("sub/dir")
    assert last_record()["source"]["subdirectory"] == "sub/dir"


def test_working_copy_is_removed_after_the_run_unless_kept(served: Served, tmp_path: Path) -> None:
    url = f"{served.daemon.url}/proj.git"
    out = _output(cli(url))
    assert not Path(out["cwd"]).exists()
    assert [p for p in (tmp_path / "cache" / "work").iterdir()] == []
    stale = tmp_path / "cache" / "work" / "999999999-deadrunner"  # left by a kill -9
    stale.mkdir()
    assert _output(cli(url)) and not stale.exists()  # swept: its runner is gone
    kept = cli(url, "--keep-checkout")
    cwd = _output(kept)["cwd"]
    assert Path(cwd, "VERSION").read_text() == "two\n" and cwd in kept.err


@pytest.mark.slow
def test_second_run_of_a_known_commit_needs_no_network(served: Served, tmp_path: Path) -> None:
    daemon = start_daemon(served.root)
    url = f"{daemon.url}/proj.git"
    try:
        assert _output(cli(url)) and last_record()["source"]["commit"] == served.second
    finally:
        daemon.stop()
    again = cli(url, "-v", served.second)  # the server is gone: the mirror alone serves it
    assert _output(again)["version"] == "two"
    assert "fetching" not in again.err
    short = cli(url, "-v", served.second[:10])  # an unambiguous short SHA works offline too
    assert _output(short)["version"] == "two"
    assert last_record()["source"]["commit"] == served.second
    assert "resolved_offline" not in last_record()["source"]
    # A branch or tag may have moved: it asks the server, and with the server down runs what
    # the mirror last saw, saying which commit and when it was fetched.
    by_tag = cli(url, "-v", "v1")
    assert _output(by_tag)["version"] == "one", by_tag.text
    assert "cannot reach" in by_tag.err and f"'v1' as the mirror last saw it: {served.first}" in (
        by_tag.err
    )
    source = last_record()["source"]
    assert source["commit"] == served.first and source["version"] == "v1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", source["resolved_offline"])
    by_branch = cli(url, "-v", "main")
    assert _output(by_branch)["version"] == "two" and "(fetched " in by_branch.err
    unknown = cli(url, "-v", "nope")  # a name the mirror never saw still needs the server
    assert unknown.code == 125 and "cannot reach" in unknown.err and "FULL_SHA" in unknown.err


def test_two_concurrent_runs_of_different_revisions_never_share_files(
    served: Served, tmp_path: Path
) -> None:
    url = f"{served.http.url}/proj.git"
    procs = {}
    for rev in ("v1", "feature"):
        env = runner_env(MARK=f"mark-{rev}", PAUSE="1.5")
        procs[rev] = subprocess.Popen(
            [sys.executable, "-m", "runner", url, "-v", rev], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    seen = {}
    for rev, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        seen[rev] = json.loads(out.strip().splitlines()[-1])
    assert seen["v1"]["version"] == "one" and seen["feature"]["version"] == "feature"
    assert seen["v1"]["cwd"] != seen["feature"]["cwd"]
    assert "mark-feature" not in seen["v1"]["files"] and "mark-v1" not in seen["feature"]["files"]


@pytest.mark.slow
def test_ten_parallel_runs_of_one_url_all_succeed_with_one_mirror(
    served: Served, tmp_path: Path
) -> None:
    url = f"{served.daemon.url}/proj.git"
    procs = [
        subprocess.Popen([sys.executable, "-m", "runner", url, "-P", f"lr={i}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=runner_env())
        for i in range(10)
    ]  # fmt: skip
    fetches = 0
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        fetches += err.count("run-project: fetched ")
    assert 1 <= fetches < 10  # runs that waited for a fetch reuse it instead of repeating it
    found = records()
    assert len(found) == 10 and {r["status"] for r in found} == {"FINISHED"}
    assert {r["source"]["commit"] for r in found} == {served.second}
    mirrors = [p for p in (tmp_path / "cache" / "git").iterdir() if p.is_dir()]
    assert len(mirrors) == 1


def _big_repo(work: Path, root: Path) -> str:
    blob = os.urandom(3 * 1024 * 1024).hex()  # incompressible: the fetch takes seconds
    sha = commit(work, {"MLproject": textwrap.dedent("""\
        entry_points:
          main:
            command: "python -c 'print(123)'"
        """), "big.txt": blob}, "big")  # fmt: skip
    publish(work, root, "big.git")
    return sha


def _kill_mid_fetch(url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", url], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=runner_env(),
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "fetching" in line:
            break
    time.sleep(1.5)  # the slowed server needs ~20 s for the pack: this lands mid-transfer
    assert proc.poll() is None, "the fetch finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_9_mid_fetch_leaves_a_mirror_the_next_run_repairs(tmp_path: Path) -> None:
    root = tmp_path / "repos"
    root.mkdir()
    first = _big_repo(tmp_path / "work", root)
    server = start_http(root)
    url = f"{server.url}/big.git"
    try:
        (root / ".slow").touch()
        _kill_mid_fetch(url)  # the first fetch, into a brand-new mirror
        (root / ".slow").unlink()
        assert cli(url).code == 0 and last_record()["source"]["commit"] == first
        second = commit(tmp_path / "work", {"big.txt": os.urandom(3 * 1024 * 1024).hex()})
        publish(tmp_path / "work", root, "big.git")
        (root / ".slow").touch()
        _kill_mid_fetch(url)  # a later fetch into a complete mirror
        (root / ".slow").unlink()
        result = cli(url)
        assert result.code == 0, result.text
        assert last_record()["source"]["commit"] == second
    finally:
        server.stop()


def test_parameters_are_type_checked_before_any_working_copy(
    served: Served, tmp_path: Path
) -> None:
    canary = tmp_path / "C"
    result = cli(f"{served.daemon.url}/proj.git", "-P", f"lr=$(touch {canary})")
    assert result.code == 2 and "not a valid float" in result.err
    assert not canary.exists()
    assert not any((tmp_path / "cache" / "work").glob("*"))
    assert not (tmp_path / "store").exists()  # no run was even opened


def test_unknown_revision_names_the_closest_branches(served: Served) -> None:
    result = cli(f"{served.daemon.url}/proj.git", "-v", "featrue")
    assert result.code == 125
    assert "'featrue'" in result.err and "closest branches/tags: feature" in result.err


def test_unreachable_host_says_so(tmp_path: Path) -> None:
    from support.git_servers import free_port

    result = cli(f"git://127.0.0.1:{free_port()}/nothing.git")
    assert result.code == 125 and "cannot reach" in result.err and "hint:" in result.err


def test_authentication_required_says_how_to_give_credentials(served: Served) -> None:
    result = cli(f"{served.http.url}/private/proj.git")
    assert result.code == 125 and "needs credentials" in result.err
    assert "ssh-add" in result.err and "credential helper" in result.err


def test_missing_subdirectory_lists_what_exists(served: Served, tmp_path: Path) -> None:
    result = cli(f"{served.daemon.url}/proj.git#sub/nope")
    assert result.code == 125 and "'sub/nope' does not exist" in result.err
    assert "dir" in result.err.split("hint:")[1]
    assert not any((tmp_path / "cache" / "work").glob("*"))


def test_no_mlproject_and_no_such_script(served: Served, tmp_path: Path) -> None:
    commit(tmp_path / "w", {"README": "no manifest\n"})
    publish(tmp_path / "w", served.root, f"plain-{tmp_path.name}.git")
    result = cli(f"{served.daemon.url}/plain-{tmp_path.name}.git", "-e", "train.py")
    assert result.code == 2 and "no MLproject" in result.err and "train.py" in result.err


def test_token_in_url_never_appears_in_output_records_or_cache(
    served: Served, tmp_path: Path
) -> None:
    token = "s3cr3t-t0ken"
    host = served.http.url.removeprefix("http://")
    result = cli(f"http://alice:{token}@{host}/private/proj.git#sub/dir")
    assert _output(result)["version"] == "subdir"
    record = last_record()
    assert record["source"]["uri"] == f"http://alice:***@{host}/private/proj.git"
    shown = cli("runs", "show", record["id"])
    listed = cli("runs", "list", "--json")
    wrong = cli(f"http://alice:WRONG-{token}@{host}/private/proj.git")
    assert wrong.code == 125
    for text in (result.text, shown.text, listed.text, wrong.text, json.dumps(record)):
        assert token not in text
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert token.encode() not in path.read_bytes(), path


def test_moved_tag_is_recorded_by_full_sha_and_reported(served: Served, tmp_path: Path) -> None:
    work, name = tmp_path / "w", f"moving-{tmp_path.name}.git"
    old = commit(work, {"MLproject": "entry_points:\n  main:\n    command: 'python -V'\n"})
    git("tag", "release", cwd=work)
    publish(work, served.root, name)
    url = f"{served.daemon.url}/{name}"
    assert cli(url, "-v", "release").code == 0
    first_id = last_record()["id"]
    new = commit(work, {"x": "1"})
    git("tag", "-f", "release", cwd=work)
    publish(work, served.root, name)
    result = cli(url, "-v", "release")
    assert result.code == 0 and "tag release" in result.err and "moved" in result.err
    assert last_record()["source"]["commit"] == new
    assert cli("runs", "show", first_id, "--json").out.count(old) == 1


def test_recorded_redacted_url_runs_again_through_a_credential_helper(
    served: Served, tmp_path: Path
) -> None:
    host = served.http.url.removeprefix("http://")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    (home / ".git-credentials").write_text(f"http://alice:s3cr3t-t0ken@{host}\n")
    recorded = f"http://alice:***@{host}/private/proj.git"  # as a record shows it
    result = cli(recorded, "-v", "v1", env={"HOME": str(home)})
    assert _output(result)["version"] == "one"
    assert last_record()["source"]["uri"] == f"http://***@{host}/private/proj.git"


def test_damaged_mirror_is_rebuilt(served: Served, tmp_path: Path) -> None:
    url = f"{served.daemon.url}/proj.git"
    assert cli(url).code == 0
    (mirror,) = [p for p in (tmp_path / "cache" / "git").iterdir() if p.is_dir()]
    (mirror / "HEAD").unlink()  # no longer a repository to git
    result = cli(url, "-v", "feature")
    assert _output(result)["version"] == "feature"
    assert "fetching" in result.err


def test_ssh_refusals_are_named_with_what_to_do(served: Served, sshd: Sshd, tmp_path: Path) -> None:
    """Against the real sshd: a key it does not accept, and a host key that changed (a
    man-in-the-middle). Each is a clear error with a hint, never a traceback."""
    url = f"ssh://rp-sshd{served.root}/proj.git"
    config = Path(sshd.env["GIT_SSH_COMMAND"].split()[-1]).read_text()
    port = re.search(r"Port (\d+)", config).group(1)  # type: ignore[union-attr]
    stranger = tmp_path / "stranger"
    _keygen(stranger)
    impostor = _keygen(tmp_path / "impostor")
    wrong_hosts = tmp_path / "known_hosts_wrong"
    wrong_hosts.write_text(f"[127.0.0.1]:{port} {impostor}\n")
    cases = {
        "needs credentials": re.sub(r"IdentityFile \S+", f"IdentityFile {stranger}", config),
        "update known_hosts": re.sub(
            r"UserKnownHostsFile \S+", f"UserKnownHostsFile {wrong_hosts}", config
        ),
    }
    for expected, text in cases.items():
        (tmp_path / "ssh_config").write_text(text)
        result = cli(url, env={"GIT_SSH_COMMAND": f"ssh -F {tmp_path / 'ssh_config'}"})
        assert result.code != 0 and "Traceback" not in result.err, result.text
        assert "error:" in result.err and "hint:" in result.err, result.err
        assert expected in result.err.lower(), result.err
    # ssh's own reason is shown, not only git's "Could not read from remote repository".
    (tmp_path / "ssh_config").write_text(config + "  NoSuchOption yes\n")
    result = cli(url, env={"GIT_SSH_COMMAND": f"ssh -F {tmp_path / 'ssh_config'}"})
    assert result.code != 0 and "nosuchoption" in result.err.lower(), result.err


def _keygen(path: Path) -> str:
    """A new ed25519 key pair at `path`; returns the public key's `type base64` part."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])
