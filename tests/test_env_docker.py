"""Docker environments against a real dockerd: content-addressed images with the project inside,
the entry point run in a container, refusals of what a manifest may not choose, signals.

The base image is this interpreter made into an image offline (tests/support/docker_image.py):
no image can be pulled on these machines.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.cli import cli, last_record
from support.docker_image import docker_ready, ensure_base_image
from support.projects import make_project
from support.services import require

MAIN = """\
import json, os, sys
print("cwd", os.getcwd())
print("files", json.dumps(sorted(os.listdir("."))))
print("vars", os.environ.get("GREETING"), os.environ.get("FROM_CLI"),
      os.environ.get("AWS_SECRET_ACCESS_KEY"))
out = os.environ["RUN_PROJECT_OUTPUT_DIR"]
with open(os.path.join(out, "result.txt"), "w") as f:
    f.write("made in a container")
with open(os.environ["RUN_PROJECT_EVENTS"], "a") as f:
    f.write(json.dumps({"type": "metric", "key": "acc", "value": 0.9}) + "\\n")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The offline Python base image (made once per content; xdist workers take turns)."""
    why = docker_ready()
    if why is not None:
        require("docker", why)
    lock = tmp_path_factory.getbasetemp().parent / "docker-base-image.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return ensure_base_image()


def docker_project(root: Path, image: str, extra: str = "", **files: str) -> Path:
    """A project with docker_env (plus `extra` lines inside it) and entry points main/script."""
    manifest = (
        f"name: demo\ndocker_env:\n  image: {image}\n{extra}\n"
        "entry_points:\n"
        "  main:\n    parameters:\n      code: {type: int, default: 0}\n"
        "    command: python main.py {code}\n"
        "  script:\n    command: sh run.sh\n"
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLproject").write_text(manifest)
    return make_project(root, {"main.py": MAIN, **files})


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def layers(image_id: str) -> list[str]:
    out = docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image_id)
    data: list[str] = json.loads(out)
    return data


def containers_of(run_id: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=run-project.run={run_id}").split()


@pytest.mark.slow
def test_build_run_exit_code_outputs_and_reuse(tmp_path: Path, base_image: str) -> None:
    project = docker_project(
        tmp_path / "proj", base_image, extra='  environment: [["GREETING", "hello"]]',
        **{"unique.txt": uuid.uuid4().hex},  # new content: this image does not exist yet
    )  # fmt: skip
    first = cli(str(project), "-P", "code=3", "-A", "env=FROM_CLI=yes")
    assert first.code == 3, first.text
    assert "building code image" in first.err
    assert "cwd /project" in first.out and "vars hello yes None" in first.out
    rec = last_record()
    assert rec["status"] == "FAILED" and rec["exit_code"] == 3
    env = rec["env"]
    assert env["kind"] == "docker" and env["image_id"].startswith("sha256:")
    assert env["base_image"] == base_image and env["base_image_digest"].startswith("sha256:")
    outputs = Path(os.environ["RUN_PROJECT_STORE"]) / "artifacts" / rec["id"] / "outputs"
    assert (outputs / "result.txt").read_text() == "made in a container"
    events = outputs.parent / "events.jsonl"
    assert json.loads(events.read_text().splitlines()[0])["key"] == "acc"
    assert containers_of(rec["id"]) == []

    second = cli(str(project))
    assert second.code == 0, second.text
    assert "building" not in second.err
    again = last_record()
    assert again["status"] == "FINISHED" and again["env"]["built"] is False
    assert again["env"]["image_id"] == env["image_id"]

    # A new cache (another user, a wiped cache): the image is found by its tag, not rebuilt.
    third = cli(str(project), env={"RUN_PROJECT_CACHE": str(tmp_path / "other-cache")})
    assert third.code == 0, third.text
    assert "reusing code image" in third.err and "building" not in third.err
    assert last_record()["env"]["image_id"] == env["image_id"]


@pytest.mark.slow
def test_a_command_not_found_or_not_executable_in_the_container_exits_127_or_126(
    tmp_path: Path, base_image: str
) -> None:
    """docs/tracking.md#exit-codes: as on this machine, not an abort of the wrapper (134)."""
    project = docker_project(tmp_path / "proj", base_image, **{"tool.py": "print(1)\n"})
    (project / "MLproject").write_text(
        (project / "MLproject").read_text()
        + "  missing:\n    command: no-such-command-here\n"
        + "  not_executable:\n    command: ./tool.py\n"
    )
    (project / "tool.py").chmod(0o644)
    missing = cli(str(project), "-e", "missing")
    assert missing.code == 127, missing.text
    assert last_record()["exit_code"] == 127
    not_executable = cli(str(project), "-e", "not_executable")
    assert not_executable.code == 126, not_executable.text
    assert last_record()["exit_code"] == 126


