"""onnxslim: constant folding, dead-node and redundant-op removal, shape simplification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxship.passes import Pass, PassContext, register


def canonical_dim_names(model: Any) -> int:
    """Rename the symbolic dimensions onnxslim's shape inference invents for intermediate values
    (`ConstantOfShape_142_o0__d0`): the number in such a name comes from a counter whose value
    differs from run to run, so the same graph came out as other bytes. Each invented name becomes
    `slim_d<k>`, k in order of first appearance; names on the graph's inputs and outputs are kept.
    Returns how many names were renamed."""
    graph = model.graph
    kept = {d.dim_param for v in [*graph.input, *graph.output] for d in v.type.tensor_type.shape.dim}
    renamed: dict[str, str] = {}
    for value in graph.value_info:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param and dim.dim_param not in kept:
                dim.dim_param = renamed.setdefault(dim.dim_param, f"slim_d{len(renamed)}")
    return len(renamed)


@register
class OnnxSlimPass(Pass):
    name = "onnxslim"

    def run(self, src: Path, dst: Path, options: Any, context: PassContext) -> dict[str, Any]:
        import onnx
        import onnxslim

        slimmed = onnxslim.slim(onnx.load(str(src)))
        if slimmed is None:
            raise RuntimeError("onnxslim returned no model")
        canonical_dim_names(slimmed)
        onnx.save(slimmed, str(dst))
        return {}
