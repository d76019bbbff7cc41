"""The conda kind against a real channel served on 127.0.0.1 (built at session start)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.cli import EXAMPLES, cli, last_record, records
from support.conda import MLPROJECT, PY_FULL, SHOW, lock_of, project
from support.projects import make_project
from support.services import require

pytestmark = pytest.mark.usefixtures("conda_settings")


def area(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "envs" / "conda"


def complete(tmp_path: Path) -> list[Path]:
    """Complete cache entries (with their marker)."""
    return sorted(p.parent for p in area(tmp_path).glob("*/.run-project-complete"))


def leftovers(tmp_path: Path) -> list[str]:
    """Staging or trash directories left in the area."""
    return [p.name for p in area(tmp_path).glob(".staging-*")]


def workers_of(tmp_path: Path) -> list[int]:
    """PIDs of conda_worker processes building under `tmp_path`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "runner.envs.conda.worker" in cmdline and str(tmp_path) in cmdline:
            found.append(int(proc.name))
    return found


def test_example_project_solves_installs_runs_and_reuses(tmp_path: Path) -> None:
    first = cli(str(EXAMPLES / "conda_env"), "-P", "greeting=hi")
    assert first.code == 0, first.text
    assert "solving conda environment conda.yaml (conda-forge)" in first.err
    assert "conda environment built: 2 conda, 0 pip packages" in first.err
    env = complete(tmp_path)[0]
    assert f"hi from {env}" in first.out and f"CONDA_PREFIX={env}" in first.out
    assert "EXAMPLE_MODE=conda" in first.out
    assert any((env / "conda-meta").glob("pip-24.0-*.json"))
    rec = last_record()
    assert rec["status"] == "FINISHED" and rec["env"]["kind"] == "conda" and rec["env"]["built"]
    assert rec["env"]["source"] == "solved" and rec["env"]["lock_name"] == "conda-lock.yml"
    second = cli(str(EXAMPLES / "conda_env"))
    assert second.code == 0, second.text
    assert "solving" not in second.err and last_record()["env"]["built"] is False
    assert complete(tmp_path) == [env] and not leftovers(tmp_path)
    from runner.project.schemas import schema_errors

    assert schema_errors("run-record", rec) == []  # the conda example's record is valid too


def test_solver_chooses_versions_and_pip_section_installs_with_uv(tmp_path: Path) -> None:
    from support.conda_channel import make_wheel

    proj = project(tmp_path / "p", ["python", "alpha", "beta <3"],
                   pip=["./wheels/tinylib-1.0-py3-none-any.whl"])  # fmt: skip
    make_wheel(proj / "wheels")
    result = cli(str(proj))
    assert result.code == 0, result.text
    env = complete(tmp_path)[0]
    assert "alpha 2.0\nbeta 2.0\n" in result.out  # highest alpha whose beta fits `<3`
    assert f"tinylib 1.0 {env}/lib/python" in result.out
    script = (env / "bin" / "tinylib").read_text()
    assert f"{env}/bin/python" in script and ".staging-" not in script  # rewritten for `env`
    assert subprocess.run([env / "bin" / "tinylib"], capture_output=True, text=True).stdout == (
        "tinylib 1.0\n"
    )


@pytest.mark.slow
def test_recorded_lock_is_read_by_conda_locks_own_parser(tmp_path: Path) -> None:
    try:
        import conda_lock.lockfile as lockfile
    except ImportError:
        require("conda-lock", "conda-lock is not installed: pip install conda-lock")
    from support.conda_channel import make_wheel

    wheel = "./wheels/tinylib-1.0-py3-none-any.whl"
    proj = project(tmp_path / "p", ["python", "alpha <2"], pip=[wheel])
    make_wheel(proj / "wheels")
    assert cli(str(proj)).code == 0
    parsed = lockfile.parse_conda_lock_file(lock_of(last_record()))
    found = {(p.name, p.version, p.manager) for p in parsed.package}
    assert found == {("alpha", "1.0", "conda"), ("beta", "1.0", "conda"),
                     ("python", PY_FULL, "conda"),
                     ("tinylib", "1.0", "pip")}  # fmt: skip
    urls = [p.url for p in parsed.package if p.manager == "conda"]
    # named under the default alias: the mirror's address is not baked into the lock
    assert all(u.startswith("https://conda.anaconda.org/conda-forge/") for u in urls), urls
    assert all(p.hash.sha256 for p in parsed.package)


