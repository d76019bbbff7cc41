"""Automatic capture: inputs and outputs hashed and stored, events ingested, lineage linked."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from support.cli import EXAMPLES, cli, last_record
from support.projects import make_project


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_example(name: str, tmp_path: Path) -> Path:
    # Runs write into their working directory: never run the checked-in example in place.
    return Path(shutil.copytree(EXAMPLES / name, tmp_path / name))


def test_csv_project_records_inputs_model_and_plot_with_right_hashes(tmp_path: Path) -> None:
    project = copy_example("csv_train", tmp_path)
    data = project / "data" / "train.csv"
    result = cli(str(project), "-P", f"data={data}", "-P", "epochs=6")
    assert result.code == 0, result.text
    record = last_record()
    inputs = {Path(i["path"]).name: i for i in record["inputs"]}
    assert inputs["train.csv"]["sha256"] == sha(data)
    assert inputs["train.csv"]["source"] == "param" and inputs["train.csv"]["param"] == "data"
    # notes.txt is opened with plain open() by the script: found by the audit hook.
    assert inputs["notes.txt"]["source"] == "opened"
    assert inputs["notes.txt"]["sha256"] == sha(project / "data" / "notes.txt")
    assert not any(i["path"].endswith(".py") for i in record["inputs"])
    outputs = {o["name"]: o for o in record["outputs"]}
    assert outputs["workdir/model.json"]["sha256"] == sha(project / "model.json")
    store = tmp_path / "store" / "artifacts" / record["id"]
    plot = store / "outputs" / "loss.png"
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert outputs["outputs/loss.png"]["sha256"] == sha(plot)
    # Stored once by content, browsable per run: the run's file is a link to the object.
    obj = tmp_path / "store" / "artifacts" / "objects" / sha(plot)[:2] / sha(plot)
    assert obj.stat().st_ino == plot.stat().st_ino
    assert (store / "workdir" / "model.json").read_bytes() == (project / "model.json").read_bytes()
    assert record["metrics"]["loss"]["count"] == 6
    assert record["logged_params"] == {"rows": "5"} and record["tags"] == {"model": "linear"}


@pytest.mark.slow
def test_second_project_consuming_the_first_ones_model_shows_up_in_lineage(
    tmp_path: Path,
) -> None:
    trainer = copy_example("csv_train", tmp_path)
    consumer = copy_example("consume_model", tmp_path)
    assert cli(str(trainer)).code == 0
    producer = last_record()
    result = cli(str(consumer), "-P", f"model={trainer / 'model.json'}")
    assert result.code == 0, result.text
    consumer_record = last_record()
    (model_input,) = [i for i in consumer_record["inputs"] if i.get("param") == "model"]
    assert model_input["produced_by"] == producer["id"]

    by_file = cli("runs", "lineage", str(trainer / "model.json"))
    assert by_file.code == 0, by_file.text
    assert f"produced by run {producer['id'][:8]}" in by_file.out
    assert "train.csv" in by_file.out  # what it was made from
    assert f"used by run {consumer_record['id'][:8]}" in by_file.out
    by_run = cli("runs", "lineage", consumer_record["id"][:8])
    assert f"produced by run {producer['id'][:8]}" in by_run.out
    assert "workdir/predictions.csv" in by_run.out


def test_bash_entry_point_gets_working_dir_outputs_and_events_file_metrics(
    tmp_path: Path,
) -> None:
    project = copy_example("bash_events", tmp_path)
    result = cli(str(project), "-P", "steps=4")
    assert result.code == 0, result.text
    record = last_record()
    assert record["metrics"]["loss"] == {"last": 7.0, "step": 3, "min": 7.0, "max": 10.0,
                                         "count": 4}  # fmt: skip
    assert record["logged_params"] == {"shell": "bash"}
    (output,) = [o for o in record["outputs"] if o["name"] == "workdir/result.txt"]
    assert output["sha256"] == sha(project / "result.txt")
    assert output["source"] == "workdir"


@pytest.mark.slow
def test_hundred_thousand_metric_points_in_one_run(store_url: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "many", {"many.py": """\
        import run_project_client as rp
        for i in range(100_000):
            rp.log_metric("loss", 1.0 / (i + 1), step=i)
        """})  # fmt: skip
    result = cli(str(project), "-e", "many.py", "--store", store_url, timeout=300)
    assert result.code == 0, result.text
    (record,) = json.loads(cli("runs", "list", "--json", "--store", store_url).out)
    assert record["metrics"]["loss"]["count"] == 100_000
    assert record["metrics"]["loss"]["last"] == 1.0 / 100_000
    exported = cli("runs", "export", record["id"], "--json", "--store", store_url)
    points = json.loads(exported.out)["metric_points"]["loss"]
    assert len(points) == 100_000 and points[-1] == [99_999, 1.0 / 100_000]


def test_read_only_store_fails_before_the_command_runs(read_only_dir: Path, tmp_path: Path) -> None:
    # read_only_dir is a read-only bind mount (root ignores chmod but not EROFS).
    canary = tmp_path / "canary"
    project = make_project(tmp_path / "p", {"run.sh": f"touch {canary}\n"})
    result = cli(str(project), "-e", "run.sh", "--store", str(read_only_dir / "store"))
    assert result.code == 125, result.text
    assert "read-only" in result.out + result.err and "hint:" in result.err
    assert not canary.exists()


def test_existing_sitecustomize_still_runs_and_capture_still_works(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    marker = tmp_path / "their-sitecustomize-ran"
    (theirs / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    data = tmp_path / "outside.txt"
    data.write_text("read me")
    project = make_project(tmp_path / "p", {"read.py": f"""\
        print(open({str(data)!r}).read())
        """})  # fmt: skip
    path = os.pathsep.join(filter(None, [str(theirs), os.environ.get("PYTHONPATH")]))
    result = cli(str(project), "-e", "read.py", env={"PYTHONPATH": path})
    assert result.code == 0, result.text
    assert marker.exists(), "the environment's own sitecustomize did not run"
    record = last_record()
    opened = [i for i in record["inputs"] if i["source"] == "opened"]
    assert [i["path"] for i in opened] == [str(data)]
    # Its write of the marker (outside the working dir) is an output of the run.
    assert any(o["path"] == str(marker) for o in record["outputs"])


def test_unchanged_inputs_are_not_read_again(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "MLproject": """\
            entry_points:
              main:
                parameters: {data: path}
                command: "python -c pass {data}"
            """,
    })  # fmt: skip
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * 3_000_000)
    for _ in range(2):
        assert cli(str(project), "-P", f"data={data}").code == 0
    from runner.tracking.hashing import HashCache

    cache = HashCache(tmp_path / "cache" / "hashes.db")
    assert cache.file(data) == sha(data) and cache.hits == 1 and cache.misses == 0
    data.write_bytes(b"y" * 3_000_000)  # same size, new content: re-hashed
    assert cache.file(data) == sha(data) and cache.misses == 1


def test_declared_inputs_and_outputs_and_python_writes_outside_the_workdir(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = make_project(tmp_path / "p", {
        "MLproject": f"""\
            entry_points:
              main:
                inputs: ["conf/*.yaml", "missing/*.csv"]
                outputs: ["reports/**/*.txt"]
                command: "python job.py {elsewhere}"
            """,
        "conf/a.yaml": "a: 1\n",
        "reports/old/keep.txt": "unchanged but declared\n",
        "job.py": textwrap.dedent("""\
            import sys
            with open(sys.argv[1] + "/written.bin", "wb") as out:
                out.write(b"binary")
            """),
    })  # fmt: skip
    result = cli(str(project))
    assert result.code == 0, result.text
    assert "'missing/*.csv' matched nothing" in result.err
    record = last_record()
    assert [(Path(i["path"]).name, i["source"]) for i in record["inputs"]] == [
        ("a.yaml", "declared")
    ]
    names = {o["name"]: o for o in record["outputs"]}
    assert names["workdir/reports/old/keep.txt"]["source"] == "declared"
    written = names["external" + str(elsewhere / "written.bin")]
    assert written["source"] == "opened" and written["sha256"] == sha(elsewhere / "written.bin")


def test_metrics_are_ingested_while_the_run_goes_on(tmp_path: Path) -> None:
    go = tmp_path / "go"
    project = make_project(tmp_path / "p", {"wait.py": f"""\
        import os, time
        import run_project_client as rp
        rp.log_metric("progress", 0.5)
        deadline = time.time() + 60
        while not os.path.exists({str(go)!r}) and time.time() < deadline:
            time.sleep(0.1)
        rp.log_metric("progress", 1.0)
        """})  # fmt: skip
    import subprocess
    import sys
    import time

    run = subprocess.Popen([sys.executable, "-m", "runner", str(project), "-e", "wait.py"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        seen = None
        for _ in range(100):
            found = json.loads(cli("runs", "list", "--json").out or "[]")
            if found and found[0].get("metrics"):
                seen = found[0]
                break
            time.sleep(0.2)
        assert seen is not None, "no metric arrived while the run was going on"
        assert seen["status"] == "RUNNING"
        assert seen["metrics"]["progress"]["last"] == 0.5
    finally:
        go.touch()
        assert run.wait(timeout=60) == 0
    assert last_record()["metrics"]["progress"] == {
        "last": 1.0,
        "step": 1,
        "min": 0.5,
        "max": 1.0,
        "count": 2,
    }


def test_malformed_event_lines_are_skipped_with_one_warning(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"run.sh": """\
        echo '{"type": "metric", "key": "a", "value": 1}' >> "$RUN_PROJECT_EVENTS"
        echo 'not json' >> "$RUN_PROJECT_EVENTS"
        echo '{"type": "metric", "key": "a", "value": "NaNx"}' >> "$RUN_PROJECT_EVENTS"
        echo '{"type": "teleport"}' >> "$RUN_PROJECT_EVENTS"
        echo '{"type": "metric", "key": "a", "value": 2}' >> "$RUN_PROJECT_EVENTS"
        """})  # fmt: skip
    result = cli(str(project), "-e", "run.sh")
    assert result.code == 0, result.text
    assert "3 malformed line(s)" in result.err and "line 2" in result.err
    record = last_record()
    assert record["capture"]["bad_event_lines"] == 3
    assert record["metrics"]["a"]["count"] == 2 and record["metrics"]["a"]["last"] == 2.0


def test_the_injected_client_adds_no_heavy_imports_to_a_python_start(tmp_path: Path) -> None:
    """Every Python start of a run loads the client: json, threading and typing (about 20 ms
    together) load only when the run logs something. Compared with the same interpreter
    started without run-project, as site-packages may import some of them anyway."""
    probe = "import sys; print(' '.join(sorted(m for m in ('json', 'threading', 'typing') if m in sys.modules)))"
    (tmp_path / "probe.py").write_text(probe + "\n")
    project = make_project(tmp_path / "p", {
        "MLproject": "entry_points:\n  main:\n    command: 'python probe.py'\n",
        "probe.py": probe + "\n",
    })  # fmt: skip
    result = cli(str(project), "-q")
    assert result.code == 0, result.text
    import subprocess

    bare = subprocess.run(["python", str(tmp_path / "probe.py")], capture_output=True, text=True)
    assert result.out.split() == bare.stdout.split(), (result.out, bare.stdout)


def test_event_paths_of_a_container_or_cluster_job_map_only_into_the_run(tmp_path: Path) -> None:
    from runner.tracking.foreign import ForeignView

    work, run_dir = tmp_path / "work", tmp_path / "run"
    (work / "data").mkdir(parents=True)
    (work / "out").symlink_to(tmp_path)  # a link in the working copy leading out
    view = ForeignView.of({"/project": "workdir", "/run-project/outputs": "outputs"},
                          work, run_dir / "outputs", run_dir)  # fmt: skip
    assert view.local("/project/data/a.csv") == work / "data" / "a.csv"
    assert view.local("data/a.csv") == work / "data" / "a.csv"
    assert view.local("/run-project/outputs/m.bin") == run_dir / "outputs" / "m.bin"
    assert view.local(str(work / "data" / "a.csv")) == work / "data" / "a.csv"
    for refused in ("/etc/shadow", "/root/.gitconfig", "/project/../etc/shadow", "../../x",
                    "/project/out/secret", "/run-project/events.jsonl", "/"):  # fmt: skip
        assert view.local(refused) is None, refused
    remote = ForeignView.of({}, work, run_dir / "outputs", run_dir)  # Slurm, Ray: host paths
    assert remote.local(str(run_dir / "workdir" / "m.bin")) == run_dir / "workdir" / "m.bin"
    assert remote.local("/tmp/run-project-job-1/outputs/m.bin") is None
