"""Chest radiograph detector: blur, quantum-like noise, the value mapping and (with a style)
the manufacturer's processing."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.phantoms.cxr_anatomy import CXRStyle

__all__ = ["BITS", "MAX_VALUE", "VALUE_OFFSET", "VALUE_PER_MM", "detector"]

BITS = 12
MAX_VALUE = (1 << BITS) - 1
VALUE_PER_MM = 9.0          # stored value per mm water equivalent (before offset)
VALUE_OFFSET = 250.0


def detector(atten: np.ndarray, noise: np.ndarray, spacing: float, style: CXRStyle | None = None) -> np.ndarray:
    """Detector blur, quantum-like noise and the log-domain value mapping (MONOCHROME2).

    With a style: its blur, value mapping and bits; noise of its dose, whose per-pixel sd
    grows as the pixel shrinks (a fixed number of quanta per mm²), correlated by its grain;
    then its unsharp-mask processing.
    """
    if style is None:
        blurred = ndimage.gaussian_filter(atten, 0.35 / spacing)
        values = VALUE_OFFSET + VALUE_PER_MM * blurred
        sigma = (6.0 + 0.03 * values) * np.sqrt(spacing / 0.84)
        return np.clip(values + sigma * noise, 0, MAX_VALUE)
    blurred = np.clip(ndimage.gaussian_filter(atten, style.blur_mm / spacing), 0.0, None)
    reference = 200.0   # mm water equivalent where the gamma curve meets the linear mapping
    curved = reference * (blurred / reference) ** style.gamma
    range_scale = float(1 << (style.bits - BITS))
    values = style.value_offset + style.value_per_mm * curved
    if style.noise_grain > 0:
        noise = ndimage.gaussian_filter(noise, style.noise_grain)
        noise = noise / max(float(noise.std()), 1e-9)
    sigma = (6.0 + 0.03 * values) * style.dose * (0.84 / spacing)
    image = values + sigma * noise
    if style.processing > 0:
        image = image + style.processing * (image - ndimage.gaussian_filter(image, style.processing_mm / spacing))
    return np.clip(image * range_scale, 0, (1 << style.bits) - 1)
