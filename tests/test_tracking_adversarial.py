"""docs/security.md#outputs-artifacts-and-the-store: hostile outputs, artifact names, limits, stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.project.schemas import schema_errors
from support.cli import cli, last_record
from support.mounts import mount
from support.projects import make_project
from support.services import require


def _objects_hold(store: Path, secret: bytes) -> bool:
    files = [p for p in store.rglob("*") if p.is_file() and not p.is_symlink()]
    links = [p for p in store.rglob("*") if p.is_symlink()]
    return bool(links) or any(secret in p.read_bytes() for p in files)


def test_case28_symlinked_secret_loop_and_fifo_are_not_copied(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    secret = b"-----BEGIN FAKE PRIVATE KEY----- canary"
    (home / ".ssh" / "id_rsa").write_bytes(secret)
    project = make_project(tmp_path / "p", {"run.sh": """\
        ln -s "$HOME/.ssh/id_rsa" stolen_key
        ln -s loop_a loop_b && ln -s loop_b loop_a
        mkfifo pipe
        ln -s "$HOME/.ssh/id_rsa" "$RUN_PROJECT_OUTPUT_DIR/key_out"
        mkfifo "$RUN_PROJECT_OUTPUT_DIR/pipe_out"
        echo '{"type": "artifact", "path": "stolen_key", "name": "key"}' >> "$RUN_PROJECT_EVENTS"
        echo fine > ok.txt
        """})  # fmt: skip
    result = cli(str(project), "-e", "run.sh", env={"HOME": str(home)}, timeout=60)
    assert result.code == 0, result.text
    record = last_record()
    assert record["status"] == "FINISHED"
    warnings = "\n".join(record["capture"]["warnings"])
    for name in ("stolen_key", "loop_a", "loop_b", "pipe", "key_out", "pipe_out"):
        assert name in warnings and name in result.err, name
    assert [o["name"] for o in record["outputs"]] == ["workdir/ok.txt"]
    assert schema_errors("run-record", record) == []
    assert not _objects_hold(tmp_path / "store", secret)


@pytest.mark.parametrize("name", ["../x", "/abs", "a\\..\\b", "a/../../x", ""])
def test_case29_artifact_names_leaving_the_run_are_refused(tmp_path: Path, name: str) -> None:
    canary_dir = tmp_path / "store" / "artifacts"
    project = make_project(tmp_path / "p", {"log.py": f"""\
        import json, os
        import run_project_client as rp
        open("model.bin", "wb").write(b"weights")
        try:
            rp.log_artifact("model.bin", {name!r})
        except ValueError as exc:
            print("client refused:", exc)
        with open(os.environ["RUN_PROJECT_EVENTS"], "a") as events:
            events.write(json.dumps({{"type": "artifact", "path": "model.bin",
                                      "name": {name!r}}}) + "\\n")
        """})  # fmt: skip
    result = cli(str(project), "-e", "log.py")
    assert result.code == 0, result.text
    assert "client refused" in result.out
    record = last_record()
    assert any("is refused" in w for w in record["capture"]["warnings"]), record["capture"]
    assert not any(o["source"] == "logged" for o in record["outputs"])
    # Nothing landed outside the run's own directory (../x would be artifacts/x).
    assert not (canary_dir / "x").exists() and not Path("/abs").exists()
    assert not (tmp_path / "store" / "x").exists()


def test_case29_a_good_logged_artifact_is_kept(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"log.py": """\
        import run_project_client as rp
        open("/tmp/rp-case29-model.bin", "wb").write(b"weights")
        rp.log_artifact("/tmp/rp-case29-model.bin", "models/final.bin")
        """})  # fmt: skip
    assert cli(str(project), "-e", "log.py").code == 0
    record = last_record()
    kept = tmp_path / "store" / "artifacts" / record["id"] / "logged" / "models" / "final.bin"
    assert kept.read_bytes() == b"weights"


def test_case30_outputs_over_the_per_run_limit_fail_the_run(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"big.py": """\
        import run_project_client as rp
        rp.log_metric("kept", 1.0)
        open("big.bin", "wb").write(b"x" * 50_000)
        """})  # fmt: skip
    result = cli(str(project), "-e", "big.py", env={"RUN_PROJECT_ARTIFACT_LIMIT": "10KB"})
    assert result.code == 125, result.text
    assert "over the per-run artifact limit" in result.err and "RUN_PROJECT_ARTIFACT_LIMIT" in (
        result.err
    )
    record = last_record()
    assert record["status"] == "FAILED" and "limit" in record["reason"]
    assert schema_errors("run-record", record) == []
    assert record["metrics"]["kept"]["count"] == 1  # what the run logged is not lost
    objects = tmp_path / "store" / "artifacts" / "objects"
    assert not objects.exists() or not any(objects.rglob("*"))


def test_case30_full_disk_while_copying_leaves_nothing_half_written(
    tmp_path: Path, tiny_disk: Path
) -> None:
    # The run keeps its outcome; the output waits beside its journal for a replay
    # (tests/test_tracking_journal.py stores it once the disk has room).
    project = make_project(tmp_path / "p", {"big.py": """\
        open("big.bin", "wb").write(b"x" * 3_000_000)
        """})  # fmt: skip
    result = cli(str(project), "-e", "big.py", env={"RUN_PROJECT_ARTIFACTS": str(tiny_disk)})
    assert result.code == 0, result.text
    assert "disk is full" in result.err and "runs sync" in result.err
    record = last_record()
    assert record["status"] == "FINISHED"
    assert [o.get("pending") for o in record["outputs"]] == [True], result.err
    assert schema_errors("run-record", record) == []
    leftovers = [p.name for p in (tiny_disk / "objects").rglob("*") if p.is_file()]
    assert leftovers == [], "a temporary or half-written object was left behind"


def test_case32_existing_store_made_read_only_never_starts_the_command(tmp_path: Path) -> None:
    # A store with runs in it, then bind-mounted read-only over itself: root cannot write
    # there either (EROFS), which chmod cannot show since the tests run as root.
    store = tmp_path / "store"
    project = make_project(tmp_path / "p", {"run.sh": "touch canary\n"})
    assert cli(str(project), "-e", "run.sh").code == 0
    (project / "canary").unlink()
    mount(["--bind", str(store), str(store)])
    try:
        mount(["-o", "remount,ro,bind", str(store)])
        result = cli(str(project), "-e", "run.sh")
        listed = cli("runs", "list", "--json")
    finally:
        subprocess.run(["umount", str(store)], check=False)
    assert result.code == 125, result.text
    assert "read-only" in result.err and "hint:" in result.err
    assert not (project / "canary").exists()
    assert len(json.loads(listed.out)) == 1, listed.text  # still readable, nothing half-written


def _pg_ctl(*args: str) -> subprocess.CompletedProcess[str]:
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindir:
        require(
            "postgres", "PostgreSQL server binaries are not installed (apt-get install postgresql)"
        )
    return subprocess.run(
        ["su", "postgres", "-c", " ".join([str(bindir[-1] / "pg_ctl"), *args])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.slow
def test_case32_postgres_going_away_mid_run_loses_nothing(tmp_path: Path) -> None:
    """A private server (own data dir and port) is stopped mid-run and started again."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require("postgres", "psycopg is not installed (pip install 'psycopg[binary]')")
    data = Path("/tmp") / f"rp-pg-{os.getpid()}-{time.monotonic_ns()}"
    data.mkdir()
    subprocess.run(["chown", "postgres", str(data)], check=True)
    init = _pg_ctl("initdb", "-D", str(data), "-o", "'--auth=trust -U rp'")
    if init.returncode != 0:
        require("postgres", f"initdb failed: {init.stderr}")
    port = 20000 + os.getpid() % 20000
    opts = f'"-p {port} -k {data} -c listen_addresses=127.0.0.1"'
    start = ("start", "-w", "-D", str(data), "-l", str(data / "log"), "-o", opts)
    try:
        assert _pg_ctl(*start).returncode == 0
        url = f"postgresql://rp@127.0.0.1:{port}/postgres"
        project = make_project(tmp_path / "p", {"slow.py": """\
            import time
            import run_project_client as rp
            for i in range(8):
                rp.log_metric("loss", 1.0 / (i + 1), step=i)
                time.sleep(0.5)
            open("model.bin", "w").write("done")
            """})  # fmt: skip
        env = {"RUN_PROJECT_STORE_RETRY_SECONDS": "60", "RUN_PROJECT_HEARTBEAT_SECONDS": "1"}
        run = subprocess.Popen(
            [sys.executable, "-m", "runner", str(project), "-e", "slow.py", "--store", url],
            env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for _ in range(150):  # the run must be under way (its record RUNNING) first
            listed = cli("runs", "list", "--json", "--store", url)
            if listed.code == 0 and '"RUNNING"' in listed.out:
                break
            time.sleep(0.2)
        assert _pg_ctl("stop", "-m", "fast", "-D", str(data)).returncode == 0
        time.sleep(4)  # the run ends while the server is away
        assert _pg_ctl(*start).returncode == 0
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        (record,) = json.loads(cli("runs", "list", "--json", "--store", url).out)
        assert record["status"] == "FINISHED"
        assert record["metrics"]["loss"]["count"] == 8
        exported = json.loads(cli("runs", "export", record["id"], "--store", url).out)
        assert len(exported["metric_points"]["loss"]) == 8
        assert [o["name"] for o in record["outputs"]] == ["workdir/model.bin"]
    finally:
        _pg_ctl("stop", "-m", "immediate", "-D", str(data))
        subprocess.run(["rm", "-rf", str(data)], check=False)


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o7777


def test_private_outputs_stay_private_in_a_private_store(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"run.sh": """\
        umask 077; echo secret > "$RUN_PROJECT_OUTPUT_DIR/private.txt"
        umask 022; echo public > "$RUN_PROJECT_OUTPUT_DIR/public.txt"
        """})  # fmt: skip
    result = cli(str(project), "-e", "run.sh", timeout=60)
    assert result.code == 0, result.text
    record = last_record()
    store = tmp_path / "store"
    run_dir = store / "artifacts" / record["id"]
    assert _mode(run_dir / "outputs" / "private.txt") & 0o077 == 0  # never wider than 0600
    assert _mode(run_dir / "outputs" / "public.txt") & 0o222 == 0  # read-only, as before
    for directory in (store, store / "artifacts", store / "artifacts" / "objects", run_dir):
        assert _mode(directory) == 0o700, directory
    assert _mode(store / "runs.db") == 0o600


