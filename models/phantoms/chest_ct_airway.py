"""The airway style axis of both chest CT phantom families: what changes the carina's look.

Issue 33 asked for a third chest CT family or a style axis that moves the look of the
tracheal bifurcation. This is the axis (``airway_style=True`` in
:func:`models.phantoms.chest_ct.generate_chest_ct` and
:func:`models.phantoms.chest_ct_b.generate_chest_ct_b`, ``--airway-style`` on the command
line). It is written from general CT physics and anatomy, not from either family's code,
and changes four things, each drawn per seed from a random stream of its own (so every
phantom without the axis stays the one it always was):

* **airway wall thickness**: 1.0-4.5 mm of wall around the trachea and bronchi (normal
  bronchial walls are 1-2 mm; chronic bronchitis, asthma and bronchiectasis thicken them),
  drawn at a soft-tissue value of 40-90 HU;
* **bronchus angles**: the right main bronchus 12-45 degrees and the left 28-72 degrees from
  the vertical, i.e. subcarinal angles of 40-117 degrees (wide ones as with an enlarged
  left atrium or subcarinal nodes), so the two lumens separate at another height and look;
* **5 mm slices with their partial volume**: thickness and spacing 5 mm, each slice the mean
  of :data:`SUBSLICES_PER_SLICE` sub-slices across its slab (a finer sampling of the slab than
  the families' own three or four), so a spur thinner than the slab is averaged away;
* **respiratory motion**: the patient breathes during the helical scan. A point at height
  ``z0`` is displaced along z by ``-amplitude * w(z0) * (1 - cos(2 pi t / period + phase)) / 2``
  (the diaphragm descends in inspiration; ``w`` falls linearly from 1 at the dome to 0.15 at
  the apex, so the carina moves about a third as far as the dome, as in the literature on
  tracheal and diaphragm motion). The table moves ``table_speed`` mm/s from the top of the
  series down; the sub-slices of a slice are acquired over one rotation, so within a slice
  they see different breathing phases: doubled edges of the domes and of the oblique main
  bronchi, and a carina seen at a height it does not have at rest. Two times in five the
  patient holds the breath (no motion).

The truth follows the style exactly: each family renders every sub-slice at the anatomical
height :func:`subslice_heights` gives, and computes its lung and dome areas and the airway
division from the very same heights (and with the very same wall and angles), so the
landmark slices are those of the image as acquired, not of the patient at rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SUBSLICES_PER_SLICE",
    "AirwayStyle",
    "airway_info",
    "random_airway_style",
    "slab_offsets",
    "subslice_heights",
]

SUBSLICES_PER_SLICE = 6
"""Sub-slices each 5 mm slice of the airway style averages (0.83 mm apart)."""


@dataclass(frozen=True)
class AirwayStyle:
    """One draw of the airway style axis (:func:`random_airway_style`)."""

    wall_mm: float                        # airway wall thickness outside the lumen
    wall_hu: float                        # the wall's value
    bronchus_angle: tuple[float, float]   # degrees from the vertical (right, left)
    slice_thickness: float                # mm (spacing the same)
    amplitude: float                      # mm of dome excursion (0: breath held)
    period: float                         # s per breath
    phase: float                          # radians at the first (most superior) slice
    table_speed: float                    # mm/s
    rotation: float                       # s over which one slice's sub-slices are acquired


def random_airway_style(seed: int) -> AirwayStyle:
    """The airway style of ``seed`` (the same for both families; its own random stream)."""
    rng = np.random.default_rng([int(seed), 0xA1])
    moving = bool(rng.random() < 0.6)
    wall, wall_hu, right, left = (float(v) for v in rng.uniform([1.0, 40.0, 12.0, 28.0], [4.5, 90.0, 45.0, 72.0]))
    amplitude = float(rng.uniform(4.0, 18.0)) if moving else 0.0
    period, phase, speed, rotation = (float(v) for v in rng.uniform([3.0, 0.0, 35.0, 0.28],
                                                                    [6.0, 2.0 * np.pi, 70.0, 0.5]))
    return AirwayStyle(wall, wall_hu, (right, left), 5.0, amplitude, period, phase, speed, rotation)


def airway_info(style: AirwayStyle) -> dict[str, float]:
    """The style as the phantom's ``info`` entries (``airway_*``)."""
    return {
        "airway_wall_mm": style.wall_mm, "airway_wall_hu": style.wall_hu,
        "airway_angle_right": style.bronchus_angle[0], "airway_angle_left": style.bronchus_angle[1],
        "airway_motion_mm": style.amplitude, "airway_breath_s": style.period,
    }


def slab_offsets(count: int = SUBSLICES_PER_SLICE) -> np.ndarray:
    """Sub-slice centres across a slab, in slice thicknesses (midpoint rule, ``(-0.5, 0.5)``)."""
    return (np.arange(count) + 0.5) / count - 0.5


def _displacement(z0: np.ndarray, t: np.ndarray, style: AirwayStyle, top: float, dome: float) -> np.ndarray:
    """z displacement (mm) of the anatomy at height ``z0`` at time ``t``."""
    w = np.clip(0.15 + 0.85 * (top - z0) / max(top - dome, 1.0), 0.15, 1.0)
    breath = 0.5 * (1.0 - np.cos(2.0 * np.pi * t / style.period + style.phase))
    return -style.amplitude * w * breath


def subslice_heights(zs: np.ndarray, style: AirwayStyle, apex: float, dome: float) -> np.ndarray:
    """``(n, k)`` anatomical heights (z at rest) that the sub-slices of the slices at ``zs`` image.

    ``apex`` and ``dome`` are the patient's highest apex and dome heights (same frame as
    ``zs``). Without motion these are ``zs[:, None] + offsets * thickness``; with it, the
    anatomy at rest height ``z0`` sits at ``z0 + d(z0, t)`` when the sub-slice at table
    height ``z`` is acquired at time ``t``, so ``z0`` solves ``z0 = z - d(z0, t)``
    (fixed-point iterations; ``d`` changes slowly with ``z0``).
    """
    zs = np.asarray(zs, dtype=np.float64)
    offsets = slab_offsets()
    table = zs[:, None] + offsets[None, :] * style.slice_thickness
    if style.amplitude <= 0.0:
        return table
    start = float(zs.max())
    t = (start - zs)[:, None] / style.table_speed + (offsets[None, :]) * style.rotation
    z0 = table.copy()
    for _ in range(6):
        z0 = table - _displacement(z0, t, style, apex, dome)
    return z0
