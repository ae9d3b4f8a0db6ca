"""Export-time patches for chronos-forecasting models: ONNX cannot take them as shipped.

Applied only inside `export_patches(model)` and undone on leaving it; tests/test_chronos.py proves
PyTorch answers the same with them applied (bit for bit). The four patches (see ../shared
RESEARCH.md, and upstream chronos-forecasting PR #508, which found the first three):

1. `InstanceNorm.forward` without `torch.nanmean` (no ONNX symbolic): a masked sum / count, with
   the library's edge cases kept (an all-NaN row -> loc 0, scale 1; scale 0 -> eps).
2. `Patch.forward` with `reshape` instead of `unfold` (stride == patch size), and the NaN
   left-padding computed from the traced length instead of a Python `if`: with the branch, a
   graph exported at one context length breaks (MatMul "Incompatible dimensions") at another.
3. Symbolics for `aten::asinh` / `aten::sinh` (Chronos-2 `use_arcsinh`) -> ONNX Asinh / Sinh.
4. The [REG] / decoder-start token lookups: `torch.full` without a dtype traces a float index;
   the embeddings cast their ids to int64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

OPSET = 17  # the legacy exporter's opset that carries every op used here


def masked_instance_norm(
    self: Any, x: torch.Tensor, loc_scale: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    orig_dtype = x.dtype
    x = x.to(torch.float32)
    if loc_scale is None:
        observed = ~torch.isnan(x)
        count = observed.sum(dim=-1, keepdim=True)
        # nanmean = nansum / count: the same sum over the same values, in the same order
        loc = torch.where(observed, x, 0.0).sum(dim=-1, keepdim=True) / count
        loc = torch.where(count > 0, loc, 0.0)
        var = torch.where(observed, (x - loc).square(), 0.0).sum(dim=-1, keepdim=True) / count
        scale = torch.where(count > 0, var.sqrt(), 1.0)
        scale = torch.where(scale == 0, self.eps, scale)
    else:
        loc, scale = loc_scale
    scaled_x = (x - loc) / scale
    if self.use_arcsinh:
        scaled_x = torch.arcsinh(scaled_x)
    return scaled_x.to(orig_dtype), (loc, scale)


def reshaped_patch(self: Any, x: torch.Tensor) -> torch.Tensor:
    if self.patch_stride != self.patch_size:
        raise NotImplementedError("export supports patch_stride == patch_size only (every released model)")
    length = x.shape[-1]
    pad = (self.patch_size - length % self.patch_size) % self.patch_size  # traced, not a Python branch
    padding = torch.full((*x.shape[:-1], pad), torch.nan, dtype=x.dtype, device=x.device)
    x = torch.cat((padding, x), dim=-1)
    return x.reshape(*x.shape[:-1], -1, self.patch_size)


def _asinh(g: Any, x: Any) -> Any:
    return g.op("Asinh", x)


def _sinh(g: Any, x: Any) -> Any:
    return g.op("Sinh", x)


def _long_ids(embedding: torch.nn.Embedding) -> Any:
    original = embedding.forward

    def forward(ids: torch.Tensor) -> torch.Tensor:
        return original(ids.long())

    return forward


def _embeddings(model: torch.nn.Module) -> list[torch.nn.Embedding]:
    """The token embeddings whose ids come from `torch.full` ([REG], decoder start)."""
    found = []
    for path in ("shared", "encoder.embed_tokens", "decoder.embed_tokens"):
        module: Any = model
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, torch.nn.Embedding) and module not in found:
            found.append(module)
    return found


@contextlib.contextmanager
def export_patches(model: torch.nn.Module) -> Iterator[None]:
    """Apply the four patches to the classes and to `model`'s embeddings; undo them all after."""
    from chronos.chronos_bolt import InstanceNorm, Patch

    saved = [(InstanceNorm, "forward", InstanceNorm.forward), (Patch, "forward", Patch.forward)]
    embeddings = _embeddings(model)
    InstanceNorm.forward = masked_instance_norm
    Patch.forward = reshaped_patch
    for embedding in embeddings:
        embedding.forward = _long_ids(embedding)
    torch.onnx.register_custom_op_symbolic("aten::asinh", _asinh, OPSET)
    torch.onnx.register_custom_op_symbolic("aten::sinh", _sinh, OPSET)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        for embedding in embeddings:
            del embedding.forward  # back to the class's method
        torch.onnx.unregister_custom_op_symbolic("aten::asinh", OPSET)
        torch.onnx.unregister_custom_op_symbolic("aten::sinh", OPSET)
