"""An MLflow tracking endpoint for one run (stdlib only, relative imports only).

`wrap.py` starts it beside the command: on this machine for the local kinds, inside the
container for docker (this directory is mounted read-only there), and later beside a Ray or
Slurm job. What the command logs through MLflow's REST API becomes events in
`$RUN_PROJECT_EVENTS` (`state.py`) and files under the run's `logged/` directory
(`server.py`); `runner/tracking/events.py` folds them into the record. docs/tracking.md,
"MLflow projects", says how each call lands.
"""
