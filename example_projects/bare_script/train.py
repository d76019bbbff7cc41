"""A project with no MLproject: `run-project example_projects/bare_script -e train.py`."""

import sys

print("bare script args:", " ".join(sys.argv[1:]))
