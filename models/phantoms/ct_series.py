"""Write a synthetic image volume as a series of single-frame DICOM datasets.

The writer is modality-neutral at its core: :class:`SeriesSpec` carries the SOP class,
modality, rescale, window and any extra attributes, so that CT, MR or other phantoms
share the patient / study / geometry / pixel plumbing. The defaults describe an axial
CT series (CT Image Storage, Rescale Intercept -1024, Window 40/80).

Every dataset is complete: File Meta Information (Explicit VR Little Endian,
uncompressed), a 128-byte preamble, and the attributes of the Patient, General Study,
General Series, Frame of Reference, General Equipment, General Acquisition, General
Image, Image Plane, Image Pixel, CT Image (when the SOP class is CT), VOI LUT and SOP
Common modules.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PYDICOM_IMPLEMENTATION_UID,
    generate_uid,
)

__all__ = ["CTPhantom", "Patient", "Study", "SeriesSpec", "build_series", "new_dataset", "set_patient_and_study"]

_IMPLEMENTATION_VERSION = "AINODE_PHANTOM1"


@dataclass
class CTPhantom:
    """What every CT phantom holds first: its slices and their Hounsfield units.

    Attributes
    ----------
    datasets:
        One CT Image dataset per slice, sorted inferior to superior.
    hu:
        ``(n, size, size)`` int16 Hounsfield units.
    """

    datasets: list[Dataset]
    hu: np.ndarray


@dataclass(frozen=True)
class Patient:
    """Patient module attributes.

    Parameters
    ----------
    name:
        Patient's Name in DICOM PN form (``Family^Given``); non-ASCII is written as UTF-8
        with Specific Character Set ``ISO_IR 192``.
    id:
        Patient ID.
    birth_date:
        ``YYYYMMDD`` or empty.
    sex:
        ``M``, ``F``, ``O`` or empty.
    """

    name: str = "Phantom^Anonymous"
    id: str = "PHANTOM"
    birth_date: str = ""
    sex: str = "O"


@dataclass(frozen=True)
class Study:
    """General Study module attributes; ``instance_uid=None`` generates a fresh UID."""

    instance_uid: str | None = None
    date: str | None = None
    time: str | None = None
    accession_number: str = ""
    study_id: str = "1"
    description: str = ""
    referring_physician: str = ""


@dataclass(frozen=True)
class SeriesSpec:
    """Modality-specific parts of a series.

    Parameters
    ----------
    modality:
        Modality (``CT``, ``MR`` ...).
    sop_class_uid:
        SOP Class UID of every instance. The CT Image module (KVP, Acquisition Number,
        rescale) is written only for CT Image Storage.
    body_part:
        Body Part Examined (``HEAD``, ``CHEST`` ...), empty to omit.
    series_number, description:
        Series Number and Series Description.
    image_type:
        Image Type values.
    rescale:
        ``(intercept, slope)``: stored value = (value - intercept) / slope. ``None``
        writes the values unscaled and no rescale attributes (e.g. MR).
    window:
        ``(center, width)`` for the VOI LUT module, ``None`` to omit.
    kvp:
        KVP for CT, ``None`` to leave it empty.
    patient_position:
        Patient Position (``HFS`` ...).
    manufacturer:
        Manufacturer of the (virtual) equipment.
    instance_uid, frame_of_reference_uid:
        ``None`` generates fresh UIDs.
    extra:
        Further attributes by keyword, set on every instance (e.g. ``ConvolutionKernel``,
        ``ScanningSequence`` for MR).
    """

    modality: str = "CT"
    sop_class_uid: str = CTImageStorage
    body_part: str = ""
    series_number: int = 1
    description: str = ""
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    rescale: tuple[float, float] | None = (-1024.0, 1.0)
    window: tuple[float, float] | None = (40.0, 80.0)
    kvp: float | None = 120.0
    patient_position: str = "HFS"
    manufacturer: str = "ainode phantom"
    instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def build_series(
    volume: np.ndarray,
    pixel_spacing: tuple[float, float],
    slice_thickness: float,
    *,
    slice_spacing: float | None = None,
    z_origin: float = 0.0,
    xy_origin: tuple[float, float] | None = None,
    patient: Patient = Patient(),
    study: Study = Study(),
    series: SeriesSpec = SeriesSpec(),
) -> list[Dataset]:
    """Build one single-frame dataset per slice of ``volume``.

    Parameters
    ----------
    volume:
        ``(n, rows, cols)`` integer array of values in output units (HU for CT); slice 0
        is the most inferior one.
    pixel_spacing:
        ``(row spacing, column spacing)`` in mm.
    slice_thickness:
        Slice Thickness in mm.
    slice_spacing:
        Distance between slice centres in mm; defaults to ``slice_thickness``.
    z_origin:
        z of slice 0's Image Position (Patient); slice ``i`` is at
        ``z_origin + i * slice_spacing``.
    xy_origin:
        x, y of the first pixel's centre; defaults to centring the image on the
        isocentre.
    patient, study, series:
        Attributes of the patient, the study and the series.

    Returns
    -------
    list[Dataset]
        Complete datasets (``FileDataset`` with File Meta Information), in slice order,
        Instance Numbers 1..n.

    Raises
    ------
    ValueError
        If the volume is not 3-D, not integer, or does not fit 16-bit storage.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be (n, rows, cols), got shape {volume.shape}")
    if not np.issubdtype(volume.dtype, np.integer):
        raise ValueError(f"volume must be an integer array, got {volume.dtype}")
    n, rows, cols = volume.shape
    spacing = float(slice_spacing if slice_spacing is not None else slice_thickness)
    stored, signed = _stored_values(volume, series.rescale)
    if xy_origin is None:
        xy_origin = (-(cols - 1) / 2.0 * pixel_spacing[1], -(rows - 1) / 2.0 * pixel_spacing[0])

    now = _dt.datetime.now()
    study_uid = study.instance_uid or generate_uid()
    series_uid = series.instance_uid or generate_uid()
    frame_uid = series.frame_of_reference_uid or generate_uid()
    date = study.date or now.strftime("%Y%m%d")
    time = study.time or now.strftime("%H%M%S")
    texts = (
        patient.name, patient.id, study.description, series.description,
        study.referring_physician, study.accession_number,
    )
    non_ascii = any(not t.isascii() for t in texts)

    datasets: list[Dataset] = []
    for i in range(n):
        ds = new_dataset(series.sop_class_uid)
        if non_ascii:
            ds.SpecificCharacterSet = "ISO_IR 192"
        set_patient_and_study(ds, patient, study, study_uid, date, time)
        _set_series(ds, series, series_uid, frame_uid, date, time)
        ds.InstanceNumber = i + 1
        ds.ImagesInAcquisition = n
        z = float(z_origin) + i * spacing
        _set_plane(ds, (xy_origin[0], xy_origin[1], z), pixel_spacing, slice_thickness, spacing)
        _set_pixels(ds, stored[i], signed, series)
        for keyword, value in series.extra.items():
            setattr(ds, keyword, value)
        datasets.append(ds)
    return datasets


