"""Shared plumbing for the stage scripts: config, file I/O, errors, MLflow tracking."""
