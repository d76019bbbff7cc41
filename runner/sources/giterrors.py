"""git's fetch failures → errors that say what happened and what to do (host unreachable,
credentials needed, no such repository), with any credentials redacted."""

from __future__ import annotations

import re

from runner.errors import SourceError
from runner.sources.uri import redact

UNREACHABLE = re.compile(
    r"could not resolve host|connection refused|failed to connect|unable to connect|"
    r"connection timed out|network is unreachable|no route to host|could not resolve hostname|"
    r"unable to look up|connection reset|couldn't connect",
    re.IGNORECASE,
)
AUTH = re.compile(
    r"authentication failed|terminal prompts disabled|could not read username|"
    r"could not read password|permission denied \(publickey|returned error: 40[13]",
    re.IGNORECASE,
)
HOST_KEY = re.compile(r"host key verification failed", re.IGNORECASE)
HOST_KEY_HINT = (
    "the server's ssh host key is not the one in your known_hosts: if the server was "
    "reinstalled, check its new fingerprint with its administrator and update known_hosts "
    "(ssh-keygen -R HOST, then connect once with ssh); otherwise someone may be intercepting "
    "the connection, so do not work around it"
)
NOT_FOUND = re.compile(
    r"repository .* not found|not found|does not appear to be a git repository|"
    r"no such file or directory|not a git repository|returned error: 404",
    re.IGNORECASE,
)
EMPTY = re.compile(r"couldn't find remote ref HEAD", re.IGNORECASE)
CREDENTIALS_HINT = (
    "provide credentials the way git does: for ssh:// and git@host:path load your key into "
    "the ssh agent (ssh-add); for https:// configure a credential helper "
    "(git config --global credential.helper store, or your platform's helper), or put a token "
    "in the URL (https://USER:TOKEN@host/...; run-project redacts it everywhere)"
)
OFFLINE_HINT = (
    "check the URL and your network; a commit fetched before runs offline with -v FULL_SHA, "
    "and a branch or tag the mirror has runs as the mirror last saw it"
)


class Unreachable(SourceError):
    """The server could not be reached at all (the mirror may still know the revision)."""


class FetchError(Exception):
    """A failed fetch: `network` is True when the mirror is not to blame."""

    def __init__(self, error: SourceError, network: bool) -> None:
        super().__init__(error, network)
        self.error = error
        self.network = network


def classify(stderr: str, shown: str) -> FetchError:
    """The SourceError for git's stderr, and whether it is a network/remote-side failure."""
    detail = redact(_last_lines(stderr))
    if HOST_KEY.search(stderr):
        return FetchError(SourceError(f"cannot trust {shown}: {detail}", HOST_KEY_HINT), True)
    if AUTH.search(stderr):
        return FetchError(SourceError(f"{shown} needs credentials: {detail}", CREDENTIALS_HINT),
                          True)  # fmt: skip
    if UNREACHABLE.search(stderr):
        return FetchError(Unreachable(f"cannot reach {shown}: {detail}", OFFLINE_HINT), True)
    if EMPTY.search(stderr):
        return FetchError(
            SourceError(f"{shown} has no commits (or no default branch)", "push a commit first"),
            True,
        )
    if NOT_FOUND.search(stderr):
        return FetchError(
            SourceError(f"no git repository at {shown}: {detail}", "check the URL's path"), True
        )
    return FetchError(SourceError(f"cannot fetch {shown}: {detail}", OFFLINE_HINT), False)


# git's closing advice after a failed connection; the reason (ssh's message) comes before it.
_BOILERPLATE = ("please make sure you have the correct access rights", "and the repository exists")


def _last_lines(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.lower().startswith(_BOILERPLATE)]
    return " / ".join(lines[-3:]) or "git gave no reason"
