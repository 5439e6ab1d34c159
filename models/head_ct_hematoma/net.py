"""Fully-convolutional patch classifier for head CT (plain PyTorch).

One forward pass maps a batch of windowed slices ``image`` ``(N, 2, 512, 512)`` to
``logits`` ``(N, 4, 32, 32)``: one score per class (:data:`CLASS_NAMES` order) for each
16x16-pixel patch. The total stride is 16, so any input whose sides are multiples of 16
works (training uses crops). The receptive field of an output cell is ~200 pixels: the
patch plus its surroundings (skull, scalp, air), which is what tells scalp (background)
from brain, and partial-volume bone from hematoma.

Layout, ResNet-style: a 4x4 stride-4 patchify stem, a 3x3 convolution at 1/4, a strided
3x3 convolution and a residual block at 1/8, a strided 3x3 convolution and two residual
blocks (the second dilated) at 1/16, and a 1x1 classifier. About 0.2 M parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from models.head_ct_hematoma.findings import CLASS_NAMES

__all__ = ["IN_CHANNELS", "PatchNet", "build_network"]

IN_CHANNELS = 2
"""Input channels: HU window 0..80 and a wide window -1000..2000 (see preprocess)."""


class _ConvBN(nn.Sequential):
    """Convolution, batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> None:
        pad = dilation * (k - 1) // 2 if stride == 1 else (k - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class _Residual(nn.Module):
    """Basic residual block: two 3x3 convolutions and an identity shortcut."""

    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(x + y)


class PatchNet(nn.Module):
    """Patch classifier: ``(N, C, H, W)`` -> ``(N, classes, H/16, W/16)`` logits.

    Parameters
    ----------
    in_channels:
        Input channels (default :data:`IN_CHANNELS`).
    classes:
        Output classes (default ``len(CLASS_NAMES)``).
    width:
        Channels at 1/16 resolution; the other stages scale with it.
    """

    def __init__(self, in_channels: int = IN_CHANNELS, classes: int = len(CLASS_NAMES), width: int = 64) -> None:
        super().__init__()
        w4, w8, w16 = width // 4, width // 2, width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w4, 4, 4, 0, bias=False),
            nn.BatchNorm2d(w4),
            nn.ReLU(inplace=True),
            _ConvBN(w4, w4 + w4 // 2),
        )
        self.stage8 = nn.Sequential(_ConvBN(w4 + w4 // 2, w8, stride=2), _Residual(w8))
        self.stage16 = nn.Sequential(
            _ConvBN(w8, w16, stride=2), _Residual(w16), _Residual(w16, dilation=2)
        )
        self.head = nn.Conv2d(w16, classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return per-patch logits."""
        return self.head(self.stage16(self.stage8(self.stem(image))))


def build_network(meta: dict) -> PatchNet:
    """The architecture of the weights described by ``model.json`` (for ``model.pt``)."""
    architecture = meta.get("architecture", {})
    return PatchNet(
        in_channels=int(architecture.get("in_channels", IN_CHANNELS)),
        classes=len(meta.get("classes", CLASS_NAMES)),
        width=int(architecture.get("width", 64)),
    )
