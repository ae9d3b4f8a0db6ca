"""checkpoint: build one Chronos checkpoint (conf/checkpoints) -> models/checkpoints/<name>/.

The library's own config and model classes at a small size, pretrained briefly on bundled real
series other than elecdemand (onnxship/chronos/training.py), saved with save_pretrained. Its
pretraining.json (corpus, steps, loss at the start and the end) is part of the cached output: it
holds nothing that varies between runs.
"""

from __future__ import annotations

import os

from onnxship.pipeline.kernels import TORCH_KERNELS

# PyTorch's CPU-kernel pins, before torch loads: the same weights on every machine
os.environ.update(TORCH_KERNELS)

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from onnxship.chronos import checkpoints
from onnxship.chronos.training import corpus_series, pretrain
from onnxship.errors import ConfigError
from onnxship.io import atomic_dir, write_json
from onnxship.pipeline.config import as_plain
from onnxship.pipeline.runner import Outcome, main, stage


def build_spec(cfg: DictConfig) -> DictConfig:
    if cfg.checkpoint not in cfg.checkpoints.builds:
        known = ", ".join(cfg.checkpoints.builds)
        raise ConfigError(f"checkpoint '{cfg.checkpoint}' is not in conf/checkpoints (known: {known})")
    return cfg.checkpoints.builds[cfg.checkpoint]


@stage(
    "checkpoint",
    lambda cfg: {"build": as_plain(build_spec(cfg)), "corpus": as_plain(cfg.checkpoints.corpus)},
    per_model=False,
)
def run(cfg: DictConfig, _run) -> Outcome:
    spec = as_plain(build_spec(cfg))
    options = {k: v for k, v in spec.items() if k not in ("family", "size", "pretrain")}
    pipeline = getattr(checkpoints, spec["family"])(spec["size"], seed=cfg.seed, **options)
    corpus = corpus_series(list(cfg.checkpoints.corpus), min_length=2 * spec["pretrain"]["prediction_length"])
    losses = pretrain(pipeline, corpus, spec["pretrain"], cfg.seed)
    tenth = max(1, len(losses) // 10)
    report = {
        "checkpoint": cfg.checkpoint,
        "family": spec["family"],
        "size": spec["size"],
        "parameters": sum(p.numel() for p in pipeline.model.parameters()),
        "corpus": list(cfg.checkpoints.corpus),
        "corpus_series": len(corpus),
        "steps": len(losses),
        "loss_first_tenth": float(np.mean(losses[:tenth])),
        "loss_last_tenth": float(np.mean(losses[-tenth:])),
    }
    with atomic_dir(Path(cfg.paths.checkpoints) / cfg.checkpoint) as out:
        pipeline.model.save_pretrained(str(out))
        write_json(out / "pretraining.json", report)
    return Outcome(
        report,
        f"{spec['family']} {spec['size']} ({report['parameters']:,} parameters) on {len(corpus)} series, "
        f"loss {report['loss_first_tenth']:.3f} -> {report['loss_last_tenth']:.3f}",
        logged=report,
    )


if __name__ == "__main__":
    main(run)
