"""What a per-model stage needs from a model's data, for each kind of data: feature rows or
tensors (regression, classification) and series (forecasters). The stages call these and never
branch on the task themselves.

    rows    data/prepared[/<dataset>]/{train,val,test}.parquet: X, y
    columns the same files with typed columns (numbers, categories): a DataFrame X
    series  data/prepared/<dataset>/series.parquet: target + covariates, windows per split
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from onnxship.contract import INPUT, ForecastSpec, Task
from onnxship.io import read_json

CALIBRATION_BATCH = 32  # rows (windows) per calibration call


def in_batches(feed: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Equal-sized batches (histogram calibrators stack them; a short last one is dropped unless
    it is the only one)."""
    rows = len(next(iter(feed.values())))
    size = min(CALIBRATION_BATCH, rows)
    return [{k: v[i : i + size] for k, v in feed.items()} for i in range(0, rows - size + 1, size)]


class Rows:
    """Feature rows [n, n_features] or tensors [n, *input_shape], with a label or value each."""

    kind: ClassVar[str] = "rows"

    def __init__(self, prepared: Path) -> None:
        self.prepared = prepared
        self.schema = read_json(prepared / "schema.json")
        self.task = self.schema["task"]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        from onnxship.data.tables import load_split

        X, y, _ = load_split(self.prepared, name)
        return X, y

    def fit(self, family: Any, spec: Any, zoo: Any, seed: int) -> Any:
        """The zoo entry's model, trained on the train split."""
        X, y = self.split("train")
        return family.fit(family.build(spec, zoo, self.task, seed), X, y)

    def test_metrics(self, family: Any, est: Any, entry: Any) -> dict[str, float]:
        """RMSE/MAE or accuracy/log-loss on the test split."""
        from onnxship.scoring import task_metrics

        X, y = self.split("test")
        return task_metrics(self.task, y, family.predict(est, X, self.task))

    def meta_fields(self, spec: Any, est: Any, family: Any) -> dict[str, Any]:
        return {
            "features": self.schema["features"],
            "input_shape": self.schema.get("input_shape", [len(self.schema["features"])]),
            "classes": self.schema["classes"],
            "target": self.schema["target"],
        }

    def bench_feeds(self, entry: Any, meta: dict, limit: int) -> dict[str, np.ndarray]:
        """Real test inputs for timing (dummy rows can all follow one tree path), float32: the
        type the graph takes and serving builds, which every tree library here also predicts
        on without a copy. Stored as float64, they would time a conversion in front of the
        graph that no served call makes (~3 us of a ~25 us LightGBM row)."""
        return {INPUT: self.split("test")[0][:limit].astype(np.float32)}

    def signature_feeds(self, entry: Any, meta: dict, limit: int) -> dict[str, np.ndarray]:
        """Real inputs: the registered version's signature and sample."""
        return {INPUT: self.split("test")[0][:limit]}

    def calibration_feeds(self, entry: Any, meta: dict, limit: int) -> list[dict[str, np.ndarray]]:
        """Validation rows for INT8 calibration, in batches (never the test rows the gates use)."""
        return in_batches({INPUT: self.split("val")[0][:limit].astype(np.float32)})


