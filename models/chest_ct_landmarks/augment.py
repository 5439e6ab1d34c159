"""Augmentation of the chest CT landmark training batches: geometry, intensity, sharpness and noise."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["AUGMENTATIONS", "augment"]

AUGMENTATIONS: tuple[str, ...] = ("basic", "style", "texture")


def _blur(x: Any, sigma: float = 1.0) -> Any:
    """Separable Gaussian blur of a ``(N, C, H, W)`` batch, per channel."""
    import torch

    k = np.exp(-0.5 * (np.arange(-3, 4) / sigma) ** 2)
    k = torch.from_numpy((k / k.sum()).astype(np.float32))
    c = x.shape[1]
    kx = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (3, 3, 0, 0), mode="replicate"), kx, groups=c)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, 3, 3), mode="replicate"), ky, groups=c)


_GEOMETRY: dict[str, tuple[float, tuple[float, float], float]] = {
    "basic": (8.0, (0.9, 1.1), 0.05),
    "style": (10.0, (0.6, 1.2), 0.08),
    "texture": (10.0, (0.85, 1.15), 0.08),
}
"""Per augmentation: rotation (degrees), scale range, shift (share of the image)."""


def augment(x: Any, rng: np.random.Generator, mode: str = "basic") -> Any:
    """Random rotation, scale, shift, intensity gain/offset and noise on a batch.

    ``mode="style"`` widens the geometry (±10°, zoom 0.6-1.2, shift ±8 %) and adds what
    the phantom styles vary: blur or edge enhancement (a per-sample mix towards or away
    from a Gaussian-blurred copy), gamma, and noise that is white or correlated.
    ``mode="texture"`` adds the same intensity, sharpness and noise changes with a
    narrower zoom (0.85-1.15), for crops that do not widen with arms or pads.
    """
    import torch

    n = x.shape[0]
    rot, (s0, s1), sh = _GEOMETRY[mode]
    strong = mode != "basic"
    angle = torch.from_numpy(rng.uniform(-rot, rot, n) * np.pi / 180).float()
    scale = torch.from_numpy(rng.uniform(s0, s1, n)).float()
    shift = torch.from_numpy(rng.uniform(-sh, sh, (n, 2))).float()
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gain = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-0.04, 0.04, (n, 1, 1, 1))).float()
    sigma = torch.from_numpy(rng.uniform(0.0, 0.03, (n, 1, 1, 1))).float()
    if not strong:
        return (x * gain + bias + sigma * torch.randn_like(x)).clamp(0.0, 1.0)
    mix = torch.from_numpy(rng.uniform(-1.0, 1.0, (n, 1, 1, 1))).float()
    x = (x + mix * (_blur(x, float(rng.uniform(0.6, 1.4))) - x)).clamp(0.0, 1.0)
    gamma = torch.from_numpy(np.exp(rng.uniform(-0.25, 0.25, (n, 1, 1, 1)))).float()
    x = x.clamp_min(1e-4) ** gamma
    white = torch.randn_like(x)
    grainy = _blur(white, float(rng.uniform(0.6, 1.5)))
    grainy = grainy / grainy.std().clamp_min(1e-6)
    w = torch.from_numpy(rng.uniform(0.0, 1.0, (n, 1, 1, 1))).float()
    sigma = torch.from_numpy(rng.uniform(0.0, 0.05, (n, 1, 1, 1))).float()
    return (x * gain + bias + sigma * ((1 - w) * white + w * grainy)).clamp(0.0, 1.0)
