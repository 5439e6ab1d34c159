"""Encapsulated STL result objects (a 3D surface mesh as DICOM).

The Encapsulated STL IOD (SOP Class 1.2.840.10008.5.1.4.1.1.104.3, PS3.3 A.85.1)
carries a binary STL file in Encapsulated Document (0042,0011), with MIME type
``model/stl``, in the source's study (Modality ``M3D``) and, when the vertices are
patient coordinates, in its frame of reference. The Manufacturing 3D Model module
states the units of the vertices (Measurement Units Code Sequence: UCUM ``mm``).
"""
from __future__ import annotations

import datetime
from typing import Sequence

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from .checks import check_source_images, check_text, uid_or_new
from .equipment import add_processing_algorithm, copy_patient_and_study, set_equipment
from .placement import Placement

__all__ = [
    "ENCAPSULATED_STL_STORAGE",
    "build_encapsulated_stl",
    "decode_binary_stl",
    "encode_binary_stl",
]

ENCAPSULATED_STL_STORAGE = "1.2.840.10008.5.1.4.1.1.104.3"
"""SOP Class UID of Encapsulated STL Storage."""

_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


def encode_binary_stl(triangles: np.ndarray, header: str = "ainode surface") -> bytes:
    """Encode ``(n, 3, 3)`` triangles (vertex coordinates in mm) as a binary STL file.

    Facet normals are computed from the vertex order (counter-clockwise seen from
    outside, the STL convention); degenerate triangles get a zero normal.

    Raises
    ------
    ValueError
        When ``triangles`` is not ``(n, 3, 3)`` with finite values.
    """
    triangles = np.asarray(triangles, dtype=np.float64)
    if triangles.ndim != 3 or triangles.shape[1:] != (3, 3):
        raise ValueError(f'Argument "triangles" must have shape (n, 3, 3), not {triangles.shape}.')
    if not np.isfinite(triangles).all():
        raise ValueError('Argument "triangles" must be finite.')
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    records = np.zeros(len(triangles), dtype=_STL_RECORD)
    records["normal"] = normals
    records["vertices"] = triangles
    head = header.encode("ascii", "replace")[:80].ljust(80, b" ")
    if head.lower().startswith(b"solid"):
        head = b"x" + head[1:]  # a binary STL must not look like an ASCII one
    return head + np.uint32(len(triangles)).tobytes() + records.tobytes()


def decode_binary_stl(data: bytes) -> np.ndarray:
    """Decode a binary STL file into ``(n, 3, 3)`` float32 triangles.

    Raises
    ------
    ValueError
        When the length does not match the triangle count of the header.
    """
    if len(data) < 84:
        raise ValueError("binary STL is shorter than its 84-byte header")
    count = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
    if len(data) < 84 + count * _STL_RECORD.itemsize:
        raise ValueError(f"binary STL announces {count} triangles but is {len(data)} bytes long")
    records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=84)
    return records["vertices"].copy()


def build_encapsulated_stl(
    source_images: Sequence[Dataset],
    stl: bytes,
    placement: Placement,
    *,
    document_title: str,
    source_instances: Sequence[Dataset] = (),
    sop_instance_uid: str | None = None,
) -> Dataset:
    """Build an Encapsulated STL object whose vertices are patient coordinates (mm).

    Parameters
    ----------
    source_images:
        Images of the analysed series: the object takes their study, patient and
        character set and their Frame of Reference UID.
    stl:
        A binary STL file (:func:`encode_binary_stl`) in patient coordinates, mm.
    placement:
        Series, Instance Number and the model (equipment attributes and the
        Processing Algorithm item).
    document_title:
        Document Title, e.g. ``"Tumor surface"``.
    source_instances:
        Instances the mesh was derived from (e.g. the SEG), referenced in Source
        Instance Sequence; the source images when empty.
    sop_instance_uid:
        UID of the new instance; a fresh UID when omitted.

    Returns
    -------
    pydicom.Dataset
        A complete dataset with File Meta Information (Explicit VR Little Endian).

    Raises
    ------
    TypeError, ValueError
        When an argument is wrong; the message names it.
    """
    check_source_images(source_images, "source_images")
    if not isinstance(stl, (bytes, bytearray)):
        raise TypeError(f'Argument "stl" must be bytes, not {type(stl).__name__}.')
    decode_binary_stl(bytes(stl))
    check_text(document_title, "document_title", "DocumentTitle")
    sop_instance_uid = uid_or_new(sop_instance_uid, "sop_instance_uid")
    first = source_images[0]
    if "FrameOfReferenceUID" not in first:
        raise ValueError('The first item of "source_images" lacks FrameOfReferenceUID.')
    references = list(source_instances) or list(source_images)
    check_source_images(references, "source_instances")
    ds = _encapsulated_stl(first, stl, placement, document_title, sop_instance_uid)
    ds.SourceInstanceSequence = DicomSequence([_reference(r) for r in references])
    ds.ReferencedSeriesSequence = _referenced_series(references)  # Common Instance Reference
    add_processing_algorithm(ds, placement.algorithm)
    return ds


def _encapsulated_stl(
    first: Dataset, stl: bytes, placement: Placement, document_title: str, sop_instance_uid: str
) -> Dataset:
    """The Encapsulated STL dataset of validated arguments, without its references."""
    now = datetime.datetime.now().astimezone()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_STL_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.preamble = b"\0" * 128
    copy_patient_and_study(ds, first)
    # SOP Common
    ds.SOPClassUID = ENCAPSULATED_STL_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    # Encapsulated Document Series
    ds.Modality = "M3D"
    ds.SeriesInstanceUID = placement.series_instance_uid
    ds.SeriesNumber = placement.series_number
    ds.SeriesDescription = placement.series_description
    ds.SeriesDate = now.strftime("%Y%m%d")
    ds.SeriesTime = now.strftime("%H%M%S")
    # Frame of Reference: the vertices are patient coordinates of the source
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    # General Equipment and Enhanced General Equipment
    set_equipment(ds, placement.algorithm)
    # Encapsulated Document
    ds.InstanceNumber = placement.instance_number
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = document_title
    ds.ConceptNameCodeSequence = DicomSequence()
    ds.MIMETypeOfEncapsulatedDocument = "model/stl"
    ds.EncapsulatedDocument = bytes(stl) + (b"\0" if len(stl) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(stl)
    # Manufacturing 3D Model
    unit = Dataset()
    unit.CodeValue = "mm"
    unit.CodingSchemeDesignator = "UCUM"
    unit.CodeMeaning = "mm"
    ds.MeasurementUnitsCodeSequence = DicomSequence([unit])
    return ds


def _referenced_series(references: Sequence[Dataset]) -> DicomSequence:
    by_series: dict[str, list[Dataset]] = {}
    for ref in references:
        by_series.setdefault(str(ref.SeriesInstanceUID), []).append(_reference(ref))
    items = []
    for series_uid, instances in by_series.items():
        item = Dataset()
        item.SeriesInstanceUID = series_uid
        item.ReferencedInstanceSequence = DicomSequence(instances)
        items.append(item)
    return DicomSequence(items)


def _reference(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item