@pytest.mark.slow
def test_shipped_lock_is_installed_exactly_without_solving(tmp_path: Path) -> None:
    assert cli(str(project(tmp_path / "a", ["python", "alpha <2"]))).code == 0
    lock = lock_of(last_record()).read_text()
    # conda.yaml alone would give alpha 2.0; the lock says 1.0 and wins
    proj = project(tmp_path / "b", ["python", "alpha"], files={"conda-lock.yml": lock})
    result = cli(str(proj))
    assert result.code == 0, result.text
    assert "alpha 1.0\nbeta 1.0\n" in result.out
    assert "no solve" in result.err and "solving" not in result.err
    rec = last_record()
    assert rec["env"]["source"] == "conda-lock.yml" and lock_of(rec).read_text() == lock
    meta_dir = area(tmp_path) / rec["env"]["key"] / "conda-meta"
    meta = json.loads(next(meta_dir.glob("alpha-*.json")).read_text())
    assert meta["url"].endswith("/conda-forge/noarch/alpha-1.0-0.tar.bz2"), meta["url"]


@pytest.mark.parametrize(
    "algorithm", [pytest.param("sha256", marks=pytest.mark.slow), "md5"]
)  # md5 alone: what older locks carry
def test_lock_with_wrong_hash_fails_and_caches_nothing(tmp_path: Path, algorithm: str) -> None:
    assert cli(str(project(tmp_path / "a", ["alpha <2"]))).code == 0
    lines = lock_of(last_record()).read_text().splitlines()
    shutil.rmtree(tmp_path / "cache")
    if algorithm == "md5":
        lines = [line for line in lines if "sha256:" not in line]
    good = next(line.split()[-1] for line in lines if f"{algorithm}:" in line)
    wrong = "ab" * (len(good) // 2)
    lock = "\n".join(lines).replace(good, wrong) + "\n"
    proj = project(tmp_path / "b", ["alpha"], files={"conda-lock.yml": lock})
    result = cli(str(proj))
    assert result.code == 125, result.text
    assert f"{algorithm} is" in result.err and wrong in result.err
    assert last_record()["status"] == "FAILED"
    assert not complete(tmp_path) and not leftovers(tmp_path)


def test_unsatisfiable_spec_names_the_conflicting_packages(tmp_path: Path) -> None:
    result = cli(str(project(tmp_path / "p", ["alpha >=2", "beta <2"])))
    assert result.code == 125, result.text
    assert "cannot be solved" in result.err and "alpha" in result.err and "beta" in result.err
    assert "hint: relax the version constraints" in result.err
    rec = last_record()
    assert rec["status"] == "FAILED" and "cannot be solved" in rec["reason"]
    assert not complete(tmp_path) and not leftovers(tmp_path)


def test_package_failing_its_hash_check_fails_the_run_and_caches_nothing(tmp_path: Path) -> None:
    result = cli(str(project(tmp_path / "p", ["tampered"], channels=("rp-broken",))))
    assert result.code == 125, result.text
    assert "a conda package failed its hash check" in result.err and "hash mismatch" in result.err
    assert (
        "tampered-1.0-0.tar.bz2" in result.err and "hint: the channel served a file" in result.err
    )
    assert last_record()["status"] == "FAILED"
    assert not complete(tmp_path) and not leftovers(tmp_path)
    assert not list((tmp_path / "cache").rglob("CANARY"))  # the altered payload was never used


@pytest.mark.parametrize("runs", [2, pytest.param(10, marks=pytest.mark.slow)])
def test_concurrent_runs_build_the_environment_once(tmp_path: Path, runs: int) -> None:
    proj = project(tmp_path / "p", ["python", "alpha"])
    with ThreadPoolExecutor(runs) as pool:
        results = list(pool.map(lambda _: cli(str(proj), timeout=300), range(runs)))
    assert all(r.code == 0 for r in results), [r.text for r in results if r.code]
    assert all("alpha 2.0" in r.out for r in results)
    built = [r["env"]["built"] for r in records()]
    assert len(built) == runs and built.count(True) == 1
    assert len(complete(tmp_path)) == 1 and not leftovers(tmp_path)


def _start_slow_build(tmp_path: Path, root: Path) -> tuple[subprocess.Popen[str], Path]:
    """Start a run whose install hangs on the slow channel; return once it is downloading."""
    (root / ".slow-hit").unlink(missing_ok=True)
    (root / ".slow").touch()
    proj = project(tmp_path / "p", ["python", "sloth"], channels=("conda-forge", "rp-slow"))
    proc = subprocess.Popen([sys.executable, "-m", "runner", str(proj)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (root / ".slow-hit").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert leftovers(tmp_path), "the build should be in its staging directory"
    assert workers_of(tmp_path), "the py-rattler worker should be running"
    return proc, proj


def test_kill_9_during_install_leaves_nothing_trusted(
    tmp_path: Path, channel: tuple[str, Path]
) -> None:
    proc, proj = _start_slow_build(tmp_path, channel[1])
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        (channel[1] / ".slow").unlink(missing_ok=True)
    assert not complete(tmp_path)
    deadline = time.monotonic() + 10
    while workers_of(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers_of(tmp_path), "the py-rattler worker outlived its runner"
    result = cli(str(proj))
    assert result.code == 0, result.text
    assert "sloth 1.0" in result.out and last_record()["env"]["built"] is True
    assert len(complete(tmp_path)) == 1 and not leftovers(tmp_path)


def test_ctrl_c_twice_during_build_then_next_run_recovers(
    tmp_path: Path, channel: tuple[str, Path]
) -> None:
    proc, proj = _start_slow_build(tmp_path, channel[1])
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        if proc.poll() is None:  # the second one lands during the cleanup (or after it)
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        (channel[1] / ".slow").unlink(missing_ok=True)
    # 130, or death by SIGINT itself (-2, which a shell also shows as 130) when the second
    # Ctrl-C lands after Python has restored default handlers on its way out
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err
    assert last_record()["status"] == "KILLED"
    assert not complete(tmp_path)
    result = cli(str(proj))
    assert result.code == 0, result.text
    assert len(complete(tmp_path)) == 1 and not leftovers(tmp_path)


@pytest.mark.parametrize("victim", ["bin/python", "pyvenv.cfg"])
def test_deleted_interpreter_fails_health_check_and_is_rebuilt(tmp_path: Path, victim: str) -> None:
    proj = project(tmp_path / "p", ["python", "alpha"])
    assert cli(str(proj)).code == 0
    env = complete(tmp_path)[0]
    (env / victim).unlink()
    result = cli(str(proj))
    assert result.code == 0, result.text
    assert last_record()["env"]["built"] is True and (env / victim).exists()


@pytest.mark.parametrize(
    "conda_env", ["../../etc/passwd", "/etc/passwd", "outside-link.yaml", "sub/../../x.yaml"]
)
def test_conda_env_path_leaving_the_project_is_refused(tmp_path: Path, conda_env: str) -> None:
    (tmp_path / "x.yaml").write_text("dependencies: [alpha]\n")
    proj = project(tmp_path / "p", ["alpha"])
    (proj / "outside-link.yaml").symlink_to(tmp_path / "x.yaml")
    (proj / "MLproject").write_text(MLPROJECT.replace("conda.yaml", conda_env))
    result = cli(str(proj))
    assert result.code == 125, result.text
    assert "outside the project" in result.err and conda_env in result.err
    assert not (tmp_path / "cache" / "envs" / "conda").exists() or not complete(tmp_path)


@pytest.mark.parametrize("nested", [False, True])
def test_pip_requirement_file_leaving_the_project_is_refused(tmp_path: Path, nested: bool) -> None:
    (tmp_path / "secret.txt").write_text("tinylib\n")
    files = {"reqs.txt": "-r ../secret.txt\n"} if nested else {}
    pip = ["-r reqs.txt"] if nested else ["-r ../secret.txt"]
    result = cli(str(project(tmp_path / "p", ["python"], pip=pip, files=files)))
    assert result.code == 125, result.text
    assert "outside the project" in result.err and "../secret.txt" in result.err
    assert not (tmp_path / "cache" / "envs" / "conda").exists() or not complete(tmp_path)


def test_changed_pip_requirement_file_changes_the_key(tmp_path: Path) -> None:
    """A file named by `-r` in a file named by `-r` changes, the manifest does not."""
    from support.conda_channel import make_wheel

    proj = project(tmp_path / "p", ["python"], pip=["-r requirements.txt"],
                   files={"requirements.txt": "-r more.txt\n", "more.txt": "--no-index\n"})  # fmt: skip
    make_wheel(proj / "wheels")
    assert cli(str(proj)).code == 0
    (proj / "more.txt").write_text("./wheels/tinylib-1.0-py3-none-any.whl\n")
    result = cli(str(proj))
    assert result.code == 0, result.text
    assert "tinylib 1.0" in result.out
    keys = {r["env"]["key"] for r in records()}
    assert len(keys) == 2 and len(complete(tmp_path)) == 2


def test_uninstallable_pip_requirement_fails_with_uvs_message(tmp_path: Path) -> None:
    from support.conda_channel import make_wheel

    proj = project(tmp_path / "p", ["python"], pip=["--no-index", "--find-links ./wheels",
                                                    "tinylib==9.9"])  # fmt: skip
    make_wheel(proj / "wheels")
    result = cli(str(proj))
    assert result.code == 125, result.text
    assert "resolving the pip: section with uv failed" in result.err and "tinylib" in result.err
    assert last_record()["status"] == "FAILED"
    assert not complete(tmp_path) and not leftovers(tmp_path)


def test_channel_alias_comes_from_flag_env_or_config(
    tmp_path: Path, channel: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUN_PROJECT_CHANNEL_ALIAS")
    url = "https://conda.anaconda.org/conda-forge"  # under the default alias: mirrored too
    proj = project(tmp_path / "p", ["python", "alpha <2"], channels=(url,))
    via_flag = cli(str(proj), "--channel-alias", channel[0],
                   env={"RUN_PROJECT_CACHE": str(tmp_path / "c1")})  # fmt: skip
    assert via_flag.code == 0, via_flag.text
    (proj / "run-project.toml").write_text(f'channel-alias = "{channel[0]}"\n')
    via_config = cli(str(proj), env={"RUN_PROJECT_CACHE": str(tmp_path / "c2")})
    assert via_config.code == 0, via_config.text
    assert "alpha 1.0" in via_flag.out and "alpha 1.0" in via_config.out
    bad = cli(str(proj), "--channel-alias", "ftp://x")
    assert bad.code == 125 and "channel alias" in bad.err


@pytest.mark.slow
def test_cli_never_exits_with_py_rattler_crash_codes(tmp_path: Path) -> None:
    """30 runs that really use py-rattler: 10 builds (each in its own cache) and 20 solves that
    fail (unsatisfiable); each must end with its own exit code, never 134/139."""
    good = project(tmp_path / "good", ["alpha"])
    bad = project(tmp_path / "bad", ["alpha >=2", "beta <2"])

    def run(i: int) -> int:
        target = good if i % 3 == 0 else bad
        return cli(str(target), "-q", env={"RUN_PROJECT_CACHE": str(tmp_path / f"c{i}")}).code

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(run, range(30)))
    assert codes == [0 if i % 3 == 0 else 125 for i in range(30)], codes


def test_env_manager_conda_finds_conda_yaml_and_sets_its_variables(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "p", {
        "conda.yaml": "channels: [conda-forge]\ndependencies: [python, beta <2]\n"
                      "variables: {RP_GREETING: hello-conda}\n",
        "show.py": SHOW + "import os\nprint(os.environ['RP_GREETING'], sys.prefix)\n",
    })  # fmt: skip
    result = cli(str(proj), "-e", "show.py", "--env-manager", "conda")
    assert result.code == 0, result.text
    assert "beta 1.0" in result.out and f"hello-conda {complete(tmp_path)[0]}" in result.out
    assert last_record()["env"]["kind"] == "conda"


MLFLOW_SPEAKER = """\
import json, os, urllib.request
body = json.dumps({"run_id": os.environ["MLFLOW_RUN_ID"], "key": "kind", "value": "conda"})
request = urllib.request.Request(
    os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-parameter", data=body.encode(),
    headers={"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]}, method="POST")
urllib.request.urlopen(request, timeout=30).read()
"""


def test_a_conda_run_has_the_mlflow_endpoint_and_its_logging_lands_in_the_record(
    tmp_path: Path,
) -> None:
    """MLflow's REST call from the conda env's own Python, as mlflow's client makes it."""
    proj = make_project(tmp_path / "p", {
        "conda.yaml": "channels: [conda-forge]\ndependencies: [python]\n",
        "speak.py": MLFLOW_SPEAKER,
    })  # fmt: skip
    result = cli(str(proj), "-e", "speak.py", "--env-manager", "conda")
    assert result.code == 0, result.text
    record = last_record()
    assert record["env"]["kind"] == "conda" and record["logged_params"] == {"kind": "conda"}
    assert record["mlflow"]["tracking_uri"] == "served"


def test_env_manager_conda_without_an_environment_file_says_what_to_add(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "p", {"show.py": SHOW})
    result = cli(str(proj), "-e", "show.py", "--env-manager", "conda")
    assert result.code == 2, result.text
    assert "no conda_env" in result.err and "hint: add `conda_env: conda.yaml`" in result.err


def test_envs_list_and_gc_cover_conda_envs(tmp_path: Path) -> None:
    proj = project(tmp_path / "p", ["python", "alpha"])
    assert cli(str(proj)).code == 0
    listed = cli("envs", "list", "--json", "--no-images")  # docker images are machine-wide
    assert listed.code == 0, listed.text
    [row] = json.loads(listed.out)
    assert row["kind"] == "conda" and row["python"] == PY_FULL and row["projects"] == [str(proj)]
    gc = cli("envs", "gc", "--keep-last", "0")
    assert gc.code == 0 and "removed conda/" in gc.out, gc.text
    assert not complete(tmp_path)
    assert json.loads(cli("envs", "list", "--json", "--no-images").out) == []


def test_misspelt_key_and_bad_match_spec_are_named(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "p", {"MLproject": MLPROJECT, "show.py": SHOW,
                                         "conda.yaml": "dependecies: [alpha]\n"})  # fmt: skip
    result = cli(str(proj))
    assert result.code == 125 and "conda.yaml:1" in result.err, result.text
    assert "did you mean `dependencies`" in result.err
    result = cli(str(project(tmp_path / "q", ["alpha >=<2"])))
    assert result.code == 125 and "alpha >=<2" in result.err, result.text
    assert "hint: fix that dependency line" in result.err
    assert not complete(tmp_path)


def test_shipped_lock_without_this_platform_is_refused(tmp_path: Path) -> None:
    lock = "version: 1\nmetadata:\n  platforms: [osx-arm64]\n  content_hash: {}\n" \
           "  channels: []\n  sources: []\npackage: []\n"  # fmt: skip
    result = cli(str(project(tmp_path / "p", ["alpha"], files={"conda-lock.yml": lock})))
    assert result.code == 125, result.text
    assert (
        "no packages for this platform (linux-64)" in result.err and "conda-lock -f" in result.err
    )
