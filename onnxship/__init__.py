"""onnxship: the core library that the pipeline stages (stages/) and the server (serving/) share.

Layers, each importing only those above it:
  contract, errors, io, plugins        what a model folder and a version hold; no heavy imports
  runtime                              ONNX Runtime sessions (onnxruntime + numpy only): serving uses it
  graph, families/, passes/, data, features, metrics, hostile, parity, benchmarking
                                       the pipeline's library (training frameworks imported lazily)
  pipeline/                            Hydra config, MLflow tracking, the stage runner, packaging

The server process imports contract, io and runtime only (tests/test_layout.py checks it).
"""
