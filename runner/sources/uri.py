"""Project locations as the user types them → a checked, classified `Location`.

Everything hostile is refused here, before git or any download runs: transport syntax
(`ext::`, `fd::`), option-looking URLs, hosts and revisions (`--upload-pack=...`,
`ssh://-oProxyCommand=...`), control characters, and schemes other than the allowed ones.
Credentials in a URL are kept for git's use only; everything shown or stored is `redact`ed.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from runner.errors import SourceError, UsageError

GIT_SCHEMES = ("https", "http", "ssh", "git", "file", "git+ssh", "ssh+git")
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
# git's own rule: `[user@]host:path` with no slash before the first colon is scp-like ssh.
SCP_RE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.+)$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
SAFE_SCHEMES_HINT = "use https://, http://, ssh://, git://, file://, git@host:path or a directory"


class Location(NamedTuple):
    """Where a project lives: `kind` is local, git or archive; `url` is what git or the
    downloader uses (credentials included), `shown` the redacted form for records and output."""

    kind: str
    url: str
    shown: str
    subdirectory: str = ""


def parse(uri: str) -> Location:
    """Classify and check a project location (`URI#sub/dir` selects a subdirectory)."""
    base, _, sub = uri.partition("#")
    _refuse_hostile(uri, base)
    base = _drop_redacted(base)
    subdirectory = check_subdirectory(sub, uri) if sub else ""
    shown = redact(base)
    lowered = base.lower().split("?", 1)[0]
    if lowered.endswith(ARCHIVE_SUFFIXES):
        if "://" in base:
            _check_scheme(base, ("https", "http", "file"))
        return Location("archive", base, shown, subdirectory)
    if "://" in base:
        _check_url(base)
        return Location("git", base, shown, subdirectory)
    if os.path.exists(os.path.expanduser(base)):
        return Location("local", os.path.expanduser(base), base, subdirectory)
    match = SCP_RE.match(base)
    if match and not base.startswith(("/", ".", "~")):
        _check_host(match.group("host"), uri)
        return Location("git", base, shown, subdirectory)
    return Location("local", os.path.expanduser(base), base, subdirectory)


def _refuse_hostile(uri: str, base: str) -> None:
    if CONTROL_RE.search(uri):
        raise SourceError(
            f"project location {redact(uri)!r} contains a control character",
            "remove newlines, tabs and other control characters from the location",
        )
    if base.startswith("-"):
        raise SourceError(
            f"project location {redact(uri)!r} looks like a command-line option",
            "a location cannot start with '-'; for a directory of that name write ./" + base,
        )
    scheme = base.split("://", 1)[0] if "://" in base else ""
    if "::" in base.split("/", 1)[0] or "::" in scheme:
        raise SourceError(
            f"project location {redact(uri)!r} uses git's transport syntax (such as ext:: or "
            "fd::), which can run commands",
            SAFE_SCHEMES_HINT,
        )


def _check_scheme(url: str, allowed: tuple[str, ...]) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme not in allowed:
        raise SourceError(
            f"project location {redact(url)!r}: scheme {scheme!r} is not allowed",
            SAFE_SCHEMES_HINT,
        )
    return scheme


def _check_url(url: str) -> None:
    scheme = _check_scheme(url, GIT_SCHEMES)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise SourceError(f"project location {redact(url)!r} is not a valid URL: {exc}",
                          SAFE_SCHEMES_HINT) from exc  # fmt: skip
    # Decoded first: `ssh://%2DoProxyCommand=...` reaches ssh as `-oProxyCommand=...`.
    netloc, path = unquote(parts.netloc), unquote(parts.path)
    if scheme != "file":
        _check_host(netloc.rsplit("@", 1)[-1], url)
        if "@" in netloc and netloc.startswith("-"):
            _check_host(netloc, url)
        if CONTROL_RE.search(netloc):
            _check_host(" ", url)
    if path.startswith("-") or path.lstrip("/").startswith("-"):
        raise SourceError(
            f"project location {redact(url)!r} has a path that looks like an option",
            "check the URL",
        )


def _check_host(host: str, uri: str) -> None:
    """A host (or user) starting with '-' would reach ssh as an option (CVE-2017-1000117)."""
    if not host or host.startswith("-") or re.search(r"\s", host):
        raise SourceError(
            f"project location {redact(uri)!r} has an invalid host {redact(host)!r}",
            "a host cannot be empty, start with '-' or contain spaces; check the URL",
        )


def check_subdirectory(sub: str, uri: str) -> str:
    """`#sub/dir` must be a relative path inside the project."""
    parts = [p for p in sub.replace("\\", "/").split("/") if p not in ("", ".")]
    if sub.startswith("/") or ".." in parts or "#" in sub or not parts:
        raise SourceError(
            f"subdirectory {sub!r} in {redact(uri)!r} must be a relative path inside the project",
            "write URI#path/inside/the/repository, without '..' or a leading '/'",
        )
    return "/".join(parts)


def check_revision(rev: str) -> str:
    """Refuse revisions that git could read as an option or that carry control characters."""
    if not rev or rev.startswith("-") or CONTROL_RE.search(rev) or re.search(r"\s", rev):
        raise UsageError(
            f"-v/--version {rev!r} is not a valid branch, tag or commit",
            "pass a branch, tag or (full or short) commit SHA, such as -v main or -v 3f2c1ab",
        )
    return rev


def redact(text: str) -> str:
    """`text` with the secret part of any URL's credentials replaced by `***`."""
    return USERINFO_RE.sub(_redact_userinfo, text)


def _drop_redacted(url: str) -> str:
    """A URL copied from a record (`https://user:***@host/...`) loses the placeholder, so git
    asks the user's credential helper instead of sending `***` as a password."""

    def drop(match: re.Match[str]) -> str:
        user, _, secret = match.group("userinfo").partition(":")
        if "***" in (user, secret):
            return match.group("scheme") + ("" if user == "***" else f"{user}@")
        return match.group(0)

    return USERINFO_RE.sub(drop, url)


def _redact_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group("scheme"), match.group("userinfo")
    user, sep, _ = userinfo.partition(":")
    if sep:
        return f"{scheme}{user}:***@"
    # A bare user on http(s) is how tokens are often passed (https://TOKEN@host/...).
    return f"{scheme}***@" if scheme.lower().startswith("http") else match.group(0)


def normalise(url: str) -> str:
    """One spelling per repository, without credentials: the mirror cache's key."""
    if "://" not in url:
        match = SCP_RE.match(url)
        if match and not os.path.exists(url):
            user = f"{match.group('user')}@" if match.group("user") else ""
            url = f"ssh://{user}{match.group('host')}/{match.group('path').lstrip('/')}"
        else:
            return "file://" + str(Path(url).expanduser().resolve())
    parts = urlsplit(url)
    scheme = {"git+ssh": "ssh", "ssh+git": "ssh"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme == "file":
        return "file://" + str(Path(parts.path).resolve())
    host = parts.netloc.rsplit("@", 1)[-1].lower()
    user = parts.username if scheme == "ssh" and parts.username else ""
    netloc = f"{user}@{host}" if user else host
    path = parts.path.rstrip("/").removesuffix(".git")
    return urlunsplit((scheme, netloc, path, "", ""))


def mirror_name(url: str) -> str:
    """A readable, collision-free directory name for the mirror of `url`."""
    norm = normalise(url)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", norm.rsplit("/", 1)[-1])[:40].strip("-.") or "repo"
    return f"{slug}-{hashlib.sha256(norm.encode()).hexdigest()[:16]}"
