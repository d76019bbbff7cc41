"""`python tests/services/clusters.py start|stop DIR`: the suite's shared Ray head, for .ci/run.

The head itself is started and stopped by tests/support/clusters.py (the tests use it too).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the support package

from support.clusters import ray_binary, start_ray, stop_ray


def main(argv: list[str]) -> int:
    """Start the head (prints the export line for its address) or stop it by its PID."""
    action, state = argv[0], Path(argv[1])
    if action == "start":
        state.mkdir(parents=True, exist_ok=True)
        ray = ray_binary()
        if ray is None:
            print("ray is not installed", file=sys.stderr)
            return 1
        _, address = start_ray(ray, state)
        print(f"export RUN_PROJECT_TEST_RAY_ADDRESS={address}")
        return 0
    pid_file = state / "head.pid"
    if pid_file.exists():
        stop_ray(int(pid_file.read_text()), state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
