"""Project builders: write a project's files into a directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

from support.git_servers import commit

ECHO_ARGS = "import json, sys\nprint(json.dumps(sys.argv[1:]))\n"


def make_project(root: Path, files: dict[str, str]) -> Path:
    """Write a project: {relative path: text (dedented)}."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


# A git project for the rerun and bundle tests.
RERUN_MLPROJECT = """\
name: demo
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.1}
      data: {type: path, default: data.csv}
    command: "python train.py {lr} {data}"
"""
RERUN_TRAIN = """\
import hashlib, sys
from helper import shape
lr, data = float(sys.argv[1]), sys.argv[2]
digest = hashlib.sha256(open(data, 'rb').read()).hexdigest()
open('model.txt', 'w').write(shape(lr, digest))
print('trained', lr)
"""


def make_repo(root: Path) -> Path:
    """A git project whose run depends on an uncommitted edit and an untracked file."""
    commit(root, {"MLproject": RERUN_MLPROJECT, "train.py": "raise SystemExit('committed bug')\n",
                  "data.csv": "a,b\n1,2\n", ".gitignore": "model.txt\n"})  # fmt: skip
    (root / "train.py").write_text(RERUN_TRAIN)  # uncommitted edit
    (root / "helper.py").write_text("def shape(lr, d):\n    return f'{lr} {d}'\n")  # untracked
    return root
