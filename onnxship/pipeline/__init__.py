"""The pipeline side of the core: Hydra config and params.yaml, MLflow tracking, the stage runner,
and packaging into the MLflow registry. Never imported by the server process."""
