"""2D segmentation networks for brain MR slices (plain PyTorch).

Two variants with the same encoder/decoder, following the research report (Sugino et
al., "Performance improvement of weakly supervised fully convolutional networks by skip
connections for brain structure segmentation", Med Phys 2021):

* ``"unet"``: a plain U-Net: long skip connections concatenate each encoder level into
  the decoder level of the same resolution (Ronneberger et al. 2015).
* ``"frru"``: the same U-Net plus a full-resolution residual stream (Pohlen et al.
  2017, FRRN): a thin stream of ``residual_channels`` channels runs at full resolution
  beside the U; every block below full resolution receives the stream pooled to its
  scale (concatenated to its input) and adds its own output back into the stream
  through a 1x1 convolution and upsampling. The last decoder block and the classifier
  see the stream at full resolution. Both kinds of skip connection are kept.

Input ``image`` ``(N, in_channels, H, W)`` (H and W multiples of 8; in_channels 2k + 1 for
2.5D input with k neighbouring slices per side), output ``logits``
``(N, classes, H, W)``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.brain_mr.classes import CLASS_NAMES

__all__ = ["VARIANTS", "SegNet", "build_network"]

VARIANTS: tuple[str, ...] = ("unet", "frru")


class _Block(nn.Sequential):
    """Two 3x3 convolutions with batch norm and ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class SegNet(nn.Module):
    """U-Net (``variant="unet"``) or U-Net with a full-resolution residual stream (``"frru"``).

    Parameters
    ----------
    variant:
        ``"unet"`` or ``"frru"``.
    in_channels, classes:
        Input channels and output classes.
    width:
        Channels at full resolution; they double at each of the three poolings.
    residual_channels:
        Channels of the full-resolution residual stream (``"frru"`` only).
    """

    def __init__(
        self,
        variant: str = "frru",
        in_channels: int = 1,
        classes: int = len(CLASS_NAMES),
        width: int = 12,
        residual_channels: int = 8,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        c = width
        r = residual_channels if variant == "frru" else 0
        self.enc0 = _Block(in_channels, c)
        self.enc1 = _Block(c + r, 2 * c)
        self.enc2 = _Block(2 * c + r, 4 * c)
        self.bottom = _Block(4 * c + r, 8 * c)
        self.dec2 = _Block(8 * c + 4 * c + r, 4 * c)
        self.dec1 = _Block(4 * c + 2 * c + r, 2 * c)
        self.dec0 = _Block(2 * c + c + r, c)
        self.head = nn.Conv2d(c + r, classes, 1)
        if r:
            self.stream_in = nn.Conv2d(c, r, 1)
            self.to_stream = nn.ModuleDict({
                name: nn.Conv2d(ch, r, 1)
                for name, ch in (("enc1", 2 * c), ("enc2", 4 * c), ("bottom", 8 * c),
                                 ("dec2", 4 * c), ("dec1", 2 * c))
            })

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return per-pixel class logits."""
        e0 = self.enc0(image)
        stream = self.stream_in(e0) if self.variant == "frru" else None
        e1, stream = self._level("enc1", F.max_pool2d(e0, 2), stream, 2)
        e2, stream = self._level("enc2", F.max_pool2d(e1, 2), stream, 4)
        b, stream = self._level("bottom", F.max_pool2d(e2, 2), stream, 8)
        d2, stream = self._level("dec2", torch.cat([_up(b, 2), e2], 1), stream, 4)
        d1, stream = self._level("dec1", torch.cat([_up(d2, 2), e1], 1), stream, 2)
        x = torch.cat([_up(d1, 2), e0], 1)
        if stream is not None:
            x = torch.cat([x, stream], 1)
        d0 = self.dec0(x)
        if stream is not None:
            d0 = torch.cat([d0, stream], 1)
        return self.head(d0)

    def _level(self, name: str, x: torch.Tensor, stream: torch.Tensor | None, scale: int):
        block = getattr(self, name)
        if stream is None:
            return block(x), None
        y = block(torch.cat([x, F.max_pool2d(stream, scale)], 1))
        return y, stream + _up(self.to_stream[name](y), scale)


def _up(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=float(scale), mode="nearest")


def build_network(meta: dict[str, Any]) -> SegNet:
    """Rebuild the exact architecture described by ``model.json``'s ``architecture``."""
    arch = meta.get("architecture", meta)
    return SegNet(
        variant=str(arch.get("variant", "frru")),
        in_channels=int(arch.get("in_channels", 1)),
        classes=int(arch.get("classes", len(CLASS_NAMES))),
        width=int(arch.get("width", 12)),
        residual_channels=int(arch.get("residual_channels", 8)),
    )
