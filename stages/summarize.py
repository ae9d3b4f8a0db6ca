"""summarize: one readable table over every zoo model -> reports/summary.md (+ summary.json), and
the figures it links to: speedup bars, parity-difference histograms and forecast fan charts in
reports/plots/ (latency vs batch size per model comes from the benchmark stage).

Per model: status (✅ proven, ❎ a gate failed, ❌ not exported, with the reason), size, parity,
p50/p99 with intervals and sample counts, speedup with its interval, RSS and cold start native vs
the registered variant; then the fastest proven model overall and per family group.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from onnxship.io import write_text
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.report.plots import fan_chart, parity_histograms, speedup_bars
from onnxship.report.summary import (
    candidates_markdown,
    forecast_markdown,
    forecast_row,
    markdown,
    model_row,
    reports_of,
)


def figures(cfg: DictConfig, rows: list[dict]) -> tuple[dict[str, Path], dict[str, Path]]:
    """Draw the zoo's figures; ({title: png}, {forecaster: its fan chart png})."""
    out = Path(cfg.paths.reports) / "plots"
    pngs = {"speedup of the registered variant over native": speedup_bars(rows, out / "speedup.png")}
    entries, fans = [], {}
    for row in rows:
        validation = reports_of(cfg, row["model"])["validate"]
        test = validation.get("variants", {}).get(row["variant"], {}).get("sets", {}).get("test", {})
        if "diff_histogram" in test:
            atol = validation.get("tolerance", {}).get("atol")
            entries.append(
                {
                    "model": row["model"],
                    "variant": row["variant"],
                    "histogram": test["diff_histogram"],
                    "atol": atol,
                }
            )
        if "fan" in validation and "fan_quantiles" in test:
            path = out / f"fan_{row['model']}.png"
            fans[row["model"]] = fan_chart(
                row["model"], row["variant"], validation["fan"], test["fan_quantiles"], path
            )
    if entries:
        pngs["parity: |native − ONNX| on the test split"] = parity_histograms(entries, out / "parity.png")
    for row in rows:
        latency = Path(cfg.paths.reports) / "benchmark" / row["model"] / "latency.png"
        if latency.exists():
            pngs[f"latency vs batch size: {row['model']}"] = latency
    return pngs, fans


@stage("summarize", lambda cfg: {"models": list(cfg.zoo.models)}, per_model=False)
def run(cfg: DictConfig, _run) -> Outcome:
    reports = Path(cfg.paths.reports)
    rows = [model_row(cfg, name) for name in cfg.zoo.models]
    pngs, fans = figures(cfg, rows)
    links = {title: str(p.relative_to(reports)) for title, p in pngs.items()}
    forecasters = [forecast_row(cfg, r["model"]) for r in rows if r.get("task") == "forecast"]
    text = markdown(rows, links)
    if forecasters:
        text += forecast_markdown(forecasters, {m: str(p.relative_to(reports)) for m, p in fans.items()})
    text += candidates_markdown(cfg, list(cfg.zoo.models))
    write_text(reports / "summary.md", text)
    return Outcome(
        {"models": rows, "forecasters": forecasters},
        "\n" + text,
        writes={
            reports / "summary.json": {r["model"]: {k: v for k, v in r.items() if k != "model"} for r in rows}
        },
        logged={r["model"]: {k: v["value"] for k, v in r.get("speedups", {}).items()} for r in rows},
        artifacts={reports / "summary.md": "", **{p: "plots" for p in [*pngs.values(), *fans.values()]}},
    )


if __name__ == "__main__":
    main(run)
