"""`runs push`: run records copied into an MLflow tracking server (to_mlflow.py), over its
REST API with the standard library (rest.py), as MLflow entities (entities.py)."""
