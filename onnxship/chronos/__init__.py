"""Chronos (chronos-forecasting) to ONNX: checkpoints built offline, export-time patches, and the
forecast graph wrapper. Imported only by the Chronos families: it needs torch."""
