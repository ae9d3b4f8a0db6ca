#!/usr/bin/env bash
# The peer: what Microsoft Olive's automatic CLI routes make of OUR exported ONNX graph.
#
#   tools/peer_olive.sh EXPORTED_ONNX OUT_DIR
#
# Creates (once) a separate virtualenv .venv-olive in the repo root (olive-ai 0.13.0, onnxruntime
# 1.31.1, torch 2.13.0 pinned: Olive imports torch, and an unpinned torch pulls a CUDA build), then
# runs each Olive route on EXPORTED_ONNX into OUT_DIR/<route>/ with its own log (olive.log) and
# outcome (route.json: command, exit code, seconds, the .onnx files it wrote, the last error line).
# A route that fails is recorded, never fatal. Routes run one after another, under `nice`.
#
#   ROUTES="optimize quantize_ort_int8" tools/peer_olive.sh ...   run only these routes
#   KEEP_OLIVE_CACHE=1                                            keep OUT_DIR/.olive-cache
#
# Routes (every one is a plain CLI call a user would try on an ONNX input for the CPU; the flags
# are those `olive optimize --help` / `olive quantize --help` list in 0.13.0):
#   optimize            olive optimize (defaults: CPUExecutionProvider, fp32) -> OnnxPeepholeOptimizer
#   optimize_int4       olive optimize --precision int4   -> + OnnxBlockWiseRtnQuantization
#   optimize_fp16       olive optimize --precision fp16   -> + OnnxFloatToFloat16
#   optimize_int8       olive optimize --precision int8   -> + OnnxStaticQuantization (calibrates on
#                       wikitext2 from the Hugging Face hub: needs `datasets`, which olive-ai does not
#                       install, and the network; in 0.13.0 it stops at "No module named 'datasets'")
#   optimize_ortfusion  olive optimize --exporter torchscript_exporter -> on an ONNX input the
#                       exporter flag only adds OrtTransformersOptimization, which skips itself
#                       ("Unsupported model type: None"): the same bytes as `optimize`
#   quantize_default    olive quantize (defaults: --implementation olive --algorithm rtn --precision int8)
#   quantize_ort_int8   olive quantize --implementation ort --precision int8  -> OnnxDynamicQuantization
#   quantize_ort_uint8  olive quantize --implementation ort --precision uint8 -> OnnxDynamicQuantization
#   quantize_int4_rtn   olive quantize --precision int4                 -> OnnxBlockWiseRtnQuantization
#   quantize_int4_hqq   olive quantize --algorithm hqq --precision int4 -> OnnxHqqQuantization
#   quantize_bnb_nf4    olive quantize --implementation bnb --precision nf4 -> OnnxBnb4Quantization
#
# Then compare (project venv, repo root): python -m tools.peer_olive --ours ... --peer-dir OUT_DIR ...
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 EXPORTED_ONNX OUT_DIR" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="$(realpath "$1")"
OUT="$(realpath -m "$2")"
[ -f "$MODEL" ] || { echo "no such model: $MODEL" >&2; exit 2; }
VENV="$ROOT/.venv-olive"
PY="$VENV/bin/python"
OLIVE="$VENV/bin/olive"

[ -x "$PY" ] || { echo "== creating $VENV"; python3.11 -m venv "$VENV" || exit 1; }
if ! "$PY" -c "import olive, onnxruntime, torch, requests, onnxoptimizer" 2>/dev/null; then
  # requests: olive-ai 0.13.0 imports it (telemetry exporter) without declaring it.
  # onnxoptimizer: OnnxPeepholeOptimizer's declared extra; without it the pass only warns
  # "Please install `onnxoptimizer` to apply more optimization" (the peer gets its best here).
  "$VENV/bin/pip" install --quiet olive-ai==0.13.0 onnxruntime==1.31.1 torch==2.13.0 \
    requests onnxoptimizer==0.4.2 || exit 1
