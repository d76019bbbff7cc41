"""`runs compare` (one table across runs, differing rows marked) and `runs diff A B`."""

from __future__ import annotations

from typing import Any

from runner.tracking.record import project_relative

MARK = "*"
CELL_WIDTH = 48  # the widest a cell of `runs compare` is shown, terminal or not


def facts(record: dict[str, Any]) -> dict[str, str]:
    """Flatten what decides a run into `section.name → text` rows."""
    rows: dict[str, str] = {}
    source = record.get("source") or {}
    rows["code.commit"] = str(source.get("commit") or "-")
    rows["code.dirty"] = str(source.get("dirty"))
    rows["code.entry_point"] = str(record.get("entry_point"))
    project = str(source.get("path") or "")
    for name, param in sorted((record.get("params") or {}).items()):
        rows[f"param.{name}"] = str(param.get("value"))
        if param.get("type") == "path":  # each run's working copy is elsewhere
            rows[f"param.{name}"] = _in_project(param, str(param.get("value")), project)
    for name, value in sorted((record.get("logged_params") or {}).items()):
        rows.setdefault(f"param.{name}", value)
    for name, summary in sorted((record.get("metrics") or {}).items()):
        rows[f"metric.{name}"] = _num(summary.get("last"))
    for entry in record.get("inputs") or []:
        rows[f"input.{_in_project(entry, entry['path'], project)}"] = entry["sha256"][:12]
    for name, version in sorted(packages(record).items()):
        rows[f"package.{name}"] = version
    rows["env.kind"] = str((record.get("env") or {}).get("kind"))
    rows["status"] = f"{record.get('status')} ({record.get('exit_code')})"
    return rows


def _in_project(entry: dict[str, Any], path: str, project: str) -> str:
    """The project-relative form of a path (recorded, or derived for records made before it
    was), shown as `<project>/data.csv`; a path outside the project as it is."""
    relative = entry.get("relative_path") or project_relative(path, project)
    return f"<project>/{relative}" if relative else path


def packages(record: dict[str, Any]) -> dict[str, str]:
    """Environment packages as name → version, whatever shape the env section holds them in."""
    raw = (record.get("env") or {}).get("packages") or {}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    found: dict[str, str] = {}
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and "name" in item:
            found[str(item["name"])] = str(item.get("version", ""))
        elif isinstance(item, str):
            name, _, version = item.partition("==")
            found[name] = version
    return found


def compare_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """The cells of `runs compare`: a title row (the run ids), then a row per fact: `*` when
    the runs differ, the fact, a value per run; each cell at most CELL_WIDTH characters."""
    columns = [facts(r) for r in records]
    keys: list[str] = []
    for column in columns:
        keys += [k for k in column if k not in keys]
    table = [["", "", *(r["id"][:8] for r in records)]]
    for key in keys:
        values = [c.get(key, "-") for c in columns]
        table.append([MARK if len(set(values)) > 1 else "", key, *values])
    return [[row[0], cut_keeping_end(row[1], CELL_WIDTH), *(_cut(c, CELL_WIDTH) for c in row[2:])]
            for row in table]  # fmt: skip


def diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    """What changed from run A to run B: code, params, inputs, packages, outputs, metrics."""
    out = [f"run {a['id'][:8]} → run {b['id'][:8]}"]
    sa, sb = a.get("source") or {}, b.get("source") or {}
    if (sa.get("commit"), sa.get("dirty")) == (sb.get("commit"), sb.get("dirty")):
        out.append(f"code: same ({sa.get('commit') or 'no commit'})")
    else:
        out.append(f"code: {_code(sa)} → {_code(sb)}")
        if sb.get("diff"):
            out.append(str(sb["diff"]))
    fa, fb = facts(a), facts(b)
    for section in ("param", "input", "package", "metric"):
        out += _section(section, fa, fb)
    oa = {o["name"]: o["sha256"][:12] for o in a.get("outputs") or []}
    ob = {o["name"]: o["sha256"][:12] for o in b.get("outputs") or []}
    out += _changes("outputs", oa, ob)
    return "\n".join(out)


def _section(section: str, fa: dict[str, str], fb: dict[str, str]) -> list[str]:
    prefix = section + "."
    left = {k[len(prefix) :]: v for k, v in fa.items() if k.startswith(prefix)}
    right = {k[len(prefix) :]: v for k, v in fb.items() if k.startswith(prefix)}
    return _changes(section + "s", left, right)


def _changes(title: str, left: dict[str, str], right: dict[str, str]) -> list[str]:
    lines = []
    for key in sorted(set(left) | set(right)):
        if key not in right:
            lines.append(f"  - {key} {left[key]} (removed)")
        elif key not in left:
            lines.append(f"  + {key} {right[key]} (added)")
        elif left[key] != right[key]:
            lines.append(f"  ~ {key}: {left[key]} → {right[key]}")
    return [f"{title}: " + ("no change" if not lines else f"{len(lines)} changed"), *lines]


def _code(source: dict[str, Any]) -> str:
    commit = (source.get("commit") or "no commit")[:12]
    return commit + (" +uncommitted changes" if source.get("dirty") else "")


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cut_keeping_end(name: str, width: int) -> str:
    """A row name cut to `width` keeping its section and its end: row names are paths more
    often than not, and their end says the most (`input.…/data/train.csv`)."""
    if len(name) <= width:
        return name
    section, _, rest = name.partition(".")
    if width < len(section) + 3:
        return _cut(name, width)
    return f"{section}.…{rest[-(width - len(section) - 2) :]}"
