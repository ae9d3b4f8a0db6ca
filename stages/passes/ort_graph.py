"""ONNX Runtime offline graph optimization: the optimized graph ORT would build at load time,
saved once so sessions start faster (levels: basic, extended, all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from stages.passes import Pass, register

LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@register
class OrtGraphPass(Pass):
    name = "ort_graph"
    options: ClassVar[dict[str, tuple[str, ...]]] = {"level": ("basic", "extended", "all")}

    def run(self, src: Path, dst: Path, options: dict[str, Any]) -> dict[str, Any]:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[options["level"]])
        so.optimized_model_filepath = str(dst)
        # optimized for the CPU provider: "extended"/"all" may add CPU-only fused ops
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        return {"level": options["level"], "provider": "CPUExecutionProvider"}
