"""The exported forecasters: Chronos models wrapped to the forecast graph layouts of
onnxship.contract (ForecastGraph), which onnxship/forecasting runs as the library's predict does.

Chronos-2 (layout "chronos2"): the model's own inputs, rows and group ids,

    context [rows, T], group_ids [rows], future_covariates [rows, F] -> quantiles [rows, F, n_levels]

a series being its target rows plus one row per covariate, all with one group id (the library's
layout, chronos2/pipeline.py); future rows hold known covariate values, NaN elsewhere. The graph
forecasts ceil(F / patch) output patches, F taken from the input's shape, so one graph answers
every horizon up to the model's max_output_patches patches exactly as `predict(prediction_length=F)`
does: the future patches attend to each other, so the patch count changes even the first steps.

Chronos-Bolt (layout "chronos_bolt"): context [batch, T] -> quantiles [batch, native horizon,
n_levels], the model's whole prediction_length (a shorter horizon is its first steps; a longer one
rolls forward on these).
"""

from __future__ import annotations

import torch
from torch import nn


class Chronos2Graph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, context: torch.Tensor, group_ids: torch.Tensor, future_covariates: torch.Tensor
    ) -> torch.Tensor:
        config = self.model.chronos_config
        # the model truncates a longer context behind a Python `if`, which tracing would freeze at
        # the example's length: truncate here, in the graph (a no-op on shorter contexts)
        context = context[:, -config.context_length :]
        patch = config.output_patch_size
        steps = future_covariates.shape[-1]  # traced: the patch count follows the input's shape
        patches = (steps + patch - 1) // patch
        # NaN-padded to whole patches, as Chronos2Pipeline does
        tail = torch.full(
            (future_covariates.shape[0], patches * patch - steps), torch.nan, dtype=future_covariates.dtype
        )
        future = torch.cat([future_covariates, tail], dim=-1)
        out = self.model(
            context=context, group_ids=group_ids, future_covariates=future, num_output_patches=patches
        ).quantile_preds
        return out[:, :, :steps].transpose(1, 2)  # [rows, Q, P * patch] -> [rows, F, Q]


class BoltGraph(nn.Module):
    """Chronos-Bolt answers its configured prediction_length at once."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        context = context[:, -self.model.chronos_config.context_length :]  # in-graph, as in Chronos2Graph
        return self.model(context=context).quantile_preds.transpose(1, 2)
