"""Our variant(s) vs what Olive's automatic routes made of the same exported graph, in one run.

    tools/peer_olive.sh EXPORTED_ONNX OUT_DIR          # the peer's models (separate venv)
    python -m tools.peer_olive --ours int8=OURS.onnx --peer-dir OUT_DIR --feeds FEEDS.npz \
        [--reference REF.npz|none] [--baseline fp32=EXPORTED_ONNX] [--batch-sizes 1 32] \
        [--rounds 20 12] [--out reports/peer_olive.json]

For every model (ours, every *.onnx under --peer-dir, optional baselines): load it with ONNX
Runtime on the CPU (intra_op_num_threads, no spinning: "session.intra_op.allow_spinning" = "0", as
a spinning session in the same process steals the others' cores and fakes a speedup), run it on
the real feeds and measure how far its outputs are from the reference (max |diff|, and that
divided by the window's max |reference|, worst window). Then time every model that runs,
INTERLEAVED: per batch size, a warm-up call each, then round after round one call per model
(the order rotated every round), so that machine noise falls on all of them alike. Reports p50 /
p90 ms with the sample count and each model's p50 divided by ours (> 1: ours is faster).

A peer model that fails to load or run is a finding: it is listed with its error, not timed. A
route that wrote no model at all is listed from OUT_DIR/<route>/route.json.

FEEDS.npz: arrays by input name, rows = windows (the rows for batch b are the first b rows, so
give at least max(batch sizes) rows). REF.npz: the native model's outputs by output name for the
same rows. With --reference none, outputs are compared with the first --ours model instead.

Imports numpy, onnx, onnxruntime, the standard library and onnxship.runtime (sessions built as served).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

# op types that show what a route did to the graph
OPS_OF_INTEREST = (
    "MatMul",
    "Gemm",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "MatMulNBits",
    "MatMulBnb4",
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "FastGelu",
    "Gelu",
    "Cast",
)


def named_path(text: str, default_prefix: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        path, name = text, f"{default_prefix}:{Path(text).stem}"
    return name, Path(path)


def graph_summary(path: Path) -> dict:
    """Bytes on disk (with external data), node count, and the op types of interest."""
    model = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    external = set()
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                external.add(entry.value)
    files = [path] + [path.parent / f for f in sorted(external) if (path.parent / f).exists()]
    digest = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return {
        "bytes": sum(f.stat().st_size for f in files),
        "sha256": digest.hexdigest(),
        "nodes": len(model.graph.node),
        "ops": {k: counts[k] for k in OPS_OF_INTEREST if k in counts},
        "opsets": {d.domain or "ai.onnx": d.version for d in model.opset_import},
    }


def session(path: Path, threads: int) -> ort.InferenceSession:
    """The session the project serves with (onnxship.runtime): these threads, one inter-op thread,
    sequential, spinning off (spinning sessions in one process starve each other), errors-only log."""
    from onnxship.runtime import InferenceSettings, create_session

    return create_session(path, InferenceSettings(intra_op_threads=threads))


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:400] if text else ''}"


def feed_for(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    missing = [i.name for i in sess.get_inputs() if i.name not in feeds]
    if missing:
        raise KeyError(f"the feeds have no array for input(s) {missing}")
    return {
        i.name: np.ascontiguousarray(feeds[i.name][:rows], dtype=input_dtype(i, feeds))
        for i in sess.get_inputs()
    }


FLOATS = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(double)": np.float64}


def input_dtype(arg: ort.NodeArg, feeds: dict[str, np.ndarray]) -> np.dtype:
    """The feed's dtype, or the graph's own float type where the graph declares another float
    (an fp16 graph with fp16 inputs gets the feeds cast, as its user would have to)."""
    have = feeds[arg.name].dtype
    want = FLOATS.get(arg.type)
    return np.dtype(want) if want is not None and np.issubdtype(have, np.floating) else have


def input_casts(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, str]:
    casts = {}
    for i in sess.get_inputs():
        if i.name in feeds and (want := input_dtype(i, feeds)) != feeds[i.name].dtype:
            casts[i.name] = f"{feeds[i.name].dtype}->{want}"
    return casts


def compare(out: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict:
    """Worst over outputs: max |diff|, and per window (row) max |diff| / max |ref|, worst window."""
    result = {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "nonfinite": 0, "compared": []}
    for name, want in ref.items():
        if name not in out:
            continue
        got = out[name]
        if got.shape != want.shape:
            result.setdefault("shape_mismatch", {})[name] = [list(got.shape), list(want.shape)]
            continue
        got64, want64 = got.astype(np.float64), want.astype(np.float64)
        diff = np.abs(got64 - want64).reshape(len(want), -1)
        scale = np.maximum(np.abs(want64).reshape(len(want), -1).max(axis=1), 1e-12)
        result["nonfinite"] += int((~np.isfinite(got64)).sum())
        result["max_abs_diff"] = max(result["max_abs_diff"], float(np.nanmax(diff)) if diff.size else 0.0)
        result["max_rel_diff"] = max(result["max_rel_diff"], float(np.nanmax(diff.max(axis=1) / scale)))
        result["compared"].append(name)
    return result


def interval_ms(samples: list[float]) -> list[float]:
    """The p50's 95 % order-statistic interval (onnxship.measure.intervals)."""
    from onnxship.measure.intervals import percentile_interval

    found = percentile_interval(np.asarray(samples), 50)
    return [round(found.low, 2), round(found.high, 2)]


