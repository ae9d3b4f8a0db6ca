"""onnxship: the core library that the pipeline stages (stages/) and the server (serving/) share.

One folder per stage concept, in dvc.yaml order (the verb is stages/<verb>.py):

  prepare      data/             tables, features, series; a model's workload (Rows or Series)
  checkpoint   families/chronos/ Chronos checkpoints built with the library's own classes
  train        families/         one module per model family (@register), data/
  export       families/, graph  each family's exporter; graph surgery shared with passes
  optimize     passes/           one module per graph pass (@register)
  validate     parity/           does each variant answer like native? (rows, forecasts, hostile)
  benchmark    measure/          screen, interleaved rounds, cold starts, intervals, report
  package      packaging/        choose, build the version folder, register
               version/          what a registered version holds (also read by the server)
  summarize    report/           the zoo's table and figures
  every stage  pipeline/         Hydra config, the stage runner, MLflow tracking, lineage,
                                 warm starts (warm) and the numeric-kernel pins (kernels)

Shared base, importing nothing heavy: contract, errors, io, plugins, runtime (ONNX Runtime +
numpy: the server uses it), scoring (task metrics and the metric gate).
torch_nets stays at the top: its class paths are stored inside trained models' files.
The server process imports contract, io, runtime and version/ only (tests/test_layout.py).
"""
