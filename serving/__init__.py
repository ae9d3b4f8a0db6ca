"""Serving, split by process:

  http/      the server process (uvicorn): app, routes, schemas, limits, metrics, the model store,
             and the follower thread that loads what the watcher announces. Imports onnxruntime,
             FastAPI and numpy; never MLflow, pandas, a training framework or a pickle loader.
  registry/  the processes that talk to MLflow: the watcher sidecar (polls the alias, downloads,
             verifies), the probe child (loads a new graph where a crash cannot hurt), promote (CLI).
  settings   read by both: conf/serving/default.yaml and ONNXSHIP_SERVING_* overrides.

The ONNX Runtime session code both use is onnxship.runtime (also what validate and benchmark time).
"""
