"""benchmarks/: the scripts' own plumbing (the measurements themselves are never run here)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from support.cli import REPO

BENCHMARKS = REPO / "benchmarks"


def test_the_report_is_written_with_uv_off_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv that is not activated has uv (the `uv` package) but not on PATH: the report's
    versions line uses the uv the benchmark found, not a bare `uv`."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("bench")
    workspace = importlib.import_module("workspace")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    workspace.uv_bin.cache_clear()
    try:
        report = bench.render([], 1.0, True, (0.0, 0.0, 0.0), Path(sys.executable))
    finally:
        workspace.uv_bin.cache_clear()
    assert report.startswith("# Benchmark results") and ", uv " in report


def test_benchmark_scripts_import_each_other_without_a_circle() -> None:
    modules = {p.stem: p for p in BENCHMARKS.glob("*.py")}
    imports = {name: _sibling_imports(path, set(modules)) for name, path in modules.items()}
    for start in modules:
        stack, seen = [[start]], set()
        while stack:
            path = stack.pop()
            for nxt in imports[path[-1]]:
                assert nxt != start, f"import circle: {' -> '.join([*path, nxt])}"
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append([*path, nxt])


def _sibling_imports(path: Path, siblings: set[str]) -> set[str]:
    """The sibling modules `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found & siblings
