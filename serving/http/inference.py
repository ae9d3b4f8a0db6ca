"""From JSON rows to the model's inputs (its float32 matrix, or its typed columns) and back, with
every input problem named."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import orjson

from serving.http.columns import column_feed, is_columns
from serving.http.store import LoadedModel
from serving.http.values import InvalidInput, float32_value, null_policy


def parse_predict(body: bytes) -> tuple[str | None, dict]:
    """The /predict body ({"model"?, "features"}), parsed without a pydantic round trip (the hot
    path); messages match the validated routes'."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("body: not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("body: Input should be a JSON object")
    if not data.keys() <= {"model", "features"}:
        raise InvalidInput("body: only 'model' and 'features' are permitted")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidInput("model: Input should be a valid string")
    features = data.get("features")
    if not isinstance(features, dict):
        raise InvalidInput(
            "features: Field required" if features is None else "features: Input should be an object"
        )
    return model, features


def to_feed(loaded: LoadedModel, rows: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
    """The graph's inputs for JSON rows of features by name: the one feature matrix, or for a model
    of typed columns one input per column (serving.http.columns)."""
    check_names(loaded, rows)
    if is_columns(loaded.metadata):
        return column_feed(loaded.metadata, loaded.model.allow_nan, rows)
    return {loaded.model.input_name: to_matrix(loaded, rows)}


def check_names(loaded: LoadedModel, rows: Sequence[Mapping[str, object]]) -> None:
    """Every row holds exactly the model's features (by name), or InvalidInput saying what differs."""
    names = loaded.features
    expected = set(names)
    for r, row in enumerate(rows):
        where = f"rows[{r}]." if len(rows) > 1 else ""
        if row.keys() != expected:
            missing = [n for n in names if n not in row]
            if missing:
                raise InvalidInput(
                    f"{where}features: missing {', '.join(repr(m) for m in missing[:5])}"
                    + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                )
            unknown = len(set(row) - expected)  # counted, never repeated: a key can carry anything
            raise InvalidInput(
                f"{where}features: {unknown} name(s) this model does not take "
                f"(GET /models/{loaded.name} lists its features)"
            )


def to_matrix(loaded: LoadedModel, rows: Sequence[Mapping[str, float | int | None]]) -> np.ndarray:
    """Rows (names already checked) as the model's float32 feature matrix."""
    names = loaded.features
    out = np.empty((len(rows), len(names)), dtype=np.float32)
    null = null_policy(loaded.model.allow_nan)
    for r, row in enumerate(rows):
        where = f"rows[{r}]." if len(rows) > 1 else ""
        for c, name in enumerate(names):
            out[r, c] = float32_value(row[name], f"{where}features.{name}", null)
    return out


def run_finite(loaded: LoadedModel, feed: dict[str, np.ndarray], field: str) -> list[np.ndarray]:
    """Run checked input; refuse answers JSON cannot carry (e.g. a linear model fed values near
    the float32 limit overflows to inf)."""
    outputs = loaded.model.run_feed(feed)
    if not all(np.isfinite(o).all() for o in outputs if o.dtype.kind == "f"):
        raise InvalidInput(f"{field}: these values drive the model's output beyond the float32 range")
    return outputs


def answers(loaded: LoadedModel, feed: dict[str, np.ndarray]) -> dict[str, list]:
    outputs = run_finite(loaded, feed, "features")
    if loaded.task == "regression":
        return {"predictions": outputs[0].reshape(-1).astype(float).tolist()}
    classes = loaded.metadata.get("classes") or list(range(outputs[1].shape[1]))
    labels = [classes[i] for i in outputs[0].reshape(-1).tolist()]
    probabilities = [{str(c): float(p) for c, p in zip(classes, row, strict=True)} for row in outputs[1]]
    return {"labels": labels, "probabilities": probabilities}
