"""Training-time nodule embedding: nodules cut from one phantom, embedded into another.

The research trains on radiographs into which synthetic nodules were embedded. The phantoms
already come in pairs (the radiograph and its nodule-free twin, identical elsewhere, noise
included), so each training nodule's exact contribution is ``image - twin``: an
:class:`Implant`. During training, :func:`embed` adds implants to crops of *other*
radiographs, at random places inside their lungs, turned by one of the eight symmetries of
the square. A network trained on 1,600 phantoms otherwise meets each nodule on one
background only, and learns those pairs: the 10-15 mm nodules of the training phantoms were
found 29 times out of 32, those of the validation phantoms 17 out of 34 (see the card).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["Implant", "embed", "nodule_bank", "placeable_mask"]

_SIGNAL_FLOOR = 2.0
"""Stored values: below this, ``image - twin`` is the float16 rounding of the pair, not the nodule."""


@dataclass(frozen=True)
class Implant:
    """One nodule's contribution to its radiograph, in stored values (raw detector units).

    ``signal`` and ``mask`` are the same small window; ``diameter_mm`` the nodule's.
    """

    signal: np.ndarray
    mask: np.ndarray
    diameter_mm: float


def placeable_mask(lung_mask: np.ndarray, nodule_mask: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Where a nodule may be embedded: the lungs eroded by 12 mm (the phantom's own rule),
    at least 25 mm away from the radiograph's own nodules."""
    inside = ndimage.binary_erosion(lung_mask, iterations=max(1, int(12 / pixel_mm)))
    return inside & ~ndimage.binary_dilation(nodule_mask, iterations=max(1, int(25 / pixel_mm)))


def nodule_bank(samples: Sequence) -> list[Implant]:
    """Every nodule of ``samples`` (training :class:`~models.cxr_nodule.train.Sample` with a twin)
    as an :class:`Implant`: the connected part of ``image - twin`` around it, two pixels wider."""
    bank = []
    for s in samples:
        if not s.has_twin or not s.truths:
            continue
        signal = (s.image.astype(np.float32) - s.twin.astype(np.float32)) * s.value_scale
        labels, _ = ndimage.label(signal > _SIGNAL_FLOOR)
        regions = ndimage.find_objects(labels)
        for (row, col, _), diameter in zip(s.truths, s.diameters_mm):
            label = labels[int(round(row)), int(round(col))]
            if label == 0:
                continue
            rows, cols = regions[label - 1]
            r0, r1 = max(rows.start - 2, 0), min(rows.stop + 2, signal.shape[0])
            c0, c1 = max(cols.start - 2, 0), min(cols.stop + 2, signal.shape[1])
            window = np.where(labels[r0:r1, c0:c1] == label, signal[r0:r1, c0:c1], 0.0).astype(np.float32)
            bank.append(Implant(window, s.mask[r0:r1, c0:c1] & (labels[r0:r1, c0:c1] == label), float(diameter)))
    return bank


def embed(
    image: np.ndarray, mask: np.ndarray, placeable: np.ndarray, value_scale: float,
    implant: Implant, rng: np.random.Generator, tries: int = 20,
) -> bool:
    """Add ``implant`` to ``image`` (normalised, in place) and its mask to ``mask`` at a random
    pixel of ``placeable`` where the whole implant fits; ``False`` when none is found in ``tries``.

    ``value_scale``: stored values per unit of the normalised image (the sample's); the
    implant is turned by a random symmetry of the square first.
    """
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))
    signal, core = np.rot90(implant.signal, turns), np.rot90(implant.mask, turns)
    if flip:
        signal, core = signal[:, ::-1], core[:, ::-1]
    h, w = signal.shape
    if h >= image.shape[0] or w >= image.shape[1]:
        return False
    for _ in range(tries):
        r0 = int(rng.integers(0, image.shape[0] - h + 1))
        c0 = int(rng.integers(0, image.shape[1] - w + 1))
        if not placeable[r0 + h // 2, c0 + w // 2] or mask[r0:r0 + h, c0:c0 + w].any():
            continue
        image[r0:r0 + h, c0:c0 + w] += signal / value_scale
        mask[r0:r0 + h, c0:c0 + w] |= core
        return True
    return False
