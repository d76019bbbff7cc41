"""A rerun's verdict at three levels (docs/reruns.md#verdicts):

    identical    every output hash for hash, and the same logged params and metrics
    equivalent   the same logged params and metrics (exactly, or within --rtol/--atol), and
                 the files that differ differ only in MLflow's per-run identifiers
    different    what differs: the metrics and params by name, then the files

MLflow writes every model under a new `m-<uuid>` directory and puts the run's ids and times
in its `MLmodel`; so files are matched with such names set aside, and a text metadata file
that differs is compared again with identifiers and times masked. MLflow's own store files
(`mlflow.db`, `mlruns/`) are never compared: they change on every run by design.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.rerun.inputs import compare_outputs

# A path segment that is one run's: MLflow's model dir `m-<uuid hex>`, a run or model id.
_RUN_SEGMENT = re.compile(r"^(m-)?[0-9a-f]{32}$|^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
_STORE_PARTS = ("mlflow.db", "mlflow.db-journal", "mlflow.db-wal", "mlruns")
# Metadata MLflow writes with ids and times in it; compared with those masked.
_METADATA = re.compile(r"(^|/)(MLmodel|meta\.yaml|[^/]+\.(ya?ml|json))$")
_ID_KEYS = re.compile(
    r"^(\s*-?\s*['\"]?(run_id|model_id|model_uuid|experiment_id|utc_time_created|"
    r"creation_timestamp|last_updated_timestamp|start_time|end_time|timestamp)['\"]?\s*:).*$",
    re.MULTILINE,
)
_IDS = re.compile(r"\b(m-)?[0-9a-f]{32}\b|\b[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\b")
_TIMES = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_MAX_METADATA = 4 << 20


@dataclass(frozen=True)
class Tolerance:
    """numpy.isclose's rule: |new - old| <= atol + rtol * |old|; both 0 means exactly equal."""

    rtol: float = 0.0
    atol: float = 0.0

    def close(self, old: float | None, new: float | None) -> bool:
        if old is None or new is None:  # NaN points are stored as None
            return old is None and new is None
        if math.isinf(old) or math.isinf(new):
            return old == new
        return abs(new - old) <= self.atol + self.rtol * abs(old)

    @property
    def exact(self) -> bool:
        return self.rtol == 0 and self.atol == 0


def judge(
    old: dict[str, Any], new: dict[str, Any], old_files: Path, new_files: Path,
    tolerance: Tolerance,
) -> dict[str, Any]:  # fmt: skip
    """The verdict dict written to the new run's record (rerun_verdict)."""
    verdict = compare_outputs(_without_store(old), _without_store(new))
    values = _logged_values(old, new, tolerance)
    set_aside = _store_files(old) | _store_files(new)
    only_ids, still, explained = _identifier_only(old, new, old_files, new_files)
    verdict.update(
        level="different",
        values=values,
        identifier_only=only_ids,
        set_aside=sorted(set_aside),
        tolerance={"rtol": tolerance.rtol, "atol": tolerance.atol},
    )
    same_status = new.get("status") == old.get("status")
    if verdict["identical"] and not _logged_values(old, new, Tolerance()):
        verdict["level"] = "identical"
    elif not values and not still and same_status:
        verdict["level"] = "equivalent"
        verdict["summary"] = _equivalent_summary(old, new, only_ids, tolerance)
        verdict["lines"] = [f"differs only in per-run identifiers: {n}" for n in only_ids] + [
            line for line in verdict["lines"] if line.startswith("environment:")
        ]
    else:
        verdict["identical"] = False
        verdict["lines"] = values + [line for line in verdict["lines"]
                                     if not _explained(line, explained)]  # fmt: skip
        if values:
            verdict["summary"] = f"{values[0]}" + (
                f" (and {len(values) - 1} more)" if len(values) > 1 else ""
            )
    if set_aside:
        verdict["lines"].append(f"not compared: {len(set_aside)} MLflow store files (mlflow.db, "
                                "mlruns/), which change on every run")  # fmt: skip
    return verdict


