"""checkpoint: build every Chronos checkpoint of conf/checkpoints -> models/checkpoints/<name>/.

The library's own config and model classes at a small size, pretrained briefly on bundled real
series other than elecdemand (onnxship/chronos/training.py), saved with save_pretrained; the
builds run side by side, each in its own process on one thread (onnxship/chronos/builds.py).
Each one's pretraining.json (corpus, steps, loss at the start and the end) is part of the cached
output: it holds nothing that varies between runs.
"""

from __future__ import annotations

import os

from onnxship.pipeline.kernels import TORCH_KERNELS

# PyTorch's CPU-kernel pins, before torch loads: the same weights on every machine
os.environ.update(TORCH_KERNELS)

from pathlib import Path

from omegaconf import DictConfig

from onnxship.chronos.builds import build_all
from onnxship.pipeline.config import as_plain
from onnxship.pipeline.runner import Outcome, main, stage


@stage(
    "checkpoint",
    lambda cfg: {"builds": as_plain(cfg.checkpoints.builds), "corpus": as_plain(cfg.checkpoints.corpus)},
    per_model=False,
)
def run(cfg: DictConfig, _run) -> Outcome:
    builds = as_plain(cfg.checkpoints.builds)
    reports = build_all(builds, list(cfg.checkpoints.corpus), cfg.seed, Path(cfg.paths.checkpoints))
    return Outcome(
        reports,
        "; ".join(
            f"{r['checkpoint']}: {r['family']} {r['size']} ({r['parameters']:,} parameters) on "
            f"{r['corpus_series']} series, loss {r['loss_first_tenth']:.3f} -> {r['loss_last_tenth']:.3f}"
            for r in reports.values()
        ),
        logged=reports,
    )


if __name__ == "__main__":
    main(run)
