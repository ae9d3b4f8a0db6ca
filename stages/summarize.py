"""summarize: one readable table over every zoo model -> reports/summary.md (+ summary.json).

For each model: export status, the registered variant and its parity verdict and max |diff| on the
test split, native vs ONNX p50/p99 latency at batch 1 and 1000, and speedup (native p50 / ONNX p50).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from onnxship.io import write_text
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.summary import (
    candidates_markdown,
    forecast_markdown,
    forecast_row,
    is_forecaster,
    markdown,
    model_row,
)


@stage("summarize", lambda cfg: {"models": list(cfg.zoo.models)}, per_model=False)
def run(cfg: DictConfig, _run) -> Outcome:
    sizes = sorted(int(b) for b in cfg.benchmark.batch_sizes)
    small, large = sizes[0], sizes[-1]
    forecasters = [n for n in cfg.zoo.models if is_forecaster(cfg, n)]
    rows = [model_row(cfg, name, small, large) for name in cfg.zoo.models if name not in forecasters]
    forecast_rows = [forecast_row(cfg, name) for name in forecasters]
    table = markdown(rows, small, large) + (forecast_markdown(forecast_rows) if forecast_rows else "")
    table += candidates_markdown(cfg, list(cfg.zoo.models))
    rows += forecast_rows
    write_text(Path(cfg.paths.reports) / "summary.md", table)
    return Outcome(
        {"models": rows},
        "\n" + table,
        writes={
            Path(cfg.paths.reports) / "summary.json": {
                r["model"]: {k: v for k, v in r.items() if k != "model"} for r in rows
            }
        },
        logged={r["model"]: {k: v for k, v in r.items() if isinstance(v, float)} for r in rows},
        artifacts={Path(cfg.paths.reports) / "summary.md": ""},
    )


if __name__ == "__main__":
    main(run)
