"""Labelled chest CT series for training and evaluation: phantoms (cached) and the user's DICOM with a label CSV.

Every series goes through the node's own preprocessing (:mod:`.preprocess`), kept as a
``(n, 128, 128)`` float16 volume.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pydicom

from models.chest_ct_landmarks.findings import LANDMARKS
from models.chest_ct_landmarks.preprocess import (
    DEFAULT_CROP, context_offset, pixel_spacing, prepare_volumes, series_hu, slice_spacing,
)
from models.chest_ct_landmarks.progress import Progress
from node.packs.protocol import sort_slices

__all__ = [
    "FAMILIES", "LabelledSeries", "dicom_dataset", "generate_phantom", "phantom_dataset", "phantom_series", "read_labels",
]


@dataclass
class LabelledSeries:
    """One preprocessed series and its truth.

    ``volume`` is ``(n, 128, 128)`` float16 (windowed, cropped); ``offset`` the context
    offset in slices; ``truth`` landmark → slice index of the sorted series; ``airway``
    the ``(n, 64, 64)`` float16 square around the trachea, when asked for.
    """

    name: str
    volume: np.ndarray
    offset: int
    truth: dict[str, int]
    airway: np.ndarray | None = None


FAMILIES: tuple[str, ...] = ("a", "b")
"""Phantom families: ``a`` = :mod:`models.phantoms.chest_ct`, ``b`` = :mod:`models.phantoms.chest_ct_b`."""


def generate_phantom(seed: int, *, family: str = "a", slice_thickness: float | None = 4.0, styles: bool = False,
                     airway_style: bool = False) -> Any:
    """The :class:`~models.phantoms.chest_ct.ChestCTPhantom` of ``seed`` in ``family``.

    ``styles`` (family A only) draws the randomised scanner and patient styles; with it,
    ``slice_thickness=None`` lets the style choose the slice thickness too. ``airway_style``
    (both families) draws the airway style axis (wall, bronchus angles, 5 mm slices, breathing;
    :mod:`models.phantoms.chest_ct_airway`); ``slice_thickness=None`` gives its 5 mm.
    """
    if family == "a":
        from models.phantoms.chest_ct import generate_chest_ct

        return generate_chest_ct(int(seed), slice_thickness=slice_thickness, styles=styles, airway_style=airway_style)
    if family == "b":
        from models.phantoms.chest_ct_b import generate_chest_ct_b

        if airway_style:
            return generate_chest_ct_b(int(seed), slice_thickness=slice_thickness, airway_style=True)
        return generate_chest_ct_b(int(seed), slice_thickness=4.0 if slice_thickness is None else slice_thickness)
    raise ValueError(f"unknown phantom family {family!r} (choose from {', '.join(FAMILIES)})")


def phantom_series(seed: int, slice_thickness: float | None = 4.0, *, family: str = "a",
                   styles: bool = False, crop: str = DEFAULT_CROP, airway: bool = False,
                   airway_style: bool = False) -> LabelledSeries:
    """Generate the phantom of ``seed`` (``family``, ``styles``, ``airway_style``) and preprocess it
    like the node does (``crop``; with ``airway`` also the square around the trachea)."""
    phantom = generate_phantom(seed, family=family, slice_thickness=slice_thickness, styles=styles,
                               airway_style=airway_style)
    spacing = float(np.median(np.diff(phantom.z_positions))) if len(phantom.z_positions) > 1 else phantom.slice_thickness
    name = f"phantom-{_kind(family, styles, airway_style)}-{seed}"
    volume, trachea = _half_precision(*prepare_volumes(phantom.hu, phantom.pixel_spacing, crop, airway))
    return LabelledSeries(name, volume, context_offset(spacing), dict(phantom.landmarks), trachea)


def _kind(family: str, styles: bool, airway_style: bool) -> str:
    """``a``, ``as``, ``aw``, ``asw``, ``b``, ``bw``: the family and its styles, for names and cache files."""
    return f"{family}{'s' if styles else ''}{'w' if airway_style else ''}"


def _half_precision(volume: np.ndarray, trachea: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Both volumes as float16 (how :class:`LabelledSeries` keeps them)."""
    return volume.astype(np.float16), None if trachea is None else trachea.astype(np.float16)