class Columns(Rows):
    """Typed columns (numbers and categories, onnxship.data.columns): a DataFrame natively, one
    named input per column in the graph."""

    kind: ClassVar[str] = "columns"

    @property
    def columns(self) -> list[dict]:
        return self.schema["columns"]

    def split(self, name: str) -> tuple[Any, np.ndarray]:
        from onnxship.data.columns import load_columns

        X, y, _ = load_columns(self.prepared, name)
        return X, y

    def native(self, family: Any, est: Any, frame: Any) -> Any:
        """The native model's answers on a table (strings with None missing)."""
        return family.predict(est, family.native_frame(est, frame, self.columns), self.task)

    def fit(self, family: Any, spec: Any, zoo: Any, seed: int) -> Any:
        X, y = self.split("train")
        est = family.build_columns(spec, zoo, self.task, seed, self.columns)
        return family.fit(est, family.native_frame(est, X, self.columns), y)

    def test_metrics(self, family: Any, est: Any, entry: Any) -> dict[str, float]:
        from onnxship.scoring import task_metrics

        X, y = self.split("test")
        return task_metrics(self.task, y, self.native(family, est, X))

    def meta_fields(self, spec: Any, est: Any, family: Any) -> dict[str, Any]:
        return {
            "layout": self.schema["layout"],
            "features": self.schema["features"],
            "columns": self.columns,
            "classes": self.schema["classes"],
            "target": self.schema["target"],
        }

    def feed(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        from onnxship.data.columns import graph_feed

        X = self.split(split)[0]
        return graph_feed(X if limit is None else X.iloc[:limit], self.columns)

    def bench_feeds(self, entry: Any, meta: dict, limit: int) -> dict[str, np.ndarray]:
        """Test rows as the graph takes them (strings as fixed-width unicode: np.savez keeps them
        without pickling)."""
        from onnxship.data.columns import storable

        return storable(self.feed("test", limit))

    def signature_feeds(self, entry: Any, meta: dict, limit: int) -> dict[str, np.ndarray]:
        return self.feed("test", limit)

    def calibration_feeds(self, entry: Any, meta: dict, limit: int) -> list[dict[str, np.ndarray]]:
        return in_batches(self.feed("val", limit))


class Series:
    """A series with covariates, cut into rolling windows; the model's ForecastSpec comes from
    its zoo entry (`forecast:`) and its checkpoint (quantile levels)."""

    kind: ClassVar[str] = "series"

    def __init__(self, prepared: Path) -> None:
        from onnxship.data.series import load_series

        self.prepared = prepared
        self.table, self.schema = load_series(prepared)
        self.task = Task.FORECAST

    def spec(self, entry: Any, family: Any, est: Any) -> ForecastSpec:
        """The entry's `forecast:` block on this checkpoint: its levels, and its graph (how far
        one call sees; served horizons reach `max_horizon`, by default 4 x that, at least
        prediction_length)."""
        block = dict(entry.get("forecast") or {})
        known = set(block.get("future_covariates", block.get("covariates", [])) or [])
        covariates = [{"name": c, "future": c in known} for c in block.get("covariates", []) or []]
        graph = family.forecast_graph(est)
        horizon = int(block.get("prediction_length", 48))
        return ForecastSpec.from_metadata(
            {
                "task": Task.FORECAST,
                "forecast": {
                    "context_length": block.get("context_length", 512),
                    "prediction_length": horizon,
                    "max_horizon": block.get("max_horizon") or max(4 * graph.native_horizon, horizon),
                    "quantile_levels": family.quantile_levels(est),
                    "covariates": covariates,
                    "graph": graph.as_metadata(),
                },
            }
        )

    def fit(self, family: Any, spec: Any, zoo: Any, seed: int) -> Any:
        """The entry's checkpoint (zero-shot), or the checkpoint fine-tuned on the train split
        (`finetune:`)."""
        est = family.build(spec, zoo, self.task, seed)
        if not spec.get("finetune"):
            return est
        forecast = self.spec(spec, family, est)
        lo, hi = self.schema["bounds"]["train"]
        train = self.table.iloc[lo:hi]
        # the library's input format: one long series; known-future covariates marked with None
        series = {
            "target": train[self.schema["target"]].to_numpy(np.float32),
            "past_covariates": {c: train[c].to_numpy(np.float32) for c in forecast.covariates},
            "future_covariates": {c: None for c in forecast.future_covariates},
        }
        return family.finetune(est, [series], forecast, spec.finetune, seed)

    def test_metrics(self, family: Any, est: Any, entry: Any) -> dict[str, float]:
        """Weighted quantile loss and MASE on the test windows."""
        from onnxship.scoring import forecast_metrics

        spec = self.spec(entry, family, est)
        feed, truth = self.windows(spec, "test", self.stride(entry, spec), self.limit(entry))
        forecast = family.forecast(est, feed, spec)
        return forecast_metrics(forecast, truth, feed, spec, self.schema["season_length"])

    @staticmethod
    def stride(entry: Any, spec: ForecastSpec) -> int:
        """Forecast origins this many steps apart (default: the horizon, windows side by side)."""
        return int(entry.get("window_stride") or spec.prediction_length)

    @staticmethod
    def limit(entry: Any) -> int | None:
        """At most this many (the last) test windows: speed-only models are judged on parity, and
        a release-size model forecasts slowly."""
        return entry.get("max_windows")

    def windows(self, spec: ForecastSpec, split: str, stride: int, limit: int | None = None) -> tuple:
        from onnxship.data.series import window_origins, windows

        return windows(self.table, self.schema, spec, window_origins(self.schema, split, spec, stride, limit))

    def bench_feeds(self, entry: Any, meta: dict, limit: int) -> dict[str, np.ndarray]:
        """Test windows in the series layout: timing slices them by window (both runtimes turn
        them into the graph's rows the same way, ForecastSpec.graph_feed)."""
        spec = ForecastSpec.from_metadata(meta)
        feed, _ = self.windows(spec, "test", self.stride(entry, spec))
        return {k: v[-limit:] for k, v in feed.items()}

    def signature_feeds(self, entry: Any, meta: dict, limit: int) -> dict[str, np.ndarray]:
        """Test windows as the graph takes them (Chronos: rows and group ids)."""
        return ForecastSpec.from_metadata(meta).graph_feed(self.bench_feeds(entry, meta, limit))

    def calibration_feeds(self, entry: Any, meta: dict, limit: int) -> list[dict[str, np.ndarray]]:
        """The last `limit` validation windows, in batches, as the graph takes them."""
        spec = ForecastSpec.from_metadata(meta)
        feed, _ = self.windows(spec, "val", self.stride(entry, spec), limit)
        return [spec.graph_feed(batch) for batch in in_batches(feed)]

    def meta_fields(self, entry: Any, est: Any, family: Any) -> dict[str, Any]:
        spec = self.spec(entry, family, est)
        return {
            "features": list(spec.covariates),
            "input_shape": [spec.context_length],
            "classes": None,
            "target": self.schema["target"],
            "speed_only": bool(entry.get("speed_only", False)),
            "forecast": spec.as_metadata(),
        }


def workload_at(folder: Path) -> Rows | Columns | Series:
    """The workload of a prepared dataset folder (a series folder holds series.parquet; a table
    of typed columns says so in its schema)."""
    from onnxship.data.columns import is_columns
    from onnxship.data.series import SERIES_FILE

    if (folder / SERIES_FILE).exists():
        return Series(folder)
    return Columns(folder) if is_columns(read_json(folder / "schema.json")) else Rows(folder)
