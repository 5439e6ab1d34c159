"""Pre- and post-processing of the chest CT landmark model (numpy and scipy only).

Preprocessing turns a sorted chest CT series into the ONNX input ``image``
``(N, 3, 128, 128)`` float32 in [0, 1], one row per slice:

1. HU from Rescale Slope / Intercept (``apply_modality_lut``);
2. a square crop, the same for every slice of the series, which makes the input
   independent of the field of view, the matrix size and where the patient lies. Two
   kinds (:data:`CROPS`, chosen by ``"crop"`` in the weights' ``model.json``):

   * ``body`` (the default, and what weights without the field were trained with): the
     largest connected region above -500 HU in the series' mean image (the patient,
     without the table), its bounding box enlarged by 8 %;
   * ``lungs``: the air inside the body. Per slice, the regions below -400 HU that are
     enclosed by tissue (holes of the above -400 HU mask, so not the air around the
     patient) and whose median is at least -960 HU (lung, not an air pocket trapped
     between arms, trunk and table); their union over the slices in which they cover at
     least a fifth of the largest such area; of that union the largest two connected
     regions (the lungs; a region under a tenth of the largest is dropped), bounding box
     enlarged by 25 %. Arms beside the trunk and pads between body and table do not
     change it. Without such air (no lungs in the series) it falls back to ``body``;
3. the crop resampled to 128x128 (Gaussian anti-aliasing, linear interpolation; outside
   the image counts as air);
4. one lung/mediastinum window, HU -1000..200 -> 0..1, clipped;
5. channels: the slice about 4 mm below (:data:`CONTEXT_MM`), the slice itself, the
   slice about 4 mm above. At 4 mm these are the neighbouring slices; thinner series
   use the slices nearest 4 mm away, so the context is the same anatomy. The first and
   last slices repeat themselves as their missing neighbour.

Weights whose ``model.json`` lists a second input ``airway`` (:data:`AIRWAY_INPUT`) also
get ``(N, 3, 64, 64)``: an :data:`AIRWAY_FIELD_MM` (80 mm) square around the trachea at
1.25 mm per pixel (:func:`prepare_airway`), the same window and context channels. The
trachea is found once per series (:func:`trachea_centre`): the regions of air (median
below -900 HU, where lung lies above) enclosed by tissue, 60-800 mm², compact (filling
more than 55 % of their bounding box, at most 2.2 times longer than wide), whose centre
lies inside the lung crop within a sixth of its side from its middle column; the median
centre of those regions over up to 40 evenly spread slices. With fewer than three such
regions (no trachea to be seen) the square sits at the middle of the lung crop. At the 2-3 mm pixels of the
128x128 input the wall between two airway lumens that have just divided is thinner than
a pixel; at 1.25 mm it shows.

Postprocessing applies a sigmoid to the three logits ``apex``, ``carina``,
``diaphragm`` and picks, per landmark, the highest-scoring slice. Weights whose
``model.json`` gives a ``"carina_window"`` ``[lo, hi]`` pick the carina only among the
slices that lie between ``lo`` and ``hi`` of the way from the apex pick (0) down to the
diaphragm pick (1), an anatomical guard against a carina picked in the neck or the
abdomen; without a usable window (no such slice, or apex not above diaphragm) the pick
is the plain arg-max.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.chest_ct_landmarks.findings import (
    DEFAULT_FRACTIONS,
    LANDMARKS,
    LandmarkFindings,
    representative_slices,
)
from models.chest_ct_landmarks.series import pixel_spacing, series_hu, slice_spacing

__all__ = [
    "AIRWAY_FIELD_MM",
    "AIRWAY_INPUT",
    "AIRWAY_MATRIX",
    "CONTEXT_MM",
    "CROPS",
    "DIAPHRAGM_PICKS",
    "check_carina_window",
    "DEFAULT_CROP",
    "INPUT_NAME",
    "MATRIX",
    "WINDOW_HU",
    "context_offset",
    "crop_box",
    "pixel_spacing",
    "postprocess",
    "prepare_airway",
    "prepare_volume",
    "prepare_volumes",
    "preprocess",
    "series_hu",
    "slice_spacing",
    "stack_context",
    "trachea_centre",
]

INPUT_NAME = "image"
MATRIX = 128
WINDOW_HU: tuple[float, float] = (-1000.0, 200.0)
CONTEXT_MM = 4.0
CROPS: tuple[str, ...] = ("body", "lungs")
"""Kinds of crop :func:`crop_box` makes (see the module docs)."""
DEFAULT_CROP = "body"
"""The crop of weights whose ``model.json`` names none."""
_BODY_HU = -500.0
_MARGIN = 1.08
_AIR_HU = -400.0
_POCKET_HU = -960.0
_LUNG_MARGIN = 1.25
_LUNG_SLICE_SHARE = 0.2
_LUNG_MIN_SHARE = 0.1
_LUNG_MIN_PIXELS = 0.002
AIRWAY_INPUT = "airway"
AIRWAY_MATRIX = 64
AIRWAY_FIELD_MM = 80.0
_TRACHEA_AREA_MM2: tuple[float, float] = (60.0, 800.0)
_TRACHEA_FILL = 0.55
_TRACHEA_ELONGATION = 2.2
_TRACHEA_MIN_REGIONS = 3
_TRACHEA_HU = -900.0
_TRACHEA_SLICES = 40


def crop_box(hu: np.ndarray, crop: str = DEFAULT_CROP) -> tuple[float, float, float]:
    """``(row0, col0, side)`` of the square crop ``crop`` (``body`` or ``lungs``; see the module docs).

    Raises
    ------
    ValueError
        If ``crop`` is not one of :data:`CROPS`.
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r} (choose from {', '.join(CROPS)})")
    if crop == "lungs":
        lungs = _lung_mask(hu)
        if lungs is not None:
            return _square(lungs, _LUNG_MARGIN)
    mean = hu.mean(axis=0)
    mask = ndimage.binary_opening(mean > _BODY_HU, iterations=2)
    labels, count = ndimage.label(mask)
    rows, cols = hu.shape[1:]
    if count == 0:
        return 0.0, 0.0, float(max(rows, cols))
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return _square(labels == (int(np.argmax(sizes)) + 1), _MARGIN)


