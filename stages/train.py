"""train: one zoo entry -> models/native/<model>/ (native file + meta.json with test metrics).

A zoo entry with `path:` brings an already-trained model instead: it is loaded (which proves the
file is sound), evaluated on the same test split, and copied in.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from stages import families
from stages.common.config import as_plain, model_spec, run_stage
from stages.common.io import atomic_dir, sha256_file, write_json
from stages.common.tracking import log_report, stage_run
from stages.metrics import task_metrics
from stages.prepare import load_split


def fit_model(spec: DictConfig, cfg: DictConfig, X: np.ndarray, y: np.ndarray, task: str):
    family = families.get(spec.family)
    if spec.family == "stacking":
        est = family.build_from_spec(spec, cfg.zoo.models, task, cfg.seed)
    else:
        est = family.build(dict(spec.get("params") or {}), task, cfg.seed)
    est = family.fit(est, X, y)
    family.make_reproducible(est)
    return est


def run(cfg: DictConfig) -> dict:
    name = cfg.model
    spec = model_spec(cfg, name)
    family = families.get(spec.family)
    X_train, y_train, schema = load_split(cfg.paths.prepared, "train")
    X_test, y_test, _ = load_split(cfg.paths.prepared, "test")
    task = schema["task"]
    started = time.perf_counter()
    with atomic_dir(Path(cfg.paths.native) / name) as out:
        native = out / family.native_file
        if spec.get("path"):
            source = Path(spec.path)
            est = family.load_checked(source, task)
            shutil.copyfile(source, native)
            origin = f"file:{source}"
        else:
            est = fit_model(spec, cfg, X_train, y_train, task)
            family.save(est, native)
            # reload what was written, so later stages use exactly the saved model
            est = family.load_checked(native, task)
            origin = "trained"
        seconds = time.perf_counter() - started
        pred = family.predict(est, X_test, task)
        metrics = task_metrics(task, y_test, pred)
        meta = {
            "model": name,
            "family": spec.family,
            "task": task,
            "origin": origin,
            "native_file": family.native_file,
            "native_sha256": sha256_file(native),
            "native_bytes": native.stat().st_size,
            "features": schema["features"],
            "classes": schema["classes"],
            "test_metrics": metrics,
        }
        write_json(out / "meta.json", meta)
    with stage_run(cfg, "train", name, {"model": as_plain(spec), "seed": cfg.seed}):
        # timing goes to MLflow only: meta.json stays byte-identical when nothing changed, so DVC
        # does not re-run the downstream chain after a retrain with the same params
        log_report(meta | {"train_seconds": seconds}, "meta.json")
    print(f"train {name}: {spec.family} {origin} in {seconds:.1f}s, test {metrics}")
    return meta


if __name__ == "__main__":
    run_stage(run)
