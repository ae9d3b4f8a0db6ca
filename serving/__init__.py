"""Serving, split by process:

  http/      the server process (uvicorn): app, routes, schemas, limits, metrics, the model store,
             and the follower thread that loads what the watcher announces. Imports onnxruntime,
             FastAPI and numpy; never MLflow, pandas, a training framework or a pickle loader.
  registry/  the processes that talk to MLflow: the watcher sidecar (watcher.py: its entry point and
             heartbeat; following.py: one thread per model polling the alias, downloading and
             verifying through cache.py, trusting only state.py's private records), the download
             children (download.py, forked from a forkserver, held to deadlines and size caps), the
             probe child (loads a new graph where a crash cannot hurt, within per-call budgets),
             promote (CLI).
  settings   read by both: conf/serving/default.yaml and ONNXSHIP_SERVING_* overrides.
  redact     what may reach a client (no secret, address or path) and a log line (no secret).
  health_check  the container probe (standard library only).

The ONNX Runtime session code both use is onnxship.runtime (also what validate and benchmark time).
"""
