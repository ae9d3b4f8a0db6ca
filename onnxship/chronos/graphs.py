"""The exported forecaster: a Chronos model wrapped to the forecast contract (onnxship.contract):

    context [batch, T] (+ past_covariates [batch, T, C], future_covariates [batch, H, C])
        -> quantiles [batch, H, n_levels]

One graph per horizon bucket: Chronos-2's future patches attend to each other, so the number of
output patches (ceil(H / patch)) changes even the first steps; H is fixed in the graph, the batch
and the context length stay dynamic.

Chronos-2 takes covariates as rows of the batch that share a group id with their target (the
library's own layout, chronos2/pipeline.py): each series becomes 1 + C rows, the target first and
one row per covariate; a covariate's future row holds its known values, NaN where unknown (past-
only covariates, and the target row, which the model forecasts). Only the target rows' quantiles
are returned.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Chronos2Graph(nn.Module):
    def __init__(self, model: nn.Module, horizon: int, n_covariates: int) -> None:
        super().__init__()
        self.model, self.horizon, self.n_covariates = model, horizon, n_covariates
        self.patches = math.ceil(horizon / model.chronos_config.output_patch_size)

    def forward(
        self,
        context: torch.Tensor,
        past_covariates: torch.Tensor | None = None,
        future_covariates: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rows_per_series = 1 + self.n_covariates
        batch = context.shape[0]
        # the model truncates a longer context behind a Python `if`, which tracing would freeze at
        # the example's length: truncate here, in the graph (a no-op on shorter contexts)
        keep = self.model.chronos_config.context_length
        context = context[:, -keep:]
        padded = self.patches * self.model.chronos_config.output_patch_size
        if self.n_covariates:
            # [B, T] + [B, T, C] -> [B, 1 + C, T] -> [B * (1 + C), T]
            past = past_covariates[:, -keep:]
            rows = torch.cat([context.unsqueeze(1), past.transpose(1, 2)], dim=1)
            rows = rows.reshape(-1, context.shape[1])
            unknown = torch.full_like(future_covariates[:, :, :1], torch.nan)
            future = torch.cat([unknown, future_covariates], dim=2).transpose(1, 2)  # [B, 1 + C, H]
            future = future.reshape(-1, self.horizon)
            # NaN-padded to whole patches, as Chronos2Pipeline does
            if padded > self.horizon:  # fixed per graph (the horizon is), so a Python branch is fine
                tail = torch.full_like(future[:, :1], torch.nan).expand(-1, padded - self.horizon)
                future = torch.cat([future, tail], dim=1)
            groups = torch.arange(batch).repeat_interleave(rows_per_series)
            out = self.model(
                context=rows, group_ids=groups, future_covariates=future, num_output_patches=self.patches
            ).quantile_preds
            out = out[::rows_per_series]  # the target rows
        else:
            groups = torch.arange(batch)
            out = self.model(context=context, group_ids=groups, num_output_patches=self.patches)
            out = out.quantile_preds
        return out[:, :, : self.horizon].transpose(1, 2)  # [B, Q, H] -> [B, H, Q]


class BoltGraph(nn.Module):
    """Chronos-Bolt answers its configured prediction_length at once; the graph keeps the first H."""

    def __init__(self, model: nn.Module, horizon: int) -> None:
        super().__init__()
        if horizon > model.chronos_config.prediction_length:
            raise ValueError(
                f"horizon {horizon} > this Chronos-Bolt's prediction_length "
                f"{model.chronos_config.prediction_length} (longer needs autoregressive unrolling)"
            )
        self.model, self.horizon = model, horizon

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        context = context[:, -self.model.chronos_config.context_length :]  # in-graph, as in Chronos2Graph
        out = self.model(context=context).quantile_preds
        return out[:, :, : self.horizon].transpose(1, 2)
