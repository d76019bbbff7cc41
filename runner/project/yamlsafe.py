"""YAML for untrusted files: safe tags only, no duplicate keys, bounded size, line numbers kept.

Manifests and environment files come from repositories we do not trust. PyYAML's safe loader
already refuses `!!python/...` construction; on top of it we refuse oversized files, documents
whose aliases expand to more than MAX_NODES nodes (the "billion laughs" bomb), and duplicate
keys (YAML silently keeps the last one). Each value's line and raw text are kept so errors can
point at the line and declared types can convert the text themselves (`1e-3`, `no`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ManifestError

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_YAML}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}

Path_ = tuple[str | int, ...]

if TYPE_CHECKING:
    import yaml


class Document:
    """A parsed YAML document with the line (1-based) and raw text of each node by path."""

    def __init__(
        self,
        path: Path,
        value: Any,
        lines: dict[Path_, int] | None = None,
        raw: dict[Path_, str] | None = None,
    ) -> None:
        self.path = path
        self.value = value
        self.lines = lines if lines is not None else {}
        self.raw = raw if raw is not None else {}

    def line_of(self, path: Path_) -> int:
        """The line of the node at `path`, or of its nearest ancestor that has one."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def where(self, path: Path_) -> str:
        """`file:line` for error messages."""
        return f"{self.path}:{self.line_of(path)}"


def load_file(path: Path, what: str = "YAML file") -> Document:
    """Parse `path` as one YAML document, refusing anything unsafe or ambiguous."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ManifestError(
                f"{what} {path} is {size} bytes; the limit is {MAX_BYTES} (1 MiB)",
                "keep data out of the manifest: reference files instead",
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {what} {path}: {exc.strerror}", "check the path") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{what} {path} is not valid UTF-8 (byte {exc.start})", "save it as UTF-8"
        ) from exc
    return parse_text(text, path, what)


def parse_text(text: str, path: Path, what: str = "YAML file") -> Document:
    """Parse YAML `text` (named `path` in errors) into a Document."""
    import yaml  # here, not at the top: a warm run reads a cached manifest (manifest_cache)

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ManifestError(
            f"{path}:{line}: {what} is not valid YAML: {problem}",
            "fix the YAML syntax at that line",
        ) from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: {what} is not valid YAML: {exc}", "fix the YAML") from exc
    finally:
        loader.dispose()
    if node is None:
        raise ManifestError(f"{path}: {what} is empty", "write a YAML mapping into it")
    if _expanded_size(node, {}) > MAX_NODES:
        raise ManifestError(
            f"{path}: {what} expands to more than {MAX_NODES} values through YAML aliases",
            "remove the anchors/aliases (&x / *x) that repeat each other",
        )
    doc = Document(path=path, value=None)
    doc.value = _convert(node, (), doc)
    return doc


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Node count with aliases expanded, computed without expanding (memoised by identity)."""
    import yaml

    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once instead of looping
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo) + _expanded_size(v, memo)
            if total > MAX_NODES:
                break
    memo[key] = min(total, MAX_NODES + 1)
    return memo[key]


def _convert(node: yaml.Node, path: Path_, doc: Document) -> Any:
    import yaml

    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        return _convert_mapping(node, path, doc)
    if isinstance(node, yaml.SequenceNode):
        _check_tag(node, f"{_YAML}seq", path, doc)
        return [_convert(child, (*path, i), doc) for i, child in enumerate(node.value)]
    if node.tag not in _SCALAR_TAGS:
        _refuse_tag(node, path, doc)
    doc.raw[path] = str(node.value)
    if node.tag == f"{_YAML}timestamp":
        return str(node.value)  # dates stay text: nothing in a manifest needs datetime objects
    return yaml.constructor.SafeConstructor().construct_object(node)


def _convert_mapping(node: yaml.MappingNode, path: Path_, doc: Document) -> dict[str, Any]:
    import yaml

    _check_tag(node, f"{_YAML}map", path, doc)
    result: dict[str, Any] = {}
    first_line: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
            raise ManifestError(
                f"{doc.path}:{key_node.start_mark.line + 1}: keys must be plain text",
                "write the key as a simple string",
            )
        key = str(key_node.value)
        line = key_node.start_mark.line + 1
        if key in result:
            raise ManifestError(
                f"{doc.path}:{line}: duplicate key '{key}' (first defined on line "
                f"{first_line[key]})",
                "YAML keeps only one of them: delete or rename the other",
            )
        first_line[key] = line
        doc.lines[(*path, key)] = line
        result[key] = _convert(value_node, (*path, key), doc)
    return result


def _check_tag(node: yaml.Node, expected: str, path: Path_, doc: Document) -> None:
    if node.tag != expected:
        _refuse_tag(node, path, doc)


def _refuse_tag(node: yaml.Node, path: Path_, doc: Document) -> None:
    raise ManifestError(
        f"{doc.path}:{node.start_mark.line + 1}: the YAML tag '{node.tag}' is not allowed"
        + (f" (at '{'.'.join(map(str, path))}')" if path else ""),
        "manifests may hold only plain strings, numbers, booleans, lists and mappings",
    )
