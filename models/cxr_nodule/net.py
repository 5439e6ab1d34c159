"""The nodule segmenter: a small 2D U-Net (plain torch)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["NoduleUNet", "build_network"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class NoduleUNet(nn.Module):
    """U-Net: ``(N, 2, H, W)`` image and detail channels → ``(N, 1, H, W)`` nodule logits.

    ``channels`` gives the width of each level; H and W must be divisible by
    ``2 ** (len(channels) - 1)``.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 48)) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.down = nn.ModuleList()
        cin = 2
        for c in channels:
            self.down.append(_block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c_low, c_high in zip(channels[::-1][:-1], channels[::-1][1:]):
            self.up.append(nn.ConvTranspose2d(c_low, c_high, 2, stride=2))
            self.merge.append(_block(2 * c_high, c_high))
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_network(meta: dict) -> nn.Module:
    """Rebuild the architecture described by ``model.json`` (``channels``)."""
    return NoduleUNet(tuple(meta.get("channels", (8, 16, 32, 48))))
