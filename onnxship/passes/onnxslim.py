"""onnxslim: constant folding, dead-node and redundant-op removal, shape simplification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxship.passes import Pass, PassContext, register


@register
class OnnxSlimPass(Pass):
    name = "onnxslim"

    def run(self, src: Path, dst: Path, options: Any, context: PassContext) -> dict[str, Any]:
        import onnx
        import onnxslim

        slimmed = onnxslim.slim(onnx.load(str(src)))
        if slimmed is None:
            raise RuntimeError("onnxslim returned no model")
        onnx.save(slimmed, str(dst))
        return {}
