"""Shell templates: each placeholder is quoted for the place it stands in a parse of the script.

A command template that uses shell syntax runs through `bash -c`. Quoting every value the same
way is wrong in both directions: `'{msg}'` needs the value's `'` escaped, not another pair of
quotes around it, and in `$(( {n} + 1 ))`, `[[ {n} -gt 0 ]]` or a heredoc body bash evaluates
what it reads, so no quoting makes a string safe there. So the template is parsed, each
placeholder's place is found in the tree, and:

- a plain word gets the value as one single-quoted word;
- inside `'...'` each `'` of the value becomes `'\\''`;
- inside `"..."` backslash, double quote, dollar and backtick are escaped;
- anywhere bash evaluates text (arithmetic, `[[ ]]`, subscripts, `${...}`, `let`, `eval`,
  `declare` with options, backticks, `$'...'`, heredocs, comments, case patterns, or a part
  the parser could not read) only an int, float or bool value goes in, as its plain text.

The parser is tree-sitter with the tree-sitter-bash grammar, not bashlex: tree-sitter-bash is
the grammar editors and GitHub use, it is maintained, it parses heredocs, `(( ))`, `$[ ]`,
c-style `for`, `[[ ]]` and case patterns into distinct nodes (bashlex stops at several of them
and has had no release since 2023), and both packages ship compiled wheels for every platform
run-project supports. Importing it costs a few milliseconds, so only a template with shell
syntax loads this module (tests/test_warm_start.py checks a plain template does not).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

from tree_sitter import Language, Node, Parser

from runner.errors import ManifestError, ParamError

#: Where undeclared `-P k=v` values go: appended after the template, as `--k 'v'`.
EXTRAS = ""
NUMERIC_TYPES = frozenset({"int", "float", "bool"})

# The placeholder's place: how to quote it, or why only a number may go there.
WORD, SINGLE, DOUBLE = "word", "single", "double"


class Value(NamedTuple):
    """A parameter's text for the command line and its declared type."""

    text: str
    type: str


class Slot(NamedTuple):
    """One placeholder in the script: its name, byte span, line, and what its place allows."""

    name: str
    start: int
    end: int
    line: int
    quoting: str  # WORD, SINGLE or DOUBLE where a string may go, else ""
    where: str  # the place in words, for messages ("an arithmetic expression")
    never: bool = False  # no value at all may go here


#: A template cut at its placeholders: literal text, then a placeholder name (None at the end).
Pieces = Sequence[tuple[str, str | None]]


def render(pieces: Pieces, values: Mapping[str, Value], extras: Mapping[str, str]) -> str:
    """The script for `bash -c`, each value quoted for its place; extras as `--k 'v'`."""
    script, slots = _parse(pieces)
    if extras:
        _check_extras(_end_slot(script), extras)
    out = bytearray()
    done = 0
    for slot in slots:
        out += script[done : slot.start] + _quoted(slot, values[slot.name]).encode()
        done = slot.end
    text = (out + script[done:]).decode()
    return text + "".join(f" --{key} {_single_word(value)}" for key, value in extras.items())


def problems(pieces: Pieces, types: Mapping[str, str]) -> list[str]:
    """What `render` would refuse for these declared types, as messages (for a warning)."""
    _, slots = _parse(pieces)
    found = []
    for slot in slots:
        error = _refusal(slot, types.get(slot.name, "string"))
        if error is not None:
            found.append(error.message)
    return found


def _quoted(slot: Slot, value: Value) -> str:
    error = _refusal(slot, value.type)
    if error is not None:
        raise error
    if slot.quoting == SINGLE:
        return value.text.replace("'", "'\\''")
    if slot.quoting == DOUBLE:
        return "".join("\\" + c if c in '\\"$`' else c for c in value.text)
    if slot.quoting == WORD and value.type not in NUMERIC_TYPES:
        return _single_word(value.text)
    return value.text  # a validated number or bool: digits, letters, `.`, `+`, `-` only


