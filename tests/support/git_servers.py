"""Real git servers on 127.0.0.1 for the source tests, and helpers that make real repositories.

`git daemon` serves git://, `git http-backend` (through support/git_http_server.py) serves smart
HTTP, sshd serves ssh. Each server is started by a fixture and stopped by its PID; a server that
cannot start goes through `require` (skip locally, fail under CI).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from support.cli import REPO
from support.services import require

HERE = Path(__file__).resolve().parent
GIT_ID = ["-c", "user.name=Test", "-c", "user.email=test@example.org",
          "-c", "init.defaultBranch=main"]  # fmt: skip


def git(*args: str, cwd: Path | None = None) -> str:
    """Run a plain git command for test setup; returns stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    result = subprocess.run(["git", *GIT_ID, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, f"git {args}: {result.stderr}"
    return result.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    """Write files into the work tree of `repo`, commit them all, return the full SHA."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "-b", "main", str(repo))
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def publish(work: Path, served_root: Path, name: str) -> Path:
    """Push every branch and tag of `work` to the bare repository served_root/name."""
    bare = served_root / name
    if not bare.exists():
        git("init", "-q", "--bare", "-b", "main", str(bare))
    git("push", "-q", "--force", str(bare), "refs/heads/*:refs/heads/*", cwd=work)
    git("push", "-q", "--force", str(bare), "refs/tags/*:refs/tags/*", cwd=work)
    return bare


def runner_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m runner` started directly: this checkout's code."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@dataclass
class Server:
    """A running server process (its own process group) and its base URL."""

    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        """Stop the server and everything it forked, by its process group id."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def start_daemon(root: Path) -> Server:
    """`git daemon` serving every repository under `root` at git://127.0.0.1:PORT/."""
    port = free_port()
    argv = ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}",
            "--listen=127.0.0.1", f"--port={port}", "--informative-errors", str(root)]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.DEVNULL)
    if not _wait_port(port, proc):
        proc.kill()
        require("git", "git daemon did not start (is git-daemon installed?)")
    return Server(proc, f"git://127.0.0.1:{port}")


def start_http(root: Path, auth: str = "") -> Server:
    """Smart HTTP (`git http-backend`) serving `root` at http://127.0.0.1:PORT/."""
    portfile = root.parent / f"http-port-{os.getpid()}-{time.monotonic_ns()}"
    argv = [sys.executable, str(HERE / "git_http_server.py"), str(root), str(portfile), auth]
    proc = subprocess.Popen(argv, start_new_session=True)
    deadline = time.monotonic() + 10
    while not (portfile.exists() and portfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not portfile.exists() or not _wait_port(int(portfile.read_text()), proc):
        proc.kill()
        require("git", "git http-backend server did not start")
    return Server(proc, f"http://127.0.0.1:{portfile.read_text()}")


MLPROJECT = """\
name: served
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.1}
    command: "python show.py {lr}"
"""
SHOW = """\
import json, os, sys, time
here = os.getcwd()
marker = os.environ.get("MARK")
if marker:
    open(marker, "w").write(marker)
    time.sleep(float(os.environ.get("PAUSE", "0")))
print(json.dumps({"argv": sys.argv[1:], "version": open("VERSION").read().strip(),
                  "cwd": here, "files": sorted(os.listdir(here))}))
"""


@dataclass
class Served:
    """The shared served repository `proj.git` and facts about its commits."""

    root: Path
    daemon: Server
    http: Server
    first: str  # tag v1; VERSION one
    second: str  # main; VERSION two
    feature: str  # branch feature; VERSION feature


def build_project(root: Path, work: Path) -> tuple[str, str, str]:
    """proj.git: v1 (one) → main (two); feature branches off v1 (feature)."""
    files = {"MLproject": MLPROJECT, "show.py": SHOW, "VERSION": "one\n",
             "sub/dir/MLproject": MLPROJECT, "sub/dir/show.py": SHOW,
             "sub/dir/VERSION": "subdir\n"}  # fmt: skip
    first = commit(work, files, "first")
    git("tag", "v1", cwd=work)
    git("branch", "feature", cwd=work)
    second = commit(work, {"VERSION": "two\n"}, "second")
    git("checkout", "-q", "feature", cwd=work)
    feature = commit(work, {"VERSION": "feature\n"}, "feature")
    git("checkout", "-q", "main", cwd=work)
    publish(work, root, "proj.git")
    return first, second, feature


@dataclass
class Sshd:
    """A real OpenSSH server on 127.0.0.1 serving `root` over ssh, with the client settings
    (one ssh_config: host alias, port, key, pinned host key) in `env`."""

    server: Server
    host: str  # the ssh_config alias: ssh://HOST/PATH and HOST:PATH reach the server
    env: dict[str, str]


def start_sshd(base: Path) -> Sshd:
    """sshd on a free port, accepting only a key made here, for the user running the tests."""
    sshd = "/usr/sbin/sshd"
    if not Path(sshd).exists():
        require("sshd", "sshd is not installed (apt-get install openssh-server)")
    base.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / key)],
                       check=True)  # fmt: skip
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    port = free_port()
    user = (
        os.environ.get("USER")
        or subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    )
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
        f"PidFile {base / 'sshd.pid'}\nAuthorizedKeysFile {base / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"PermitRootLogin prohibit-password\nStrictModes no\nAllowUsers {user}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # OpenSSH's privilege separation directory
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(base / "sshd_config")],
                            start_new_session=True, stderr=subprocess.DEVNULL)  # fmt: skip
    if not _wait_port(port, proc):
        proc.kill()
        require("sshd", "sshd did not start on 127.0.0.1")
    host_key = (base / "host_key.pub").read_text().split()
    (base / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (base / "ssh_config").write_text(
        f"Host rp-sshd\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
        f"  IdentityFile {base / 'client_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {base / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
    )
    env = {"GIT_SSH_COMMAND": f"ssh -F {base / 'ssh_config'}"}
    return Sshd(Server(proc, "ssh://rp-sshd"), "rp-sshd", env)
