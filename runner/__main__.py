"""`python -m runner` is the same as the `run-project` console script."""

from runner.cli.main import main

raise SystemExit(main())
