"""Tables a person reads: `runs list` and `runs compare` fit the terminal (`$COLUMNS`), cut
long cells, leave out the least useful columns first, and `runs list` shows a screenful with a
line saying how many more runs there are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.cli.runs import DEFAULT_LIMIT
from runner.cli.table import Column, render
from runner.tracking.record import new_record
from runner.tracking.store import open_store
from support.cli import Result, cli

TITLES = ["ID", "NAME", "EXPERIMENT", "STATUS", "EXIT", "STARTED", "DURATION", "ENTRY", "PARAMS",
          "METRICS"]  # fmt: skip


def _long_run(i: int) -> dict[str, Any]:
    record = new_record(
        experiment="a-long-experiment-name-for-the-team",
        run_name=f"a-rather-long-run-name-number-{i}",
        source={"kind": "local"},
        entry_point="train_with_everything",
        command={"template": "true", "argv": ["true"], "shell": False},
        params={name: {"type": "string", "value": f"/data/a/long/path/{name}.csv", "source": "cli"}
                for name in ("train_data", "test_data", "labels")},
        env={"kind": "local"},
        backend="local",
        heartbeat_seconds=5,
    )  # fmt: skip
    record["status"], record["exit_code"] = "FINISHED", 0
    record["end_time"] = record["start_time"]
    record["metrics"] = {"accuracy": {"last": 0.9 + i / 1000}, "loss": {"last": 0.123456}}
    return record


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A store of 25 runs with long names, params and metrics."""
    path = str(tmp_path / "store")
    opened = open_store(path)
    for i in range(25):
        opened.create_run(_long_run(i))
    return path


def _list(store: str, *args: str, columns: str | None = "80") -> Result:
    env = {"COLUMNS": columns} if columns else {}
    result = cli("runs", "list", "--store", store, *args, env=env)
    assert result.code == 0, result.text
    return result


def test_runs_list_fits_80_columns_and_says_how_many_more_runs_there_are(store: str) -> None:
    lines = _list(store).out.splitlines()
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    assert lines[0].split()[:2] == ["ID", "NAME"] and "STATUS" in lines[0], lines[0]
    assert len(lines) == 1 + DEFAULT_LIMIT + 1
    assert lines[-1] == f"… {25 - DEFAULT_LIMIT} more runs (use --limit N or --all)"
    assert "…" in lines[1]  # long names and params are cut, not wrapped


def test_runs_list_limit_and_all(store: str) -> None:
    three = _list(store, "--limit", "3").out.splitlines()
    assert len(three) == 5 and three[-1] == "… 22 more runs (use --limit N or --all)"
    every = _list(store, "--all").out.splitlines()
    assert len(every) == 26 and "more run" not in every[-1]
    assert _list(store, "-n", "0").out == "\n".join(every) + "\n"


def test_runs_list_json_is_limited_too_and_says_so_on_stderr(store: str) -> None:
    result = _list(store, "--json")
    assert len(json.loads(result.out)) == DEFAULT_LIMIT
    assert f"{25 - DEFAULT_LIMIT} more runs (use --limit N or --all)" in result.err
    assert len(json.loads(_list(store, "--json", "--all").out)) == 25


@pytest.mark.parametrize("width", ["40", "60", "100", "140"])
def test_runs_list_never_passes_the_width_and_keeps_id_and_status(store: str, width: str) -> None:
    lines = _list(store, columns=width).out.splitlines()
    assert max(map(len, lines)) <= int(width), "\n".join(lines)
    assert lines[0].split()[0] == "ID" and "STATUS" in lines[0]
    assert "FINISHED" in lines[1]


def test_a_wide_terminal_or_a_pipe_shows_every_column(store: str) -> None:
    assert _list(store, columns="400").out.splitlines()[0].split() == TITLES
    piped = _list(store, columns=None).out.splitlines()  # not a terminal, no $COLUMNS
    assert piped[0].split() == TITLES
    assert "  a-rather-long-run-name-…  " in piped[1]  # cut as before, at 24


def test_runs_compare_fits_80_columns(store: str) -> None:
    ids = [r["id"][:8] for r in json.loads(_list(store, "--json", "--limit", "4").out)]
    result = cli("runs", "compare", *ids, "--store", store, env={"COLUMNS": "80"})
    assert result.code == 0, result.text
    lines = result.out.splitlines()
    assert max(map(len, lines)) <= 80, result.out
    assert lines[0].split() == ids  # every run asked for is shown
    assert any(line.startswith("*  metric.accuracy") for line in lines), result.out


def test_the_narrowest_columns_are_dropped_in_rank_order_empty_ones_first() -> None:
    columns = [
        Column("ID", ["12345678"]),
        Column("EMPTY", [""], drop_rank=9),
        Column("LATE", ["x" * 20], shortest=10, drop_rank=2),
        Column("EARLY", ["y" * 20], shortest=10, drop_rank=1),
    ]
    assert render(columns, 200)[0].split() == ["ID", "EMPTY", "LATE", "EARLY"]
    assert render(columns, 36)[0].split() == ["ID", "LATE", "EARLY"]
    assert render(columns, 28)[0].split() == ["ID", "LATE"]
    assert render(columns, 28)[1] == "12345678  " + "x" * 17 + "…"


def test_envs_list_fits_80_columns_keeping_the_end_of_project_paths() -> None:
    from runner.cli.envs import format_rows
    from runner.envs.base import EnvRow

    projects = ["/home/someone/work/a-very-long-project-directory-name/churn-model-training"]
    rows = [EnvRow(key="f" * 32, kind="virtualenv", size=615 * 2**20, last_used=1.7e9,
                   projects=projects, python="3.11.7", path="/cache/envs/x")]  # fmt: skip
    lines = format_rows(rows, 80).splitlines()
    assert max(map(len, lines)) <= 80 and lines[0].split()[:2] == ["KEY", "KIND"], lines
    assert lines[1].startswith("f" * 12) and lines[1].endswith(projects[0][-16:]), lines
    assert "  …" in lines[1]
    assert projects[0] in format_rows(rows, None)  # a pipe: whole