def _square(mask: np.ndarray, margin: float) -> tuple[float, float, float]:
    """The square around ``mask``'s bounding box, its side the longer edge times ``margin``."""
    r = np.flatnonzero(mask.any(axis=1))
    c = np.flatnonzero(mask.any(axis=0))
    side = max(r[-1] - r[0] + 1, c[-1] - c[0] + 1) * margin
    centre_r, centre_c = (r[0] + r[-1]) / 2.0, (c[0] + c[-1]) / 2.0
    return float(centre_r - (side - 1) / 2.0), float(centre_c - (side - 1) / 2.0), float(side)


def _enclosed_air(image: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Regions below -400 HU enclosed by tissue in one slice: ``(labels, count, medians)``."""
    solid = image > _AIR_HU
    inside = ndimage.binary_fill_holes(solid) & ~solid
    labels, count = ndimage.label(inside)
    medians = np.asarray(ndimage.median(image, labels, index=np.arange(1, count + 1))) if count else np.zeros(0)
    return labels, count, medians


def _lung_mask(hu: np.ndarray) -> np.ndarray | None:
    """The 2D projection of the two lungs (see the module docs), or ``None`` without lungs."""
    rows, cols = hu.shape[1:]
    masks: list[np.ndarray] = []
    for image in hu:
        labels, count, medians = _enclosed_air(image)
        masks.append(np.isin(labels, 1 + np.flatnonzero(medians >= _POCKET_HU)) if count else labels > 0)
    areas = np.array([m.sum() for m in masks])
    if areas.max(initial=0) < _LUNG_MIN_PIXELS * rows * cols:
        return None
    union = np.any([masks[i] for i in np.flatnonzero(areas >= _LUNG_SLICE_SHARE * areas.max())], axis=0)
    labels, count = ndimage.label(union)
    sizes = ndimage.sum_labels(union, labels, index=np.arange(1, count + 1))
    largest = np.argsort(sizes)[::-1][:2]
    keep = [int(k) + 1 for k in largest if sizes[k] >= _LUNG_MIN_SHARE * sizes[largest[0]]]
    return np.isin(labels, keep)


def prepare_volume(hu: np.ndarray, matrix: int = MATRIX, crop: str = DEFAULT_CROP) -> np.ndarray:
    """Crop (``crop``: ``body`` or ``lungs``), resample and window an HU volume.

    Returns ``(n, matrix, matrix)`` float32 in [0, 1].
    """
    hu = np.asarray(hu, dtype=np.float32)
    if hu.ndim != 3:
        raise ValueError(f"volume must be (n, rows, cols), got {hu.shape}")
    return _resample(hu, crop_box(hu, crop), matrix)


def trachea_centre(hu: np.ndarray, spacing_mm: float, box: tuple[float, float, float]) -> tuple[float, float] | None:
    """``(row, col)`` of the trachea in pixels (see the module docs), or ``None`` when it is not seen.

    ``box`` is the lung crop ``(row0, col0, side)`` of :func:`crop_box`; only its pixels
    and at most :data:`_TRACHEA_SLICES` evenly spread slices are searched.
    """
    row0, col0, side = box
    r0, c0 = max(0, int(row0)), max(0, int(col0))
    r1, c1 = min(hu.shape[1], int(np.ceil(row0 + side))), min(hu.shape[2], int(np.ceil(col0 + side)))
    middle = col0 + (side - 1) / 2.0 - c0
    area_px = np.array(_TRACHEA_AREA_MM2) / float(spacing_mm) ** 2
    step = max(1, int(np.ceil(hu.shape[0] / _TRACHEA_SLICES)))
    centres: list[tuple[float, float]] = []
    for image in np.asarray(hu[::step, r0:r1, c0:c1], dtype=np.float32):
        labels, count, medians = _enclosed_air(image)
        if not count:
            continue
        index = np.arange(1, count + 1)
        areas = ndimage.sum_labels(np.ones_like(image), labels, index)
        boxes = ndimage.find_objects(labels)
        for k in np.flatnonzero((areas >= area_px[0]) & (areas <= area_px[1]) & (medians < _TRACHEA_HU)):
            h = boxes[k][0].stop - boxes[k][0].start
            w = boxes[k][1].stop - boxes[k][1].start
            if areas[k] <= _TRACHEA_FILL * h * w or max(h, w) > _TRACHEA_ELONGATION * min(h, w):
                continue
            r, c = ndimage.center_of_mass(labels[boxes[k]] == index[k])
            r, c = r + boxes[k][0].start, c + boxes[k][1].start
            if abs(c - middle) < side / 6.0:
                centres.append((float(r) + r0, float(c) + c0))
    if len(centres) < _TRACHEA_MIN_REGIONS:
        return None
    rows, cols = zip(*centres)
    return float(np.median(rows)), float(np.median(cols))


def prepare_airway(hu: np.ndarray, spacing_mm: float, box: tuple[float, float, float] | None = None,
                   matrix: int = AIRWAY_MATRIX) -> np.ndarray:
    """The windowed :data:`AIRWAY_FIELD_MM` square around the trachea, ``(n, matrix, matrix)`` float32.

    ``box`` is the lung crop (computed when omitted); its middle is the fallback centre.
    """
    hu = np.asarray(hu, dtype=np.float32)
    if hu.ndim != 3:
        raise ValueError(f"volume must be (n, rows, cols), got {hu.shape}")
    box = box or crop_box(hu, "lungs")
    centre = trachea_centre(hu, spacing_mm, box)
    if centre is None:
        centre = (box[0] + (box[2] - 1) / 2.0, box[1] + (box[2] - 1) / 2.0)
    side = AIRWAY_FIELD_MM / max(float(spacing_mm), 1e-3)
    return _resample(hu, (centre[0] - (side - 1) / 2.0, centre[1] - (side - 1) / 2.0, side), matrix)


def _resample(hu: np.ndarray, box: tuple[float, float, float], matrix: int) -> np.ndarray:
    """The square ``box`` ``(row0, col0, side)`` of every slice at ``matrix`` pixels, windowed to [0, 1]."""
    row0, col0, side = box
    scale = side / matrix
    if scale > 1.0:
        hu = ndimage.gaussian_filter(hu, sigma=(0.0, 0.45 * scale, 0.45 * scale), truncate=2.5)
    out = ndimage.affine_transform(
        hu,
        matrix=np.array([1.0, scale, scale]),
        offset=(0.0, row0 + (scale - 1) / 2.0, col0 + (scale - 1) / 2.0),
        output_shape=(hu.shape[0], matrix, matrix),
        order=1,
        mode="constant",
        cval=-1024.0,
    )
    low, high = WINDOW_HU
    return np.clip((out - low) / (high - low), 0.0, 1.0).astype(np.float32)


def context_offset(spacing_mm: float) -> int:
    """How many slices away the context channels lie (at least 1)."""
    return max(1, int(round(CONTEXT_MM / max(float(spacing_mm), 1e-3))))


def stack_context(volume: np.ndarray, offset: int, indices: Sequence[int] | None = None) -> np.ndarray:
    """``(len(indices), 3, H, W)``: each slice between the slices ``offset`` below and above."""
    n = volume.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=int)
    below = np.clip(idx - offset, 0, n - 1)
    above = np.clip(idx + offset, 0, n - 1)
    return np.stack([volume[below], volume[idx], volume[above]], axis=1).astype(np.float32, copy=False)


def prepare_volumes(hu: np.ndarray, spacing_mm: float, crop: str = DEFAULT_CROP,
                    airway: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``(n, 128, 128)`` volume of :func:`prepare_volume` and, with ``airway``, the
    ``(n, 64, 64)`` square of :func:`prepare_airway` (else ``None``); the lung crop is found once."""
    hu = np.asarray(hu, dtype=np.float32)
    box = crop_box(hu, crop)
    volume = _resample(hu, box, MATRIX)
    if not airway:
        return volume, None
    return volume, prepare_airway(hu, spacing_mm, box if crop == "lungs" else crop_box(hu, "lungs"))


def preprocess(series: Sequence[Dataset], crop: str = DEFAULT_CROP, airway: bool = False) -> dict[str, np.ndarray]:
    """Turn a sorted chest CT series into ``{"image": (N, 3, 128, 128) float32}`` (``crop``: see
    :data:`CROPS`) and, with ``airway``, ``"airway": (N, 3, 64, 64)`` (:func:`prepare_airway`)."""
    offset = context_offset(slice_spacing(series))
    volume, square = prepare_volumes(series_hu(series), pixel_spacing(series), crop, airway)
    inputs = {INPUT_NAME: stack_context(volume, offset)}
    if square is not None:
        inputs[AIRWAY_INPUT] = stack_context(square, offset)
    return inputs


def check_carina_window(window: Sequence[float] | None) -> tuple[float, float] | None:
    """``window`` as ``(lo, hi)`` floats, or ``None``.

    Raises
    ------
    ValueError
        Unless ``0 <= lo < hi <= 1``.
    """
    if window is None:
        return None
    values = tuple(float(v) for v in window)
    if len(values) != 2 or not 0.0 <= values[0] < values[1] <= 1.0:
        raise ValueError(f"carina_window must be [lo, hi] with 0 <= lo < hi <= 1, got {list(window)}")
    return values[0], values[1]


DIAPHRAGM_PICKS: tuple[str, ...] = ("argmax", "lowest")
"""How the diaphragm slice is picked: the highest score, or the most inferior slice scoring at least 0.5."""


def postprocess(
    outputs: Mapping[str, np.ndarray],
    fractions: tuple[tuple[str, float], ...] = DEFAULT_FRACTIONS,
    carina_window: Sequence[float] | None = None,
    diaphragm_pick: str = "argmax",
) -> LandmarkFindings:
    """Turn ``{"apex", "carina", "diaphragm": (N, 1) logits}`` into :class:`LandmarkFindings`.

    ``carina_window`` ``(lo, hi)``: pick the carina among the slices ``lo``..``hi`` of the
    way from the apex pick down to the diaphragm pick (see the module docs).
    ``diaphragm_pick`` ``"lowest"``: the diaphragm is the most inferior slice scoring at
    least 0.5 (the last slice above the dome; the arg-max when none does).

    Raises
    ------
    ValueError
        On an unknown ``diaphragm_pick`` or malformed outputs.
    """
    if diaphragm_pick not in DIAPHRAGM_PICKS:
        raise ValueError(f"diaphragm_pick must be one of {', '.join(DIAPHRAGM_PICKS)}, got {diaphragm_pick!r}")
    window = check_carina_window(carina_window)
    columns = []
    for name in LANDMARKS:
        if name not in outputs:
            raise ValueError(f"model output {name!r} missing (got {sorted(outputs)})")
        columns.append(np.asarray(outputs[name], dtype=np.float64).reshape(-1))
    if len({c.size for c in columns}) != 1 or columns[0].size == 0:
        raise ValueError("the three landmark outputs must have the same non-zero length")
    logits = np.stack(columns, axis=1)
    scores = (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)
    picks = {name: int(np.argmax(logits[:, k])) for k, name in enumerate(LANDMARKS)}
    if diaphragm_pick == "lowest":
        positive = np.flatnonzero(logits[:, LANDMARKS.index("diaphragm")] >= 0.0)
        if positive.size:
            picks["diaphragm"] = int(positive.min())
    if window is not None and picks["apex"] > picks["diaphragm"]:
        index = np.arange(logits.shape[0])
        fraction = (picks["apex"] - index) / float(picks["apex"] - picks["diaphragm"])
        inside = index[(fraction >= window[0]) & (fraction <= window[1])]
        if inside.size:
            carina = logits[inside, LANDMARKS.index("carina")]
            picks["carina"] = int(inside[int(np.argmax(carina))])
    rep = representative_slices(picks["apex"], picks["diaphragm"], scores.shape[0], fractions)
    return LandmarkFindings(scores=scores, picks=picks, representative=rep)
