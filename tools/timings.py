"""Where a `make run` spent its time: per stage, from the MLflow runs it started, beside the whole
command's wall time (install included). `make run` and `make test` call it last: it prints the
table and writes reports/timings.json and reports/timings.md. `python -m tools.timings readme`
(`make timings`) renders them into the README's generated section, so the README's figures are
never copied by hand and a run never edits a tracked file outside reports/ (lineage would call
the tree dirty).

    python -m tools.timings run --since EPOCH_SECONDS   # after `make run` (started at EPOCH)
    python -m tools.timings test --since EPOCH_SECONDS  # after `make test`
    python -m tools.timings readme                      # re-render the README section only
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from onnxship.pipeline.dvc_files import lock_files

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "timings.json"
TABLE = ROOT / "reports" / "timings.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- BEGIN generated: timings (python -m tools.timings) -->", "<!-- END generated: timings -->"
STAGE_ORDER = ("code", "prepare", "checkpoint", "train", "export", "optimize", "validate", "benchmark")
STAGE_ORDER += ("package", "summarize")


def stage_seconds(runs: list[tuple[str, str | None, float]]) -> dict[str, dict]:
    """{stage: {runs, seconds, slowest: [model, seconds]}} from (stage, model, seconds) rows."""
    out: dict[str, dict] = defaultdict(lambda: {"runs": 0, "seconds": 0.0, "slowest": ["", 0.0]})
    for stage, model, seconds in runs:
        row = out[stage]
        row["runs"] += 1
        row["seconds"] = round(row["seconds"] + seconds, 1)
        if seconds > row["slowest"][1]:
            row["slowest"] = [model or stage, round(seconds, 1)]
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def stage_runs_since(tracking_uri: str, since: float) -> list[tuple[str, str | None, float]]:
    """(stage, model, seconds) of every finished stage run that started after `since`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    found = client.search_runs(experiments, f"attributes.start_time >= {int(since * 1000)}", max_results=5000)
    return [
        (r.data.tags.get("stage", "?"), r.data.tags.get("model"), (r.info.end_time - r.info.start_time) / 1e3)
        for r in found
        if r.info.end_time and "stage" in r.data.tags
    ]


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def cpu() -> str:
    """ "<processor>, <widest vector unit>": the timings lean on the unit (CPUs differ run to run)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = next(
        (line.split(":", 1)[1].split() for line in lines if line.startswith(("flags", "Features"))), []
    )
    units = (
        ("AVX-512 VNNI", "avx512_vnni"),
        ("AVX-512", "avx512f"),
        ("AVX-VNNI", "avx_vnni"),
        ("AVX2", "avx2"),
    )
    widest = next((unit for unit, flag in units if flag in flags), "no AVX2")
    return f"{name or 'unknown CPU'}, {widest}"


def where(r: dict) -> str:
    """(2 cores, CPU, commit, date): the CPU only where recorded (entries before it was)."""
    machine = f"{r['cpus']} cores" + (f" {r['cpu']}" if r.get("cpu") else "")
    return f"({machine}, commit `{r['commit']}`, {r['date']})"


def render(report: dict) -> str:
    """The markdown the README's generated section and reports/timings.md hold."""
    lines = []
    for command in ("run", "test"):
        if command in report:
            r = report[command]
            lines.append(
                f"- `make {command}`: **{r['wall_s'] / 60:.1f} min** wall, install included {where(r)}"
            )
    image_report = ROOT / "reports" / "image.json"  # written by `make image` (tools/image.py)
    if image_report.exists():
        image = json.loads(image_report.read_text())
        lines.append(
            f"- `make image`: **{image['size_mb']:.0f} MB**, built in {image['build_s']:.0f} s (base apart"
            + {True: ", layers cached from an earlier build", False: ", no layer cache"}.get(
                image.get("layer_cache"), ""
            )
            + "), "
            f"`/health/live` {image['live_s']:.1f} s after `run` ({image['cpus']} cores, commit "
            f"`{image['commit']}`, {image['date']}, base `{image['base']}`)"
        )
    stages = report.get("run", {}).get("stages")
    if stages:
        inside = sum(s["seconds"] for s in stages.values())
        lines += [
            "",
            f"Inside `make run`'s stages (MLflow run durations, {inside / 60:.1f} min of the wall time; "
            "the rest is installing, Python start-up and DVC's own bookkeeping):",
            "",
            "| stage | runs | seconds | slowest |",
            "|---|---:|---:|---|",
        ]
        lines += [
            f"| {name} | {s['runs']} | {s['seconds']:.0f} | {s['slowest'][0]} ({s['slowest'][1]:.0f} s) |"
            for name, s in stages.items()
        ]
    return "\n".join(lines) + "\n"


def fill_readme(text: str) -> None:
    readme = README.read_text()
    if BEGIN not in readme or END not in readme:
        return
    head, rest = readme.split(BEGIN, 1)
    README.write_text(head + BEGIN + "\n" + text + rest[rest.index(END) :])


def main(argv: list[str]) -> int:
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    if argv and argv[0] in ("run", "test"):
        since = float(argv[argv.index("--since") + 1]) if "--since" in argv else time.time()
        entry = {
            "wall_s": round(time.time() - since, 1),
            "cpus": os.cpu_count(),
            "cpu": cpu(),
            "commit": commit(),
            "date": time.strftime("%Y-%m-%d"),
        }
        if argv[0] == "run":
            entry["stages"] = {}
            # DVC rewrites a stage's lock after it runs: all untouched since the start, nothing
            # ran, and MLflow (seconds to load) need not be asked
            locks = [ROOT / lock for lock in lock_files(ROOT)]
            if any(lock.exists() and lock.stat().st_mtime >= since for lock in locks):
                from onnxship.pipeline.config import load_params
                from onnxship.pipeline.tracking import tracking_uri

                entry["stages"] = stage_seconds(stage_runs_since(tracking_uri(load_params([])), since))
        if argv[0] == "run" and not entry["stages"]:  # nothing was out of date: keep the last figures
            print(
                f"make run: no stage re-ran ({entry['wall_s']:.1f} s); below: the last run that re-ran some"
            )
        else:
            report[argv[0]] = entry
            REPORT.write_text(json.dumps(report, indent=2) + "\n")
    elif argv != ["readme"]:
        print(__doc__, file=sys.stderr)
        return 2
    text = render(report)
    TABLE.write_text("# How long it takes\n\n" + text)
    if argv == ["readme"]:
        fill_readme(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
