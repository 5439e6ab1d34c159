"""Pixels for the results page: source slices, SEG masks and secondary captures as PNG.

Everything is read from the node's own files (the spool's source instances and the job's
result objects). A PNG carries pixels only: no DICOM attribute, so no patient data, leaves
with it.
"""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from PIL import Image

__all__ = ["PALETTE", "blank_png", "mask_png", "png", "sc_png", "seg_pixels", "slice_png", "stl_bytes"]

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 40, 40), (40, 200, 70), (60, 120, 240), (240, 200, 30), (30, 210, 220), (220, 60, 220),
    (250, 130, 30), (150, 90, 240),
)
"""Colours of segments 1, 2, ... (cycled): segment 1 is red."""


def png(pixels: np.ndarray) -> bytes:
    """``pixels`` (``uint8``; 2D grey, or ``(h, w, 3|4)`` RGB/RGBA) encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def slice_png(path: str | Path) -> bytes:
    """A source slice, windowed for display (its own window if it has one, else the 1–99 % range)."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4) and ds.get("SamplesPerPixel", 1) > 1:
        return png(pixels.astype(np.uint8))
    if pixels.ndim == 3:  # a multi-frame source: its first frame
        pixels = pixels[0]
    values = pixels.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    low, high = _window(ds, values)
    grey = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        grey = 1.0 - grey
    return png((grey * 255).astype(np.uint8))


def mask_png(seg_path: str | Path, frames: Sequence[tuple[int, int]], shape: tuple[int, int]) -> bytes:
    """The SEG ``frames`` (frame index, segment number) painted opaque in their segments' colours, on transparent."""
    rgba = np.zeros((*shape, 4), dtype=np.uint8)
    pixels = seg_pixels(str(seg_path))
    for frame, segment in frames:
        mask = pixels[frame]
        if mask.shape != shape:
            continue
        labels = mask if segment == 0 else (mask > 0) * segment  # 0: a label map frame, values are segments
        for number in np.unique(labels[labels > 0]):
            rgba[labels == number] = (*PALETTE[(int(number) - 1) % len(PALETTE)], 255)
    return png(rgba)


def sc_png(path: str | Path) -> bytes:
    """A secondary capture (e.g. a heatmap over its source slice) as it is stored."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if ds.get("SamplesPerPixel", 1) == 1:
        return png(np.clip(pixels, 0, 255).astype(np.uint8))
    return png(pixels.astype(np.uint8))


def blank_png(shape: tuple[int, int]) -> bytes:
    """A transparent image of ``shape``: a slice with nothing on it in this layer."""
    return _blank(shape)


def stl_bytes(path: str | Path) -> bytes:
    """The STL file inside an Encapsulated STL object (without the even-length pad byte)."""
    ds = pydicom.dcmread(path)
    data = bytes(ds.EncapsulatedDocument)
    length = int(ds.get("EncapsulatedDocumentLength", len(data)) or len(data))
    return data[:length]


@lru_cache(maxsize=16)
def _blank(shape: tuple[int, int]) -> bytes:
    return png(np.zeros((*shape, 4), dtype=np.uint8))


@lru_cache(maxsize=2)
def seg_pixels(path: str) -> np.ndarray:
    """A SEG's frames, ``(frames, rows, columns)`` (the last two read are kept)."""
    pixels = pydicom.dcmread(path).pixel_array
    return pixels[np.newaxis] if pixels.ndim == 2 else pixels


def _window(ds: pydicom.Dataset, values: np.ndarray) -> tuple[float, float]:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        center = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        width = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        if width > 1:
            return center - width / 2, center + width / 2
    low, high = np.percentile(values, (1, 99))
    return float(low), float(high) if high > low else float(low) + 1.0
