"""What the results page shows of one job, read from the node's files.

The source slices are the series' instances in the spool, in spatial order; each result
object is placed on them by the SOP Instance UIDs it references: SEG frames by their
derivation image, secondary captures by their source image, KOS references by their
evidence. Slices are then addressed by index only, so no UID needs to travel in a URL.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pydicom

from ...logs import log
from ...states import OutboxKind, ResultState
from ...store import JobStore
from .render import seg_pixels
from .findings import Finding, sr_findings

__all__ = ["JobView", "Layer", "job_view"]

_logger = logging.getLogger("ainode.ui")

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEG = "1.2.840.10008.5.1.4.1.1.66.7"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
STL = "1.2.840.10008.5.1.4.1.1.104.3"
SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


@dataclass
class Layer:
    """One overlay over the slices: a SEG's frames or secondary captures, by slice index."""

    name: str
    kind: str  # "seg" or "sc"
    path_by_slice: dict[int, str] = field(default_factory=dict)
    frames_by_slice: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    segments: list[tuple[int, str]] = field(default_factory=list)
    area: dict[int, dict[int, int]] = field(default_factory=dict)
    """SEG only: per slice, the pixels of each segment drawn on it (empty frames left out)."""


@dataclass
class JobView:
    """The slices of a job's series and its results placed on them."""

    job_id: int
    slices: list[str]
    shapes: list[tuple[int, int]]
    layers: dict[str, Layer]
    findings: list[Finding]
    key_slices: list[int]
    surface: str | None
    missing_sources: bool

    def layer_slices(self, name: str) -> list[int]:
        """The slice indexes this layer draws something on."""
        layer = self.layers[name]
        return sorted(layer.area if layer.kind == "seg" else layer.path_by_slice)

    def start_slice(self) -> int:
        """Where the viewer opens: a key slice; else where the last segment present (a lesion, after
        the anatomy) is largest; else the middle of the secondary captures; else the middle."""
        if self.key_slices:
            return self.key_slices[0]
        seg = self.layers.get("seg")
        if seg is not None and seg.area:
            last = max(number for areas in seg.area.values() for number in areas)
            return max(seg.area, key=lambda i: seg.area[i].get(last, 0))
        marked = self.layer_slices("heatmap") if "heatmap" in self.layers else []
        return marked[len(marked) // 2] if marked else len(self.slices) // 2


_cache: dict[int, tuple[tuple[Any, ...], JobView]] = {}


def job_view(store: JobStore, job_id: int) -> JobView | None:
    """The view of ``job_id`` (``None``: no such job); rebuilt only when the job or its results change."""
    job = store.get_job(job_id)
    if job is None:
        return None
    results = [r for r in store.job_results(job_id)  # a retraction's rejection note is not a finding
               if r.state not in (ResultState.SUPERSEDED, ResultState.RETRACTED) and r.kind is OutboxKind.DELIVER]
    files = list(dict.fromkeys((r.path, r.sop_class_uid) for r in results))
    key = (job.updated_at, job.runs, tuple(files))
    cached = _cache.get(job_id)
    if cached is not None and cached[0] == key:
        return cached[1]
    view = _build(store, job, files)
    if len(_cache) > 64:
        _cache.clear()
    _cache[job_id] = (key, view)
    return view


def _build(store: JobStore, job: dict[str, Any], files: list[tuple[str, str]]) -> JobView:
    slices, shapes, uids = _ordered_slices(store.series_instances(job.series_uid))
    index_of = {uid: i for i, uid in enumerate(uids)}
    layers: dict[str, Layer] = {}
    findings: list[Finding] = []
    keys: set[int] = set()
    surface = None
    for path, sop_class in files:
        if not Path(path).exists():
            continue
        try:
            if sop_class in (SEG, LABEL_MAP_SEG):
                layers.setdefault("seg", _seg_layer(path, index_of))
            elif sop_class.startswith(SC_PREFIX):
                _add_sc(layers.setdefault("heatmap", Layer("heatmap", "sc")), path, index_of)
            elif sop_class == KOS:
                keys.update(_kos_slices(path, index_of))
            elif sop_class == STL:
                surface = path
            elif sop_class.startswith(SR_PREFIX):
                findings.extend(sr_findings(pydicom.dcmread(path)))
        except Exception as exc:  # one unreadable result must not hide the others
            log(_logger, logging.WARNING, "result not shown", job_id=job.id, reason=repr(exc))
    return JobView(job.id, slices, shapes, layers, findings, sorted(keys), surface,
                   missing_sources=not slices)


def _ordered_slices(instances: Iterable[Any]) -> tuple[list[str], list[tuple[int, int]], list[str]]:
    """Paths, shapes and SOP Instance UIDs of the source slices, along the slice normal."""
    rows = []
    for inst in instances:
        if not Path(inst.path).exists():
            continue
        try:
            ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
        except Exception:
            continue
        rows.append((_position(ds), inst.path, (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))), inst.sop_instance_uid))
    rows.sort(key=lambda r: r[0])
    return [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]


def _position(ds: pydicom.Dataset) -> tuple[float, int]:
    number = int(ds.get("InstanceNumber", 0) or 0)
    try:
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        normal = np.cross(orientation[:3], orientation[3:])
        return float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])), number
    except (AttributeError, ValueError, TypeError):
        return float(number), number


def _seg_layer(path: str, index_of: dict[str, int]) -> Layer:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    layer = Layer("seg", "seg", segments=[(int(s.SegmentNumber), str(s.get("SegmentLabel", "")))
                                          for s in ds.get("SegmentSequence", [])])
    label_map = ds.get("SegmentationType") == "LABELMAP" or str(ds.SOPClassUID) == LABEL_MAP_SEG
    pixels = seg_pixels(path)
    for frame, item in enumerate(ds.get("PerFrameFunctionalGroupsSequence", [])):
        source = _first(item, "DerivationImageSequence", "SourceImageSequence")
        index = index_of.get(str(source.ReferencedSOPInstanceUID)) if source is not None else None
        if index is None:
            continue
        ident = _first(item, "SegmentIdentificationSequence")
        segment = 0 if label_map or ident is None else int(ident.ReferencedSegmentNumber)
        layer.frames_by_slice.setdefault(index, []).append((frame, segment))
        layer.path_by_slice[index] = path
        labels, counts = np.unique(pixels[frame], return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist()):
            if label:
                number = int(label) if label_map else segment
                layer.area.setdefault(index, {})[number] = layer.area.get(index, {}).get(number, 0) + int(count)
    return layer


def _add_sc(layer: Layer, path: str, index_of: dict[str, int]) -> None:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    source = _first(ds, "SourceImageSequence")
    index = index_of.get(str(source.ReferencedSOPInstanceUID)) if source is not None else None
    if index is not None:
        layer.path_by_slice[index] = path


def _kos_slices(path: str, index_of: dict[str, int]) -> set[int]:
    ds = pydicom.dcmread(path)
    found = set()
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            for sop in series.get("ReferencedSOPSequence", []):
                if str(sop.ReferencedSOPInstanceUID) in index_of:
                    found.add(index_of[str(sop.ReferencedSOPInstanceUID)])
    return found


def _first(ds: Any, *path: str) -> Any:
    """The first item down a chain of sequences, or ``None``."""
    for keyword in path:
        items = ds.get(keyword) if ds is not None else None
        if not items:
            return None
        ds = items[0]
    return ds
