"""The `run-project` command: dispatch to a verb, or parse a run; errors and exit codes.

    run-project URI [-e ENTRY] [-v REV] [-P NAME=VALUE]... [--env-manager KIND] ...
    run-project runs list|show ...

A first argument that is a verb (`runs`, ...) is the verb; a project directory of that name
is reached as `./runs`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from runner import __version__
from runner.errors import EXIT_RUNNER_FAILED, RunnerError, exit_code

VERBS = ("runs", "envs", "rerun", "pack", "ui")
EXIT_CODES_HELP = """exit codes (every verb; runs, envs, pack and ui run no command):
  0        success; a run: its command exited 0
  N        a run: the command's own exit code
  2        usage: what you typed is wrong (a flag, a -P value, a missing parameter,
           an entry point the project does not have)
  125      run-project failed around the command: source, manifest, environment,
           store, backend, a run or bundle that cannot be found, or a bug
  126/127  the command cannot be executed / was not found
  130/143  interrupted by Ctrl-C (SIGINT) / SIGTERM (128 + the signal's number)"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `run-project` console script."""
    code = _main(list(sys.argv[1:] if argv is None else argv))
    # Everything is recorded and cleaned up: a late Ctrl-C must not turn the exit code into
    # "killed by SIGINT" while the interpreter shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return code


def _main(args: list[str]) -> int:
    try:
        from runner.execute import raise_on_signals

        raise_on_signals()
        if args and args[0] in VERBS:
            return _verb_to_a_reader(args)
        return _run(args)
    except RunnerError as exc:
        _print_error(exc)
        return exit_code(exc)  # 2 for a usage error, else 125 (runner/errors.py EXIT_CODES)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in run-project: short message, traceback in a file
        if getattr(exc, "signum", None):  # execute.Interrupted outside a run
            return 128 + int(exc.signum)  # type: ignore[attr-defined]
        return _report_bug(exc)


def _verb_to_a_reader(args: list[str]) -> int:
    """A verb whose reader stopped reading (`runs list | head -1`) ends quietly with 0, as
    nothing went wrong here: the reader had what it wanted. (git and ls die of SIGPIPE, 141;
    a script with `set -o pipefail` would take that for a failure.)"""
    try:
        code = _verb(args)
        sys.stdout.flush()  # a pipe closed early shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        # Python would flush stdout again at exit and print "Exception ignored ...".
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _print_error(exc: RunnerError) -> None:
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)


