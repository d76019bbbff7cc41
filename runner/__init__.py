"""run-project: a reproducible project runner for machine-learning teams."""

__version__ = "0.1.0"
