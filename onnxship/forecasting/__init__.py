"""Forecasting as Chronos' pipelines do it, in NumPy: what runs around a forecast graph so that
its answers equal the library's `predict` (requests laid out as rows and groups, categorical
covariates encoded, horizons beyond one model call rolled forward). Shared by the stages (parity,
benchmark) and the server, which imports numpy and onnxruntime only: nothing here imports torch.

    tasks.py        a request's series -> the library's prepared rows (targets, then covariates)
    categorical.py  string covariates encoded as chronos.chronos2.preprocess encodes them
    quantiles.py    the library's quantile interpolation and weighted quantiles
    rollout.py      one or more graph calls -> the forecast of any horizon
"""
