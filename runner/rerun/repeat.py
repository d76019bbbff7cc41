"""`run-project rerun RUN_ID|BUNDLE`: repeat a recorded run and say whether its outputs came
out the same.

    record ─▶ params (validated like -P input) ─▶ recorded commit + diff + untracked
           ─▶ inputs checked against their hashes ─▶ run.py's pipeline (env from the recorded
              lock, record linked by `rerun_of`) ─▶ verdict: outputs hash for hash
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import settings
from runner.bundles.run_bundle import Original
from runner.envs.base import KindOptions
from runner.errors import RunnerError
from runner.progress import Progress
from runner.project.params import format_value
from runner.sources.checkout import Checkout
from runner.sources.restore import materialise, tag_moved
from runner.tracking.run_record import RunRecord
from runner.tracking.store import open_current


@dataclass(frozen=True)
class RerunOptions:
    """What `rerun` was asked for on the command line."""

    target: str
    overrides: Mapping[str, str]
    backend: str = "local"
    backend_config: Mapping[str, Any] | None = None  # None: not given on the command line
    allow_changed_inputs: bool = False
    store: str | None = None
    rtol: float = 0.0  # logged metrics compare as numpy.isclose: |new-old| <= atol + rtol*|old|
    atol: float = 0.0
    channel_alias: str | None = None  # --channel-alias: a conda lock's packages come through it


def rerun(options: RerunOptions, progress: Progress) -> int:
    """Repeat the run; prints the verdict; returns the new run's exit code."""
    store_url = settings.get("store", options.store)
    if _is_bundle(options.target):
        from runner.bundles.run_bundle import opened_run

        with opened_run(Path(options.target)) as original:
            _import_original(store_url, original, progress)
            return _rerun(original, options, store_url, progress)
    store = open_current(store_url, settings.get("artifacts"))
    record = store.get_run(options.target)
    store.close()
    original = Original(record, store.artifact_dir(record["id"]))
    return _rerun(original, options, store_url, progress)


def _import_original(store_url: str | None, original: Original, progress: Progress) -> None:
    """The bundle's run goes into this store too, so the verdict's `runs diff A B` (and
    `runs show A`) work here."""
    from runner.bundles.run_bundle import import_run

    store = open_current(store_url, settings.get("artifacts"))
    try:
        if import_run(store, original):
            progress.step(f"imported the original run {original.record['id'][:8]} into the store")
    finally:
        store.close()


def _is_bundle(target: str) -> bool:
    return target.endswith((".tar.gz", ".tgz")) or os.path.isfile(target)


def _rerun(
    original: Original, options: RerunOptions, store_url: str | None, progress: Progress
) -> int:
    from runner.run import Repeat, RunRequest, run_checkout

    record = original.record
    given, carried = recorded_params(record, options.overrides)
    checkout = materialise(record["source"], original.files / "source", original.tree, progress)
    try:
        moved = tag_moved(record["source"], progress)
        if moved:
            progress.warn(moved)
        given.update(_in_this_copy(record, checkout, carried, options.overrides))
        given.update(_check_inputs(record, checkout, original.inputs, options, progress))
    except BaseException:
        checkout.cleanup()
        raise
    request = RunRequest(
        uri=checkout.uri,
        entry_point=record["entry_point"],
        params=given,
        env_manager=record["env"]["kind"],
        backend=options.backend,
        backend_config=_backend_config(record, options),
        experiment=record["experiment"],
        store=store_url,
        kind_options=KindOptions(channel_alias=options.channel_alias),
    )
    repeat = Repeat(
        of=record["id"],
        carried_params=tuple(n for n in carried if n not in options.overrides),
        lock_file=_recorded_lock(record, original.files),
        env_key=str(record["env"].get("key") or "") or None,
    )
    result = run_checkout(request, checkout, progress, repeat)
    _verdict(store_url, original, result.run_id, moved, options)
    return result.exit_code