def set_patient_and_study(
    ds: Dataset, patient: Patient, study: Study, study_uid: str, date: str, time: str
) -> None:
    """The SOP Instance UID (from the File Meta Information), Patient and General Study attributes."""
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient.name
    ds.PatientID = patient.id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = date
    ds.StudyTime = time
    ds.ReferringPhysicianName = study.referring_physician
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    if study.description:
        ds.StudyDescription = study.description


def _set_series(ds: Dataset, series: SeriesSpec, series_uid: str, frame_uid: str, date: str, time: str) -> None:
    """General Series, Frame of Reference, General Equipment, General Acquisition and Image."""
    ds.Modality = series.modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDate = date
    ds.SeriesTime = time
    if series.description:
        ds.SeriesDescription = series.description
    if series.body_part:
        ds.BodyPartExamined = series.body_part
    ds.PatientPosition = series.patient_position
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = series.manufacturer
    ds.ManufacturerModelName = "digital phantom"
    ds.SoftwareVersions = "1"
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate = date
    ds.AcquisitionTime = time
    ds.ContentDate = date
    ds.ContentTime = time
    ds.ImageType = list(series.image_type)
    ds.BurnedInAnnotation = "NO"


def _set_plane(
    ds: Dataset, position: tuple[float, float, float], pixel_spacing: tuple[float, float],
    slice_thickness: float, spacing: float,
) -> None:
    """Image Plane attributes of an axial slice whose first pixel is at ``position``."""
    ds.ImagePositionPatient = [_ds_float(position[0]), _ds_float(position[1]), _ds_float(position[2])]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [_ds_float(pixel_spacing[0]), _ds_float(pixel_spacing[1])]
    ds.SliceThickness = _ds_float(slice_thickness)
    ds.SpacingBetweenSlices = _ds_float(spacing)
    ds.SliceLocation = _ds_float(position[2])


def _set_pixels(ds: Dataset, stored: np.ndarray, signed: bool, series: SeriesSpec) -> None:
    """Image Pixel, rescale, CT Image (for CT Image Storage) and VOI LUT attributes."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = stored.tobytes()
    if series.rescale is not None:
        ds.RescaleIntercept = _ds_float(series.rescale[0])
        ds.RescaleSlope = _ds_float(series.rescale[1])
        ds.RescaleType = "HU" if series.modality == "CT" else "US"
    if series.sop_class_uid == CTImageStorage:
        ds.KVP = _ds_float(series.kvp) if series.kvp is not None else None
    if series.window is not None:
        ds.WindowCenter = _ds_float(series.window[0])
        ds.WindowWidth = _ds_float(series.window[1])


def new_dataset(sop_class_uid: str) -> FileDataset:
    """An empty dataset with File Meta Information for Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    return FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)


def _stored_values(
    volume: np.ndarray, rescale: tuple[float, float] | None
) -> tuple[np.ndarray, bool]:
    """Stored pixel values (little-endian 16-bit) and whether they are signed."""
    values = volume.astype(np.float64)
    if rescale is not None:
        intercept, slope = rescale
        values = (values - intercept) / slope
    stored = np.rint(values)
    low, high = float(stored.min()), float(stored.max())
    if low >= 0 and high <= 65535:
        return stored.astype("<u2"), False
    if low >= -32768 and high <= 32767:
        return stored.astype("<i2"), True
    raise ValueError(f"stored values {low:.0f}..{high:.0f} do not fit 16 bits")


def _ds_float(value: float) -> str:
    """A Decimal String value of at most 16 characters."""
    text = f"{float(value):.6g}"
    return text if len(text) <= 16 else f"{float(value):.8e}"[:16]