def test_a_team_store_group_shares_the_store_with_that_group(tmp_path: Path) -> None:
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    project = make_project(tmp_path / "p", {"run.sh": "echo x > out.txt\n"})
    result = cli(str(project), "-e", "run.sh", env={"RUN_PROJECT_STORE_GROUP": group})
    assert result.code == 0, result.text
    store = tmp_path / "store"
    run_dir = store / "artifacts" / last_record()["id"]
    for directory in (store, store / "artifacts", run_dir):
        assert _mode(directory) == 0o2770 and os.stat(directory).st_gid == os.getgid()
    assert _mode(store / "runs.db") == 0o660
    unknown = cli(str(project), "-e", "run.sh", env={"RUN_PROJECT_STORE_GROUP": "no-such-grp"})
    assert unknown.code == 125 and "no-such-grp" in unknown.err and "hint:" in unknown.err


def test_an_output_hardlinked_to_a_file_elsewhere_is_hashed_not_copied(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(b"root:$6$canary-hash:19000::::::\n")
    secret.chmod(0o600)
    project = make_project(tmp_path / "p", {"run.sh": f"""\
        ln {secret} "$RUN_PROJECT_OUTPUT_DIR/shadow"
        ln {secret} shadow_here
        echo fine > ok.txt
        """})  # fmt: skip
    result = cli(str(project), "-e", "run.sh", timeout=60)
    assert result.code == 0, result.text
    record = last_record()
    import hashlib

    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    linked = [o for o in record["outputs"] if o["sha256"] == digest]
    assert {o["name"] for o in linked} == {"outputs/shadow", "workdir/shadow_here"}
    assert all(o["stored"] is False for o in linked)
    assert "hard link" in "\n".join(record["capture"]["warnings"]) and "hard link" in result.err
    assert not _objects_hold(tmp_path / "store", b"canary-hash")
    assert secret.read_bytes().startswith(b"root:") and _mode(secret) == 0o600
    assert schema_errors("run-record", record) == []


def test_a_sparse_output_is_stored_sparse_and_counted_by_its_real_blocks(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"run.sh": """\
        truncate -s 64M "$RUN_PROJECT_OUTPUT_DIR/sparse.bin"
        printf 'end' >> "$RUN_PROJECT_OUTPUT_DIR/sparse.bin"
        """})  # fmt: skip
    result = cli(str(project), "-e", "run.sh", env={"RUN_PROJECT_ARTIFACT_LIMIT": "10MB"})
    assert result.code == 0, result.text  # 64 MiB long, a few KB on disk: under the limit
    record = last_record()
    (output,) = record["outputs"]
    assert output["size"] == 64 * 1024 * 1024 + 3
    import hashlib

    digest = hashlib.sha256()
    digest.update(bytes(64 * 1024 * 1024))
    digest.update(b"end")
    assert output["sha256"] == digest.hexdigest()
    stored = tmp_path / "store" / "artifacts" / record["id"] / "outputs" / "sparse.bin"
    assert os.stat(stored).st_blocks * 512 < 1024 * 1024  # holes kept
    with open(stored, "rb") as handle:
        handle.seek(64 * 1024 * 1024)
        assert handle.read() == b"end"
