"""Chronos-2 specialised where its algebra allows (onnxship/chronos/group_shortcut.py,
forecast_tokens.py and time_attention.py say why each holds): the group attention skipped when
every row is its own group, the last block's group attention and feed-forward run on the
forecast's tokens only, the time attention as ONNX Runtime's fused MultiHeadAttention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from onnxship.passes import Pass, PassContext, PassOptions, load_without_shapes, register


class Chronos2ShortcutsOptions(PassOptions):
    fold: bool = Field(
        True,
        description="the shortcut's value and output projections as one MatMul (Wv·Wo): one projection "
        "fewer per block, not bit-exact (False: bit for bit the exported graph's answers)",
    )
    forecast_tokens: bool = Field(
        True, description="last block past its time attention on future tokens only"
    )
    # off by default: on 2 AVX2 cores it answered bit for bit and timed like the separate nodes
    # (sequences of ~37 tokens); ORT's CUDA kernel for the op is a fused one
    fused_attention: bool = Field(False, description="time attention as com.microsoft.MultiHeadAttention")


@register
class Chronos2ShortcutsPass(Pass):
    name = "chronos2_shortcuts"
    runtime_ops = True  # com.microsoft.MultiHeadAttention: checked by loading it into ORT
    Options = Chronos2ShortcutsOptions

    def run(
        self, src: Path, dst: Path, options: Chronos2ShortcutsOptions, context: PassContext
    ) -> dict[str, Any]:
        import onnx

        from onnxship.chronos import forecast_tokens, group_shortcut, time_attention

        model = load_without_shapes(src)
        if group_shortcut.GROUP_IDS not in {i.name for i in model.graph.input}:
            raise ValueError("not a Chronos-2 forecast graph: no group_ids input")
        did: dict[str, Any] = {}
        if options.fused_attention:
            did["time_attentions_fused"] = time_attention.rewrite(model)
        if options.forecast_tokens:  # first: it expects the graph without the shortcut's subgraphs
            did["forecast_token_layers"] = forecast_tokens.rewrite(model)
        did["group_attentions_shortcut"] = group_shortcut.rewrite(model, fold=options.fold)
        onnx.save(model, str(dst))
        return did
