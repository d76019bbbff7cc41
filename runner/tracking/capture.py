"""Automatic capture of a run's inputs and outputs, hashed and kept as artifacts.

Before the child starts: the working directory's state is snapshotted (lstat only) and the
inputs named up front are hashed: parameters of type `path` and the entry point's declared
`inputs:`. After it ends: files created or changed in the working directory, everything in
`RUN_PROJECT_OUTPUT_DIR`, declared `outputs:`, files Python code opened for writing and files
logged with `log_artifact` are outputs; files Python code opened for reading are inputs.
Symlinks are never followed and special files are never read: they are named in a warning.
An output with another hard link outside the run's own directories (the working directory,
the output dir) is hashed but not copied, also with a warning: its content is not the run's.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from runner import settings
from runner.errors import RunnerError
from runner.tracking.artifacts import ArtifactError, ObjectStore, check_name, parse_size
from runner.tracking.foreign import ForeignView
from runner.tracking.hashing import HashCache, walk
from runner.tracking.record import project_relative

# Never inputs or outputs: version control, caches and environments inside the working dir.
EXCLUDED_NAMES = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache",
     ".ruff_cache", ".ipynb_checkpoints", "node_modules", ".tox", ".nox"}
)  # fmt: skip
SYSTEM_PREFIXES = ("/proc/", "/sys/", "/dev/", "/run/")
Stamp = tuple[int, int, int, int, int]


class CapturePlan(NamedTuple):
    """Where to look and what the manifest and parameters name."""

    workdir: Path
    output_dir: Path
    run_dir: Path
    artifacts_root: Path
    declared_inputs: tuple[str, ...] = ()
    declared_outputs: tuple[str, ...] = ()
    path_params: Mapping[str, str] = MappingProxyType({})
    excluded: tuple[Path, ...] = ()
    limit: int = 0


class Captured:
    """What capture found: record entries and warnings for the user."""

    def __init__(self) -> None:
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.stored_bytes = 0
        self.noise_files = 0  # opened under the user's config/cache dirs: counted, not kept
        # Outputs hashed but not copied because the artifacts' disk refused (full, read-only):
        # {"from", "name", "sha256", "size"}, kept beside the run's journal until a replay
        # stores them (RunRecord.captured); `refused` says why, once.
        self.pending: list[dict[str, Any]] = []
        self.refused: str | None = None


class Capture:
    """One run's capture: `before()` ahead of the child, `after()` once it has ended."""

    def __init__(self, plan: CapturePlan) -> None:
        self.plan = plan
        self.hashes = HashCache()
        self.objects = ObjectStore(plan.artifacts_root)
        self.result = Captured()
        self.snapshot: dict[str, Stamp] = {}
        self.links_inside: collections.Counter[tuple[int, int]] = collections.Counter()
        self.view: ForeignView | None = None  # set when the command saw other paths
        roots = [
            os.path.realpath(p) + os.sep
            for p in (plan.run_dir, plan.artifacts_root, *plan.excluded)
        ]
        # A working dir inside a skipped root (a git checkout kept in the cache) is still
        # captured: only roots that are not its ancestors are skipped.
        work = os.path.realpath(plan.workdir) + os.sep
        self.skip_roots = tuple(r for r in roots if not work.startswith(r))

    def before(self) -> list[dict[str, Any]]:
        """Snapshot the working directory and hash the inputs named up front."""
        self.snapshot = {str(p): _stamp(st) for p, st in self._walk(self.plan.workdir)}
        for name, value in self.plan.path_params.items():
            path = Path(value)
            if os.path.lexists(path):
                self._add_input(path, "param", param=name)
        for path in self._globbed(self.plan.declared_inputs, "declared input"):
            self._add_input(path, "declared")
        self.hashes.flush()
        return self.result.inputs

    def after(
        self,
        opened: dict[str, set[str]],
        logged: list[tuple[str, str]],
        stored: Sequence[tuple[str, str]] = (),
    ) -> Captured:
        """Find, hash and store the outputs; hash the files read; returns everything found.
        `stored` are the files the run's MLflow endpoint wrote under logged/: paths on this
        machine already, whatever the command's view."""
        if self.view is not None:
            opened, logged = self._localised(self.view, opened, logged)
        logged = [*logged, *stored]
        candidates: dict[str, tuple[Path, str, str]] = {}  # abs path → (path, name, source)
        self._workdir_changes(candidates)
        self._returned_workdir(candidates)
        self._output_dir(candidates)
        for path in self._globbed(self.plan.declared_outputs, "declared output"):
            self._offer(candidates, path, "declared")
        opened = self._without_noise(opened)
        for raw, modes in sorted(opened.items()):
            if "w" in modes:
                self._offer(candidates, Path(raw), "opened")
        named: dict[str, tuple[Path, str, str]] = {}  # by name: also kept when found above
        for raw, name in logged:
            self._offer_logged(named, Path(raw), name)
        every = [*candidates.values(), *named.values()]
        self._check_limit(every)
        for path, name, source in every:
            self._store(path, name, source)
        seen = {i["path"] for i in self.result.inputs} | set(candidates)
        for raw, modes in sorted(opened.items()):
            if "r" in modes and raw not in seen and self._readable_input(Path(raw)):
                self._add_input(Path(raw), "opened")
        self.hashes.flush()
        return self.result

    def _localised(
        self, view: ForeignView, opened: dict[str, set[str]], logged: list[tuple[str, str]]
    ) -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
        """Event paths from a container or a cluster node, mapped to this machine's copies;
        a path outside the run's shared directories is refused with a warning."""
        mapped: dict[str, set[str]] = {}
        for raw, modes in opened.items():
            local = view.local(raw)
            if local is None:
                self._refuse_foreign(raw, "opened")
            else:
                mapped.setdefault(str(local), set()).update(modes)
        kept = []
        for raw, name in logged:
            local = view.local(raw)
            if local is None:
                self._refuse_foreign(raw, "logged")
            else:
                kept.append((str(local), name))
        return mapped, kept

    def _refuse_foreign(self, raw: str, what: str) -> None:
        self._warn(f"event path {raw} ({what}) is outside the directories the run shares with "
                   "its container or cluster job; refused, nothing read")  # fmt: skip

    def _without_noise(self, opened: dict[str, set[str]]) -> dict[str, set[str]]:
        """Files under the user's config and cache directories (MLflow's telemetry file,
        matplotlib's font list) are tools' state, not the run's data: counted, not kept
        (tests/test_mlflow_endpoint.py::test_config_and_cache_files_are_noise_not_inputs)."""
        roots = noise_roots()
        kept = {p: m for p, m in opened.items() if not p.startswith(roots)}
        self.result.noise_files += len(opened) - len(kept)
        return kept

    # -- inputs ---------------------------------------------------------------------------
    def _add_input(self, path: Path, source: str, param: str | None = None) -> None:
        if any(i["path"] == str(path) for i in self.result.inputs):
            return  # named twice (a path parameter that is also a declared input)
        entry: dict[str, Any] = {"path": str(path), "source": source}
        inside = project_relative(os.path.abspath(path), str(self.plan.workdir))
        if inside:
            entry["relative_path"] = inside
        if param:
            entry["param"] = param
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                digest, size, count = self.hashes.tree(path)
                entry.update(kind="dir", sha256=digest, size=size, files=count)
            elif stat.S_ISREG(st.st_mode):
                entry.update(kind="file", sha256=self.hashes.file(path, st), size=st.st_size)
            else:
                self._warn(f"input {path} is not a regular file or directory; not hashed")
                return
        except OSError as exc:
            self._warn(f"input {path} could not be hashed: {exc.strerror or exc}")
            return
        self.result.inputs.append(entry)

    def _readable_input(self, path: Path) -> bool:
        text = str(path)
        if text.startswith(SYSTEM_PREFIXES) or self._skipped(path):
            return False
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            return False  # a temporary file already gone

    # -- outputs --------------------------------------------------------------------------
    def _workdir_changes(self, candidates: dict[str, tuple[Path, str, str]]) -> None:
        root = self.plan.workdir
        for path, st in self._walk(root):
            self._count_link(st)
            if self.snapshot.get(str(path)) != _stamp(st):
                rel = path.relative_to(root).as_posix()
                self._offer(candidates, path, "workdir", f"workdir/{rel}", st)

    def _returned_workdir(self, candidates: dict[str, tuple[Path, str, str]]) -> None:
        # A remote backend (Ray) brings the files its command wrote in the cluster's copy of
        # the working dir back into run_dir/workdir/ (backends/results.py): outputs too.
        root = self.plan.run_dir / "workdir"
        for path, st in walk(root) if root.is_dir() else []:
            self._count_link(st)
            rel = path.relative_to(root).as_posix()
            self._offer(candidates, path, "workdir", f"workdir/{rel}", st, inside_run=True)

    def _output_dir(self, candidates: dict[str, tuple[Path, str, str]]) -> None:
        root = self.plan.output_dir
        for path, st in walk(root) if root.is_dir() else []:
            self._count_link(st)
            rel = path.relative_to(root).as_posix()
            self._offer(candidates, path, "output_dir", f"outputs/{rel}", st, inside_run=True)

    def _offer_logged(
        self, candidates: dict[str, tuple[Path, str, str]], path: Path, name: str
    ) -> None:
        try:
            clean = check_name(name)
        except ArtifactError as exc:
            self._warn(f"{exc.message} (logged from {path}); {exc.hint}")
            return
        self._offer(candidates, path, "logged", f"logged/{clean}", inside_run=True)
        if str(Path(os.path.abspath(path))) in candidates:  # re-key by name
            candidates[f"logged/{clean}"] = candidates.pop(str(Path(os.path.abspath(path))))

    def _offer(
        self,
        candidates: dict[str, tuple[Path, str, str]],
        path: Path,
        source: str,
        name: str | None = None,
        st: os.stat_result | None = None,
        inside_run: bool = False,
    ) -> None:
        path = Path(os.path.abspath(path))
        if str(path) in candidates or (not inside_run and self._skipped(path)):
            return
        try:
            st = st or os.lstat(path)
        except OSError:
            return  # written, then removed by the run: nothing to keep
        if not stat.S_ISREG(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            self._warn(f"output {path} is {kind}; not copied (symlinks are never followed)")
            if inside_run and source == "output_dir":
                # The output dir is inside the store: a link to ~/.ssh must not stay there.
                with contextlib.suppress(OSError):
                    path.unlink()
            return
        if name is None:
            name = self._name_for(path)
        candidates[str(path)] = (path, name, source)

    def _name_for(self, path: Path) -> str:
        try:
            return "workdir/" + path.relative_to(self.plan.workdir).as_posix()
        except ValueError:
            return "external" + path.as_posix()

    def _check_limit(self, candidates: list[tuple[Path, str, str]]) -> None:
        sizes = {str(path): _size(path) for path, _, _ in candidates}
        total = sum(sizes.values())
        if self.plan.limit and total > self.plan.limit:
            biggest = sorted(sizes, key=lambda k: sizes[k], reverse=True)[:3]
            raise ArtifactError(
                f"the run's outputs total {total} bytes, over the per-run artifact limit of "
                f"{self.plan.limit} bytes (largest: {', '.join(biggest)}); nothing was stored",
                "raise RUN_PROJECT_ARTIFACT_LIMIT (e.g. 20GB), or write less into the "
                "working directory and RUN_PROJECT_OUTPUT_DIR",
            )

    def _count_link(self, st: os.stat_result) -> None:
        if st.st_nlink > 1:
            self.links_inside[(st.st_dev, st.st_ino)] += 1

    def _linked_elsewhere(self, st: os.stat_result) -> bool:
        """More hard links than the run's directories hold: the file lives elsewhere too
        (a link to /etc/shadow is not the run's to copy into the store)."""
        return st.st_nlink > 1 and st.st_nlink > self.links_inside[(st.st_dev, st.st_ino)]

    def _store(self, path: Path, name: str, source: str) -> None:
        st = os.lstat(path)
        expected = self.hashes.file(path, st)
        if self._linked_elsewhere(st):
            self._warn(f"output {path} is a hard link to a file outside the run's directories; "
                       "hashed, not copied")  # fmt: skip
            if source == "output_dir":  # the output dir is inside the store: no link stays
                with contextlib.suppress(OSError):
                    path.unlink()
            entry = {"path": str(path), "name": name, "sha256": expected, "size": st.st_size}
            self.result.outputs.append({**entry, "source": source, "stored": False})
            return
        entry = {"path": str(path), "name": name, "sha256": expected, "size": st.st_size}
        try:
            digest = self.objects.put(path, expected)
            self.objects.link(digest, self.plan.run_dir / name)
        except (ArtifactError, OSError) as exc:  # a fault of the artifacts' disk, not the run's
            self._not_copied(path, entry, source, exc)
            return
        self.result.stored_bytes += st.st_size
        self.result.outputs.append({**entry, "sha256": digest, "source": source})

    def _not_copied(
        self, path: Path, entry: dict[str, Any], source: str, exc: ArtifactError | OSError
    ) -> None:
        """The output keeps its hash in the record and waits to be copied by a replay
        (docs/tracking.md#durability-the-runs-journal): the run's outcome stays the command's."""
        if self.result.refused is None:
            reason = exc.message if isinstance(exc, ArtifactError) else str(exc)
            self.result.refused = reason.splitlines()[0] if reason else "refused"
        self.result.pending.append(
            {"from": str(path), **{k: entry[k] for k in ("name", "sha256", "size")}}
        )
        self.result.outputs.append({**entry, "source": source, "stored": False, "pending": True})

    # -- helpers --------------------------------------------------------------------------
    def _walk(self, root: Path) -> list[tuple[Path, os.stat_result]]:
        skip = frozenset(r.rstrip(os.sep) for r in self.skip_roots)
        return walk(root, EXCLUDED_NAMES, skip)

    def _skipped(self, path: Path) -> bool:
        real = os.path.realpath(path.parent) + os.sep
        if any(real.startswith(root) for root in self.skip_roots):
            return True
        return any(part in EXCLUDED_NAMES for part in path.parts)

    def _globbed(self, patterns: tuple[str, ...], what: str) -> list[Path]:
        found: list[Path] = []
        root = self.plan.workdir
        for pattern in patterns:
            matches = sorted(glob.glob(pattern, root_dir=root, recursive=True))
            if not matches:
                self._warn(f"{what} {pattern!r} matched nothing in {root}")
            for match in matches:
                path = Path(os.path.abspath(root / match))
                if os.path.commonpath([os.path.realpath(path), os.path.realpath(root)]) != str(
                    os.path.realpath(root)
                ):
                    self._warn(f"{what} {pattern!r} leaves the project; ignored")
                    continue
                found.append(path)
        return found

    def _warn(self, message: str) -> None:
        if message not in self.result.warnings:
            self.result.warnings.append(message)
            print(f"warning: {message}", file=sys.stderr, flush=True)


def noise_roots() -> tuple[str, ...]:
    """The user's config and cache directories (XDG, else ~/.config and ~/.cache)."""
    home = os.path.expanduser("~")
    roots = {
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"),
        os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"),
        os.path.join(home, ".config"),
        os.path.join(home, ".cache"),
    }
    return tuple({os.path.join(p, "") for r in roots for p in (r, os.path.realpath(r))})


def limit_setting(project_dir: Path | None = None) -> int:
    """The per-run artifact limit in bytes (RUN_PROJECT_ARTIFACT_LIMIT; 0 means none)."""
    raw = settings.get("artifact_limit", None, project_dir) or "0"
    try:
        return parse_size(raw)
    except ValueError as exc:
        raise RunnerError(
            f"setting artifact_limit = {raw!r} is not a size",
            "set RUN_PROJECT_ARTIFACT_LIMIT to a size such as 500MB or 2GiB (0: no limit)",
        ) from exc


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _size(path: Path) -> int:
    """The disk an output takes once stored: its real blocks (a sparse file keeps its holes)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    return min(st.st_size, st.st_blocks * 512)
