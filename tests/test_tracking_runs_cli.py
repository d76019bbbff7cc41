"""`runs list` filters and sort, `runs compare|diff|plot|export`, and record/schema agreement."""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from runner.project.schemas import load_schema, schema_errors
from support.cli import EXAMPLES, REPO, cli, last_record, records
from support.projects import make_project


@pytest.fixture
def three_runs(tmp_path: Path) -> list[dict[str, Any]]:
    """csv_train at lr 0.02, 0.05, 0.1 (oldest first), in experiments a, a, b."""
    project = Path(shutil.copytree(EXAMPLES / "csv_train", tmp_path / "csv_train"))
    for lr, experiment in (("0.02", "a"), ("0.05", "a"), ("0.1", "b")):
        result = cli(str(project), "-P", f"lr={lr}", "--experiment", experiment)
        assert result.code == 0, result.text
    return list(reversed(records()))


def ids(result_out: str) -> list[str]:
    return [r["id"] for r in json.loads(result_out)]


@pytest.mark.slow
def test_list_filters_by_param_metric_experiment_and_sorts(
    three_runs: list[dict[str, Any]],
) -> None:
    slow, mid, fast = (r["id"] for r in three_runs)
    over = cli("runs", "list", "--json", "--param", "lr>0.03")
    assert set(ids(over.out)) == {mid, fast}
    both = cli("runs", "list", "--json", "--param", "lr>0.03", "--experiment", "a")
    assert ids(both.out) == [mid]
    assert ids(cli("runs", "list", "--json", "--metric", "acc").out) != []
    assert ids(cli("runs", "list", "--json", "--metric", "nope").out) == []
    by_acc = cli("runs", "list", "--json", "--sort=-metric.acc")
    accs = [r["metrics"]["acc"]["last"] for r in json.loads(by_acc.out)]
    assert accs == sorted(accs, reverse=True) and len(accs) == 3
    by_lr = cli("runs", "list", "--json", "--sort", "param.lr")
    assert ids(by_lr.out) == [slow, mid, fast]
    table = cli("runs", "list", "--metric", "acc>0", "--status", "finished")
    assert table.code == 0 and "acc=" in table.out
    bad = cli("runs", "list", "--param", "lr>>")
    assert bad.code == 2 and "hint:" in bad.err


def test_compare_marks_differences_and_diff_names_what_changed(
    three_runs: list[dict[str, Any]],
) -> None:
    slow, _, fast = (r["id"] for r in three_runs)
    table = cli("runs", "compare", slow[:8], fast[:8])
    assert table.code == 0, table.text
    assert re.search(r"^\*\s+param\.lr\s+0\.02\s+0\.1$", table.out, re.M), table.out
    assert re.search(r"^\s+param\.epochs\s+5\s+5$", table.out, re.M)
    assert re.search(r"^\*\s+metric\.loss", table.out, re.M)
    assert re.search(r"^\s+input\..*train\.csv", table.out, re.M)
    diff = cli("runs", "diff", slow[:8], fast[:8])
    assert "~ lr: 0.02 → 0.1" in diff.out
    assert "inputs: no change" in diff.out
    assert "~ workdir/model.json" in diff.out
    assert "code: same" in diff.out


def test_plot_writes_a_png_of_the_learning_curves(
    three_runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    target = tmp_path / "curves.png"
    run_ids = [r["id"][:8] for r in three_runs]
    result = cli("runs", "plot", *run_ids, "--metric", "loss", "-o", str(target))
    assert result.code == 0, result.text
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 540)
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    pixels = zlib.decompress(data[idat + 4 : idat + 4 + length])
    assert len(pixels) == height * (width * 3 + 1)
    assert bytes((31, 119, 180)) in pixels and bytes((255, 127, 14)) in pixels  # two curves
    assert "blue: run" in result.out
    missing = cli("runs", "plot", run_ids[0], "--metric", "nope", "-o", str(target))
    assert missing.code == 125 and "nope" in missing.err


def _pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the RGB rows (each behind its filter byte) of a plot's PNG."""
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    return width, height, zlib.decompress(data[idat + 4 : idat + 4 + length])


def _rows_with(
    color: tuple[int, int, int], path: Path, x_from: int = 0, x_to: int = 10_000
) -> set[int]:
    """The rows where `color` appears between columns x_from and x_to."""
    width, height, raw = _pixels(path)
    found = set()
    for y in range(height):
        row = raw[y * (width * 3 + 1) + 1 : (y + 1) * (width * 3 + 1)]
        if bytes(color) in row[x_from * 3 : x_to * 3]:
            found.add(y)
    return found


@pytest.mark.slow
def test_plot_has_a_title_tick_labels_a_legend_and_a_log_scale(tmp_path: Path) -> None:
    from runner.tracking.record import new_record
    from runner.tracking.store import open_store

    store = open_store(str(tmp_path / "store"))
    record = new_record(experiment="e", run_name="decay", source={"kind": "local"},
                        entry_point="main", command={"template": "x", "argv": [], "shell": False},
                        params={}, env={"kind": "local"}, backend="local", heartbeat_seconds=5.0)  # fmt: skip
    store.create_run(record)
    points = [("loss", 1.0 / (i + 1), i, float(i)) for i in range(100_000)]
    store.add_metrics(record["id"], points)
    store.close()
    linear, log = tmp_path / "linear.png", tmp_path / "log.png"
    args = ("runs", "plot", record["id"], "--metric", "loss", "--store", str(tmp_path / "store"))
    assert cli(*args, "-o", str(linear)).code == 0
    result = cli(*args, "-o", str(log), "--log-y")
    assert result.code == 0, result.text
    black = (0, 0, 0)
    assert {y for y in _rows_with(black, log) if y < 40}  # the title
    assert {y for y in _rows_with(black, log) if y > 480}  # x tick labels and the axis name
    assert len(_rows_with(black, log, x_to=85)) > 30  # y tick labels, left of the axis
    blue = (31, 119, 180)
    assert _rows_with(blue, log, x_from=750)  # the legend's line (the curve is lower there)

    # 1/x over 100k steps: flat on the axis in linear, across the whole height in log.
    curve_linear = _rows_with(blue, linear, x_from=140, x_to=700)
    curve_log = _rows_with(blue, log, x_from=140, x_to=700)
    assert max(curve_linear) - min(curve_linear) < 10  # past the first 5%: on the axis
    assert max(curve_log) - min(curve_log) > 80  # a visible slope through the decades


