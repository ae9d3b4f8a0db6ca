"""train: one zoo entry -> models/native/<model>/ (native file + meta.json with test metrics).

A zoo entry with `path:` brings an already-trained model instead: it is loaded (which proves the
file is sound), evaluated on the same test split, and copied in.
"""

from __future__ import annotations

import os

from onnxship.pipeline.kernels import REPRODUCIBLE_KERNELS

# before numpy and torch load: they read these once (onnxship/pipeline/kernels.py says why)
os.environ.update(REPRODUCIBLE_KERNELS)

import time
from pathlib import Path

from omegaconf import DictConfig

from onnxship import families
from onnxship.contract import NATIVE_META
from onnxship.io import atomic_dir, sha256_path, size_bytes, write_json
from onnxship.pipeline.config import as_plain, model_spec
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.pipeline.workload import workload


def params(cfg: DictConfig) -> dict:
    return {"model": as_plain(model_spec(cfg)), "seed": cfg.seed}


@stage("train", params)
def run(cfg: DictConfig, _run) -> Outcome:
    name, spec = cfg.model, model_spec(cfg)
    family = families.get(spec.family)
    data = workload(cfg)  # feature rows / tensors, or a series (forecasters)
    started = time.perf_counter()
    with atomic_dir(Path(cfg.paths.native) / name) as out:
        native = out / family.native_file
        if spec.get("path"):
            source = Path(spec.path)
            est = family.bring(source, spec, data.task)
            family.store_brought(source, est, native)
            origin = f"file:{source}"
        else:
            est = data.fit(family, spec, cfg.zoo.models, cfg.seed)
            family.make_reproducible(est)
            family.save(est, native)
            est = family.load_checked(native, data.task)  # later stages use exactly the saved model
            origin = "trained"
        seconds = time.perf_counter() - started
        # none for a `speed_only` model (random weights at a release size: an accuracy figure
        # would mean nothing)
        metrics = {} if spec.get("speed_only") else data.test_metrics(family, est, spec)
        meta = {
            "model": name,
            "family": spec.family,
            "task": data.task,
            "origin": origin,
            "native_file": family.native_file,
            "native_sha256": sha256_path(native),
            "native_bytes": size_bytes(native),
            **data.meta_fields(spec, est, family),
            "test_metrics": metrics,
        }
        write_json(out / NATIVE_META, meta)
    # the timing goes to MLflow only: meta.json stays byte-identical when nothing changed, so DVC
    # does not re-run the downstream chain after a retrain with the same params
    return Outcome(
        meta,
        f"{spec.family} {origin} in {seconds:.1f}s, test {metrics}",
        logged=meta | {"train_seconds": seconds},
    )


if __name__ == "__main__":
    main(run)
