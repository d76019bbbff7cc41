"""Bundles as the tests read them: a manifest inside a tarball, and an unreachable network."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

# The package index and every proxy pointed at the discard port: nothing can be downloaded.
OFFLINE = {
    "UV_OFFLINE": "1",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "UV_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
}


def manifest_of(bundle: Path, inner: str) -> dict[str, Any]:
    with tarfile.open(bundle) as tar:
        name = next(n for n in tar.getnames() if n.endswith(inner))
        handle = tar.extractfile(name)
        assert handle is not None
        data: dict[str, Any] = json.load(handle)
    return data
