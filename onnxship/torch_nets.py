"""The PyTorch networks the default zoo trains: an MLP for feature rows and a small CNN for images.

Each keeps its input scaling (and, for regression, its target scaling) as buffers, so the
state_dict, the eager module and the exported graph all carry it: a served graph takes raw
features and answers in the target's units. Constructor arguments are plain JSON values: the
family saves them beside the weights and rebuilds the module from them (no pickle).
"""

from __future__ import annotations

import torch
from torch import nn


class Scaled(nn.Module):
    """x -> (x - mean) / scale -> body -> y * y_scale + y_mean, with the statistics as buffers
    (shaped to broadcast over one input: per feature for rows, per channel for images)."""

    def __init__(self, stats_shape: tuple[int, ...], n_outputs: int) -> None:
        super().__init__()
        self.register_buffer("x_mean", torch.zeros(stats_shape))
        self.register_buffer("x_scale", torch.ones(stats_shape))
        self.register_buffer("y_mean", torch.zeros(n_outputs))
        self.register_buffer("y_scale", torch.ones(n_outputs))

    def body(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.x_mean) / self.x_scale) * self.y_scale + self.y_mean


class MLP(Scaled):
    """Feature rows [batch, n_features] -> [batch, n_outputs] (a value, or class logits)."""

    def __init__(
        self, input_shape: list[int], n_outputs: int = 1, hidden: list[int] | None = None, dropout: float = 0
    ) -> None:
        (n_features,) = input_shape
        super().__init__((n_features,), n_outputs)
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden or [64, 32]:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def body(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class SmallCNN(Scaled):
    """Images [batch, channels, height, width] -> class logits [batch, n_outputs]: two 3×3
    convolutions, a 2×2 max-pool, two linear layers. Sized for 8×8 digits; any H, W divisible by 2."""

    def __init__(
        self, input_shape: list[int], n_outputs: int, channels: list[int] | None = None, hidden: int = 64
    ) -> None:
        c, h, w = input_shape
        super().__init__((c, 1, 1), n_outputs)
        first, second = channels or [16, 32]
        self.features = nn.Sequential(
            nn.Conv2d(c, first, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(first, second, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(second * (h // 2) * (w // 2), hidden), nn.ReLU(), nn.Linear(hidden, n_outputs)
        )

    def body(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(z))


class Classifier(nn.Module):
    """Logits -> (label int64, probabilities): the classification contract, inside the graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return torch.argmax(logits, dim=1), torch.softmax(logits, dim=1)
