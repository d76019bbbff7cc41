"""The errors users see: a message naming the input at fault and a hint saying what to do.

The CLI prints `error: <message>` and `hint: <hint>` without a traceback and exits 2.
Anything that is not a RunnerError is a bug in run-project (exit 3, traceback in a log).
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


class ManifestError(RunnerError):
    """The MLproject file (or a file it names) is malformed or refused."""


class ParamError(RunnerError):
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
