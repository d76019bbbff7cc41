"""Archives as project sources: .zip/.tar.gz/.tgz by path or URL, and hostile archives
(docs/security.md#archives) that are refused with the canary left absent and nothing left behind."""

from __future__ import annotations

import io
import socket
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import cli, last_record

MLPROJECT = "entry_points:\n  main:\n    command: 'python run.py'\n"
RUN = "import os; print('ran in', os.path.basename(os.getcwd()))\n"


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def _project_members(top: str = "proj-1.0/") -> list[tuple[tarfile.TarInfo, bytes]]:
    return [_file(f"{top}MLproject", MLPROJECT.encode()), _file(f"{top}run.py", RUN.encode())]


def _zip(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A plain http server on 127.0.0.1 serving a directory (stopped by its PID)."""
    root = tmp_path_factory.mktemp("www")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1", "--directory", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield root, f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".zip"])
def test_archives_by_path_run_and_record_their_hash(tmp_path: Path, suffix: str) -> None:
    archive = tmp_path / f"proj{suffix}"
    if suffix == ".zip":
        _zip(archive, {"proj-1.0/MLproject": MLPROJECT.encode(), "proj-1.0/run.py": RUN.encode()})
    else:
        _tar(archive, _project_members())
    result = cli(str(archive))
    assert result.code == 0 and "ran in proj-1.0" in result.out, result.text
    record = last_record()
    source = record["source"]
    assert source["kind"] == "archive" and len(source["archive_sha256"]) == 64
    from runner.project.schemas import schema_errors

    assert schema_errors("run-record", record) == []
    assert not any((tmp_path / "cache" / "work").iterdir())  # extracted copy removed


def test_archive_by_url_with_subdirectory(tmp_path: Path, http_dir: tuple[Path, str]) -> None:
    root, base = http_dir
    members = [_file("MLproject", b"name: top\n"), *_project_members("inner/")]
    _tar(root / f"{tmp_path.name}.tgz", members)
    result = cli(f"{base}/{tmp_path.name}.tgz#inner")
    assert result.code == 0 and "ran in inner" in result.out, result.text
    assert last_record()["source"]["uri"] == f"{base}/{tmp_path.name}.tgz"


def _hostile_tars(canary: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes]]]:
    return {
        "dotdot": [_file("../../x"), _file("../x")],
        "absolute": [_file(str(canary))],
        "symlink-out": [_special("link", tarfile.SYMTYPE, str(canary.parent)),
                        _file("link/CANARY")],
        "symlink-up": [_special("up", tarfile.SYMTYPE, "../../../..")],
        "hardlink-out": [_special("hard", tarfile.LNKTYPE, "/etc/passwd")],
        "hardlink-up": [_special("hard", tarfile.LNKTYPE, "../outside")],
        "chardev": [_special("dev", tarfile.CHRTYPE)],
        "fifo": [_special("fifo", tarfile.FIFOTYPE)],
        "chain": [_file("sub/keep"), _special("sub/y", tarfile.SYMTYPE, ".."),
                  _special("x", tarfile.SYMTYPE, "sub/y/..")],
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["dotdot", "absolute", "symlink-out", "symlink-up", "hardlink-out", "hardlink-up",
     "chardev", "fifo", "chain"],
)  # fmt: skip
def test_hostile_tar_is_refused(tmp_path: Path, case: str) -> None:
    canary = tmp_path / "CANARY"
    archive = _tar(tmp_path / "evil.tar.gz", _project_members("") + _hostile_tars(canary)[case])
    result = cli(str(archive))
    assert result.code == 125, result.text
    assert "refused" in result.err and "hint:" in result.err
    assert not canary.exists()
    assert not (tmp_path / "cache" / "x").exists()
    assert not any((tmp_path / "cache" / "work").iterdir())


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-out", "chain"])
def test_hostile_zip_is_refused(tmp_path: Path, case: str) -> None:
    canary = tmp_path / "CANARY"
    base = {"MLproject": MLPROJECT.encode(), "run.py": RUN.encode()}
    files, links = {
        "dotdot": ({"../x": b"x"}, {}),
        "absolute": ({str(canary): b"x"}, {}),
        "symlink-out": ({}, {"link": str(canary.parent)}),
        "chain": ({"sub/keep": b""}, {"sub/y": "..", "x": "sub/y/.."}),
    }[case]
    archive = _zip(tmp_path / "evil.zip", {**base, **files}, links)
    result = cli(str(archive))
    assert result.code == 125 and "refused" in result.err, result.text
    assert not canary.exists()
    assert not any((tmp_path / "cache" / "work").iterdir())


def test_missing_archive_and_version_on_archive_are_explained(tmp_path: Path) -> None:
    missing = cli(str(tmp_path / "nope.tar.gz"))
    assert missing.code == 125 and "does not exist" in missing.err
    archive = _tar(tmp_path / "p.tgz", _project_members())
    with_rev = cli(str(archive), "-v", "main")
    assert with_rev.code == 2 and "needs a git source" in with_rev.err


def _cve_2025_4517_chain(
    canary: Path, through_links: bool = True
) -> tuple[list[tuple[str, str]], str]:
    """The CVE-2025-4517 proof's shape: directory symlinks `a`..`p`, each naming a 247-byte
    directory, so the real path behind `a/b/.../p/lll` passes PATH_MAX and `realpath` stops
    resolving; `lll` climbs back to the top, and `escape` climbs from there to the canary's
    directory, although its text, normalised, stays inside. `lll` is named through the links
    (as in the proof) or by its real path (no member below a link: the link check alone must
    see it). Returns (directories and symlinks in archive order as (name, link target or
    ""), the escaping link's name)."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    members: list[tuple[str, str]] = []
    path = ""
    for step in steps:
        members.append((f"{path}{comp}", ""))
        members.append((f"{path}{step}", comp))
        path = f"{path}{comp}/"
    linkpath = "/".join(steps) + "/" + "l" * 254
    members.append((linkpath if through_links else path + "l" * 254, "../" * len(steps)))
    up = "/.." * len(steps)  # from the top of the extraction, far enough to reach "/"
    members.append(("escape", f"{linkpath}{up}{canary.parent}"))
    return members, "escape"


def _cve_tar(path: Path, canary: Path, through_links: bool) -> Path:
    chain, escape = _cve_2025_4517_chain(canary, through_links)
    members = _project_members("")
    for name, target in chain:
        if target:
            members.append(_special(name, tarfile.SYMTYPE, target))
        else:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            members.append((info, b""))
    members.append(_file(f"{escape}/{canary.name}", b"written outside"))
    return _tar(path, members)


@pytest.mark.parametrize("through_links", [True, False], ids=["as-in-the-proof", "real-path"])
def test_symlink_chain_past_path_max_writes_nothing_outside_tar(
    tmp_path: Path, through_links: bool
) -> None:
    canary = tmp_path / "outside" / "CANARY"
    canary.parent.mkdir()
    result = cli(str(_cve_tar(tmp_path / "evil.tar.gz", canary, through_links)))
    assert not canary.exists(), "a file was written outside the extraction directory"
    assert result.code == 125 and "refused" in result.err and "hint:" in result.err, result.text
    assert "Traceback" not in result.err
    assert not any((tmp_path / "cache" / "work").iterdir())


def test_symlink_chain_past_path_max_is_refused_zip(tmp_path: Path) -> None:
    canary = tmp_path / "outside" / "CANARY"
    canary.parent.mkdir()
    chain, escape = _cve_2025_4517_chain(canary, through_links=False)
    files = {"MLproject": MLPROJECT.encode(), "run.py": RUN.encode()}
    files.update({f"{name}/": b"" for name, target in chain if not target})
    links = {name: target for name, target in chain if target}
    result = cli(str(_zip(tmp_path / "evil.zip", files, links)))
    assert result.code == 125 and "refused" in result.err and escape in result.err, result.text
    assert not canary.exists()
    assert not any((tmp_path / "cache" / "work").iterdir())


def test_links_that_stay_inside_are_extracted(tmp_path: Path) -> None:
    members = _project_members("")
    members.append(_special("alias.py", tarfile.SYMTYPE, "run.py"))
    members.append(_special("copy.py", tarfile.LNKTYPE, "run.py"))
    project = "entry_points:\n  main:\n    command: 'python alias.py && python copy.py'\n"
    members[0] = _file("MLproject", project.encode())
    result = cli(str(_tar(tmp_path / "ok.tgz", members)))
    assert result.code == 0 and result.out.count("ran in") == 2, result.text


def test_an_archive_of_several_projects_lists_its_folders_and_suggests_a_subdirectory(
    tmp_path: Path,
) -> None:
    members = [*_project_members("a/"), *_project_members("b/"), _file("docs/notes.txt")]
    archive = _tar(tmp_path / "many.tgz", members)
    result = cli(str(archive))
    assert result.code != 0 and "Traceback" not in result.err, result.text
    assert "has no MLproject at its top but 3 folders: a/ (MLproject), b/ (MLproject), docs/" in (
        result.err
    )
    assert f"{archive}#a" in result.err
    chosen = cli(f"{archive}#b")
    assert chosen.code == 0 and "ran in b" in chosen.out, chosen.text


def test_an_archive_of_folders_without_mlproject_runs_a_script_and_hints_at_a_subdirectory(
    tmp_path: Path,
) -> None:
    archive = _tar(tmp_path / "plain.tgz", [_file("src/run.py", RUN.encode()), _file("data/x")])
    assert cli(str(archive), "-e", "src/run.py").code == 0  # a script in a folder still runs
    result = cli(str(archive))
    assert result.code != 0 and "no entry point 'main'" in result.err, result.text
    assert "only folders (data/, src/): add #FOLDER to the URI" in result.err
