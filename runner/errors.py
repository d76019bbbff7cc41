"""The errors users see: a message naming the input at fault and a hint saying what to do,
and the one table of the exit codes they end in (`EXIT_CODES`, README "Exit codes").

The CLI prints `error: <message>` and `hint: <hint>` without a traceback. A `UsageError`
(what was typed on the command line is wrong) exits 2; every other RunnerError (run-project
could not do its part around the command) exits 125, as `docker run` does. Anything that is
not a RunnerError is a bug in run-project: also 125, with the traceback in a log.
"""

from __future__ import annotations


class RunnerError(Exception):
    """An error caused by the user's input or machine, with a hint on how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class UsageError(RunnerError):
    """The command line is wrong in itself or for the project it names: a flag, a -P value,
    an entry point or a choice that does not exist. Fixed by changing what was typed."""


class ManifestError(RunnerError):
    """The MLproject file (or a file it names) is malformed or refused."""


class ParamError(UsageError):
    """A parameter name or value is missing, malformed or refused."""


class SourceError(RunnerError):
    """The project location cannot be resolved, fetched or checked out."""


class EnvError(RunnerError):
    """The environment cannot be built, found or used."""


class StoreError(RunnerError):
    """The run store cannot be opened, read or written."""


class BackendError(RunnerError):
    """The backend cannot run, watch or stop the run."""


class PushError(RunnerError):
    """An MLflow tracking server cannot be reached or refuses what `runs push` sends."""


class NotFoundError(RunnerError):
    """A page or file the web UI was asked for does not exist (the server answers 404)."""


# The exit codes of `run-project`, all verbs (README "Exit codes", `run-project --help`).
# A run otherwise exits with its command's own code: 126/127 when the command cannot be
# executed / is not found (execute.py, backends/job_wrapper.py), 128+N when signal N ended it
# or run-project (130 for Ctrl-C, 143 for SIGTERM).
EXIT_USAGE = 2
EXIT_RUNNER_FAILED = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

# Error class → exit code, most specific first; the first class the error is an instance of wins.
EXIT_CODES: tuple[tuple[type[RunnerError], int], ...] = (
    (UsageError, EXIT_USAGE),
    (RunnerError, EXIT_RUNNER_FAILED),
)


def exit_code(exc: BaseException) -> int:
    """The code `run-project` exits with when `exc` stops it: 2, or 125 for the rest (bugs too)."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_RUNNER_FAILED