def phantom_dataset(
    seeds: Iterable[int],
    *,
    slice_thickness: float | None = 4.0,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    family: str = "a",
    styles: bool = False,
    crop: str = DEFAULT_CROP,
    airway: bool = False,
    airway_style: bool = False,
) -> list[LabelledSeries]:
    """Preprocessed phantoms of ``seeds`` (``family``, ``styles``, ``airway_style``, ``crop``, ``airway``),
    read from / written to ``cache_dir`` (a cached phantom without the airway square is made again
    when it is asked for)."""
    seeds = [int(s) for s in seeds]
    out = []
    kind = _kind(family, styles, airway_style)
    extras = (", styles" if styles else "") + (", airway style" if airway_style else "")
    bar = Progress(len(seeds), f"phantoms ({family}{extras})", log is not None)
    tag = "chest" if kind == "a" else f"chest{kind}"
    thick = "style" if slice_thickness is None else f"{slice_thickness:g}mm"
    if crop != DEFAULT_CROP:
        thick += f"-{crop}"
    for i, s in enumerate(seeds):
        cached = Path(cache_dir) / f"{tag}-{s}-{thick}.npz" if cache_dir else None
        name = f"phantom-{kind}-{s}"
        item = None
        if cached is not None and cached.exists():
            with np.load(cached) as z:
                if not airway or "airway" in z.files:
                    item = LabelledSeries(name, z["volume"], int(z["offset"]),
                                          dict(zip(LANDMARKS, (int(v) for v in z["truth"]))),
                                          z["airway"] if "airway" in z.files else None)
        if item is None:
            item = phantom_series(s, slice_thickness, family=family, styles=styles, crop=crop, airway=airway,
                                  airway_style=airway_style)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                extra = {"airway": item.airway} if item.airway is not None else {}
                np.savez(cached, volume=item.volume, offset=item.offset,
                         truth=np.array([item.truth[n] for n in LANDMARKS]), **extra)
        out.append(item)
        bar.update(i + 1)
    bar.close()
    return out


def read_labels(path: Path) -> dict[str, dict[str, str]]:
    """Read a landmark label CSV.

    The CSV has a header with ``series_instance_uid`` and one column per landmark
    (``apex``, ``carina``, ``diaphragm``); each landmark cell is the SOP Instance UID of
    the landmark slice or its Instance Number.

    Returns
    -------
    dict
        Series Instance UID → landmark → the cell's text.

    Raises
    ------
    ValueError
        When a column is missing or a cell is empty.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = ("series_instance_uid", *LANDMARKS)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        out: dict[str, dict[str, str]] = {}
        for row_no, row in enumerate(reader, start=2):
            cells = {k: (row.get(k) or "").strip() for k in needed}
            empty = [k for k, v in cells.items() if not v]
            if empty:
                raise ValueError(f"{path}:{row_no}: empty {', '.join(empty)}")
            out[cells["series_instance_uid"]] = {n: cells[n] for n in LANDMARKS}
    return out


def dicom_dataset(dicom_dir: Path, labels: Path | Mapping[str, Mapping[str, str]],
                  crop: str = DEFAULT_CROP, airway: bool = False) -> list[LabelledSeries]:
    """Load and preprocess (``crop``, ``airway``) every labelled series found under ``dicom_dir``.

    Raises
    ------
    ValueError
        When a labelled series is not found, or a label names no slice of its series.
    """
    table = read_labels(Path(labels)) if not isinstance(labels, Mapping) else labels
    files: dict[str, list[Path]] = {}
    for path in sorted(p for p in Path(dicom_dir).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if uid in table:
            files.setdefault(uid, []).append(path)
    missing = sorted(set(table) - set(files))
    if missing:
        raise ValueError(f"labelled series not found under {dicom_dir}: {', '.join(missing[:5])}")
    out = []
    for uid, paths in files.items():
        series = sort_slices([pydicom.dcmread(p) for p in paths])
        truth = {name: _label_index(series, table[uid][name], uid, name) for name in LANDMARKS}
        volume, trachea = _half_precision(*prepare_volumes(series_hu(series), pixel_spacing(series), crop, airway))
        out.append(LabelledSeries(uid, volume, context_offset(slice_spacing(series)), truth, trachea))
    return out


def _label_index(series: Sequence[pydicom.Dataset], value: str, uid: str, name: str) -> int:
    """Index in ``series`` of the slice a label cell names (SOP Instance UID, else Instance Number)."""
    for i, ds in enumerate(series):
        if str(ds.SOPInstanceUID) == value:
            return i
    if value.isdigit():
        for i, ds in enumerate(series):
            if int(getattr(ds, "InstanceNumber", -1) or -1) == int(value):
                return i
    raise ValueError(f"series {uid}: {name} label {value!r} is neither a SOP Instance UID nor an Instance Number of it")