def paired_ratio(peer: list[float], ours: list[float]) -> dict:
    """Median of peer / ours per round with its 95 % interval."""
    from onnxship.measure.intervals import percentile_interval

    found = percentile_interval(np.asarray(peer) / np.asarray(ours), 50)
    return {"p50": round(found.estimate, 3), "ci": [round(found.low, 3), round(found.high, 3)], "n": found.n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", action="append", required=True, help="[name=]path, repeatable")
    ap.add_argument("--peer-dir", action="append", default=[], help="folder Olive wrote into (every *.onnx)")
    ap.add_argument(
        "--baseline", action="append", default=[], help="[name=]path, timed too (the fp32 export)"
    )
    ap.add_argument("--feeds", required=True, help="NPZ: input arrays by name, rows = windows")
    ap.add_argument("--reference", default="none", help="NPZ: native outputs by name, or none")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument(
        "--rounds",
        type=int,
        nargs="+",
        default=[20, 12],
        help="timed rounds: one value, or one per batch size",
    )
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per model and batch size")
    ap.add_argument("--threads", type=int, default=2, help="intra_op_num_threads of every session")
    ap.add_argument("--out", default="reports/peer_olive.json")
    args = ap.parse_args(argv)

    if len(args.rounds) not in (1, len(args.batch_sizes)):
        ap.error("--rounds: one value, or one per batch size")
    per_batch = args.rounds * len(args.batch_sizes) if len(args.rounds) == 1 else args.rounds
    rounds = dict(zip(args.batch_sizes, per_batch, strict=True))
    feeds = dict(np.load(args.feeds))
    rows = min(len(v) for v in feeds.values())
    if rows < max(args.batch_sizes):
        ap.error(f"the feeds hold {rows} rows, fewer than the largest batch size {max(args.batch_sizes)}")
    reference = None if args.reference.lower() == "none" else dict(np.load(args.reference))

    # --- the models -------------------------------------------------------------------------
    models: list[dict] = []
    for text in args.ours:
        name, path = named_path(text, "ours")
        models.append({"name": name, "role": "ours", "path": str(path)})
    for text in args.baseline:
        name, path = named_path(text, "baseline")
        models.append({"name": name, "role": "baseline", "path": str(path)})
    routes: list[dict] = []
    for folder in map(Path, args.peer_dir):
        for route_file in sorted(folder.glob("*/route.json")):
            routes.append(json.loads(route_file.read_text()) | {"dir": str(route_file.parent)})
        walk = os.walk(folder, followlinks=True)
        found = [Path(d) / f for d, _, files in walk for f in files if f.endswith(".onnx")]
        for path in sorted(found):
            if ".olive-cache" in path.parts or "olive-cli-tmp" in str(path):
                continue
            rel = path.relative_to(folder)
            route = rel.parts[0] if len(rel.parts) > 1 else ""
            label = route if len(rel.parts) == 2 else str(rel.with_suffix(""))
            models.append({"name": f"olive:{label}", "role": "peer", "path": str(path), "route": route})

    ref_rows = max(args.batch_sizes)
    ref = {k: v[:ref_rows] for k, v in reference.items()} if reference is not None else None
    against = "reference" if ref is not None else None
    for m in models:
        path = Path(m["path"])
        try:
            m.update(graph_summary(path))
        except Exception as err:  # an unreadable peer file is a finding
            m.update(status="load_failed", error=f"onnx.load: {first_line(err)}")
            continue
        seen = (o for o in models if o is not m and "status" in o)
        twin = next((o for o in seen if o.get("sha256") == m["sha256"]), None)
        if twin is not None:  # byte-identical to a model already checked: not loaded or timed again
            m.update(status="duplicate", same_as=twin["name"])
            print(f"  {m['name']}: byte-identical to {twin['name']}, not timed again", flush=True)
            continue
        t = time.perf_counter()
        try:
            m["session"] = session(path, args.threads)
        except Exception as err:
            m.update(status="load_failed", error=first_line(err))
            print(f"  {m['name']}: LOAD FAILED {m['error']}", flush=True)
            continue
        m["load_s"] = round(time.perf_counter() - t, 2)
        if casts := input_casts(m["session"], feeds):
            m["input_casts"] = casts
        # the check: every batch size runs; the largest batch's outputs are compared
        try:
            for b in sorted(args.batch_sizes):
                sess = m["session"]
                names = [o.name for o in sess.get_outputs()]
                t = time.perf_counter()
                out = dict(zip(names, sess.run(None, feed_for(sess, feeds, b)), strict=True))
                m.setdefault("first_call_ms", {})[str(b)] = round(1000 * (time.perf_counter() - t), 1)
        except Exception as err:
            m.update(status="run_failed", error=f"batch {b}: {first_line(err)}")
            m.pop("session")
            print(f"  {m['name']}: RUN FAILED {m['error']}", flush=True)
            continue
        if ref is None:  # no reference: the first of ours stands in
            ref, against = {k: v.copy() for k, v in out.items()}, f"ours ({m['name']})"
        m["check"] = compare(out, ref) | {"against": against, "rows": ref_rows}
        m["status"] = "ok"
        c = m["check"]
        print(
            f"  {m['name']}: ok, load {m['load_s']} s, max|diff| {c['max_abs_diff']:.3g} "
            f"(rel {c['max_rel_diff']:.3g}) vs {against}, nonfinite {c['nonfinite']}",
            flush=True,
        )

    # --- interleaved timing -----------------------------------------------------------------
    live = [m for m in models if m.get("status") == "ok"]
    if not live:
        print("no model loaded and ran: nothing to time", file=sys.stderr)
        return 1
    timing: dict[str, dict] = {}
    load_before = os.getloadavg()
    for b in args.batch_sizes:
        feed = {m["name"]: feed_for(m["session"], feeds, b) for m in live}
        for m in live:
            for _ in range(args.warmup):
                m["session"].run(None, feed[m["name"]])
        samples: dict[str, list[float]] = {m["name"]: [] for m in live}
        for r in range(rounds[b]):
            order = live[r % len(live) :] + live[: r % len(live)]  # rotate who goes first
            for m in order:
                t = time.perf_counter()
                m["session"].run(None, feed[m["name"]])
                samples[m["name"]].append(1000 * (time.perf_counter() - t))
        stats = {
            name: {
                "p50_ms": round(float(np.percentile(s, 50)), 2),
                "p50_ci_ms": interval_ms(s),
                "p90_ms": round(float(np.percentile(s, 90)), 2),
                "min_ms": round(min(s), 2),
                "n": len(s),
            }
            for name, s in samples.items()
        }
        ours = {m["name"]: stats[m["name"]]["p50_ms"] for m in live if m["role"] == "ours"}
        for st in stats.values():
            st["ratio_vs_ours"] = {o: round(st["p50_ms"] / p, 3) for o, p in ours.items()}
        peers = {m["name"]: stats[m["name"]]["p50_ms"] for m in live if m["role"] == "peer"}
        best_peer = min(peers, key=peers.get) if peers else None
        best_ours = min(ours, key=ours.get) if ours else None
        timing[str(b)] = {
            "rounds": rounds[b],
            "warmup": args.warmup,
            "models": stats,
            "best_ours": best_ours,
            "best_peer": best_peer,
            "best_peer_over_best_ours": (
                round(peers[best_peer] / ours[best_ours], 3) if best_peer and best_ours else None
            ),
            # the same ratio round by round (each round times both, back to back): its median and
            # 95 % interval, so machine noise that hits a whole round cancels
            "best_peer_over_best_ours_by_round": (
                paired_ratio(samples[best_peer], samples[best_ours]) if best_peer and best_ours else None
            ),
        }
        print(f"  batch {b}: {rounds[b]} rounds x {len(live)} models timed", flush=True)
    load_after = os.getloadavg()

    # --- report -----------------------------------------------------------------------------
    for m in models:
        m.pop("session", None)
    report = {
        "settings": {
            "batch_sizes": args.batch_sizes,
            "rounds": rounds,
            "warmup": args.warmup,
            "intra_op_num_threads": args.threads,
            "allow_spinning": "0",
            "interleaved": True,
            "feeds": args.feeds,
            "feed_rows": rows,
            "reference": args.reference,
            "outputs_compared_against": against,
        },
        "environment": {
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "loadavg_before_timing": load_before,
            "loadavg_after_timing": load_after,
        },
        "models": models,
        "routes": routes,
        "timing": timing,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwrote {out}")
    return 0


def print_table(report: dict) -> None:
    models, timing = report["models"], report["timing"]
    sizes = list(timing)
    ours = [m["name"] for m in models if m["role"] == "ours" and m.get("status") == "ok"]
    ref_ours = ours[0] if ours else None
    width = max([len(m["name"]) for m in models] + [10])
    head = f"{'model':<{width}}  {'role':<8} {'MiB':>6}  {'max|diff|':>9} {'rel':>8}"
    for b in sizes:
        head += f"  {'b' + b + ' p50 ms':>12} {'p90':>8} {'n':>3} {'x ours':>7}"
    print("\n" + head)
    print("-" * len(head))
    for m in models:
        line = f"{m['name']:<{width}}  {m['role']:<8} {m.get('bytes', 0) / 2**20:>6.0f}"
        if m.get("status") == "duplicate":
            print(f"{line}  byte-identical to {m['same_as']} (timed there)")
            continue
        if m.get("status") != "ok":
            print(f"{line}  {m.get('status', '?').upper()}: {m.get('error', '')[:160]}")
            continue
        c = m["check"]
        line += f"  {c['max_abs_diff']:>9.3g} {c['max_rel_diff']:>8.3g}"
        for b in sizes:
            st = timing[b]["models"][m["name"]]
            ratio = st["ratio_vs_ours"].get(ref_ours, float("nan"))
            line += f"  {st['p50_ms']:>12.1f} {st['p90_ms']:>8.1f} {st['n']:>3} {ratio:>7.2f}"
        print(line)
    for r in report["routes"]:
        if r.get("status") != "ok":
            err = (r.get("error_lines") or r.get("log_tail") or [""])[-1]
            print(f"route {r['route']}: {r['status'].upper()} (exit {r['exit_code']}) {err[:200]}")
    for b in sizes:
        t = timing[b]
        if t["best_peer"]:
            paired = t["best_peer_over_best_ours_by_round"]
            print(
                f"batch {b}: best peer {t['best_peer']} / best ours {t['best_ours']} = "
                f"{t['best_peer_over_best_ours']} (> 1: ours faster); round by round "
                f"{paired['p50']} [{paired['ci'][0]}-{paired['ci'][1]}]"
            )
    print(f"ratios: model p50 / {ref_ours} p50; diffs vs {report['settings']['outputs_compared_against']}")


if __name__ == "__main__":
    sys.exit(main())
