"""The registry side: processes that talk to MLflow, so the server process never does."""
