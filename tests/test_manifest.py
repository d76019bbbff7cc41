"""The MLproject loader: schema-checked, safe YAML, errors with file, line and hint."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.errors import ManifestError
from runner.project.manifest import load_project
from support.cli import cli
from support.projects import make_project


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    return load_project(make_project(tmp_path / "p", {"MLproject": text}))


def error_of(tmp_path: Path, text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(tmp_path, text)
    return info.value


def test_short_and_long_parameter_forms(tmp_path: Path) -> None:
    project = load(tmp_path, """\
        name: demo
        entry_points:
          main:
            parameters:
              data: path
              lr: {type: float, default: 0.1}
              n: {type: int, default: 3, choices: [1, 3, 5]}
              plain: {default: hello}
            command: "python train.py {data} {lr} {n} {plain}"
        """)  # fmt: skip
    specs = project.entry_points["main"].params
    assert specs["data"].type == "path" and specs["data"].default is None
    assert (specs["lr"].type, specs["lr"].default) == ("float", "0.1")
    assert specs["n"].choices == ("1", "3", "5")
    assert specs["plain"].type == "string"


@pytest.mark.parametrize(
    ("text", "line", "suggestion"),
    [
        ("name: x\nentry_point:\n  main: {command: a}\n", 2, "entry_points"),
        ("name: x\npyhton_env: p.yaml\n", 2, "python_env"),
        ("entry_points:\n  main:\n    comand: a\n", 3, "command"),
        (
            "entry_points:\n  main:\n    command: a\n    parameters:\n      p: {tpye: int}\n",
            5,
            "type",
        ),
    ],
)
def test_misspelt_keys_name_file_line_and_suggest(
    tmp_path: Path, text: str, line: int, suggestion: str
) -> None:
    err = error_of(tmp_path, text)
    assert f"MLproject:{line}:" in err.message
    assert f"did you mean `{suggestion}`" in err.hint


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nentry_points: {}\nname: b\n")
    assert "MLproject:3" in err.message and "line 1" in err.message and "'name'" in err.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("- a\n- b\n", "must be a mapping"),
        ("just text\n", "must be a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        ("entry_points:\n  main: {command: 1}\n", "is not of type 'string'"),
        ("entry_points:\n  main: {command: a, parameters: {p: complex}}\n", "unknown type"),
        ("entry_points:\n  main: {command: a, parameters: {'x;id;#': int}}\n", "not allowed"),
    ],
)
def test_malformed_documents_are_clear_errors(tmp_path: Path, text: str, words: str) -> None:
    assert words in error_of(tmp_path, text).message


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    err = error_of(tmp_path, f"name: !!python/object/apply:os.system ['touch {canary}']\n")
    assert "python/object/apply" in err.message and "not allowed" in err.message
    assert not canary.exists()


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    started = time.monotonic()
    err = error_of(tmp_path, "\n".join(levels) + "\n")
    assert "aliases" in err.message
    assert time.monotonic() - started < 5  # sanity bound, not a benchmark


def test_oversized_manifest_is_refused_before_parsing(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: x\n" + "# padding\n" * 120_000)
    assert "limit is 1048576" in err.message


def test_fifty_megabyte_manifest_is_refused_through_the_cli(tmp_path: Path) -> None:
    project = tmp_path / "big"
    project.mkdir()
    with open(project / "MLproject", "w") as handle:
        handle.write("name: x\n")
        handle.write("#" * (50 * 1024 * 1024))
    result = cli(str(project), "-e", "main")
    assert result.code == 125 and "limit is 1048576" in result.err
    assert "Traceback" not in result.text


def test_more_than_one_environment_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "python_env: a.yaml\nconda_env: b.yaml\n")
    assert "both python_env and conda_env" in err.message


def test_placeholder_inside_quotes_in_shell_template_loads(tmp_path: Path) -> None:
    """MLflow projects write `echo '{msg}'`: the quotes decide the escaping
    (tests/test_shell_templates.py), they do not refuse the manifest."""
    project = make_project(tmp_path / "p", {"MLproject": """\
        entry_points:
          main:
            parameters: {msg: string}
            command: "echo '{msg}' && echo done"
        """})  # fmt: skip
    assert load_project(project).entry_points["main"].command == "echo '{msg}' && echo done"


def test_undeclared_placeholder_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "entry_points:\n  main: {command: 'python t.py {lr}'}\n")
    assert "{lr}" in err.message and "declares no such parameter" in err.message


def test_manifest_name_is_found_case_insensitively(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path / "p", {"mlproject": "name: lower\n"}))
    assert project.name == "lower"


@pytest.mark.parametrize(
    "declared", ["lr: flaot", "lr: {type: flaot, default: 0.1}", "lr: {type: Float}"]
)
def test_a_misspelt_parameter_type_names_the_parameter_and_suggests_the_type(
    tmp_path: Path, declared: str
) -> None:
    err = error_of(tmp_path, f"entry_points:\n  train:\n    parameters:\n      {declared}\n"
                             "    command: python t.py {lr}\n")  # fmt: skip
    assert "MLproject:4:" in err.message, err.message
    assert "parameter 'lr' of entry point 'train'" in err.message, err.message
    assert "did you mean `float`?" in err.hint, err.hint


def test_a_parameter_of_no_known_form_names_the_parameter(tmp_path: Path) -> None:
    err = error_of(tmp_path, "entry_points:\n  main:\n    parameters:\n      n: [1, 2]\n"
                             "    command: echo {n}\n")  # fmt: skip
    assert "parameter 'n' of entry point 'main' has an unknown form" in err.message
    assert "name: {type: float, default: 0.1}" in err.hint