fi
"$PY" - <<'EOF' || exit 1
import importlib.metadata as m
for p in ("olive-ai", "onnxruntime", "onnx", "torch"):
    print(f"{p}=={m.version(p)}", end="  ")
print()
EOF

mkdir -p "$OUT"
export OLIVE_DISABLE_TELEMETRY=1
# Olive's cache (.olive-cache) goes under OUT_DIR, never the repo: each route runs from OUT_DIR.
export OLIVE_CACHE_DIR="$OUT/.olive-cache"

declare -A ARGS=(
  [optimize]="optimize"
  [optimize_int4]="optimize --precision int4"
  [optimize_fp16]="optimize --precision fp16"
  [optimize_int8]="optimize --precision int8"
  [optimize_ortfusion]="optimize --exporter torchscript_exporter"
  [quantize_default]="quantize"
  [quantize_ort_int8]="quantize --implementation ort --precision int8"
  [quantize_ort_uint8]="quantize --implementation ort --precision uint8"
  [quantize_int4_rtn]="quantize --precision int4"
  [quantize_int4_hqq]="quantize --algorithm hqq --precision int4"
  [quantize_bnb_nf4]="quantize --implementation bnb --precision nf4"
)
ORDER="optimize optimize_int4 optimize_fp16 optimize_int8 optimize_ortfusion quantize_default
       quantize_ort_int8 quantize_ort_uint8 quantize_int4_rtn quantize_int4_hqq quantize_bnb_nf4"
ROUTES="${ROUTES:-$ORDER}"

for route in $ROUTES; do
  args="${ARGS[$route]:-}"
  [ -n "$args" ] || { echo "unknown route: $route" >&2; continue; }
  dest="$OUT/$route"
  rm -rf "$dest"
  mkdir -p "$dest"
  # shellcheck disable=SC2206
  cmd=("$OLIVE" $args -m "$MODEL" -o "$dest" --log_level 1 --disable_telemetry)
  [[ "$args" == optimize* ]] && cmd+=(--provider CPUExecutionProvider --device cpu)
  echo "== $route: olive ${cmd[*]:1}"
  start=$(date +%s.%N)
  (cd "$OUT" && nice -n 10 "${cmd[@]}") >"$dest/olive.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  [ "${KEEP_OLIVE_CACHE:-0}" = 1 ] || rm -rf "$OLIVE_CACHE_DIR"
  ROUTE="$route" RC="$rc" SECONDS_TAKEN="$(echo "$end - $start" | bc)" DEST="$dest" CMD="olive ${cmd[*]:1}" \
    "$PY" - <<'EOF'
import json, os, re
from pathlib import Path
dest = Path(os.environ["DEST"])
log = (dest / "olive.log").read_text(errors="replace").splitlines()
onnx = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.onnx"))
pat = re.compile(r"(Error|Exception|error:|FAIL|not supported|No output model|Traceback)", re.I)
errors = [l.strip() for l in log if pat.search(l)]
rc = int(os.environ["RC"])
status = "ok" if rc == 0 and onnx else ("no_model" if rc == 0 else "failed")
rec = {
    "route": os.environ["ROUTE"], "command": os.environ["CMD"], "exit_code": rc, "status": status,
    "seconds": round(float(os.environ["SECONDS_TAKEN"]), 1), "onnx_files": onnx,
    "bytes": {f: (dest / f).stat().st_size + sum(
        p.stat().st_size for p in (dest / f).parent.iterdir() if p.suffix == ".data" or p.name.endswith(".onnx.data"))
        for f in onnx},
    "error_lines": errors[-6:], "log_tail": log[-15:],
}
(dest / "route.json").write_text(json.dumps(rec, indent=2) + "\n")
print(f"   -> {status} (exit {rc}, {rec['seconds']} s) {', '.join(onnx) or ''}")
for e in errors[-3:]:
    print(f"      {e[:300]}")
EOF
done
