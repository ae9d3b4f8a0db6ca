"""The summary over the zoo: one row per model from its export, validate, benchmark and package
reports (reports/summary.md and summary.json), the fastest proven model overall and per family
group, and the figures the summary links to (onnxship.report.plots).

Every latency is the interleaved measurement's (onnxship.measure.rounds) with its 95 % interval and
sample count; start-up and memory are medians over fresh processes (onnxship.measure.coldstart).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from onnxship.contract import EXPORT_REPORT, NATIVE, bench_cell, bench_cells, floor_cells, timed_runtimes
from onnxship.io import read_json

PROVEN, FAILED_GATE, NOT_EXPORTED = "✅", "❎", "❌"


def _family(name: str):
    """The registered Family of that name, or None for a name no family registers."""
    from onnxship import families
    from onnxship.errors import UnknownEntryError

    try:
        return families.get(name)
    except UnknownEntryError:
        return None


def family_group(family: str) -> str:
    """The group the summary ranks a family in (Family.group); "other" for an unknown name."""
    found = _family(family)
    return found.group if found else "other"


def native_faster_why(family: str) -> str:
    """' Why: ...' for a family that says why its native runtime can win (Family.native_faster_why)."""
    found = _family(family)
    why = found.native_faster_why if found else ""
    return f" Why: {why}." if why else ""


def call_ceiling(bench: dict, variant: str, size: int) -> str:
    """A sentence where the call itself is a third or more of the registered variant's time at
    `size`: what a graph doing no work costs through the same call (it reads only its
    inputs' shapes; timed in the same rounds), and so the most any graph served this way can gain
    over native."""
    floor, ours = floor_cells(bench).get(str(size), {}), _cell(bench, variant, size)
    ceiling = floor.get("speedup_vs_native_p50")
    if not ceiling or not ours.get("p50_ms") or 3 * floor["p50_ms"] < ours["p50_ms"]:
        return ""
    # a floor not clearly below the variant bounds nothing (typed columns, where binding the
    # strings is most of the call for the floor graph as for the model, can come out either way)
    if floor.get("p50_ci_ms", [0, floor["p50_ms"]])[1] >= ours.get("p50_ci_ms", [ours["p50_ms"]])[0]:
        return ""
    ci = floor.get("speedup_ci")
    bound = f"{ceiling:.2f}×" + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else "")
    return (
        f"At batch {size} the call itself is a large share of the time: a graph that does no work "
        f"(it reads only its inputs' shapes; the same call, timed in the same rounds) takes "
        f"{_ms(floor['p50_ms'])} ms against `{variant}`'s {_ms(ours['p50_ms'])} ms, so no graph served "
        f"this way can beat native by "
        f"more than {bound} here."
    )


def _read(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


def reports_of(cfg: DictConfig, name: str) -> dict[str, dict]:
    reports = Path(cfg.paths.reports)
    return {
        "export": _read(Path(cfg.paths.onnx) / name / EXPORT_REPORT),
        "validate": _read(reports / "validate" / f"{name}.json"),
        "benchmark": _read(reports / "benchmark" / f"{name}.json"),
        "package": _read(reports / "package" / f"{name}.json"),
    }


def status_of(r: dict[str, dict]) -> tuple[str, str]:
    """✅ exported and proven (registered, every gate passed), ❎ exported but a gate failed,
    ❌ not exported; with the reason."""
    export, package = r["export"], r["package"]
    if package.get("runtime") == "native":  # registered natively (package.native_fallback)
        symbol = NOT_EXPORTED if export.get("status") != "ok" else FAILED_GATE
        return symbol, f"native ({package.get('native_reason', '')})"[:200]
    if export.get("status") != "ok":
        return NOT_EXPORTED, export.get("reason") or "no export report"
    if package.get("registered") and package.get("alias"):
        return PROVEN, ""
    reasons = package.get("reasons") or ["not packaged"]
    return FAILED_GATE, "; ".join(reasons)[:160]


def _cell(bench: dict, runtime: str, size: int) -> dict:
    return bench_cell(bench, runtime, size, missing_ok=True)


def model_row(cfg: DictConfig, name: str) -> dict:
    r = reports_of(cfg, name)
    validation, bench, package = r["validate"], r["benchmark"], r["package"]
    status, reason = status_of(r)
    variant = package.get("variant") or "base"
    test = validation.get("variants", {}).get(variant, {}).get("sets", {}).get("test", {})
    family = validation.get("family") or r["export"].get("family", "?")
    sizes = sorted(int(b) for b in bench_cells(bench, NATIVE))
    row: dict = {
        "model": name,
        "family": family,
        "group": family_group(family),
        "status": status,
        "reason": reason,
        "variant": variant,
        "task": validation.get("task"),
        "speed_only": bool(validation.get("speed_only")),
        "parity": validation.get("variants", {}).get(variant, {}).get("verdict", "n/a"),
        "max_abs_diff": test.get("max_abs_diff"),
        "within_tolerance": test.get("within_tolerance"),
        # lossy variants (fp16, INT8) are held to the task metric, not to the tolerance
        "lossy": bool(validation.get("variants", {}).get(variant, {}).get("lossy")),
        "metric_rel_worse": test.get("metric_rel_worse"),
        "registered": f"v{package['version']}" + (f" @{package['alias']}" if package.get("alias") else "")
        if package.get("registered")
        else "no",
    }
    runtimes = timed_runtimes(bench)
    if not sizes or variant not in runtimes:
        return row
    small, large = sizes[0], sizes[-1]
    row["batch_sizes"] = [small, large]
    row["bytes"] = {k: runtimes[k].get("file_bytes") for k in (NATIVE, variant)}
    for size in (small, large):
        for runtime, side in ((NATIVE, "native"), (variant, "onnx")):
            c = _cell(bench, runtime, size)
            row[f"{side}_b{size}"] = {
                k: c.get(k) for k in ("p50_ms", "p50_ci_ms", "p99_ms", "p99_ci_ms", "iterations")
            }
    row["speedups"] = {
        str(size): {"value": c["speedup_vs_native_p50"], "ci": c.get("speedup_ci")}
        for size in (small, large)
        if (c := _cell(bench, variant, size)).get("speedup_vs_native_p50")
    }
    start = bench.get("cold_start", {})
    for key in ("cold_start_s", "rss_rest_mb", "rss_peak_mb"):
        row[key] = {side: start.get(rt, {}).get(key) for side, rt in (("native", NATIVE), ("onnx", variant))}
    row["cold_start_runs"] = start.get(variant, {}).get("runs")
    return row


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3f}"
    return str(value)


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if value < 10 else f"{value:.0f}"


def _with_ci(cell: dict, key: str) -> str:
    ci = cell.get(f"{key}_ci_ms")
    text = _ms(cell.get(f"{key}_ms"))
    return text + (f" [{_ms(ci[0])}–{_ms(ci[1])}]" if ci else "")


def _pair(row: dict, key: str) -> str:
    """native → ONNX medians of a start-up or memory figure."""
    pair = row.get(key) or {}
    if not pair.get("native") and not pair.get("onnx"):
        return "–"
    return " → ".join(_ms((pair.get(side) or {}).get("median")) for side in ("native", "onnx"))


def _speedup(row: dict, size: int, bold: bool = True) -> str:
    s = row.get("speedups", {}).get(str(size))
    if not s:
        return "–"
    ci = s.get("ci")
    value = f"**{s['value']:.2f}×**" if bold else f"{s['value']:.2f}×"
    return value + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else "")


def table(head: list[str], rows: list[dict]) -> list[str]:
    """A markdown table's lines: the columns `head`, one line per row."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(_fmt(r.get(h)) for h in head) + " |" for r in rows]


def display_row(row: dict) -> dict:
    """The summary table's cells for one model (readable strings)."""
    out = {
        "status": row["status"] + (f" {row['reason']}" if row["reason"] else ""),
        "model": f"{row['model']} ({row['family']})",
        "variant": row["variant"],
        "registered": row["registered"],
    }
    if row.get("max_abs_diff") is not None:
        within, worse = row.get("within_tolerance"), row.get("metric_rel_worse")
        if row["lossy"] and worse is not None:
            note = f" (lossy; metric {worse:+.2%})"
        else:
            note = f" ({within:.0%} within tol.)" if within is not None else ""
        out["parity max abs diff"] = f"{row['max_abs_diff']:.2g}{note}"
    if "batch_sizes" not in row:
        return out
    small, large = row["batch_sizes"]
    native, onnx_ = row[f"native_b{small}"], row[f"onnx_b{small}"]
    mb = {k: (v or 0) / 2**20 for k, v in row["bytes"].items()}
    out |= {
        "size MB": f"{mb['native']:.3g} → {mb[row['variant']]:.3g}",
        "p50 ms @1 [95 % CI]": f"{_with_ci(native, 'p50')} → {_with_ci(onnx_, 'p50')}",
        "p99 ms @1 [95 % CI]": f"{_with_ci(native, 'p99')} → {_with_ci(onnx_, 'p99')}",
        "speedup @1 [CI]": _speedup(row, small),
        "speedup @max [CI]": f"{_speedup(row, large)} @{large}",
        "RSS MB at rest": _pair(row, "rss_rest_mb"),
        "cold start s": _pair(row, "cold_start_s"),
        "n @1": f"{native.get('iterations')} / {onnx_.get('iterations')}",
    }
    return out


SUMMARY_HEAD = [
    "status",
    "model",
    "variant",
    "registered",
    "size MB",
    "parity max abs diff",
    "p50 ms @1 [95 % CI]",
    "p99 ms @1 [95 % CI]",
    "speedup @1 [CI]",
    "speedup @max [CI]",
    "RSS MB at rest",
    "cold start s",
    "n @1",
]


def fastest(rows: list[dict]) -> list[str]:
    """The fastest proven model overall and per family group: lowest ONNX p50 for one call at
    batch 1 (the online-serving case), and the largest speedup over native there."""
    proven = [r for r in rows if r["status"] == PROVEN and "batch_sizes" in r]
    if not proven:
        return ["No model is proven yet."]

    def p50(r):
        return r[f"onnx_b{r['batch_sizes'][0]}"]["p50_ms"]

    def speedup(r):
        return r["speedups"].get(str(r["batch_sizes"][0]), {}).get("value", 0)

    head = ["group", "fastest at batch 1", "p50 ms @1", "largest speedup @1", "speedup"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = ["all", *sorted({r["group"] for r in proven})]
    for group in groups:
        members = [r for r in proven if group in ("all", r["group"])]
        quick, gain = min(members, key=p50), max(members, key=speedup)
        cells = [
            "**overall**" if group == "all" else group,
            f"{quick['model']} ({quick['variant']})",
            _with_ci(quick["onnx_b" + str(quick["batch_sizes"][0])], "p50"),
            f"{gain['model']} ({gain['variant']})",
            _speedup(gain, gain["batch_sizes"][0]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(rows: list[dict], plots: dict[str, str]) -> str:
    lines = [
        "# Pipeline summary",
        "",
        "One row per zoo model. **status**: ✅ exported and proven (every gate passed, registered",
        "with its alias), ❎ exported but a gate failed (reason given), ❌ not exported (reason given).",
        "Latency is one call at batch 1 (one row, or one forecast window), native → the registered",
        "ONNX variant, both at their fastest session settings, timed in interleaved rounds in their",
        "own processes until the interval conf/benchmark asks for was tight or the time budget ended",
        "(each cell of reports/benchmark/<model>.json says which, with its rounds); `n @1` is how many",
        "calls stand behind each figure. Speedup = native p50 / ONNX p50; its interval is the wider of",
        "the one the two p50 intervals give and, from 6 rounds on, that of the round-by-round ratio",
        "(whole rounds can run slow together). RSS and cold start: fresh processes that import only",
        "their runtime",
        "(the median where conf/benchmark `cold_start_runs` asks for several; reports/benchmark/<model>.json",
        "`cold_start` has the run count and, from two runs on, an interval).",
        "See docs/reports.md (the manual, `make docs`).",
        "",
        *table(SUMMARY_HEAD, [display_row(r) for r in rows]),
        "",
        "## Fastest proven",
        "",
        *fastest(rows),
        "",
        "## Figures",
        "",
    ]
    lines += [f"- [{title}]({link})" for title, link in plots.items()]
    return "\n".join(lines) + "\n"


def forecast_row(cfg: DictConfig, name: str) -> dict:
    """A forecaster's accuracy native vs ONNX (none for speed-only models)."""
    reports = reports_of(cfg, name)  # read once: validate and package
    validation, variant = reports["validate"], reports["package"].get("variant") or "base"
    test = validation.get("variants", {}).get(variant, {}).get("sets", {}).get("test", {})
    row = {
        "model": name,
        "variant": variant,
        "kind": "speed only" if validation.get("speed_only") else "accuracy",
    }
    for key in ("wql", "mase"):
        if not validation.get("speed_only"):  # random weights: a gate figure, not an accuracy
            row[f"{key}_native"], row[f"{key}_onnx"] = test.get(f"{key}_native"), test.get(f"{key}_onnx")
    return row


def forecast_markdown(rows: list[dict], fans: dict[str, str]) -> str:
    head = ["model", "kind", "variant", "wql_native", "wql_onnx", "mase_native", "mase_onnx", "fan chart"]
    for row in rows:
        row["fan chart"] = f"[png]({fans[row['model']]})" if row["model"] in fans else "–"
    lines = [
        "",
        "## Forecasters",
        "",
        "Rolling test windows of the elecdemand series; wql = weighted quantile loss, mase = mean",
        "absolute scaled error of the median (both: lower is better), from the library's own predict",
        "(native) and from the registered ONNX variant. Speed-only models have random weights at the",
        "release size: no accuracy figure. The fan chart shows one test window, native vs ONNX.",
        "",
        *table(head, rows),
    ]
    return "\n".join(lines) + "\n"


def candidates_markdown(cfg: DictConfig, names: list[str]) -> str:
    """Per model, every variant: its gates and its speed at the smallest and largest batch, at its
    best session settings; and the batch sizes where no proven variant beats native."""
    reports = Path(cfg.paths.reports)
    lines = [
        "",
        "## Variants: gates and speed",
        "",
        "Every variant of every model (reports/package/<model>.json `candidates`). `worse` = the",
        "largest relative worsening of a task metric (lossy variants must stay within 1 %); speed is",
        "native p50 / variant p50 at each at its fastest session settings (`threads`), with the",
        "ratio's interval and the calls behind the variant's figure (`n`).",
    ]
    for name in names:
        package = _read(reports / "package" / f"{name}.json")
        bench = _read(reports / "benchmark" / f"{name}.json")
        if not package.get("candidates"):
            continue
        sizes = sorted({int(b) for c in package["candidates"] for b in c.get("batches", {})})
        small, large = sizes[0], sizes[-1]
        rows = []
        for c in package["candidates"]:
            cells = c.get("batches", {})
            timed = {"speedups": {}}
            for size in (small, large):  # the interleaved cell, with its interval
                cell = _cell(bench, c["variant"], size)
                if "speedup_vs_native_p50" in cell:
                    timed["speedups"][str(size)] = {
                        "value": cell["speedup_vs_native_p50"],
                        "ci": cell.get("speedup_ci"),
                    }
            rows.append(
                {
                    "variant": c["variant"] + (" ◀" if c["variant"] == package.get("variant") else ""),
                    "lossy": "yes" if c["lossy"] else "",
                    "verdict": c["verdict"],
                    "worse": c.get("metric_rel_worse"),
                    f"speedup_b{small}": _speedup(timed, small, bold=False),
                    f"n_b{small}": _cell(bench, c["variant"], small).get("iterations"),
                    f"threads_b{small}": (cells.get(str(small), {}).get("settings") or {}).get(
                        "intra_op_threads"
                    ),
                    f"speedup_b{large}": _speedup(timed, large, bold=False),
                    "reason": (c["reasons"][0][:90] if c["reasons"] else ""),
                }
            )
        head = [
            "variant",
            "lossy",
            "verdict",
            "worse",
            f"speedup_b{small}",
            f"n_b{small}",
            f"threads_b{small}",
        ]
        head += [f"speedup_b{large}", "reason"]
        lines += ["", f"### {name}", "", *table(head, rows)]
        regimes = package.get("regimes") or {}
        slower = [
            f"{b} rows ({r['fastest_proven_speedup']:.2f}×)" for b, r in regimes.items() if r["native_faster"]
        ]
        if slower:
            family = _read(reports / "validate" / f"{name}.json").get("family") or ""
            why = native_faster_why(family)
            lines += ["", "Native is faster than every proven variant at " + ", ".join(slower) + "." + why]
        if package.get("variant") and (ceiling := call_ceiling(bench, package["variant"], small)):
            lines += ["", ceiling]
    return "\n".join(lines) + "\n"