def make_wheel(wheelhouse: Path, name: str = "tinypkg", version: str = "1.0") -> None:
    """A hand-made pure-Python wheel, so the env layer installs with no network at all."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(wheelhouse / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in {**files, f"{dist}/RECORD": record}.items():
            whl.writestr(path, text)


@pytest.mark.slow
def test_code_only_change_rebuilds_only_the_code_layer(tmp_path: Path, base_image: str) -> None:
    make_wheel(tmp_path / "wheels")
    env = {"RUN_PROJECT_DOCKER_WHEELHOUSE": str(tmp_path / "wheels"),
           "RUN_PROJECT_DOCKER_IMAGE": base_image}  # fmt: skip
    # A python_env project run with --env-manager docker: its requirements become the env layer.
    project = make_project(tmp_path / "proj", {
        "MLproject": "name: layered\npython_env: python_env.yaml\n"
                     "entry_points:\n  main:\n    command: python main.py\n",
        "python_env.yaml": "python: '3.11'\ndependencies:\n  - -r requirements.txt\n",
        "requirements.txt": f"tinypkg==1.0\n# {uuid.uuid4().hex}\n",
        "main.py": "import tinypkg\nprint('tinypkg', tinypkg.VERSION, 'v1')\n",
    })  # fmt: skip
    first = cli(str(project), "--env-manager", "docker", env=env)
    assert first.code == 0, first.text
    assert "building env image" in first.err and "tinypkg 1.0 v1" in first.out
    one = last_record()["env"]

    (project / "main.py").write_text("import tinypkg\nprint('tinypkg', tinypkg.VERSION, 'v2')\n")
    second = cli(str(project), "--env-manager", "docker", env=env)
    assert second.code == 0, second.text
    assert "reusing env image" in second.err and "building code image" in second.err
    assert "tinypkg 1.0 v2" in second.out
    two = last_record()["env"]
    assert two["env_image_id"] == one["env_image_id"] and two["image_id"] != one["image_id"]
    old, new = layers(one["image_id"]), layers(two["image_id"])
    assert old[:-1] == new[:-1] and old[-1] != new[-1]  # only the code layer differs


def test_dockerignore_honoured_and_symlink_out_refused(tmp_path: Path, base_image: str) -> None:
    project = docker_project(
        tmp_path / "proj", base_image,
        **{".dockerignore": "# comment\ndata/\n*.secret\n!keep.secret\n**/*.tmp\n",
           "data/big.csv": "1,2\n", "a.secret": "s", "keep.secret": "k",
           "sub/x.tmp": "t", "sub/y.py": "y"},
    )  # fmt: skip
    result = cli(str(project))
    assert result.code == 0, result.text
    files = json.loads(result.out.split("files ", 1)[1].splitlines()[0])
    assert "data" not in files and "a.secret" not in files and "keep.secret" in files
    assert ".dockerignore" in files and "sub" in files

    (project / "leak").symlink_to("/etc/hostname")
    refused = cli(str(project))
    assert refused.code == 125
    assert "leak" in refused.err and "outside the project" in refused.err
    assert last_record()["status"] == "FAILED"


@pytest.mark.parametrize(
    ("extra", "named", "flag"),
    [
        ("  volumes: ['/:/host']", "/:/host", "--allow-docker-volumes"),
        ("  environment: [AWS_SECRET_ACCESS_KEY]", "AWS_SECRET_ACCESS_KEY", "--allow-host-env"),
        ("  privileged: true", "privileged", None),
        ("  network: host", "network", None),
        ("  volumes: ['cache:/root/.cache']", "docker volume cache", "--allow-docker-volumes"),
    ],
)
def test_manifest_cannot_choose_host_mounts_env_or_privileges(
    tmp_path: Path, base_image: str, extra: str, named: str, flag: str | None
) -> None:
    canary = tmp_path / "canary"
    project = docker_project(
        tmp_path / "proj", base_image, extra=extra,
        **{"run.sh": f"touch /host{canary}\necho $AWS_SECRET_ACCESS_KEY > /host{canary}\n"},
    )  # fmt: skip
    result = cli(str(project), "-e", "script", env={"AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    assert result.code == 125, result.text
    assert named in result.err and "hint:" in result.err
    if flag:
        assert flag in result.err
    assert not canary.exists()
    assert "s3cr3t" not in result.text


def test_allowed_host_mount_and_env_work(tmp_path: Path, base_image: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    project = docker_project(
        tmp_path / "proj", base_image,
        extra=f"  volumes: ['{shared}:/shared']\n  environment: [AWS_SECRET_ACCESS_KEY]",
        **{"run.sh": "echo $AWS_SECRET_ACCESS_KEY > /shared/seen\n"},
    )  # fmt: skip
    result = cli(
        str(project), "-e", "script", "--allow-docker-volumes", "--allow-host-env",
        env={"AWS_SECRET_ACCESS_KEY": "s3cr3t"},
    )  # fmt: skip
    assert result.code == 0, result.text
    assert (shared / "seen").read_text().strip() == "s3cr3t"
    assert "s3cr3t" not in json.dumps(last_record())  # passed by name, never recorded


def start_runner(project: Path, entry: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", str(project), "-e", entry],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"runner ended before {text!r}: {err}")
    raise AssertionError(f"no {text!r} within {timeout}s")


@pytest.mark.parametrize(
    ("script", "sig", "code"),
    [
        ("sleep 1000 &\necho ready\nwait\n", signal.SIGTERM, 143),
        ("sleep 1000 &\necho ready\nwait\n", signal.SIGINT, 130),
        # Ignores TERM: stopped by force after the grace period (3 s in tests).
        pytest.param("trap '' TERM INT\nsleep 1000 &\necho ready\nwhile true; do sleep 1; done\n",
                     signal.SIGTERM, 143, marks=pytest.mark.slow),
    ],
    ids=["term", "int", "ignores-term"],
)  # fmt: skip
def test_signal_stops_the_container_and_everything_in_it(
    tmp_path: Path, base_image: str, script: str, sig: signal.Signals, code: int
) -> None:
    project = docker_project(tmp_path / "proj", base_image, **{"run.sh": script})
    proc = start_runner(project, "script")
    try:
        wait_for_line(proc, "ready")
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
    finally:
        if proc.poll() is None:
            proc.kill()
    rec = last_record()
    assert rec["status"] == "KILLED" and rec["exit_code"] == code
    assert containers_of(rec["id"]) == []


@pytest.mark.slow
def test_failing_build_fails_the_run_with_the_log_tail(tmp_path: Path, base_image: str) -> None:
    (tmp_path / "wheels").mkdir()
    project = docker_project(
        tmp_path / "proj", base_image, **{"requirements.txt": "no-such-package==9.9\n"}
    )
    result = cli(str(project), env={"RUN_PROJECT_DOCKER_WHEELHOUSE": str(tmp_path / "wheels")})
    assert result.code == 125, result.text
    assert "building the env image" in result.err and "last lines of the build log" in result.err
    assert "no-such-package" in result.err and "hint:" in result.err
    rec = last_record()
    assert rec["status"] == "FAILED" and "no-such-package" in rec["reason"]
    area = Path(os.environ["RUN_PROJECT_CACHE"]) / "envs" / "docker"
    assert not [p for p in area.iterdir() if (p / ".run-project-complete").exists()]
    log = Path(result.err.split("the whole log is ", 1)[1].split(";")[0])
    steps = re.findall(r"^ ---> ([0-9a-f]{12})$", log.read_text(), re.M)
    dangling = docker("image", "ls", "-q", "--filter", "dangling=true").split()
    assert len(steps) >= 2 and not set(steps) & set(dangling)  # no untagged leftovers


@pytest.mark.slow
def test_envs_list_shows_only_our_images_and_gc_never_others(
    tmp_path: Path, base_image: str
) -> None:
    project = docker_project(tmp_path / "proj", base_image, **{"unique.txt": uuid.uuid4().hex})
    assert cli(str(project)).code == 0
    mine = last_record()["env"]["image"]
    found = _call("list_images()")
    tags = {tag for image in found for tag in image["tags"]}
    assert mine in tags and base_image not in tags
    assert all(image["role"] in ("env", "code") for image in found)
    refused = _call(f"remove_image({base_image!r})")
    assert "not built by run-project" in refused
    assert docker("image", "inspect", "--format", "{{.Id}}", base_image).strip()
    assert _call(f"remove_image({mine!r})") is True
    assert mine not in {tag for image in _call("list_images()") for tag in image["tags"]}


@pytest.mark.slow
def test_envs_cli_lists_our_images_and_gc_removes_them_with_their_entry(
    tmp_path: Path, base_image: str
) -> None:
    project = docker_project(tmp_path / "proj", base_image, **{"unique.txt": uuid.uuid4().hex})
    assert cli(str(project)).code == 0
    mine = last_record()["env"]["image"]
    listed = json.loads(cli("envs", "list", "--json").out)
    paths = {row["path"] for row in listed if row["kind"].startswith("docker image")}
    assert mine in paths and base_image not in paths
    assert any(row["kind"] == "docker" for row in listed)  # the cache entry naming the images
    gc = cli("envs", "gc", "--keep-last", "0")
    assert gc.code == 0, gc.text
    assert docker("image", "ls", "-q", mine).strip() == ""
    assert docker("image", "inspect", "--format", "{{.Id}}", base_image).strip()
    assert not any(row["kind"] == "docker" for row in json.loads(cli("envs", "list", "--json").out))


def _call(expr: str) -> Any:
    """Call runner.envs.docker.kind in a fresh interpreter (as `envs list|gc` will)."""
    code = (
        "import json\nfrom runner.envs.docker.kind import list_images, remove_image\n"
        "from runner.errors import RunnerError\n"
        f"try:\n    r = {expr}\nexcept RunnerError as e:\n    r = e.message\n"
        "print(json.dumps([i.to_dict() for i in r] if isinstance(r, list) else r))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.slow
def test_project_dockerfile_builds_the_env_layer(tmp_path: Path, base_image: str) -> None:
    project = make_project(tmp_path / "proj", {
        "MLproject": "name: own\ndocker_env:\n  dockerfile: docker/Dockerfile\n"
                     "entry_points:\n  main:\n    command: python main.py\n",
        "docker/Dockerfile": f"FROM {base_image}\n"
                             "COPY setup.txt /etc/setup.txt\n",
        "setup.txt": f"set up by the project's Dockerfile {uuid.uuid4().hex}\n",
        "main.py": "print(open('/etc/setup.txt').read().strip(), open('setup.txt').read() != '')\n",
    })  # fmt: skip
    result = cli(str(project))
    assert result.code == 0, result.text
    assert "set up by the project's Dockerfile" in result.out and "True" in result.out
    env = last_record()["env"]
    assert env["env_image"].startswith("run-project-env:") and env["env_image_built"] is True
    assert env["base_image"] == base_image and env["base_image_digest"].startswith("sha256:")


@pytest.mark.slow
def test_build_takes_the_machine_ca_bundle_and_index_settings(
    tmp_path: Path, base_image: str
) -> None:
    ca = tmp_path / "corporate-ca.pem"
    ca.write_text("# corporate test CA\n" + Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    project = docker_project(
        tmp_path / "proj", base_image,
        **{"requirements.txt": f"# nothing to fetch {uuid.uuid4().hex}\n",
           "run.sh": "head -n 1 /run-project-env/ca.pem\n"},
    )  # fmt: skip
    env = {name: str(ca) for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")}
    env["PIP_INDEX_URL"] = "https://pypi.internal.invalid/simple"
    result = cli(str(project), "-e", "script", env=env)
    assert result.code == 0, result.text
    assert "# corporate test CA" in result.out
    history = docker("history", "--no-trunc", last_record()["env"]["env_image"])
    assert "PIP_INDEX_URL=https://pypi.internal.invalid/simple" in history
    assert "PIP_CERT=/run-project-env/ca.pem" in history


def test_sigterm_during_a_build_cancels_it(tmp_path: Path, base_image: str) -> None:
    marker = uuid.uuid4().hex
    project = make_project(tmp_path / "proj", {
        "MLproject": "name: slow\ndocker_env:\n  dockerfile: Dockerfile\n"
                     "entry_points:\n  main:\n    command: python -c pass\n",
        "Dockerfile": f'FROM {base_image}\nRUN ["sh", "-c", "echo {marker}; sleep 1000"]\n',
    })  # fmt: skip
    proc = start_runner(project, "main")
    try:
        wait_until(lambda: marker in build_containers(), "the build's RUN step to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    rec = last_record()
    assert rec["status"] == "KILLED" and rec["exit_code"] == 143
    wait_until(lambda: marker not in build_containers(), "the build container to go")
    area = Path(os.environ["RUN_PROJECT_CACHE"]) / "envs" / "docker"
    assert not [p for p in area.iterdir() if (p / ".run-project-complete").exists()]


def build_containers() -> str:
    return docker("ps", "-a", "--no-trunc", "--format", "{{.Command}}")


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_requirements_leaving_the_project_are_refused(tmp_path: Path, base_image: str) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret-package==1.0\n")
    project = make_project(tmp_path / "proj", {
        "MLproject": "name: leaky\npython_env: python_env.yaml\n"
                     "entry_points:\n  main:\n    command: python -c pass\n",
        "python_env.yaml": "dependencies:\n  - -r reqs/linked.txt\n",
    })  # fmt: skip
    (project / "reqs").mkdir()
    (project / "reqs" / "linked.txt").symlink_to(outside)
    result = cli(
        str(project), "--env-manager", "docker", env={"RUN_PROJECT_DOCKER_IMAGE": base_image}
    )
    assert result.code == 125, result.text
    assert "reqs/linked.txt" in result.err and "inside the project" in result.err


@pytest.mark.slow
def test_concurrent_runs_of_a_new_project_state_build_once(tmp_path: Path, base_image: str) -> None:
    project = docker_project(tmp_path / "proj", base_image, **{"unique.txt": uuid.uuid4().hex})
    procs = [start_runner(project, "main") for _ in range(3)]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], results
    assert sum(err.count("building code image") for _, err in results) == 1


@pytest.mark.slow
def test_a_container_left_by_a_runner_killed_with_9_is_removed_by_envs_gc(
    tmp_path: Path, base_image: str
) -> None:
    """kill -9 leaves the runner no chance to stop its container; a command ignoring TERM then
    outlives its docker client. `envs gc` sees the run LOST and removes the container."""
    script = "trap '' TERM INT\necho ready\nwhile true; do sleep 1; done\n"
    project = docker_project(tmp_path / "proj", base_image, **{"run.sh": script})
    proc = start_runner(project, "script")
    label = "label=run-project.run=none-yet"
    try:
        wait_for_line(proc, "ready")
        run_id = last_record()["id"]
        label = f"label=run-project.run={run_id}"
        assert "container" not in cli("envs", "gc").out  # its run is active: left alone
        assert docker("ps", "-q", "--filter", label).strip()
        proc.kill()
        proc.wait(timeout=30)
        time.sleep(2)  # the docker client has died with the runner (PDEATHSIG)
        assert docker("ps", "-q", "--filter", label).strip()  # still running: the gap
        dry = cli("envs", "gc", "--dry-run")
        assert dry.code == 0 and "would remove container" in dry.out, dry.text
        assert docker("ps", "-q", "--filter", label).strip()
        result = cli("envs", "gc")
        assert result.code == 0, result.text
        assert f"LOST run {run_id[:8]}" in result.out, result.out
        assert not docker("ps", "-aq", "--filter", label).strip()
        assert last_record()["status"] == "LOST"
    finally:
        if proc.poll() is None:
            proc.kill()
        for container in docker("ps", "-aq", "--filter", label).split():
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def test_event_paths_from_a_container_read_no_host_file(tmp_path: Path, base_image: str) -> None:
    secret = tmp_path / "host" / "shadow"
    secret.parent.mkdir()
    secret.write_text("root:$6$canary-secret:19000::::::\n")
    gitconfig = tmp_path / "host" / ".gitconfig"
    gitconfig.write_text("[user]\n  name = canary-config\n")
    events = [
        {"type": "artifact", "path": str(secret), "name": "shadow"},
        {"type": "artifact", "path": "/project/../" + str(secret), "name": "shadow2"},
        {"type": "open", "path": str(gitconfig), "mode": "r"},
        {"type": "artifact", "path": "/run-project/outputs/ok.txt", "name": "ok.txt"},
    ]
    lines = "\n".join(f"echo '{json.dumps(e)}' >> \"$RUN_PROJECT_EVENTS\"" for e in events)
    script = f'echo fine > "$RUN_PROJECT_OUTPUT_DIR/ok.txt"\n{lines}\n'
    project = docker_project(tmp_path / "p", base_image, **{"run.sh": script})
    result = cli(str(project), "-e", "script", timeout=300)
    assert result.code == 0, result.text
    record = last_record()
    warnings = "\n".join(record["capture"]["warnings"])
    for refused in (str(secret), str(gitconfig)):
        assert f"event path {refused}" in warnings, warnings
    assert str(gitconfig) not in [i["path"] for i in record["inputs"]]
    names = {o["name"] for o in record["outputs"]}
    assert "logged/ok.txt" in names and not any("shadow" in n for n in names), names
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert not any(b"canary-secret" in p.read_bytes() for p in stored)


@pytest.mark.slow
def test_files_written_in_the_containers_working_directory_are_captured(
    tmp_path: Path, base_image: str
) -> None:
    writes = "import os\nos.makedirs('out', exist_ok=True)\nopen('out/model.txt', 'w').write('w')\n"
    project = docker_project(tmp_path / "proj", base_image, **{"run.sh": "python write.py\n",
                                                               "write.py": writes})  # fmt: skip
    result = cli(str(project), "-e", "script")
    assert result.code == 0, result.text
    rec = last_record()
    names = {o["name"]: o for o in rec["outputs"]}
    assert "workdir/out/model.txt" in names, rec["outputs"]
    stored = Path(os.environ["RUN_PROJECT_STORE"]) / "artifacts" / rec["id"]
    assert (stored / "workdir" / "out" / "model.txt").read_text() == "w"
    assert containers_of(rec["id"]) == []
