"""Tree hashing: an unchanged tree comes from its one stamp row, every kind of change is still
seen, the digest format does not move, and a broken or shared cache never breaks a run."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.tracking.hashing import HashCache
from support.cli import REPO, cli, last_record
from support.projects import make_project
from support.services import require


def expected_digest(root: Path) -> str:
    """The documented tree format, computed independently: sha256 of the sorted lines
    `F <sha256> <rel>` (regular files) and `L <target> <rel>` (symlinks), joined by newlines."""
    lines = _lines(root)
    return hashlib.sha256("\n".join(sorted(lines)).encode("utf-8", "surrogateescape")).hexdigest()


def _lines(root: Path) -> list[str]:
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if os.path.islink(path):
                lines.append(f"L {os.readlink(path)} {rel}")
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    lines.append(f"F {hashlib.sha256(handle.read()).hexdigest()} {rel}")
    return lines


def make_tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "top.txt").write_text("top\n")
    (root / "a" / "one.bin").write_bytes(b"\x00" * 5000)
    (root / "a" / "b" / "two.txt").write_text("two\n")
    (root / "a" / "b" / "same.txt").write_text("two\n")  # equal content, other name
    os.symlink("../top.txt", root / "a" / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.symlink("a", root / "dirlink")  # a link to a directory is a link, not entered
    return root


def hash_tree(db: Path, root: Path) -> tuple[tuple[str, int, int], HashCache]:
    cache = HashCache(db)
    result = cache.tree(root)
    cache.flush()
    return result, cache


def file_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM hashes").fetchone()[0])


def test_tree_digest_keeps_its_recorded_format(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data")
    (digest, size, files), cache = hash_tree(tmp_path / "hashes.db", root)
    assert digest == expected_digest(root)
    assert (size, files) == (4 + 5000 + 4 + 4, 4) and cache.misses == 4


def test_unchanged_tree_comes_from_its_stamp_not_from_file_rows(tmp_path: Path) -> None:
    db, root = tmp_path / "hashes.db", make_tree(tmp_path / "data")
    first, _ = hash_tree(db, root)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM hashes")  # the per-file rows are not what answers
    again, cache = hash_tree(db, root)
    assert again == first and cache.misses == 0 and cache.hits == 4
    assert not cache.known, "an unchanged tree must not preload its file rows"


def _rewrite_keeping_size_and_mtime(root: Path) -> None:
    target = root / "a" / "b" / "two.txt"
    st = target.stat()
    target.write_text("TWO\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored; ctime cannot be


def _replace_file_by_symlink(root: Path) -> None:
    (root / "a" / "one.bin").unlink()
    os.symlink("b/two.txt", root / "a" / "one.bin")


def _replace_symlink_target(root: Path) -> None:
    (root / "a" / "link").unlink()
    os.symlink("../TOP.txt", root / "a" / "link")  # same length, other target


def _swap_two_names(root: Path) -> None:
    os.rename(root / "top.txt", root / "tmp")
    os.rename(root / "a" / "one.bin", root / "top.txt")
    os.rename(root / "tmp", root / "a" / "one.bin")


def _add_in_new_directory(root: Path) -> None:
    (root / "n" / "m").mkdir(parents=True)
    (root / "n" / "m" / "deep.txt").write_text("deep")


CHANGES: dict[str, Callable[[Path], object]] = {
    "same size, mtime restored": _rewrite_keeping_size_and_mtime,
    "file replaced by a symlink": _replace_file_by_symlink,
    "symlink retargeted": _replace_symlink_target,
    "file deleted": lambda root: (root / "top.txt").unlink(),
    "file added": lambda root: (root / "a" / "new.txt").write_text("new"),
    "file added in a new directory": _add_in_new_directory,
    "file renamed": lambda root: os.rename(root / "top.txt", root / "a" / "top.txt"),
    # Renaming a directory changes none of its files' stat keys: only their names say so.
    "directory renamed": lambda root: os.rename(root / "a" / "b", root / "a" / "c"),
    "two files swap names": _swap_two_names,
    "file appended": lambda root: (root / "top.txt").open("a").write("more"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_every_kind_of_change_under_a_stamped_tree_is_seen(tmp_path: Path, change: str) -> None:
    db, root = tmp_path / "hashes.db", make_tree(tmp_path / "data")
    before, _ = hash_tree(db, root)
    time.sleep(0.03)  # past the filesystem's timestamp tick, as a later run would be
    CHANGES[change](root)
    after, _ = hash_tree(db, root)
    assert after[0] != before[0]
    assert after[0] == expected_digest(root)
    again, cache = hash_tree(db, root)  # the new state is stamped in turn
    assert again == after and cache.misses == 0


def test_an_added_empty_directory_leaves_the_digest_and_reuses_file_rows(tmp_path: Path) -> None:
    db, root = tmp_path / "hashes.db", make_tree(tmp_path / "data")
    before, _ = hash_tree(db, root)
    (root / "a" / "nothing").mkdir()
    after, cache = hash_tree(db, root)
    assert after == before and cache.misses == 0


def test_file_rewritten_with_same_size_and_restored_mtime_is_hashed_again(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"a" * 1000)
    cache = HashCache(tmp_path / "hashes.db")
    assert cache.file(target) == hashlib.sha256(b"a" * 1000).hexdigest()
    cache.flush()
    time.sleep(0.03)
    _rewrite_keeping_size_and_mtime_of(target, b"b" * 1000)
    cache = HashCache(tmp_path / "hashes.db")
    assert cache.file(target) == hashlib.sha256(b"b" * 1000).hexdigest() and cache.misses == 1


def _rewrite_keeping_size_and_mtime_of(path: Path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_file_names_that_are_not_utf8_are_hashed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")
    (digest, _, files), _ = hash_tree(tmp_path / "hashes.db", root)
    assert files == 1 and digest == expected_digest(root)


def test_garbage_cache_file_is_replaced_and_used_again(tmp_path: Path) -> None:
    db, root = tmp_path / "hashes.db", make_tree(tmp_path / "data")
    db.write_bytes(os.urandom(8192))
    (digest, _, _), _ = hash_tree(db, root)
    assert digest == expected_digest(root)
    (again, _, _), cache = hash_tree(db, root)
    assert again == digest and cache.misses == 0  # the cache works again


def test_damaged_cache_pages_do_not_break_hashing(tmp_path: Path) -> None:
    db, root = tmp_path / "hashes.db", make_tree(tmp_path / "data")
    hash_tree(db, root)
    data = bytearray(db.read_bytes())
    data[200:] = os.urandom(len(data) - 200)  # header intact, every page scrambled
    db.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for _ in range(2):
        (digest, _, _), _ = hash_tree(db, root)
        assert digest == expected_digest(root)


def test_rows_of_the_wrong_type_are_ignored(tmp_path: Path) -> None:
    from runner.tracking.treescan import scan

    db, root = tmp_path / "hashes.db", make_tree(tmp_path / "data")
    hash_tree(db, root)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE trees SET sha256 = 42 WHERE stamp = ?", (scan(str(root)).stamp(),))
        conn.execute("UPDATE hashes SET sha256 = NULL")
    (digest, _, _), cache = hash_tree(db, root)
    assert digest == expected_digest(root) and cache.misses == 4


CONCURRENT = """
import sys
from pathlib import Path
from runner.tracking.hashing import HashCache
cache = HashCache(Path(sys.argv[1]))
print(cache.tree(Path(sys.argv[2]))[0])
cache.flush()
"""


def test_concurrent_first_hashes_share_one_cache(tmp_path: Path) -> None:
    db, root = tmp_path / "cache" / "hashes.db", make_tree(tmp_path / "data")
    for i in range(200):
        (root / "a" / f"many{i}.txt").write_text(str(i) * 50)
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT, str(db), str(root)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]  # fmt: skip
    outs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outs
    assert {out.strip() for out, _ in outs} == {expected_digest(root)}
    assert not any(err for _, err in outs)
    (_, _, files), cache = hash_tree(db, root)
    assert cache.misses == 0 and file_rows(db) == files


UNPRIVILEGED = """
import sys
from pathlib import Path
from runner.tracking.hashing import HashCache
cache = HashCache(Path(sys.argv[1]))
print(cache.tree(Path(sys.argv[2]))[0], cache.misses)
cache.flush()
"""


def _where_permissions_apply(db: Path, root: Path) -> tuple[str, int]:
    """HashCache.tree in a child process that file permissions apply to. Root ignores them
    through its capabilities, so as root the child runs without any (util-linux setpriv)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            require("setpriv", "setpriv (util-linux) is needed to drop root's capabilities")
        prefix = [str(setpriv), "--inh-caps=-all", "--bounding-set=-all"]
    out = subprocess.run([*prefix, sys.executable, "-c", UNPRIVILEGED, str(db), str(root)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    digest, misses = out.stdout.split()
    return digest, int(misses)


def test_unreadable_directory_is_left_out_and_seen_when_readable_again(tmp_path: Path) -> None:
    db, root = tmp_path / "hashes.db", make_tree(tmp_path / "data")
    whole, _ = _where_permissions_apply(db, root)
    secret = root / "a" / "b"
    secret.chmod(0o000)
    try:
        without, _ = _where_permissions_apply(db, root)
        stamped, misses = _where_permissions_apply(db, root)
    finally:
        secret.chmod(0o755)
    assert without != whole and without == _digest_without(root, "a/b/")
    assert (stamped, misses) == (without, 0)
    assert _where_permissions_apply(db, root) == (whole, 0)  # its files' rows are still there


def _digest_without(root: Path, hidden: str) -> str:
    """expected_digest with the entries under `hidden` left out (what an unreadable
    directory gives)."""
    lines = [line for line in _lines(root) if not line.split(" ", 2)[2].startswith(hidden)]
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


# An entry point that only names its `data` path, so the run records it as an input.
PATH_PARAM_PROJECT = """\
entry_points:
  main:
    parameters: {data: path}
    command: "python -c pass {data}"
"""


def test_directory_input_recorded_again_after_a_same_size_rewrite(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": PATH_PARAM_PROJECT})
    data = make_tree(tmp_path / "data")
    digests = []
    for step in range(3):
        if step == 2:
            _rewrite_keeping_size_and_mtime(data)
        assert cli(str(project), "-P", f"data={data}").code == 0
        (entry,) = [i for i in last_record()["inputs"] if i.get("param") == "data"]
        assert entry["kind"] == "dir" and entry["sha256"] == expected_digest(data)
        digests.append(entry["sha256"])
        time.sleep(0.03)
    assert digests[0] == digests[1] != digests[2]


def test_run_with_a_garbage_hash_cache_records_its_inputs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": PATH_PARAM_PROJECT})
    data = make_tree(tmp_path / "data")
    cache = tmp_path / "cache"  # RUN_PROJECT_CACHE (conftest)
    cache.mkdir(exist_ok=True)
    (cache / "hashes.db").write_bytes(b"not a database" * 1000)
    result = cli(str(project), "-P", f"data={data}")
    assert result.code == 0 and "Traceback" not in result.err, result.text
    (entry,) = [i for i in last_record()["inputs"] if i.get("param") == "data"]
    assert entry["sha256"] == expected_digest(data)
    with sqlite3.connect(cache / "hashes.db") as conn:  # made again, and used
        assert conn.execute("SELECT count(*) FROM trees").fetchone()[0] >= 1


def test_hash_benchmark_worker_runs(tmp_path: Path) -> None:
    """benchmarks/hash_ops.py (CONTRIBUTING.md#benchmarks) still drives the public API."""
    root = make_tree(tmp_path / "data")
    worker = REPO / "benchmarks" / "hash_ops.py"
    for _ in range(2):
        out = subprocess.run([sys.executable, str(worker), "ours", str(tmp_path / "h.db"),
                              str(root)], capture_output=True, text=True, check=True)  # fmt: skip
        assert out.stdout.startswith("seconds=")
    assert out.stderr == ""