def test_export_gives_record_and_every_metric_point(three_runs: list[dict[str, Any]]) -> None:
    result = cli("runs", "export", three_runs[0]["id"], "--json")
    data = json.loads(result.out)
    assert data["record"]["id"] == three_runs[0]["id"]
    assert [p[0] for p in data["metric_points"]["loss"]] == [0, 1, 2, 3, 4]


EXAMPLE_RUNS = {
    "csv_train": [],
    "bash_events": ["-P", "steps=2"],
    "mlflow_params": [],
    "bare_script": ["-e", "train.py"],
    "python_env": [],  # a real uv-built virtualenv
}


@pytest.mark.slow
def test_records_of_every_example_project_are_valid(tmp_path: Path, uv_cache: Path) -> None:
    for name, args in EXAMPLE_RUNS.items():
        project = shutil.copytree(EXAMPLES / name, tmp_path / name)
        result = cli(str(project), *args, env={"UV_CACHE_DIR": str(uv_cache)})
        assert result.code == 0, (name, result.text)
    model = tmp_path / "csv_train" / "model.json"
    consumer = shutil.copytree(EXAMPLES / "consume_model", tmp_path / "consume_model")
    assert cli(str(consumer), "-P", f"model={model}").code == 0
    found = records()
    assert len(found) == len(EXAMPLE_RUNS) + 1
    for record in found:
        assert schema_errors("run-record", record) == [], record["run_name"]
    # Every example project in the repository is run here.
    # conda_env needs the test conda channel: tests/test_conda_env.py validates its record.
    assert {p.name for p in EXAMPLES.iterdir() if p.is_dir()} <= {*EXAMPLE_RUNS, "consume_model",
                                                                  "conda_env"}  # fmt: skip


def test_schema_and_code_agree_on_the_tracking_fields() -> None:
    """Each field the schema declares for tracking is written by the code, and back."""
    schema = load_schema("run-record")["properties"]
    source = "\n".join(p.read_text() for p in (REPO / "runner" / "tracking").rglob("*.py"))
    for section in ("inputs", "outputs"):
        fields = schema[section]["items"]["properties"]
        for field in fields:
            assert f'"{field}"' in source or f"{field}=" in source, f"{section}.{field} unused"
    for field in ("inputs", "outputs", "metrics", "logged_params", "tags", "capture"):
        assert f'"{field}"' in source, f"schema field {field} is never written"
    for field in schema["capture"]["properties"]:
        assert f'"{field}"' in source, f"capture.{field} is never written"
    written = set(re.findall(r'"source": "(\w+)"|, "(\w+)"\)', source))
    assert written is not None
    # The capture sources the code uses are exactly those the schema allows.
    code_sources = set(re.findall(r'self\._offer\w*\([^)]*?"(\w+)"', source))
    code_sources |= set(re.findall(r'_add_input\([^)]*?"(\w+)"', source))
    allowed = set(schema["outputs"]["items"]["properties"]["source"]["enum"])
    allowed |= set(schema["inputs"]["items"]["properties"]["source"]["enum"])
    assert code_sources and code_sources <= allowed, code_sources - allowed


def test_compare_and_diff_show_environment_packages(tmp_path: Path, uv_cache: Path) -> None:
    env = {"UV_CACHE_DIR": str(uv_cache)}
    ids = []
    for version in ("1.16.0", "1.17.0"):
        project = make_project(tmp_path / version, {
            "requirements.txt": f"six=={version}\n",
            "show.py": "import six\nprint(six.__version__)\n",
        })  # fmt: skip
        result = cli(str(project), "-e", "show.py", env=env)
        assert result.code == 0 and version in result.out, result.text
        ids.append(last_record()["id"][:8])
    assert last_record()["env"]["packages"] == {"six": "1.17.0"}
    table = cli("runs", "compare", *ids)
    assert re.search(r"^\*\s+package\.six\s+1\.16\.0\s+1\.17\.0$", table.out, re.M), table.out
    diff = cli("runs", "diff", *ids)
    assert "six" in diff.out and "1.16.0" in diff.out and "1.17.0" in diff.out, diff.out


@pytest.mark.parametrize(
    "verb", [["runs", "list"], ["runs", "show", "ID"], ["runs", "list", "--json"]]
)
def test_a_reader_that_closed_the_pipe_ends_the_listing_quietly(
    tmp_path: Path, verb: list[str]
) -> None:
    """`runs list | head -c 1`: a reader gone before the output is written (the pipe's read
    end closed before the command starts, so the write fails every time)."""
    import os
    import subprocess
    import sys

    project = make_project(tmp_path / "p", {"run.sh": "echo hi\n"})
    assert cli(str(project), "-e", "run.sh").code == 0
    args = [last_record()["id"] if a == "ID" else a for a in verb]
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        proc = subprocess.run([sys.executable, "-m", "runner", *args], stdout=write_end,
                              stderr=subprocess.PIPE, env=env, timeout=60)  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.stderr == b"" and proc.returncode == 0, proc.stderr.decode()
