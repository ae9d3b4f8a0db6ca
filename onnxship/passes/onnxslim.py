"""onnxslim: constant folding, dead-node and redundant-op removal, shape simplification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxship.passes import Pass, PassContext, register


def forget_invented_dim_names(model: Any) -> int:
    """Drop the names of the symbolic dimensions onnxslim's shape inference invents for
    intermediate values (`ConstantOfShape_142_o0__d0`): both the numbers in those names and which
    dimensions share one differ from run to run, so the same graph came out as other bytes. Such a
    dimension becomes unnamed (unknown), as ONNX's own inference leaves it; names on the graph's
    inputs and outputs are kept. Returns how many dimensions lost their name."""
    graph = model.graph
    kept = {d.dim_param for v in [*graph.input, *graph.output] for d in v.type.tensor_type.shape.dim}
    dropped = 0
    for value in graph.value_info:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param and dim.dim_param not in kept:
                dim.ClearField("dim_param")
                dropped += 1
    return dropped


@register
class OnnxSlimPass(Pass):
    name = "onnxslim"

    def run(self, src: Path, dst: Path, options: Any, context: PassContext) -> dict[str, Any]:
        import onnx
        import onnxslim

        slimmed = onnxslim.slim(onnx.load(str(src)))
        if slimmed is None:
            raise RuntimeError("onnxslim returned no model")
        forget_invented_dim_names(slimmed)
        onnx.save(slimmed, str(dst))
        return {}
