"""`runs list` filters, sort and limit in SQL (tracking/listing.py over run_values) give the
answer the Python filters over every parsed record give, on SQLite and PostgreSQL, parse only
the records shown, and upgrade a store written before run_values in place."""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from runner.cli import runs_compare
from runner.errors import RunnerError
from runner.tracking import listing, runindex
from runner.tracking.migrations import MIGRATIONS, SCHEMA_VERSION
from runner.tracking.query import Condition, parse_condition
from runner.tracking.record import new_record
from runner.tracking.store import Store, open_store
from support.cli import cli
from support.mounts import mount

# Values a param can hold: numbers, numeric text, text, hostile text, non-finite, huge.
PARAM_VALUES: list[Any] = [
    0.1, 0.05, 0.5, 1, 2, -3, 0, -0.0, True, False, 10**30, "0.1", " 7 ", "1e3", "1_000",
    "abc", "ABC", "", "it's", "100%", "a_b", "a%b", "x\x00y", "é", "\U0001f600", "inf",
    "-inf", "Infinity", 1e308, -1e308, "1e400", "[1]", "None", "0x10", 2**53 + 1,
]  # fmt: skip
HOSTILE_NAMES = ["lr", "q'x", "p%_", "a.b-c/d", 'd"e']


def _record(rng: random.Random, i: int) -> dict[str, Any]:
    record = new_record(
        experiment=rng.choice(["a", "b", "it's%"]),
        run_name=f"run-{i}" if i % 7 else None,
        source={"kind": "local"},
        entry_point=rng.choice(["main", "train"]),
        command={"template": "true", "argv": ["true"], "shell": False},
        params={},
        env={"kind": "local"},
        backend="local",
        heartbeat_seconds=5,
    )
    for name in HOSTILE_NAMES:
        if rng.random() < 0.7:
            value = rng.choice(PARAM_VALUES)
            record["params"][name] = {"type": "str", "value": value, "source": "cli"}
    if rng.random() < 0.2:  # declared without a value: the logged one is not consulted
        record["params"]["lr"] = {"type": "float", "value": None, "source": "default"}
    logged = {n: str(rng.choice(PARAM_VALUES)) for n in HOSTILE_NAMES if rng.random() < 0.4}
    logged["nanny"] = rng.choice(["nan", "NaN", "1", "x"])
    record["logged_params"] = logged
    record["metrics"] = {
        name: {"last": rng.choice([None, 0.5, 0.25, 1.0, -2.0, 1e300, 0.0, rng.random()])}
        for name in ("acc", "q'x", "p%_")
        if rng.random() < 0.8
    }
    record["exit_code"] = rng.choice([None, 0, 1, 137])
    record["status"] = rng.choice(["FINISHED", "FAILED", "RUNNING"])
    return record


