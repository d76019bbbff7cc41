"""Typed parameters and command rendering without a shell.

Values are converted to their declared type before anything else happens. A command template
is split with `shlex` first and each `{name}` is replaced inside its own argv element, so no
value can become two arguments or shell code. Only a template that itself uses shell syntax
goes through `bash -c`; then `runner.project.shell` parses it and quotes each value for the
place it stands (docs/manifest.md, "Commands run without a shell").
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from runner.errors import ManifestError, ParamError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Linux's MAX_ARG_STRLEN (32 pages, its NUL included): a longer value cannot be one argument
# of the command, so exec would fail with E2BIG after the run was recorded.
MAX_VALUE_BYTES = 128 * 1024 - 1
TYPE_ALIASES = {
    "string": "string",
    "str": "string",
    "float": "float",
    "int": "int",
    "integer": "int",
    "bool": "bool",
    "boolean": "bool",
    "path": "path",
    "uri": "uri",
}
TRUE_WORDS = {"true", "yes", "y", "on", "1"}
FALSE_WORDS = {"false", "no", "n", "off", "0"}
# `{name}` but not `${name}` (a shell variable) and not `{{`/`}}` (literal braces).
PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
SHELL_SYNTAX_RE = re.compile(r"[|&;<>()$`*?]|\n")


class ParamSpec(NamedTuple):
    """A declared parameter: canonical type, raw default text (None if required), choices."""

    name: str
    type: str
    default: str | None
    choices: tuple[str, ...] | None = None


class BoundCommand(NamedTuple):
    """The argv to execute and the typed values that produced it."""

    argv: tuple[str, ...]
    shell: bool
    params: dict[str, dict[str, Any]]


def is_shell_template(template: str) -> bool:
    """True when the template itself uses shell syntax (pipes, `&&`, redirects, `$`...)."""
    masked = PLACEHOLDER_RE.sub("x", template)
    return bool(SHELL_SYNTAX_RE.search(masked))


def template_placeholders(template: str) -> set[str]:
    """The parameter names a template uses."""
    return {m.group(1) for m in PLACEHOLDER_RE.finditer(template) if m.group(1)}


def shell_problems(template: str, specs: Mapping[str, ParamSpec]) -> list[str]:
    """What running this template would refuse for its declared types (none for a plain one)."""
    if not is_shell_template(template):
        return []
    from runner.project import shell

    return shell.problems(_pieces(template), {name: spec.type for name, spec in specs.items()})


def check_name(name: str) -> None:
    """Refuse parameter names that could be misread (`x;id;#`, empty, leading digit...)."""
    if not NAME_RE.match(name):
        raise ParamError(
            f"parameter name {name!r} is not allowed",
            "names start with a letter or _ and hold only letters, digits, _ . and -",
        )


def check_raw_value(name: str, value: str) -> None:
    """Refuse values no program can receive intact: NUL, invalid UTF-8, over 128 KiB."""
    if "\x00" in value:
        raise ParamError(f"value of parameter '{name}' contains a NUL byte", "remove it")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ParamError(
            f"value of parameter '{name}' is not valid UTF-8", "pass the value as UTF-8 text"
        ) from exc
    if size > MAX_VALUE_BYTES:
        raise ParamError(
            f"value of parameter '{name}' is {size} bytes; the limit is {MAX_VALUE_BYTES}",
            "pass large data as a file through a path parameter",
        )


def convert(spec: ParamSpec, raw: str, base: Path, from_manifest: bool) -> Any:
    """Convert raw text to the declared type; manifest defaults may not leave the project."""
    try:
        value = _CONVERTERS[spec.type](raw, spec.name, base, from_manifest)
    except (ValueError, OverflowError) as exc:
        source = "default in MLproject" if from_manifest else "value"
        raise ParamError(
            f"parameter '{spec.name}': {source} {raw!r} is not a valid {spec.type}",
            f"pass -P {spec.name}=<{spec.type}>",
        ) from exc
    if spec.choices is not None:
        allowed = [_CONVERTERS[spec.type](c, spec.name, base, True) for c in spec.choices]
        if value not in allowed:
            raise ParamError(
                f"parameter '{spec.name}': {raw!r} is not one of the allowed choices",
                "choose one of: " + ", ".join(map(str, spec.choices)),
            )
    return value


def _to_float(raw: str, name: str, base: Path, from_manifest: bool) -> float:
    value = float(raw.strip())
    if math.isnan(value):
        raise ValueError("nan")
    return value


def _to_int(raw: str, name: str, base: Path, from_manifest: bool) -> int:
    return int(raw.strip(), 10)


def _to_bool(raw: str, name: str, base: Path, from_manifest: bool) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(word)


def _to_string(raw: str, name: str, base: Path, from_manifest: bool) -> str:
    return raw


def _to_path(raw: str, name: str, base: Path, from_manifest: bool) -> str:
    if not raw:
        raise ValueError("empty path")
    if raw.startswith("file://"):
        raw = urlsplit(raw).path
    elif "://" in raw:
        raise ParamError(
            f"parameter '{name}' is a path but got the URI {raw!r}",
            "declare the parameter as type uri, or pass a local path",
        )
    path = Path(os.path.abspath(base / Path(raw).expanduser()))
    if from_manifest:
        _inside_project(name, raw, path, base)
    return str(path)


def _to_uri(raw: str, name: str, base: Path, from_manifest: bool) -> str:
    parts = urlsplit(raw)
    if not parts.scheme and not raw:
        raise ValueError("empty uri")
    if from_manifest:
        if parts.scheme in ("", "file"):
            _inside_project(name, raw, Path(os.path.abspath(base / parts.path)), base)
        elif _is_internal_host(parts.hostname or ""):
            raise ParamError(
                f"MLproject default of parameter '{name}' points at the internal address {raw!r}",
                "a manifest may not aim at this machine or its metadata service; pass the URI "
                f"yourself with -P {name}=...",
            )
    return raw


def _inside_project(name: str, raw: str, path: Path, base: Path) -> None:
    real, root = os.path.realpath(path), os.path.realpath(base)
    if os.path.commonpath([real, root]) != root:
        raise ParamError(
            f"MLproject default of parameter '{name}' ({raw!r}) points outside the project",
            f"a manifest may only name files inside the project; pass -P {name}=... yourself",
        )


def _is_internal_host(host: str) -> bool:
    """This machine, its network or a metadata service, however spelled: `127.1`,
    `2852039166`, `0xa9fea9fe`, `[::ffff:169.254.169.254]`, or a name resolving there."""
    host = host.strip("[]").rstrip(".").lower()
    if not host:
        return False
    if host in ("localhost", "metadata", "metadata.google.internal") or host.endswith(
        (".local", ".localhost", ".internal")
    ):
        return True
    literal = _literal_address(host)
    addresses = [literal] if literal is not None else _resolved(host)
    return any(_is_internal_address(addr) for addr in addresses)


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address written as one: also the forms inet_aton reads (what curl, requests and
    the C library accept), `127.1`, `2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`."""
    import socket  # only URI defaults pay for it

    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not re.fullmatch(r"[0-9a-fx.]+", host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _resolved(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """What a name resolves to now; a name that does not resolve reaches nothing."""
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return []
    found = []
    for info in infos:
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
    return found


def _is_internal_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_reserved
        or addr.is_unspecified
        or addr.is_multicast
    )


_CONVERTERS = {
    "string": _to_string,
    "float": _to_float,
    "int": _to_int,
    "bool": _to_bool,
    "path": _to_path,
    "uri": _to_uri,
}


def bind(
    template: str,
    specs: Mapping[str, ParamSpec],
    given: Mapping[str, str],
    project_dir: Path,
    cwd: Path,
) -> BoundCommand:
    """Type-check `given` against `specs` and render the command (extras become `--k v`)."""
    for name, raw in given.items():
        check_name(name)
        check_raw_value(name, raw)
    missing = sorted(n for n, s in specs.items() if s.default is None and n not in given)
    if missing:
        required = sorted(n for n, s in specs.items() if s.default is None)
        raise ParamError(
            "missing required parameter"
            + ("s: " if len(missing) > 1 else ": ")
            + ", ".join(missing),
            "pass them with " + " ".join(f"-P {n}=..." for n in required),
        )
    typed: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():
        if name in given:
            value = convert(spec, given[name], cwd, from_manifest=False)
            typed[name] = {"type": spec.type, "value": value, "source": "cli"}
        else:
            assert spec.default is not None
            check_raw_value(name, spec.default)  # a manifest's default, checked like -P
            value = convert(spec, spec.default, project_dir, from_manifest=True)
            typed[name] = {"type": spec.type, "value": value, "source": "default"}
    extras = {n: v for n, v in given.items() if n not in specs}
    for name, raw in extras.items():
        typed[name] = {"type": "string", "value": raw, "source": "cli", "declared": False}
    return render(template, typed, extras)


def render(
    template: str, typed: Mapping[str, Mapping[str, Any]], extras: Mapping[str, str]
) -> BoundCommand:
    """The argv for `template` with typed values substituted; extras appended as `--k v`."""
    if is_shell_template(template):
        from runner.project import shell

        typed_values = {
            name: shell.Value(format_value(entry["value"]), entry["type"])
            for name, entry in typed.items()
        }
        script = shell.render(_pieces(template), typed_values, extras)
        return BoundCommand(("bash", "-c", script), True, {k: dict(v) for k, v in typed.items()})
    values = {name: format_value(entry["value"]) for name, entry in typed.items()}
    try:
        tokens = shlex.split(template)
    except ValueError as exc:
        raise ManifestError(
            f"command {template!r} cannot be split: {exc}", "balance its quotes"
        ) from exc
    argv = [PLACEHOLDER_RE.sub(lambda m: _plain_sub(m, values), token) for token in tokens]
    for key, value in extras.items():
        argv += [f"--{key}", value]
    return BoundCommand(tuple(argv), False, {k: dict(v) for k, v in typed.items()})


def format_value(value: Any) -> str:
    """How a typed value appears on a command line (bools as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain_sub(match: re.Match[str], values: Mapping[str, str]) -> str:
    text = match.group(0)
    if text in ("{{", "}}"):
        return text[0]
    return values[match.group(1)]


def _pieces(template: str) -> list[tuple[str, str | None]]:
    """The template cut at its placeholders: (literal text, name), with `{{ }}` made literal."""
    pieces: list[tuple[str, str | None]] = []
    text, done = "", 0
    for match in PLACEHOLDER_RE.finditer(template):
        text += template[done : match.start()]
        done = match.end()
        if match.group(1):
            pieces.append((text, match.group(1)))
            text = ""
        else:
            text += match.group(0)[0]
    pieces.append((text + template[done:], None))
    return pieces
