"""INT8 dynamic quantization (onnxruntime.quantization.quantize_dynamic): weights stored as int8,
activations quantized per call from their observed range. No calibration data; where the speed is
for transformer MatMuls on CPU.

Lossy: gated on the task metric. No pre-processing: ORT's quant_pre_process with symbolic shape
inference wrote wrong shapes into the Chronos-2 graph (every input then failed in Reshape/Slice),
and the plain graph quantizes correctly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from onnxship.passes import Pass, PassContext, PassOptions, load_without_shapes, register


class Int8DynamicOptions(PassOptions):
    per_channel: bool = Field(False, description="one scale per output channel of each weight")
    reduce_range: bool = Field(False, description="7-bit weights (older CPUs without VNNI overflow)")
    weight_type: Literal["qint8", "quint8"] = "qint8"
    subgraphs: bool = Field(
        False, description="quantize inside If/Loop branches too (e.g. chronos2_shortcuts' full attention)"
    )
    op_types: list[str] | None = Field(
        None, description="op types to quantize (default: every op type ORT can, e.g. MatMul, Gemm, Conv)"
    )


def quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[name]


# ONNX shape inference cannot type the outputs of ORT's fused ops (after transformer_fusion):
# they are float32, which the quantizer is told instead of giving up on the weight
FUSED_OP_TYPES = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """The quantizer warns on the root logger for every tensor it skips (non-float, unknown
    shape): noise in a stage log, and what it did is reported from the output graph instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantized_nodes(path: Path) -> dict[str, int]:
    """How many nodes of each quantized op type the output holds (what the pass actually did)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        if "Integer" in node.op_type or node.op_type.startswith(("QLinear", "Quantize", "Dequantize")):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


@register
class Int8DynamicPass(Pass):
    name = "int8_dynamic"
    lossy = True
    Options = Int8DynamicOptions

    def run(self, src: Path, dst: Path, options: Int8DynamicOptions, context: PassContext) -> dict[str, Any]:
        from onnxruntime.quantization import quantize_dynamic

        with quiet_quantizer():
            quantize_dynamic(
                load_without_shapes(src),
                dst,
                op_types_to_quantize=options.op_types,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                weight_type=quant_type(options.weight_type),
                extra_options=FUSED_OP_TYPES | {"EnableSubgraph": options.subgraphs},
            )
        counts = quantized_nodes(dst)
        if not counts:
            raise ValueError("nothing to quantize: the graph has no op that INT8 dynamic covers")
        return {"quantized_nodes": counts}
