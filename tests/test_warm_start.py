"""The warm local path: a manifest seen before is read from the cache (no PyYAML, no schema
check), with the same result and the same error lines as a fresh parse; a damaged cache entry
is ignored. Import lists are checked, never timings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner import settings
from runner.errors import ManifestError
from runner.project import manifest_cache
from runner.project.manifest import load_project
from support.cli import cli
from support.projects import make_project

MANIFEST = """\
name: warm
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.1}
      tag: {type: string, default: "no"}
    command: "python -c pass"
"""


def _entries() -> list[Path]:
    return sorted((settings.cache_dir() / "manifests").glob("*.json"))


def test_second_load_comes_from_the_cache_and_equals_the_first(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": MANIFEST})
    first = load_project(project)
    assert len(_entries()) == 1
    cached = manifest_cache.load(project / "MLproject")
    assert cached is not None and cached.value["entry_points"]["main"]["command"]
    assert load_project(project) == first
    assert first.entry_points["main"].params["tag"].default == "no"  # text stays text


def test_cached_manifest_keeps_line_numbers_in_errors(tmp_path: Path) -> None:
    bad = MANIFEST.replace('"python -c pass"', '"python {missing}"')
    project = make_project(tmp_path / "p", {"MLproject": bad})
    with pytest.raises(ManifestError) as fresh:
        load_project(project)
    assert _entries(), "a schema-valid manifest is cached even if a later check fails"
    with pytest.raises(ManifestError) as again:
        load_project(project)
    assert str(again.value.message) == str(fresh.value.message)


def test_a_damaged_cache_entry_is_ignored(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": MANIFEST})
    first = load_project(project)
    for entry in _entries():
        entry.write_text("{not json")
    assert load_project(project) == first


def test_changed_manifest_is_parsed_again(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": MANIFEST})
    load_project(project)
    (project / "MLproject").write_text(MANIFEST.replace("0.1", "0.2"))
    assert load_project(project).entry_points["main"].params["lr"].default == "0.2"
    assert len(_entries()) == 2


def test_warm_local_run_imports_no_yaml_toml_or_jsonschema(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": MANIFEST})
    assert cli(str(project), "-q").code == 0
    # As a real run: the tests' record check (conftest) would import jsonschema.
    env = {"PYTHONPROFILEIMPORTTIME": "1", "RUN_PROJECT_CHECK_RECORDS": ""}
    warm = cli(str(project), "-q", env=env)
    assert warm.code == 0, warm.text
    imported = {line.rsplit("|", 1)[-1].strip() for line in warm.err.splitlines()}
    assert {"yaml", "tomllib", "jsonschema", "uuid", "traceback"}.isdisjoint(imported)
    # Kinds load on first use: a local run imports no other kind's code.
    assert {
        "runner.envs.docker.kind",
        "runner.envs.python.virtualenv",
        "runner.envs.conda.kind",
    }.isdisjoint(imported)
    # Creating twenty frozen dataclasses (and importing dataclasses/inspect) was about a third
    # of a warm start's instructions; records on the warm path are NamedTuples or classes.
    assert {"dataclasses", "runner.envs.docker.run", "runner.envs.python.inputs", "platform",
            "socket", "runner.sources.mirror", "runner.sources.workcopy"}.isdisjoint(imported)  # fmt: skip
    # The bash parser loads only for a template with shell syntax.
    assert {"runner.project.shell", "tree_sitter", "tree_sitter_bash"}.isdisjoint(imported)
    # The MLflow endpoint is a listener and a thread until a client connects: its HTTP server
    # loads only then, in the runner, and no wrapper process starts before the command.
    assert {"runner.tracking.mlflow_api.server", "runner.tracking.mlflow_api.state",
            "runner.tracking.mlflow_api.routes", "runner.tracking.mlflow_api.launch",
            "http.server"}.isdisjoint(imported)  # fmt: skip
    assert "runner.tracking.mlflow_api.wrap" in imported
    # The web UI (and http.server under it) loads only for `run-project ui`.
    assert not {m for m in imported if m.startswith(("runner.ui", "runner.cli.ui", "http."))}
    assert "runner.run" in imported  # the profile really was taken
    assert os.environ.get("RUN_PROJECT_CACHE")


def test_a_shell_template_loads_the_bash_parser(tmp_path: Path) -> None:
    shell = MANIFEST.replace('"python -c pass"', '"python -c pass && true"')
    project = make_project(tmp_path / "p", {"MLproject": shell})
    env = {"PYTHONPROFILEIMPORTTIME": "1", "RUN_PROJECT_CHECK_RECORDS": ""}
    result = cli(str(project), "-q", env=env)
    assert result.code == 0, result.text
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.err.splitlines()}
    assert {"runner.project.shell", "tree_sitter_bash"} <= imported


def test_probed_interpreter_is_remembered_by_binary_identity(tmp_path: Path) -> None:
    import sys

    from runner.envs.python import interpreters, probe_cache

    exe = Path(sys.executable)
    assert probe_cache.lookup(exe)[1] is None
    probed = interpreters._probe.__wrapped__(exe)  # the real probe, not the per-process memo
    assert probed is not None
    assert probe_cache.lookup(exe)[1] == (probed.version, probed.implementation)
    copy = tmp_path / "python-copy"
    copy.write_bytes(b"#!/bin/sh\n")  # another binary: another stamp, not the remembered one
    assert probe_cache.lookup(copy)[1] is None


def test_python_env_file_is_parsed_once(tmp_path: Path) -> None:
    from runner.envs.python.inputs import detect
    from runner.project.manifest import EnvSpec

    text = 'python: "3.11"\ndependencies:\n  - six\n'
    project = make_project(tmp_path / "p", {"python_env.yaml": text})
    spec = EnvSpec(kind="virtualenv", file="python_env.yaml")
    first = detect(spec, project)
    assert len(_entries()) == 1
    assert detect(spec, project) == first


def test_a_cache_holding_only_the_validity_marker_gains_the_parsed_entry(tmp_path: Path) -> None:
    """A cache written before parsed manifests were kept has `.valid` markers only: the next
    run must add the JSON entry, or every later run would import PyYAML again."""
    project = make_project(tmp_path / "p", {"MLproject": MANIFEST})
    load_project(project)
    for entry in _entries():
        entry.unlink()  # as an older cache: marker, no entry
    assert list((settings.cache_dir() / "manifests").glob("*.valid"))
    load_project(project)
    assert len(_entries()) == 1
