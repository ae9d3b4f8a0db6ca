"""Small real things the tests build from scratch: feature-row data, fitted family models and
their graphs, tiny Chronos pipelines with their forecast specs and feeds, the validate gates.
Shared here so test modules never import each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from omegaconf import OmegaConf

from onnxship import families
from onnxship.contract import CONTEXT, FUTURE, INPUT, PAST, ForecastSpec, ModelIO
from onnxship.passes import PassContext


def data(task: str, classes: int = 2, n: int = 300, width: int = 6):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, width)).astype(np.float32).astype(np.float64)
    score = X[:, 0] * 2 + X[:, 1] - X[:, 2] ** 2
    if task == "regression":
        return X, score * 10 + 100
    edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    return X, np.digitize(score, edges).astype(np.int64)


def tiny_zoo() -> dict:
    """One zoo entry per registered family, named after it: ensembles refer to the others."""
    zoo = {name: {"family": name, **cls.tiny_spec} for name, cls in families.FAMILIES.classes().items()}
    for entry in zoo.values():  # an ensemble's bases are whole entries: the other families' tiny ones
        if isinstance(entry.get("base"), dict):
            entry["base"] = {name: zoo[name] for name in entry["base"]}
    return zoo


def fitted(family_name: str, task: str, X, y):
    zoo = tiny_zoo()
    family = families.get(family_name)
    est = family.fit(family.build(zoo[family_name], zoo, task, 0), X, y)
    family.make_reproducible(est)
    return family, est


GATES = OmegaConf.create(
    {
        "max_metric_rel_change": 0.01,
        "min_label_agreement": 0.999,
        "min_within_test": 0.999,
        "min_within_hostile": 0.99,
    }
)


Graph = tuple[Path, dict[str, np.ndarray], PassContext]


def saved(model: onnx.ModelProto, folder: Path) -> Path:
    path = folder / "model.onnx"
    onnx.save(model, path)
    return path


def rows_graph(family_name: str, task: str, folder: Path) -> Graph:
    """A tiny exported graph of feature rows; calibration rows are other rows than the checked ones."""
    from onnxship.graph import standardize

    X, y = data(task)
    family, est = fitted(family_name, task, X, y)
    model = standardize(family.to_onnx(est, ModelIO.tabular(task, X.shape[1]), 17), task)
    X32 = X.astype(np.float32)
    context = PassContext(family_name, calibration=lambda n: [{INPUT: X32[100 : 100 + n]}])
    return saved(model, folder), {INPUT: X32[:50]}, context


def pipeline(name: str):
    family = families.get(name)
    return family, family.build(family.tiny_spec, {}, "forecast", seed=0)


def spec_of(est, horizon: int, covariates=(), context_length: int = 96) -> ForecastSpec:
    """The forecast spec a zoo entry would give this checkpoint (its graph, rollout, levels)."""
    family = families.get("chronos2" if type(est).__name__ == "Chronos2Pipeline" else "chronos_bolt")
    graph = family.forecast_graph(est)
    return ForecastSpec.from_metadata(
        {
            "task": "forecast",
            "forecast": {
                "context_length": context_length,
                "prediction_length": horizon,
                "max_horizon": max(4 * graph.native_horizon, horizon),
                "quantile_levels": [float(q) for q in est.quantiles],
                "covariates": [{"name": n, "future": f} for n, f in covariates],
                "graph": graph.as_metadata(),
            },
        }
    )


def feed(spec: ForecastSpec, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Demand-like series: level, daily cycle, noise; a NaN hole and a short (NaN-padded) row."""
    rng = np.random.default_rng(seed)
    t = np.arange(length + spec.prediction_length)
    series = 5 + np.sin(2 * np.pi * t / 48)[None] + rng.normal(0, 0.2, (batch, len(t)))
    out = {CONTEXT: series[:, :length].astype(np.float32)}
    out[CONTEXT][0, length // 3 : length // 3 + 5] = np.nan
    if batch > 1:
        out[CONTEXT][1, : length // 2] = np.nan  # a short context, left-padded
    if spec.covariates:
        cov = rng.normal(20, 3, (batch, len(t), len(spec.covariates))).astype(np.float32)
        out[PAST] = cov[:, :length].copy()
        out[FUTURE] = cov[:, length:].copy()
        for i, name in enumerate(spec.covariates):
            if name not in spec.future_covariates:
                out[FUTURE][:, :, i] = np.nan
    return out


def table(task: str, n: int = 600, seed: int = 0):
    """A raw table of typed columns: numbers (one with gaps) and categories (one with gaps, one
    with a rare value), and a target that depends on both."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    size = rng.normal(1.0, 0.4, n).round(2)
    depth = rng.normal(60, 2, n).round(1)
    depth[rng.random(n) < 0.05] = np.nan
    cut = rng.choice(["Fair", "Good", "Ideal", "Premium"], n, p=[0.1, 0.3, 0.4, 0.2])
    colour = rng.choice(["D", "E", "F", "Z"], n, p=[0.35, 0.35, 0.28, 0.02]).astype(object)
    colour[rng.random(n) < 0.05] = None
    lift = {"Fair": 0.0, "Good": 1.0, "Ideal": 2.5, "Premium": 2.0}
    score = 3 * size + np.array([lift[c] for c in cut]) + (colour == "D") + rng.normal(0, 0.3, n)
    raw = pd.DataFrame({"size": size, "cut": cut, "colour": colour, "depth": depth})
    if task == "regression":
        raw["value"] = score * 100
    else:
        raw["value"] = np.where(score > np.median(score), "high", "low")
    return raw


def prepared_table(folder: Path, task: str, n: int = 600) -> Path:
    """The tiny table prepared as the prepare stage prepares a dataset of layout `columns`."""
    from onnxship.data.columns import prepare_columns
    from stages.prepare import write

    spec = OmegaConf.create(
        {
            "layout": "columns",
            "target": "value",
            "task": task,
            "features": None,
            "categorical": None,
            "time_column": None,
            "engineer": "none",
            "start": None,
            "freq": None,
            "split": {"train": 0.6, "val": 0.2, "test": 0.2, "shuffle": True, "seed": 0},
            "min_rows": 50,
        }
    )
    frames, schema = prepare_columns(table(task, n), spec, "tests.builders.table")
    write(frames, schema, folder)
    return folder


def identity_graph(path: Path, feeds: dict[str, np.ndarray]) -> Path:
    """A float32 graph that returns its inputs unchanged, with the feeds' names and shapes."""
    from onnx import TensorProto, helper

    def value(name: str, arr: np.ndarray) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *arr.shape[1:]])

    graph = helper.make_graph(
        [helper.make_node("Identity", [k], [f"{k}_out"]) for k in feeds],
        "identity",
        [value(k, v) for k, v in feeds.items()],
        [value(f"{k}_out", v) for k, v in feeds.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path
