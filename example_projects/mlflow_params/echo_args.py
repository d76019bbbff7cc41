"""Prints its argv as JSON: tests use it to see exactly what reached the program."""

import json
import sys

print(json.dumps(sys.argv[1:]))
