"""ONNX Runtime offline graph optimization: the optimized graph ORT would build at load time,
saved once so sessions start faster (levels: basic, extended, all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from onnxship.passes import Pass, PassContext, PassOptions, register

PORTABLE_ONLY = ("NchwcTransformer",)  # optimizers left to load time (see run)


class OrtGraphOptions(PassOptions):
    level: Literal["basic", "extended", "all"] = Field("basic", description="ORT graph optimization level")


@register
class OrtGraphPass(Pass):
    name = "ort_graph"
    Options = OrtGraphOptions
    runtime_ops = True

    def run(self, src: Path, dst: Path, options: OrtGraphOptions, context: PassContext) -> dict[str, Any]:
        import onnxruntime as ort

        from onnxship.runtime import LEVELS

        so = ort.SessionOptions()
        so.graph_optimization_level = LEVELS[options.level]
        so.optimized_model_filepath = str(dst)
        # optimized for the CPU provider: "extended"/"all" may add CPU-only fused ops. Not the
        # NCHWc layout ("all"): its block size is this CPU's (8 channels on AVX2, 16 on AVX-512),
        # and ORT names its reorder nodes in no fixed order (two runs here wrote different bytes).
        # Sessions still apply it at load, for the CPU they run on.
        ort.InferenceSession(
            str(src), so, providers=["CPUExecutionProvider"], disabled_optimizers=list(PORTABLE_ONLY)
        )
        return {"provider": "CPUExecutionProvider"}
