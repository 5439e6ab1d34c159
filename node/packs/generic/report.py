"""The results of a generic model: a multi-segment SEG and a TID 1500 report of volumes, or
the DICOM objects a command wrote, checked and given the node's result series.

For a label image, all in the source study and frame of reference:

- a BINARY Segmentation with one segment per label present (names and codes from the
  model's metadata, see :mod:`.labels`), over every slice (Series Number = base);
- a Comprehensive 3D SR (TID 1500): per segment a volumetric group (its volume in mL,
  referencing the segment) and a planar group with the same Tracking UID (the outline of
  its largest region on the slice where it is largest), so that a viewer draws each one;
  with nothing segmented, one group "No segment found" around the middle slice
  (Series Number = base + 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ...results import FindingGroup, Placement, build_measurement_report, build_segmentation
from ...results.cross_section import largest_cross_section
from ...results.outline import whole_image_outline
from ...results.seg import Segment
from ..protocol import ResultContext
from .labels import segment_for

__all__ = ["GenericFindings", "adopt_objects", "read_objects", "write_results"]

VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
MILLILITER = hd.sr.CodedConcept("mL", "UCUM", "milliliter")
NOTHING_FOUND = hd.sr.CodedConcept("AIN-BYOM-9999", "99AINODE", "Segmented region")


@dataclass
class GenericFindings:
    """What a generic model found: a label volume on the series' voxels and the names of its
    values, or the DICOM objects a command wrote (``objects``)."""

    labels: np.ndarray | None
    names: dict[int, str]
    voxel_ml: float = 0.0
    objects: list[Dataset] = field(default_factory=list)

    def present(self) -> list[int]:
        """Label values that occur in the label volume, in order."""
        if self.labels is None:
            return []
        return [int(v) for v in np.unique(self.labels) if v != 0]

    def volumes_ml(self) -> dict[int, float]:
        """Label value → volume in mL."""
        if self.labels is None:
            return {}
        counts = np.bincount(self.labels.ravel().astype(np.int64))
        return {v: float(counts[v]) * self.voxel_ml for v in self.present()}

    def summary(self) -> dict[str, Any]:
        """For the job row: segments and their volumes, or the number of objects passed on."""
        if self.labels is None:
            return {"objects_from_model": len(self.objects)}
        return {"segments": {self.names.get(v, f"Label {v}"): round(ml, 3) for v, ml in self.volumes_ml().items()}}


def write_results(series: Sequence[Dataset], findings: GenericFindings, context: ResultContext) -> list[Dataset]:
    """The SEG and SR of ``findings`` (see the module's docstring), or its checked DICOM objects."""
    series = list(series)
    if findings.labels is None:
        return adopt_objects(series, findings.objects, context)
    labels = findings.labels
    if labels.shape != (len(series), int(series[0].Rows), int(series[0].Columns)):
        raise ValueError(f"labels have shape {labels.shape}, the series is {len(series)} slices of "
                         f"{series[0].Rows}x{series[0].Columns}")
    algorithm, base = context.algorithm, int(context.series_number_base)
    present = findings.present()
    segments = [segment_for(v, findings.names.get(v, f"Label {v}")) for v in present]
    seg = None
    if present:
        seg = build_segmentation(
            series, [labels == v for v in present], segments,
            Placement(algorithm, base, f"AI {algorithm.name}"[:64]),
            content_description=f"Segmented by {algorithm.name}"[:64],
        )
    volumes = findings.volumes_ml()
    groups: list[FindingGroup] = []
    for number, (value, segment) in enumerate(zip(present, segments), start=1):
        groups.append(FindingGroup(
            tracking_identifier=segment.label, tracking_uid=segment.tracking_uid, finding=segment.segment_type,
            measurements=((VOLUME, round(volumes[value], 3), MILLILITER),),
            segmentation=seg, segment_number=number,
        ))
        groups.append(largest_cross_section(series, labels == value, segment))
    if not present:
        middle = series[len(series) // 2]
        groups.append(FindingGroup(
            tracking_identifier="No segment found", finding=NOTHING_FOUND,
            qualitative_evaluations=((NOTHING_FOUND, codes.SCT.Absent),),
            image=middle, graphic_type="POLYLINE", graphic_data=whole_image_outline(middle),
        ))
    sr = build_measurement_report(
        series, groups, Placement(algorithm, base + 1, f"AI {algorithm.name} volumes"[:64]),
        evidence=[seg] if seg is not None else [],
    )
    return [d for d in (seg, sr) if d is not None]


def adopt_objects(series: Sequence[Dataset], objects: Sequence[Dataset], context: ResultContext) -> list[Dataset]:
    """A command's own DICOM objects, checked: each must be in the source study; one without
    Series Number, Series Instance UID or SOP Instance UID gets the node's (stable) ones.

    Raises
    ------
    ValueError
        When an object is not in the source study, or has no SOP Class UID.
    """
    source = series[0]
    adopted = []
    for i, ds in enumerate(objects):
        if str(ds.get("StudyInstanceUID", "")) != str(source.StudyInstanceUID):
            raise ValueError(f"output object {i + 1} does not reference the source study (Study Instance UID differs)")
        if not ds.get("SOPClassUID"):
            raise ValueError(f"output object {i + 1} has no SOP Class UID")
        if not ds.get("SeriesNumber"):
            ds.SeriesNumber = int(context.series_number_base) + 2
        if not ds.get("SeriesInstanceUID"):
            ds.SeriesInstanceUID = context.series_uid_for(int(ds.SeriesNumber))
        if not ds.get("SOPInstanceUID"):
            ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(source.SeriesInstanceUID), context.algorithm.name,
                                                           str(ds.SeriesInstanceUID), str(i)])
        if hasattr(ds, "file_meta"):
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        adopted.append(ds)
    if not adopted:
        raise ValueError("the model wrote no result (no DICOM object and no label image in {output})")
    return adopted


def read_objects(paths: Sequence[Any]) -> list[Dataset]:
    """The DICOM objects in ``paths`` (files that are not DICOM are an error)."""
    found = []
    for path in paths:
        try:  # a file without its preamble and meta header is read too; adopt_objects checks what it holds
            ds = pydicom.dcmread(path, force=True)
            ds.SOPClassUID  # noqa: B018 - a file that is not DICOM has none
        except Exception:
            raise ValueError(f"output file {getattr(path, 'name', path)} is not a DICOM object") from None
        found.append(ds)
    return found



