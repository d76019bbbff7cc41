"""Prints where it runs and what it can import: the environment, seen from inside."""

import json
import sys

import idna
import six

print(json.dumps({
    "prefix": sys.prefix,
    "executable": sys.executable,
    "python": "%d.%d.%d" % sys.version_info[:3],
    "six": six.__version__,
    "idna": idna.__version__,
    "word": sys.argv[1] if len(sys.argv) > 1 else None,
}))