def _fill(store: Store, count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    made = []
    for i in range(count):
        record = _record(rng, i)
        store.create_run(record)
        made.append(record)
    return made


def _conditions() -> list[Condition]:
    wanted = ["0.1", "1", "0", "-0", "abc", "", "it's", "100%", "a_b", "%", "_", "inf", "-inf"]
    wanted += ["nan", "1e400", "x\x00y", "é", "0.05", "1e308", "True", "None"]
    found = [Condition("param", n, None, None) for n in [*HOSTILE_NAMES, "nanny", "nope"]]
    found += [Condition("metric", n, None, None) for n in ("acc", "q'x", "none")]
    for name, op, value in itertools.product([*HOSTILE_NAMES, "nanny"], listing.SQL_OPS, wanted):
        found.append(Condition("param", name, op, value))
    for op, value in itertools.product(listing.SQL_OPS, ["0.5", "0", "1e300", "x", "nan"]):
        found.append(Condition("metric", "acc", op, value))
    return found


def _ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


@pytest.mark.slow
def test_sql_filters_answer_as_the_python_filters_do_on_a_varied_store(store_url: str) -> None:
    store = open_store(store_url)
    _fill(store, 80)
    for condition in _conditions():
        for experiment in (None, "it's%"):
            args: tuple[Any, ...] = (store, experiment, None, [condition], None, None)
            got = listing.select_runs(*args)
            assert _ids(got) == _ids(listing._in_python(*args)), condition
    pair = [parse_condition("param", "lr>=0"), parse_condition("metric", "acc<1")]
    args = (store, "a", "finished", pair, "-metric.acc", 5)
    assert _ids(listing.select_runs(*args)) == _ids(listing._in_python(*args))


def test_sql_sort_and_limit_answer_as_the_python_sort_does(store_url: str) -> None:
    store = open_store(store_url)
    _fill(store, 80, seed=11)
    keys = [f"param.{n}" for n in HOSTILE_NAMES] + ["metric.acc", "metric.q'x", "param.nope"]
    keys += ["exit_code", "run_name", "start_time", "status", "entry_point", "experiment"]
    keys += ["backend", "id"]  # not indexed: the Python path
    for key, limit in itertools.product(keys + [f"-{k}" for k in keys], (None, 1, 7)):
        args: tuple[Any, ...] = (store, None, None, [], key, limit)
        assert _ids(listing.select_runs(*args)) == _ids(listing._in_python(*args)), key
    with pytest.raises(RunnerError) as info:
        listing.select_runs(store, None, None, [], "bogus.x", 3)
    assert "sort by metric.NAME" in info.value.hint


def test_pages_with_an_offset_join_up_to_the_whole_list_and_the_count_agrees(
    store_url: str,
) -> None:
    store = open_store(store_url)
    _fill(store, 40, seed=5)
    lr = [parse_condition("param", "lr>=0")]
    for conditions, sort in (([], None), ([], "-metric.acc"), (lr, "param.lr"), (lr, None)):
        whole = _ids(listing.select_runs(store, None, None, conditions, sort, None))
        pages = []
        for offset in range(0, len(whole) + 7, 7):
            pages += _ids(listing.select_runs(store, None, None, conditions, sort, 7, offset))
        assert pages == whole, (conditions, sort)
        assert listing.count_runs(store, None, None, conditions) == len(whole)


def test_list_with_a_limit_parses_only_the_records_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(str(tmp_path / "store"))
    _fill(store, 400)
    parsed = []
    real_loads = json.loads

    def counting(text: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(1)
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    ns = argparse.Namespace(experiment=None, status=None, limit=10, param=["lr"],
                            metric=["acc>0"], sort="-metric.acc")  # fmt: skip
    shown = runs_compare.select(store, ns)  # what `runs list` calls
    assert len(shown) == 10
    assert len(parsed) == 10  # the Python path parses every one of the 400 records
    parsed.clear()
    listing._in_python(store, None, None, [parse_condition("param", "lr")], "-metric.acc", 10)
    assert len(parsed) == 400


def _store_of_schema_2(root: Path, records: list[dict[str, Any]]) -> None:
    """A store exactly as the runner before run_values wrote it (schema version 2)."""
    root.mkdir()
    conn = sqlite3.connect(root / "runs.db")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for statement in itertools.chain(*MIGRATIONS[:2]):
        conn.execute(str(statement))
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    for i, record in enumerate(records):
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, 'n', ?, ?, 2, 2, 'h', 1, 0, ?)",
            (record["id"], record["experiment"], record["status"], 1000 + i, json.dumps(record)),
        )
    conn.commit()
    conn.close()


def test_a_store_from_before_run_values_is_upgraded_in_place_and_lists_the_same(
    tmp_path: Path,
) -> None:
    rng = random.Random(3)
    made = [_record(rng, i) for i in range(1200)]  # more than one back-fill page
    old = tmp_path / "old"
    _store_of_schema_2(old, made)
    reference = listing._in_python(open_store(str(old)), None, None, [], "-param.lr", 20)
    result = cli("runs", "list", "--json", "--store", str(old), "--param", "lr",
                 "--sort=-param.lr", "--limit", "20")  # fmt: skip
    assert result.code == 0, result.text
    assert _ids(json.loads(result.out)) == _ids(reference)
    conn = sqlite3.connect(old / "runs.db")
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)
    store = open_store(str(old))
    for record in made[::97]:  # (runs list also closed the RUNNING ones as LOST)
        assert _index_of(store, record["id"]) == runindex.values(store.get_run(record["id"]))
    store.create_run(_record(rng, 9999))  # and it keeps working for writes
    assert len(store.list_runs()) == 1201


