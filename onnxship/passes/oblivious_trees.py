"""Oblivious trees (CatBoost's) rewritten from ai.onnx.ml.TreeEnsembleRegressor into standard
ONNX operators: leaf indices from one integer product, leaf sums from one table lookup per pair
of trees (onnxship/trees/oblivious.py says how and why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxship.passes import Pass, PassContext, load_without_shapes, register


@register
class ObliviousTreesPass(Pass):
    name = "oblivious_trees"

    def run(self, src: Path, dst: Path, options: Any, context: PassContext) -> dict[str, Any]:
        import onnx

        from onnxship.trees.oblivious import rewrite

        model = load_without_shapes(src)
        replaced = rewrite(model)
        if not replaced:  # e.g. a classifier, or trees that are not oblivious: nothing to gain
            raise ValueError("no oblivious TreeEnsembleRegressor in the graph")
        onnx.save(model, str(dst))
        return {"ensembles_rewritten": replaced}
