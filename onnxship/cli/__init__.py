"""Command-line tools beside the pipeline (`onnxship-bench`: time and prove one ONNX file)."""
