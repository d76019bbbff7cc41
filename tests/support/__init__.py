"""Helpers for the tests: the CLI runner, project builders, real servers and service checks.

Tests import them as `from support.X import ...` (pytest puts tests/ on sys.path, as it has no
__init__.py; mypy finds the package the same way). Fixtures live in tests/conftest.py.
"""