def _backend_config(record: dict[str, Any], options: RerunOptions) -> dict[str, Any]:
    """--backend-config if given, else the recorded one when the backend is the same.
    Credentials were never recorded (backends.redacted): they have to be given again."""
    if options.backend_config is not None:
        return dict(options.backend_config)
    recorded = record.get("backend_config")
    if options.backend != record.get("backend") or not isinstance(recorded, dict):
        return {}
    kept = {k: v for k, v in recorded.items() if k != "headers"}
    if "<redacted>@" in str(kept.get("address", "")):
        kept.pop("address")
    return kept


def recorded_params(
    record: dict[str, Any], overrides: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The values to pass as if typed with -P (so they are type-checked again: a record
    edited in a shared store is no more trusted than a command line:
    tests/test_rerun.py::test_an_edited_record_param_is_validated_like_command_line_input), and
    the names taken from the record. Defaults stay defaults: the commit is the same."""
    params = record.get("params")
    if not isinstance(params, dict):
        raise RunnerError("the run's record has no parameter table", "the record is damaged")
    given: dict[str, str] = {}
    for name, entry in params.items():
        if not isinstance(entry, dict) or entry.get("source") == "default":
            continue
        value = entry.get("value")
        if not isinstance(value, str | int | float | bool):
            raise RunnerError(
                f"parameter '{name}' in the run's record has no usable value ({value!r})",
                "override it with -P NAME=VALUE",
            )
        given[str(name)] = format_value(value)
    carried = list(given)
    given.update(overrides)
    return given, carried


def _in_this_copy(
    record: dict[str, Any], checkout: Checkout, carried: list[str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """Path parameters that pointed inside the original's project directory point at the
    same file in the rerun's working copy (not at the original's copy, gone or since edited)."""
    moved: dict[str, str] = {}
    for name in carried:
        relative = (record["params"].get(name) or {}).get("relative_path")
        if name in overrides or not isinstance(relative, str) or ".." in relative.split("/"):
            continue
        moved[name] = str(checkout.path / relative)
    return moved


def _recorded_lock(record: dict[str, Any], files: Path) -> Path | None:
    name = str(record.get("env", {}).get("lock_name") or "")
    # A plain file name only: an edited record must not point the build at another file.
    lock = files / "env" / name if name and Path(name).name == name else None
    return lock if lock is not None and lock.is_file() else None


def _check_inputs(
    record: dict[str, Any],
    checkout: Checkout,
    bundled: Path | None,
    options: RerunOptions,
    progress: Progress,
) -> dict[str, str]:
    """Stop when a recorded input is missing or changed (unless allowed); returns parameter
    values that point at a bundled copy of an input missing here."""
    from runner.rerun.inputs import check_inputs

    problems, replaced = check_inputs(record, checkout.path, bundled)
    for name, path in replaced.items():
        progress.warn(f"input of parameter '{name}' is missing here; using the bundled copy {path}")
    if problems and not options.allow_changed_inputs:
        raise RunnerError(
            "inputs differ from the recorded run:\n  " + "\n  ".join(problems),
            "restore those files, or rerun with --allow-changed-inputs to run anyway",
        )
    for problem in problems:
        progress.warn(f"input differs (allowed): {problem}")
    return replaced


def _verdict(
    store_url: str | None, original: Original, new_id: str, moved: str | None,
    options: RerunOptions,
) -> None:  # fmt: skip
    from runner.rerun.verdict import Tolerance, judge

    record = original.record
    store = open_current(store_url, settings.get("artifacts"))
    new = RunRecord.load(store, new_id)
    tolerance = Tolerance(options.rtol, options.atol)
    verdict = judge(record, new.document(), original.files, new.run_dir, tolerance)
    if moved:
        verdict["tag_moved"] = moved
    new.verdict(verdict)
    store.close()
    print(f"rerun {new.id[:8]} of {record['id'][:8]}: {verdict['summary']}")
    for line in verdict["lines"]:
        print(f"  {line}")
    if verdict["level"] == "different":
        print(f"  see: run-project runs diff {record['id'][:8]} {new.id[:8]}")