def _report_bug(exc: Exception) -> int:
    import tempfile  # lazily, like every import only an error path needs

    fd, path = tempfile.mkstemp(prefix="run-project-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write(f"run-project {__version__} {time.ctime()}\n{' '.join(sys.argv)}\n\n")
        import traceback  # only a crash pays for it

        log.write(traceback.format_exc())
    print(f"error: internal error in run-project: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"hint: this is a bug; the traceback is in {path}; please report it", file=sys.stderr)
    return EXIT_RUNNER_FAILED


# Line breaks by hand: the epilog keeps them (for the exit code table), and a run does not
# pay for textwrap.
_OTHER_COMMANDS_HELP = """\
other commands: run-project runs list|show|compare|diff|lineage|plot|export|import ...
  run-project rerun RUN_ID|BUNDLE ...   run-project pack URI -o FILE ...
  run-project envs list|gc ...   run-project ui [--store S] [--port 5000] ...
settings: RUN_PROJECT_STORE, RUN_PROJECT_CACHE, RUN_PROJECT_GRACE_SECONDS,
  RUN_PROJECT_HEARTBEAT_SECONDS, RUN_PROJECT_ARTIFACTS, RUN_PROJECT_ARTIFACT_LIMIT,
  RUN_PROJECT_STORE_RETRY_SECONDS, or the same keys in run-project.toml"""


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run-project",
        description="Run a machine-learning project reproducibly (MLflow Projects compatible).",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the exit code table
        epilog=_OTHER_COMMANDS_HELP + "\n\n" + EXIT_CODES_HELP,
    )
    parser.add_argument(
        "uri",
        help="project: a directory, a git URL (https://, ssh://, git://, file://, "
        "git@host:path) or a .zip/.tar.gz/.tgz; URI#sub/dir selects a subdirectory",
    )
    parser.add_argument("-e", "--entry-point", default="main", help="entry point name or script")
    parser.add_argument("-v", "--version", dest="rev", help="git branch, tag or commit")
    parser.add_argument(
        "-P",
        "--param-list",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter (repeatable)",
    )
    parser.add_argument("--env-manager", help="local, virtualenv, uv, conda or docker")
    parser.add_argument("-b", "--backend", default="local", help="where to run: local, ray, slurm")
    parser.add_argument(
        "--backend-config",
        metavar="JSON|FILE",
        help="backend options as a JSON object or a file holding one "
        "(ray: address, num_cpus, ...; slurm: partition, time, cpus, gpus, mem)",
    )
    parser.add_argument("--experiment", "--experiment-name", default="Default",
                        help="experiment the run is recorded under (default: Default)")  # fmt: skip
    parser.add_argument("--run-name", help="a name for the run (shown by runs list)")
    parser.add_argument(
        "--store", help="run store: a directory (default ./runs) or a postgresql:// URL"
    )
    parser.add_argument(
        "--channel-alias", metavar="URL", help="conda channel alias / mirror (conda envs)"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress lines (warnings about the run still show)",
    )
    parser.add_argument(
        "-A",
        "--docker-args",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="docker run option for a docker environment: -A gpus=all → --gpus=all (repeatable)",
    )
    parser.add_argument(
        "--allow-docker-volumes",
        action="store_true",
        help="let the manifest's docker_env.volumes mount host paths into the container",
    )
    parser.add_argument(
        "--allow-host-env",
        action="store_true",
        help="let the manifest's docker_env.environment copy variables from this machine",
    )
    parser.add_argument(
        "--recurse-submodules",
        action="store_true",
        help="also fetch the git submodules of the project (off by default)",
    )
    parser.add_argument(
        "--keep-checkout",
        action="store_true",
        help="keep the per-run working copy of a git URL or archive (its path is printed)",
    )
    parser.add_argument("--runner-version", action="version", version=f"run-project {__version__}")
    return parser


def _run(args: list[str]) -> int:
    ns = _run_parser().parse_args(args)
    from runner.backends import load_config
    from runner.cli.args import parse_params
    from runner.envs.base import KindOptions
    from runner.progress import Progress
    from runner.run import RunRequest, run_project

    request = RunRequest(
        uri=ns.uri,
        entry_point=ns.entry_point,
        version=ns.rev,
        params=parse_params(ns.params),
        env_manager=ns.env_manager,
        backend=ns.backend,
        experiment=ns.experiment,
        run_name=ns.run_name,
        store=ns.store,
        cwd=Path.cwd(),
        backend_config=load_config(ns.backend_config),
        kind_options=KindOptions(
            docker_args=tuple(ns.docker_args),
            allow_docker_volumes=ns.allow_docker_volumes,
            allow_host_env=ns.allow_host_env,
            channel_alias=ns.channel_alias or None,  # the flag outranks variable and toml
        ),
        recurse_submodules=ns.recurse_submodules,
        keep_checkout=ns.keep_checkout,
    )
    return run_project(request, Progress(quiet=ns.quiet))


def _verb(args: list[str]) -> int:
    if args[0] == "rerun":
        from runner.cli import rerun

        return rerun.main(args[1:])
    if args[0] == "pack":
        from runner.cli import pack

        return pack.main(args[1:])
    if args[0] == "ui":
        from runner.cli import ui

        return ui.main(args[1:])
    if args[0] == "envs":
        from runner.cli import envs

        return envs.main(args[1:])
    from runner.cli import runs

    return runs.main(args[1:])