def _equivalent_summary(old: dict[str, Any], new: dict[str, Any], only_ids: list[str],
                        tolerance: Tolerance) -> str:  # fmt: skip
    logged = bool(old.get("metrics") or old.get("logged_params"))
    what = "metrics identical" if logged else "outputs equivalent"
    if not tolerance.exact and _logged_values(old, new, Tolerance()):
        what += f" within rtol={tolerance.rtol:g}, atol={tolerance.atol:g}"
    if only_ids:
        return f"{what}; {len(only_ids)} files differ only in per-run identifiers"
    return what


def _logged_values(old: dict[str, Any], new: dict[str, Any], tolerance: Tolerance) -> list[str]:
    """One line per logged param or metric that differs (metric: last, min, max, count)."""
    lines = []
    before, after = old.get("logged_params") or {}, new.get("logged_params") or {}
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            lines.append(f"param {key} differs: {before.get(key)!r} → {after.get(key)!r}")
    old_m, new_m = old.get("metrics") or {}, new.get("metrics") or {}
    for key in sorted(old_m.keys() | new_m.keys()):
        if key not in new_m or key not in old_m:
            lines.append(f"metric {key} " + ("not logged again" if key in old_m else "is new"))
            continue
        line = _metric_line(key, old_m[key], new_m[key], tolerance)
        if line:
            lines.append(line)
    return lines


def _metric_line(key: str, old: dict[str, Any], new: dict[str, Any],
                 tolerance: Tolerance) -> str | None:  # fmt: skip
    last_old, last_new = old.get("last"), new.get("last")
    if not tolerance.close(last_old, last_new):
        diff = (f" (difference {last_new - last_old:+.6g})"
                if last_old is not None and last_new is not None else "")  # fmt: skip
        return f"metric {key} differs: {last_old!r} → {last_new!r}{diff}"
    for field in ("min", "max"):
        if not tolerance.close(old.get(field), new.get(field)):
            return f"metric {key} differs: {field} {old.get(field)!r} → {new.get(field)!r}"
    if old.get("count") != new.get("count"):
        return f"metric {key} differs: {old.get('count')} points → {new.get('count')}"
    return None


def _identifier_only(old: dict[str, Any], new: dict[str, Any], old_files: Path,
                     new_files: Path) -> tuple[list[str], list[str], set[str]]:  # fmt: skip
    """(new names of outputs that differ only in per-run identifiers, names that differ
    otherwise, old and new names so explained), after matching outputs with run-specific
    path segments set aside."""
    before = {_general(o["name"]): o for o in _kept(old)}
    after = {_general(o["name"]): o for o in _kept(new)}
    same_only_ids: list[str] = []
    different: list[str] = []
    explained: set[str] = set()
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            different.append(key)
        elif a["sha256"] == b["sha256"]:
            if a["name"] != b["name"]:
                same_only_ids.append(str(b["name"]))  # same bytes under a new m-<uuid>
                explained |= {str(a["name"]), str(b["name"])}
        elif _same_but_ids(old_files / a["name"], new_files / b["name"], str(b["name"])):
            same_only_ids.append(str(b["name"]))
            explained |= {str(a["name"]), str(b["name"])}
        else:
            different.append(key)
    return same_only_ids, different, explained


def _explained(line: str, names: set[str]) -> bool:
    return any(line.endswith(f" {name}") or f" {name} " in line for name in names)


def _same_but_ids(a: Path, b: Path, name: str) -> bool:
    if not _METADATA.search(name):
        return False
    try:
        if a.stat().st_size > _MAX_METADATA or b.stat().st_size > _MAX_METADATA:
            return False
        return _masked(a.read_text()) == _masked(b.read_text())
    except (OSError, UnicodeDecodeError):
        return False


def _masked(text: str) -> str:
    text = _ID_KEYS.sub(r"\1 <per-run>", text)
    return _TIMES.sub("<time>", _IDS.sub("<id>", text))


def _general(name: str) -> str:
    return "/".join("<id>" if _RUN_SEGMENT.match(part) else part for part in name.split("/"))


def _is_store_file(name: str) -> bool:
    return any(part in _STORE_PARTS for part in name.split("/"))


def _kept(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in record.get("outputs") or [] if not _is_store_file(str(o["name"]))]


def _store_files(record: dict[str, Any]) -> set[str]:
    return {str(o["name"]) for o in record.get("outputs") or [] if _is_store_file(str(o["name"]))}


def _without_store(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "outputs": _kept(record)}
