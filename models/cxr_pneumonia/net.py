"""The pneumonia classifier: a small CNN whose head is global average pooling + linear.

With such a head the logit is ``b + sum_k w_k * mean(A_k)``, so Grad-CAM on the last
convolutional block (gradient of the logit w.r.t. ``A_k`` = ``w_k / Z`` everywhere) is
exactly ``ReLU(sum_k w_k * A_k)``: the node computes it in numpy from the exported
feature maps and the head weights, without autograd, on any engine.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["PneumoniaNet", "build_network"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class PneumoniaNet(nn.Module):
    """``(N, 1, 256, 256)`` → ``probability (N, 1)`` and ``features (N, C, 16, 16)``.

    A strided stem and a pooling bring the image to 64 x 64; blocks at 64, 32, 16 and 16
    pixels; the last block's maps are the Grad-CAM features.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 24, 32, 48, 64)) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels[0], 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        layers = []
        for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            layers.append(_block(cin, cout))
            if i < 2:  # 64 -> 32 -> 16; the last two blocks work at 16 x 16
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(self.stem(x))
        logit = self.head(features.mean(dim=(2, 3)))
        return torch.sigmoid(logit), features

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).mean(dim=(2, 3)))


def build_network(meta: dict) -> nn.Module:
    """Rebuild the architecture described by ``model.json`` (``channels``)."""
    return PneumoniaNet(tuple(meta.get("channels", (16, 24, 32, 48, 64))))