def _refusal(slot: Slot, declared: str) -> ManifestError | None:
    name = "{" + slot.name + "}"
    if slot.never:
        return ManifestError(
            f"command, line {slot.line}: {name} stands {slot.where}, where no value can be "
            "placed safely",
            "write ${name} for a variable followed by a placeholder, and do not put a "
            "placeholder right after a backslash",
        )
    if slot.quoting or declared in NUMERIC_TYPES:
        return None
    return ManifestError(
        f"command, line {slot.line}: {name} is a {declared} parameter inside {slot.where}, "
        "where only int, float or bool values may go (bash evaluates text there)",
        f"declare '{slot.name}' as int, float or bool, or move {name} into a plain word or "
        f'quotes, e.g. pass it as an argument or set a variable: `X={name}` then use "$X"',
    )


def _check_extras(slot: Slot, extras: Mapping[str, str]) -> None:
    if slot.quoting == WORD and not slot.never:
        return
    names = ", ".join(f"'{key}'" for key in extras)
    raise ParamError(
        f"undeclared parameter {names} cannot be appended to this command: it ends inside "
        f"{slot.where}",
        "declare the parameter in the MLproject and place it in the command, or drop it",
    )


def _single_word(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _parse(pieces: Pieces) -> tuple[bytes, list[Slot]]:
    """The template with each placeholder replaced by a unique marker word, and the slots.

    A marker is letters and digits, so it parses as a word, a variable name or string content
    wherever the placeholder stands, and the value's quoting keeps that structure."""
    mark = _marker("".join(text for text, _ in pieces))
    script = bytearray()
    spans: list[tuple[str, int, int]] = []
    for index, (text, name) in enumerate(pieces):
        script += text.encode()
        if name is not None:
            word = f"{mark}{index}{mark}".encode()
            spans.append((name, len(script), len(script) + len(word)))
            script += word
    return bytes(script), _slots(bytes(script), spans)


def _end_slot(script: bytes) -> Slot:
    """The place where extras are appended: after the script's last word, on its last line
    (parsed on its own: a marker after `esac` or `done` is an error that must not make every
    placeholder look unparseable)."""
    mark = _marker(script.decode()).encode()
    return _slots(script + b" " + mark, [(EXTRAS, len(script) + 1, len(script) + 1 + len(mark))])[0]


def _marker(text: str) -> str:
    mark = "RPSLOT"
    while mark in text:
        mark += "X"
    return mark


def _slots(script: bytes, spans: list[tuple[str, int, int]]) -> list[Slot]:
    tree = _parser().parse(script)
    typed = _declares_typed_variables(tree.root_node)
    return [_slot(tree.root_node, script, span, typed) for span in spans]


@functools.cache
def _parser() -> Parser:
    import tree_sitter_bash

    return Parser(Language(tree_sitter_bash.language()))


def _slot(root: Node, script: bytes, span: tuple[str, int, int], typed: bool) -> Slot:
    name, start, end = span
    line = script.count(b"\n", 0, start) + 1
    node = root.descendant_for_byte_range(start, end)
    chain = list(_ancestors(node))
    quoting = _quoting(chain)
    joined = next((n for n in chain if n.type == "simple_expansion"), None)
    if joined is not None:
        return Slot(name, start, end, line, "", "right after a $variable name", never=True)
    if quoting != SINGLE and _after_backslash(script, start):
        return Slot(name, start, end, line, "", "right after a backslash", never=True)
    where = _restricted(chain)
    if where is None and typed:
        where = "a script that declares typed variables (declare -i/-n), where bash evaluates"
        where += " assigned text"
    if where is None and root.has_error:
        where = "a script bash syntax could not be fully parsed"
    return Slot(name, start, end, line, "" if where else quoting, where or "")


def _ancestors(node: Node | None) -> Iterator[Node]:
    while node is not None:
        yield node
        node = node.parent


def _quoting(chain: list[Node]) -> str:
    """The innermost quotes around the placeholder; `$( )` starts a new, unquoted script."""
    for node in chain:
        if node.type == "raw_string":
            return SINGLE
        if node.type == "string":
            return DOUBLE
        if node.type in ("command_substitution", "process_substitution"):
            return WORD
    return WORD


def _after_backslash(script: bytes, start: int) -> bool:
    count = 0
    while start - count > 0 and script[start - count - 1] == ord("\\"):
        count += 1
    return count % 2 == 1


def _restricted(chain: list[Node]) -> str | None:
    """The innermost place in `chain` where bash evaluates text, or None."""
    child: Node | None = None
    for node in chain:
        where = _evaluates(node, child)
        if where is not None:
            return where
        child = node
    return None


# Commands that evaluate their arguments as code or arithmetic (`alias` text runs when used).
EVALUATING_COMMANDS = frozenset({"let", "eval", "trap", "alias"})
DECLARING_COMMANDS = frozenset({"declare", "typeset", "local", "readonly", "export"})
PLACES = {
    "arithmetic_expansion": "an arithmetic expression",
    "c_style_for_statement": "an arithmetic expression (a c-style for)",
    "subscript": "an array subscript",
    "expansion": "a ${...} expansion",
    "heredoc_body": "a heredoc",
    "heredoc_start": "a heredoc",
    "heredoc_end": "a heredoc",
    "comment": "a comment",
    "ansi_c_string": "a $'...' string",
    "translated_string": 'a $"..." string',
    "ERROR": "a part bash syntax could not parse",
}


def _evaluates(node: Node, child: Node | None) -> str | None:
    kind, first = node.type, node.children[0].type if node.children else ""
    if kind in PLACES:
        return PLACES[kind]
    if node.is_missing:
        return PLACES["ERROR"]
    if kind == "compound_statement" and first == "((":
        return "an arithmetic expression"
    if kind == "test_command" and first == "[[":
        return "a [[ ]] test"
    if kind == "command_substitution" and first == "`":
        return "a backtick command substitution"
    if kind == "case_item" and child is not None and _field_of(node, child) == "value":
        return "a case pattern"
    if kind == "declaration_command" and _has_options(node):
        return "a declare, typeset or local with options"
    if kind == "command" and child is not node.child_by_field_name("name"):
        word = _command_word(node)
        if word in EVALUATING_COMMANDS:
            return f"the arguments of {word}"
        if word in DECLARING_COMMANDS and _has_options(node):
            return "a declare, typeset or local with options"
    return None


def _command_word(node: Node) -> str:
    """The command a `command` node runs, seen through `builtin` and `command` prefixes."""
    words = [node.child_by_field_name("name")]
    words += [each for each in node.children_by_field_name("argument")]
    texts = [w.text.decode() for w in words if w is not None and w.text is not None]
    while len(texts) > 1 and texts[0] in ("builtin", "command"):
        texts = [t for t in texts[1:] if not t.startswith("-")] or [""]
    return texts[0] if texts else ""


def _field_of(node: Node, child: Node) -> str | None:
    for index, each in enumerate(node.children):
        if each == child:
            return node.field_name_for_child(index)
    return None


def _has_options(node: Node) -> bool:
    return any(
        each.text is not None and each.text[:1] in (b"-", b"+")
        for each in [*node.children, *node.children_by_field_name("argument")]
    )


def _declares_typed_variables(root: Node) -> bool:
    """Whether any declare/typeset/local gives a variable the integer or nameref attribute:
    then any later assignment (`n={x}`, `read n`, `for n in`) evaluates its text."""
    stack = [root]
    while stack:
        node = stack.pop()
        declares = node.type == "declaration_command" or (
            node.type == "command" and _command_word(node) in DECLARING_COMMANDS
        )
        if declares and any(
            each.text is not None
            and each.text[:1] in (b"-", b"+")
            and (b"i" in each.text or b"n" in each.text)
            for each in node.children
        ):
            return True
        stack.extend(node.children)
    return False
