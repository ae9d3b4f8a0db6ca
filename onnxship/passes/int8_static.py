"""INT8 static quantization, QDQ format (onnxruntime.quantization.quantize_static): weights and
activations int8, activation ranges calibrated beforehand on real inputs from the validation
split (never the test split the gates judge on). Calibration: MinMax, entropy or percentile.

Lossy: gated on the task metric. A calibration that saw too few or unrepresentative rows clips
activations, and the gate refuses the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from onnxship.passes import Pass, PassContext, PassOptions, load_without_shapes, register
from onnxship.passes.int8_dynamic import quant_type, quantized_nodes, quiet_quantizer


class Int8StaticOptions(PassOptions):
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = Field(99.999, gt=50, le=100, description="for calibrate_method: percentile")
    calibration_rows: int = Field(512, ge=1, le=100_000, description="validation rows (or windows) seen")
    per_channel: bool = False
    activation_type: Literal["qint8", "quint8"] = "quint8"
    weight_type: Literal["qint8", "quint8"] = "qint8"
    # The compute-heavy ops only by default: quantizing everything ORT can also puts the output
    # Softmax through 8 bits, and probabilities near 0 then cost the CNN 183 % of its log-loss
    # (measured here) while its accuracy did not move.
    op_types: list[str] | None = Field(
        ["Conv", "MatMul", "Gemm"], description="op types to quantize (null: every op type ORT can)"
    )


@register
class Int8StaticPass(Pass):
    name = "int8_static"
    lossy = True
    Options = Int8StaticOptions

    def run(self, src: Path, dst: Path, options: Int8StaticOptions, context: PassContext) -> dict[str, Any]:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            quantize_static,
        )

        if context.calibration is None:
            raise ValueError("int8_static needs calibration data and none was given")
        feeds = context.calibration(options.calibration_rows)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.feeds = iter(feeds)

            def get_next(self) -> dict[str, Any] | None:
                return next(self.feeds, None)

        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[options.calibrate_method]
        extra = {"CalibPercentile": options.percentile} if options.calibrate_method == "percentile" else {}
        with quiet_quantizer():
            quantize_static(
                load_without_shapes(src),
                dst,
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=options.op_types,
                per_channel=options.per_channel,
                activation_type=quant_type(options.activation_type),
                weight_type=quant_type(options.weight_type),
                calibrate_method=method,
                extra_options=extra,
            )
        counts = quantized_nodes(dst)
        if not counts:
            raise ValueError("nothing to quantize: the graph has no op that INT8 static covers")
        rows = sum(len(next(iter(f.values()))) for f in feeds)
        return {"quantized_nodes": counts, "calibration_rows_seen": rows}
