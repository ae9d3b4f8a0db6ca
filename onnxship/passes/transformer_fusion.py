"""ONNX Runtime's transformer optimizer (onnxruntime.transformers.optimizer): fuses the patterns it
knows (attention, LayerNorm / RMSNorm as SimplifiedLayerNormalization, skip connections, GELU,
bias adds) into ORT's contrib ops. Offline fusion only (opt_level 0): ORT's own graph levels
still run at session load. Lossless up to float rounding; combine with int8_dynamic after it.

What it fused is returned per fused op type: on a graph it does not recognise it fuses nothing,
and the variant then only costs time, which the benchmark shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from onnxship.passes import Pass, PassContext, PassOptions, register

FUSIONS = Literal[
    "gelu",
    "layer_norm",
    "attention",
    "rotary_embeddings",
    "skip_layer_norm",
    "bias_skip_layer_norm",
    "bias_gelu",
    "embed_layer_norm",
]


class TransformerFusionOptions(PassOptions):
    model_type: Literal["t5", "bert", "gpt2", "bart"] = Field(
        "t5", description="fusion patterns to try (Chronos is T5-based: RMSNorm, no bias)"
    )
    num_heads: int = Field(0, ge=0, description="0: read from the graph")
    hidden_size: int = Field(0, ge=0, description="0: read from the graph")
    # Rotary-embedding fusion is off by default: on Chronos-2 (ORT 1.31) it wrote a
    # RotaryEmbedding node whose position_ids do not fit the batch, and every input then failed.
    disable: list[FUSIONS] = Field(
        ["rotary_embeddings"], description="fusions not to try, by FusionOptions name without 'enable_'"
    )


@register
class TransformerFusionPass(Pass):
    name = "transformer_fusion"
    runtime_ops = True  # writes com.microsoft fused ops
    Options = TransformerFusionOptions

    def run(
        self, src: Path, dst: Path, options: TransformerFusionOptions, context: PassContext
    ) -> dict[str, Any]:
        import logging

        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        fusion = FusionOptions(options.model_type)
        for name in options.disable:
            setattr(fusion, f"enable_{name}", False)

        # the optimizer logs every pattern it tried and did not find at WARNING
        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
        optimized = optimize_model(
            str(src),
            model_type=options.model_type,
            num_heads=options.num_heads,
            hidden_size=options.hidden_size,
            optimization_options=fusion,
            opt_level=0,
            use_gpu=False,
        )
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(dst))
        return {"fused": dict(sorted(fused.items()))}