def test_a_read_only_store_from_before_run_values_is_listed_by_the_python_path(
    tmp_path: Path,
) -> None:
    rng = random.Random(5)
    made = [_record(rng, i) for i in range(30)]
    target = tmp_path / "ro"
    _store_of_schema_2(target, made)
    mount(["--bind", str(target), str(target)])  # read-only even for root (EROFS)
    try:
        mount(["-o", "remount,ro,bind", str(target)])
        result = cli("runs", "list", "--json", "--store", str(target),
                     "--metric", "acc>0.3", "--sort", "metric.acc", "--all")  # fmt: skip
    finally:
        subprocess.run(["umount", str(target)], check=False)
    assert result.code == 0, result.text
    want = [r for r in made if (r["metrics"].get("acc") or {}).get("last") is not None]
    want = sorted((r for r in want if r["metrics"]["acc"]["last"] > 0.3),
                  key=lambda r: r["metrics"]["acc"]["last"])  # fmt: skip
    assert [r["metrics"]["acc"]["last"] for r in json.loads(result.out)] == [
        r["metrics"]["acc"]["last"] for r in want
    ]
    version = sqlite3.connect(target / "runs.db").execute("SELECT value FROM meta").fetchone()
    assert version == ("2",)  # left as it was


def test_pg_store_from_before_run_values_is_upgraded_in_place(pg_url: str) -> None:
    import psycopg

    rng = random.Random(4)
    made = [_record(rng, i) for i in range(50)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statement in itertools.chain(*MIGRATIONS[:2]):
            conn.execute(str(statement))
        conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        for i, record in enumerate(made):
            conn.execute(
                "INSERT INTO runs VALUES (%s, %s, 'n', %s, %s, 2, 2, 'h', 1, 0, %s)",
                (record["id"], record["experiment"], record["status"], 1000 + i,
                 json.dumps(record)),
            )  # fmt: skip
    result = cli("runs", "list", "--json", "--store", pg_url, "--param", "lr>0", "--limit", "50")
    assert result.code == 0, result.text
    store = open_store(pg_url)
    want = listing._in_python(store, None, None, [parse_condition("param", "lr>0")], None, 50)
    assert _ids(json.loads(result.out)) == _ids(want)
    for record in made:
        assert _index_of(store, record["id"]) == runindex.values(store.get_run(record["id"]))


def _index_of(store: Store, run_id: str) -> set[runindex.Value]:
    with store._reading() as db:
        return runindex.stored(db, run_id)


def test_concurrent_writers_leave_index_and_record_in_agreement(store_url: str) -> None:
    store = open_store(store_url)
    made = _fill(store, 3, seed=2)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        mine = store.reopen()
        try:
            for i in range(15):
                for record in made:
                    change = (
                        {"metrics": {"acc": {"last": t + i / 100}}}
                        if t % 2
                        else {"logged_params": {"lr": str(i), f"t{t}": "x"}, "status": "RUNNING"}
                    )
                    mine.update_run(record["id"], {**change, f"w{t}": i})
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for record in made:
        final = store.get_run(record["id"])
        assert _index_of(store, record["id"]) == runindex.values(final)
        assert [final[f"w{t}"] for t in range(4)] == [14] * 4  # no writer's update lost


def test_negative_limit_is_refused_and_a_huge_one_means_all(tmp_path: Path) -> None:
    result = cli("runs", "list", "--store", str(tmp_path / "s"), "--metric", "acc", "--limit", "-1")
    assert result.code == 2 and "--limit" in result.err and "hint:" in result.err
    _fill(open_store(str(tmp_path / "s")), 3)
    for sort in ("--sort=-metric.acc", "--sort=status"):
        huge = cli(
            "runs", "list", "--json", "--store", str(tmp_path / "s"), sort, "--limit", str(10**30)
        )
        assert huge.code == 0 and len(json.loads(huge.out)) == 3, huge.text


def test_a_record_changed_behind_the_index_is_healed_by_its_next_write(store_url: str) -> None:
    # A runner from before run_values, still running across the upgrade, rewrites the record
    # alone; the next write by this runner compares with the stored rows, not assumed ones.
    store = open_store(store_url)
    (record,) = _fill(store, 1, seed=9)
    behind = dict(record, metrics={"acc": {"last": 123.0}})
    store.db.transaction(
        lambda db: db.execute(
            "UPDATE runs SET record = ? WHERE id = ?", (json.dumps(behind), record["id"])
        )
    )
    store.update_run(record["id"], {"note": "unrelated"})
    assert _index_of(store, record["id"]) == runindex.values(store.get_run(record["id"]))
    acc = listing.select_runs(store, None, None, [parse_condition("metric", "acc=123")], None, 5)
    assert _ids(acc) == [record["id"]]
