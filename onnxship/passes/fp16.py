"""fp16: float tensors and weights to float16 (ONNX Runtime's float16 converter), inputs and outputs
kept float32 by default so callers and the contract do not change.

Lossy. On CPU most kernels run fp16 through casts (often slower); its home is the CUDA provider.
Values beyond ±65,504 overflow, e.g. raw electricity demand squared inside a normalisation: the
task-metric gate is what catches that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from onnxship.passes import Pass, PassContext, PassOptions, load_without_shapes, register


class Fp16Options(PassOptions):
    keep_io_types: bool = Field(True, description="graph inputs/outputs stay float32")
    op_block_list: list[str] | None = Field(
        None, description="op types left in float32 (default: the converter's list, e.g. tree ops)"
    )


@register
class Fp16Pass(Pass):
    name = "fp16"
    lossy = True
    Options = Fp16Options

    def run(self, src: Path, dst: Path, options: Fp16Options, context: PassContext) -> dict[str, Any]:
        import onnx
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = load_without_shapes(src)
        blocked = options.op_block_list if options.op_block_list is not None else DEFAULT_OP_BLOCK_LIST
        converted = convert_float_to_float16(
            model, keep_io_types=options.keep_io_types, op_block_list=list(blocked)
        )
        # the converter appends the input casts after their users: order the nodes again
        ordered = OnnxModel(converted)
        ordered.topological_sort()
        onnx.save(ordered.model, str(dst))
        kept = sorted({n.op_type for n in model.graph.node if n.op_type in set(blocked)})
        return {"float32_op_types": kept}
