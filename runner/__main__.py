"""`python -m runner` is the same as the `run-project` console script."""

from runner.cli import main

raise SystemExit(main())
