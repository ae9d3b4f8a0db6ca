"""Serving: the ONNX Runtime session factory (also used by validate and benchmark) and, later,
the HTTP app. Light on purpose: onnxruntime, numpy and the MLflow client only."""
