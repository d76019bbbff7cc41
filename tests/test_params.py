"""Typed parameters and command rendering: values never become shell code or extra arguments."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import ParamError
from runner.project.params import ParamSpec, bind, check_raw_value
from support.cli import REPO, cli, last_record, records
from support.projects import ECHO_ARGS, make_project

HOSTILE = ["$(touch {c})", "`touch {c}`", "; touch {c}", "a\ntouch {c}", "--x", "' && touch {c} '"]


def echo_project(tmp_path: Path, command: str = "python echo.py {msg}") -> Path:
    return make_project(tmp_path / "proj", {
        "echo.py": ECHO_ARGS,
        "MLproject": f"""\
            entry_points:
              main:
                parameters: {{msg: string}}
                command: "{command}"
            """,
    })  # fmt: skip


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_value_reaches_program_as_one_literal_argument(
    tmp_path: Path, template: str
) -> None:
    canary = tmp_path / "CANARY"
    value = template.format(c=canary)
    result = cli(str(echo_project(tmp_path)), "-P", f"msg={value}")
    assert result.code == 0, result.text
    assert json.loads(result.out.strip().splitlines()[-1]) == [value]
    assert not canary.exists()
    assert last_record()["params"]["msg"]["value"] == value


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_value_is_one_quoted_word_in_shell_template(tmp_path: Path, template: str) -> None:
    canary = tmp_path / "CANARY"
    value = template.format(c=canary)
    project = echo_project(tmp_path, "python echo.py {msg} | cat && echo end")
    result = cli(str(project), "-P", f"msg={value}")
    assert result.code == 0, result.text
    lines = result.out.strip().splitlines()
    assert lines[-1] == "end"
    assert json.loads("\n".join(lines[:-1])) == [value]
    assert not canary.exists()
    assert last_record()["command"]["shell"] is True


def test_float_type_error_stops_before_any_work(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    project = make_project(tmp_path / "p", {"MLproject": f"""\
        entry_points:
          main:
            parameters: {{lr: float}}
            command: "touch {canary} {{lr}}"
        """})  # fmt: skip
    result = cli(str(project), "-P", f"lr=$(touch {canary})")
    assert result.code == 2
    assert "parameter 'lr'" in result.err and "not a valid float" in result.err
    assert "Traceback" not in result.text
    assert not canary.exists()
    assert not (tmp_path / "store" / "runs.db").exists()  # no record: nothing started


def test_missing_required_parameters_are_all_listed(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": """\
        entry_points:
          main:
            parameters: {a: float, b: int, c: {type: string, default: x}}
            command: "echo {a} {b} {c}"
        """})  # fmt: skip
    result = cli(str(project))
    assert result.code == 2
    assert "missing required parameters: a, b" in result.err
    assert "-P a=... -P b=..." in result.err


def test_typed_values_are_recorded_and_yaml_guesses_are_ignored(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"echo.py": ECHO_ARGS, "MLproject": """\
        entry_points:
          main:
            parameters:
              lr: {type: float, default: 1e-3}
              flag: {type: bool, default: no}
              name: {type: string, default: 1e-3}
              n: {type: int, default: 7}
            command: "python echo.py {lr} {flag} {name} {n}"
        """})  # fmt: skip
    result = cli(str(project))
    assert result.code == 0, result.text
    assert json.loads(result.out.splitlines()[-1]) == ["0.001", "false", "1e-3", "7"]
    params = last_record()["params"]
    assert params["lr"] == {"type": "float", "value": 0.001, "source": "default"}
    assert params["flag"]["value"] is False
    assert params["name"]["value"] == "1e-3"
    assert params["n"]["value"] == 7


def test_choices_are_enforced(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": """\
        entry_points:
          main:
            parameters: {opt: {type: string, default: sgd, choices: [sgd, adam]}}
            command: "echo {opt}"
        """})  # fmt: skip
    result = cli(str(project), "-P", "opt=rmsprop")
    assert result.code == 2 and "choose one of: sgd, adam" in result.err


@pytest.mark.parametrize("name", ["x;id;#", "1abc", "a b", "$(id)", ""])
def test_hostile_parameter_names_are_refused(tmp_path: Path, name: str) -> None:
    result = cli(str(echo_project(tmp_path)), "-P", "msg=ok", "-P", f"{name}=1")
    assert result.code == 2
    assert "is not allowed" in result.err
    assert records() == []


def test_value_with_invalid_utf8_is_refused(tmp_path: Path) -> None:
    project = echo_project(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"runner", str(project).encode(), b"-P", b"msg=\xff\xfe"],
        capture_output=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert b"not valid UTF-8" in proc.stderr


def test_value_with_nul_or_over_the_kernels_argument_limit_is_refused() -> None:
    with pytest.raises(ParamError, match="NUL"):
        check_raw_value("msg", "a\x00b")
    with pytest.raises(ParamError, match="limit is 131071"):
        check_raw_value("msg", "x" * 128 * 1024)
    check_raw_value("msg", "x" * (128 * 1024 - 1))


@pytest.mark.parametrize("default", ["a\\0b", "x" * 140_000])
def test_manifest_default_with_nul_or_over_128_kib_is_a_clean_error(
    tmp_path: Path, default: str
) -> None:
    project = make_project(tmp_path / "p", {"MLproject": f"""\
        entry_points:
          main:
            parameters: {{msg: {{type: string, default: "{default}"}}}}
            command: "python -c pass {{msg}}"
        """})  # fmt: skip
    result = cli(str(project))
    assert result.code == 2, result.text
    assert "parameter 'msg'" in result.err and "hint:" in result.err
    assert "internal error" not in result.err and not records()


@pytest.mark.parametrize(
    ("ptype", "default"),
    [
        ("path", "../../etc/shadow"),
        ("path", "/etc/passwd"),
        ("uri", "file:///home/u/.aws/credentials"),
        ("uri", "http://169.254.169.254/latest/meta-data/"),
        ("uri", "http://127.0.0.1:8080/admin"),
        ("uri", "http://2852039166/latest/meta-data/"),
        ("uri", "http://0xa9fea9fe/latest/meta-data/"),
        ("uri", "http://0251.0376.0251.0376/"),
        ("uri", "http://127.1/admin"),
        ("uri", "http://[::ffff:169.254.169.254]/"),
        ("uri", f"http://{socket.gethostname()}:8080/"),  # a name resolving to this machine
    ],
)
def test_manifest_defaults_may_not_leave_the_project(
    tmp_path: Path, ptype: str, default: str
) -> None:
    canary = tmp_path / "CANARY"
    project = make_project(tmp_path / "p", {"MLproject": f"""\
        entry_points:
          main:
            parameters: {{src: {{type: {ptype}, default: "{default}"}}}}
            command: "touch {canary} {{src}}"
        """})  # fmt: skip
    result = cli(str(project))
    assert result.code == 2, result.text
    assert "parameter 'src'" in result.err
    assert not canary.exists()


def test_path_given_on_the_command_line_is_the_users_choice(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"echo.py": ECHO_ARGS, "MLproject": """\
        entry_points:
          main:
            parameters: {src: {type: path, default: data.csv}}
            command: "python echo.py {src}"
        """})  # fmt: skip
    assert json.loads(cli(str(project)).out.splitlines()[-1]) == [str(project / "data.csv")]
    result = cli(str(project), "-P", "src=../elsewhere.csv")
    assert json.loads(result.out.splitlines()[-1]) == [str(tmp_path.parent / "elsewhere.csv")]


def test_double_braces_are_literal(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"echo.py": ECHO_ARGS, "MLproject": """\
        entry_points:
          main:
            parameters: {n: int}
            command: "python echo.py {{n}} {n} {{}}"
        """})  # fmt: skip
    assert json.loads(cli(str(project), "-P", "n=4").out.splitlines()[-1]) == ["{n}", "4", "{}"]


def test_bind_appends_undeclared_parameters_as_flags(tmp_path: Path) -> None:
    bound = bind(
        "python t.py", {"a": ParamSpec("a", "int", "1")}, {"extra": "x y"}, tmp_path, tmp_path
    )
    assert bound.argv == ("python", "t.py", "--extra", "x y")
    assert bound.params["extra"] == {
        "type": "string",
        "value": "x y",
        "source": "cli",
        "declared": False,
    }
