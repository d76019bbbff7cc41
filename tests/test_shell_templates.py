"""Shell templates: each placeholder is quoted for where it stands in a bash parse of the
template. Strings go into plain words, single and double quotes and come out exactly as given;
arithmetic, tests, heredocs, comments and case patterns take only int, float or bool values.
Every case runs the rendered script through a real bash and looks for a canary."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import ManifestError, ParamError
from runner.project.params import ParamSpec, bind
from support.cli import cli, last_record
from support.projects import make_project

# Writes its argv and its stdin to the file named by $OUT, as JSON.
RECORDER = (
    "import json, os, sys\n"
    "data = sys.stdin.read() or None\n"
    "json.dump({'argv': sys.argv[1:], 'stdin': data}, open(os.environ['OUT'], 'w'))\n"
)


def _bind(template: str, types: dict[str, str], values: dict[str, str], cwd: Path) -> list[str]:
    specs = {name: ParamSpec(name, kind, None) for name, kind in types.items()}
    bound = bind(template, specs, values, cwd, cwd)
    assert bound.shell
    return list(bound.argv)


def _run(argv: list[str], cwd: Path) -> dict[str, object]:
    (cwd / "rec.py").write_text(RECORDER)
    out = cwd / "out.json"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        argv, cwd=cwd, env={"OUT": str(out), "PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(out.read_text())
    return result


# A string value here could run code (`a[$(touch C)]` in arithmetic, a newline after `#`,
# `$(touch C)` in an unquoted heredoc...): each must be refused, naming the line and the place.
RESTRICTED = {
    "heredoc": ("python3 rec.py <<EOF\n{v}\nEOF", "a heredoc"),
    "quoted heredoc": ("python3 rec.py <<'EOF'\n{v}\nEOF", "a heredoc"),
    "arithmetic": ("python3 rec.py $(( {v} + 1 ))", "an arithmetic expression"),
    "old arithmetic": ("python3 rec.py $[ {v} + 1 ]", "an arithmetic expression"),
    "double parens": ("(( {v} > 0 )) && python3 rec.py", "an arithmetic expression"),
    "c-style for": ("for ((i=0; i<{v}; i++)); do :; done; python3 rec.py", "an arithmetic"),
    "[[ test": ("[[ {v} -gt 0 ]] && python3 rec.py", "a [[ ]] test"),
    "let": ("let x={v}; python3 rec.py", "the arguments of let"),
    "declare -i": ("declare -i n={v}; python3 rec.py", "declare"),
    "declare -i later": ("declare -i n; n={v}; python3 rec.py", "declare"),
    "subscript": ("a=(1 2); python3 rec.py ${{a[{v}]}}", "an array subscript"),
    "assigned subscript": ("a[{v}]=1; python3 rec.py", "an array subscript"),
    "expansion": ("python3 rec.py ${{x:-{v}}}", "expansion"),
    "comment": ("python3 rec.py # {v}", "a comment"),
    "case pattern": ("case x in {v}) python3 rec.py;; esac", "a case pattern"),
    "backticks": ("python3 rec.py `echo {v}`", "backtick"),
    "eval": ("eval python3 rec.py {v}", "the arguments of eval"),
    "ansi-c string": ("python3 rec.py $'{v}'", "$'...'"),
    "builtin let": ("builtin let x={v}; python3 rec.py", "the arguments of let"),
    "command eval": ("command -p eval python3 rec.py {v}", "the arguments of eval"),
    "alias": ("alias a={v}; python3 rec.py", "the arguments of alias"),
    "builtin declare -i": ("builtin declare -i n; n={v}; python3 rec.py", "declare"),
}


@pytest.mark.parametrize("case", sorted(RESTRICTED))
def test_string_in_a_restricted_context_is_refused_with_line_and_place(
    tmp_path: Path, case: str
) -> None:
    template, where = RESTRICTED[case]
    canary = tmp_path / "CANARY"
    hostile = f"a[$(touch {canary})]\ntouch {canary} #"
    script = "true\n" + template.replace("{v}", "{msg}")
    with pytest.raises(ManifestError) as err:
        argv = _bind(script, {"msg": "string"}, {"msg": hostile}, tmp_path)
        subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=30)
    line = script[: script.index("{msg}")].count("\n") + 1
    assert f"line {line}:" in err.value.message and where in err.value.message
    assert "{msg}" in err.value.message and "int, float or bool" in err.value.message
    assert "X={msg}" in err.value.hint
    assert not canary.exists()


NUMERIC_RESULTS = {
    "heredoc": {"argv": [], "stdin": "7\n"},
    "arithmetic": {"argv": ["8"], "stdin": None},
    "old arithmetic": {"argv": ["8"], "stdin": None},
    "subscript": {"argv": [], "stdin": None},
    "[[ test": {"argv": [], "stdin": None},
}


@pytest.mark.parametrize("case", sorted(NUMERIC_RESULTS))
def test_an_int_goes_into_a_restricted_context(tmp_path: Path, case: str) -> None:
    template = RESTRICTED[case][0].replace("{v}", "{n}")
    argv = _bind(template, {"n": "int"}, {"n": "7"}, tmp_path)
    assert _run(argv, tmp_path) == NUMERIC_RESULTS[case]


def test_float_and_bool_go_into_a_heredoc_and_a_test(tmp_path: Path) -> None:
    template = "[[ {flag} == true ]] && python3 rec.py <<EOF\n{lr}\nEOF"
    argv = _bind(template, {"lr": "float", "flag": "bool"}, {"lr": "1e-3", "flag": "yes"}, tmp_path)
    assert _run(argv, tmp_path) == {"argv": [], "stdin": "0.001\n"}


# Where a string may go: the program receives it byte for byte.
ALLOWED = {
    "word": "python3 rec.py {v} | cat",
    "word in a concatenation": "python3 rec.py --x={v}.txt && true",
    "single quotes": "python3 rec.py '{v}' && true",
    "single quotes with text": "python3 rec.py 'pre {v} post' && true",
    "double quotes": 'python3 rec.py "{v}" && true',
    "double quotes with $HOME": 'python3 rec.py "$OUT-{v}" && true',
    "command substitution": "python3 rec.py $(printf %s {v}) && true",
    "double quotes in $()": 'python3 rec.py "$(printf %s "{v}")" && true',
    "herestring": "python3 rec.py <<< {v}",
    "assignment": 'X={v}; python3 rec.py "$X"',
    "[ test": "[ -n {v} ]; python3 rec.py {v}",
    "case subject": "case {v} in *) python3 rec.py {v};; esac",
}


def _expected(case: str, value: str, out: str) -> dict[str, object]:
    wrap = {
        "word in a concatenation": f"--x={value}.txt",
        "single quotes with text": f"pre {value} post",
        "double quotes with $HOME": f"{out}-{value}",
    }
    if case == "herestring":
        return {"argv": [], "stdin": value + "\n"}
    if case == "command substitution":  # unquoted $(): split into words, as bash does
        return {"argv": value.split(), "stdin": None}
    if case == "double quotes in $()":  # $() drops trailing newlines, as bash does
        return {"argv": [value.rstrip("\n")], "stdin": None}
    return {"argv": [wrap.get(case, value)], "stdin": None}


HOSTILE = "' \" $(touch C) `touch C` \\ \n# <<EOF ; touch C; '\\'' \\\" ${x} $((1)) é 字"


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_hostile_string_is_received_exactly_in_every_allowed_context(
    tmp_path: Path, case: str
) -> None:
    value = HOSTILE.replace("C", str(tmp_path / "CANARY"))
    if case == "command substitution":
        value = value.replace("\n", " ")
    argv = _bind(ALLOWED[case].replace("{v}", "{msg}"), {"msg": "string"}, {"msg": value}, tmp_path)
    assert _run(argv, tmp_path) == _expected(case, value, str(tmp_path / "out.json"))
    assert not (tmp_path / "CANARY").exists()


# Text without NUL or lone surrogates (no program can receive those), weighted towards what
# shells treat specially.
SHELL_CHARS = st.sampled_from([*"'\"$`\\\n#;&|<>(){}[]*?~!= \t", "<<", "$(", "'\\''"])
HOSTILE_TEXT = st.lists(
    st.one_of(
        SHELL_CHARS,
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=4),
    ),
    max_size=12,
).map("".join)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=HOSTILE_TEXT, case=st.sampled_from(sorted(ALLOWED)))
def test_property_random_hostile_strings_arrive_exactly(
    tmp_path: Path, value: str, case: str
) -> None:
    if case == "command substitution":  # word splitting is bash's own rule, not ours
        return
    canary = tmp_path / "CANARY"
    value = value.replace("C", str(canary))
    template = ALLOWED[case].replace("{v}", "{msg}")
    argv = _bind(template, {"msg": "string"}, {"msg": value}, tmp_path)
    assert _run(argv, tmp_path) == _expected(case, value, str(tmp_path / "out.json"))
    assert not canary.exists()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=HOSTILE_TEXT)
def test_property_undeclared_values_are_appended_as_words(tmp_path: Path, value: str) -> None:
    canary = tmp_path / "CANARY"
    value = value.replace("C", str(canary))
    argv = _bind("true && python3 rec.py", {}, {"extra": value}, tmp_path)
    assert _run(argv, tmp_path) == {"argv": ["--extra", value], "stdin": None}
    assert not canary.exists()


def test_undeclared_value_after_a_final_comment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParamError) as err:
        _bind("python3 rec.py && true # done", {}, {"extra": "x\ntouch C"}, tmp_path)
    assert "'extra'" in err.value.message and "a comment" in err.value.message


def test_undeclared_value_after_a_closing_keyword_leaves_placeholders_alone(
    tmp_path: Path,
) -> None:
    """`done --extra 'v'` is a syntax error of its own; it must not make {msg} look unparsed."""
    template = "for f in a; do python3 rec.py {msg}; done"
    with pytest.raises(ParamError) as err:
        _bind(template, {"msg": "string"}, {"msg": "x", "extra": "y"}, tmp_path)
    assert "'extra'" in err.value.message and "{msg}" not in err.value.message
    assert _run(_bind(template, {"msg": "string"}, {"msg": "x"}, tmp_path), tmp_path) == {
        "argv": ["x"],
        "stdin": None,
    }


@pytest.mark.parametrize("template", ["python3 rec.py \\{v} | cat", 'python3 rec.py "\\{v}" | cat'])
def test_placeholder_right_after_a_backslash_is_refused(tmp_path: Path, template: str) -> None:
    with pytest.raises(ManifestError) as err:
        _bind(template.replace("{v}", "{msg}"), {"msg": "string"}, {"msg": "'; touch C"}, tmp_path)
    assert "backslash" in err.value.message


def test_placeholder_joined_to_a_variable_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as err:
        _bind("python3 rec.py $HOME{n} | cat", {"n": "int"}, {"n": "1"}, tmp_path)
    assert "${name}" in err.value.hint


def test_mlflow_quoted_placeholders_run_as_written(tmp_path: Path) -> None:
    """`python -c 'print({x})'` and `"echo '{msg}'"`, common in MLflow projects."""
    project = make_project(tmp_path / "p", {"MLproject": """\
        entry_points:
          main:
            parameters: {x: string, msg: string}
            command: "python -c 'print({x})' && echo '{msg}'"
        """})  # fmt: skip
    result = cli(str(project), "-P", "x=6*7", "-P", "msg=it's $(done)")
    assert result.code == 0, result.text
    assert result.out.strip().splitlines()[-2:] == ["42", "it's $(done)"]
    assert last_record()["command"]["shell"] is True


def test_a_problem_in_another_entry_point_is_a_warning(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": """\
        entry_points:
          main:
            command: "echo fine"
          other:
            parameters: {msg: string}
            command: "cat <<EOF\\n{msg}\\nEOF"
        """})  # fmt: skip
    result = cli(str(project))
    assert result.code == 0, result.text
    assert "fine" in result.out
    assert "entry point 'other'" in result.err and "a heredoc" in result.err
    refused = cli(str(project), "-e", "other", "-P", "msg=hi")
    assert refused.code == 125 and "a heredoc" in refused.err and "Traceback" not in refused.text


# Pieces of bash a template may be built from, including broken ones: whatever the parse makes
# of a random template, a value either is refused or runs nothing.
FRAGMENTS = ["echo", " ", "'", '"', "$(", ")", "`", "\n", "#", "<<EOF\n", "\nEOF\n", "<<'EOF'\n",
             "$((", "))", "[[", "]]", "[", "]", "${", "}", "x", ";", "|", "&&", "case ", " in ",
             ";;", " esac", "\\", "=", "a[", "let ", "declare -i ", "$'", "(", "{", " <<< ",
             "for ((", "do ", "done", "$x"]  # fmt: skip


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fragments=st.lists(st.sampled_from(FRAGMENTS), max_size=14),
    at=st.integers(0, 14),
    kind=st.sampled_from(["string", "int"]),
)
def test_property_random_templates_never_run_a_value(
    tmp_path: Path, fragments: list[str], at: int, kind: str
) -> None:
    canary = tmp_path / "CANARY"
    hostile = f"a[$(touch {canary})]'\"`touch {canary}`\nEOF\ntouch {canary} #"
    text = "".join(fragments[:at]) + "\0" + "".join(fragments[at:])
    template = text.replace("{", "{{").replace("}", "}}").replace("\0", "{msg}")
    specs = {"msg": ParamSpec("msg", kind, None)}
    try:
        bound = bind(
            template, specs, {"msg": "7" if kind == "int" else hostile}, tmp_path, tmp_path
        )
    except (ManifestError, ParamError):
        return
    if not bound.shell:  # plain templates: test_params.py
        return
    subprocess.run(
        bound.argv, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "x": "1"},
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
    )  # fmt: skip
    assert not canary.exists(), bound.argv
