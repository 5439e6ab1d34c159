"""Chest radiograph DICOM: one DX Image (For Presentation) from the detector's values."""
from __future__ import annotations

import datetime as _dt

import numpy as np
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from models.phantoms.ct_series import Patient, Study, new_dataset, set_patient_and_study
from models.phantoms.cxr_anatomy import CXRStyle
from models.phantoms.cxr_detector import BITS, VALUE_OFFSET

__all__ = ["DX_FOR_PRESENTATION", "dx_dataset"]

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
"""Digital X-Ray Image Storage - For Presentation."""


def dx_dataset(image, spacing, photometric, seed, patient_name, patient_id, study_uid,
               style: CXRStyle | None = None) -> Dataset:
    """The DX dataset of ``image`` (MONOCHROME2 values; inverted for MONOCHROME1)."""
    bits = style.bits if style else BITS
    stored, center, width = _stored(image, photometric, bits, style)
    ds = new_dataset(DX_FOR_PRESENTATION)
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    if not patient_name.isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"
    set_patient_and_study(ds, Patient(name=patient_name, id=patient_id), Study(description="Chest PA"),
                          study_uid or generate_uid(), date, time)
    ds.Modality = "DX"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = "Chest PA phantom"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.AcquisitionContextSequence = DicomSequence()
    ds.PositionerType = ""
    ds.Manufacturer = "ainode phantom"
    ds.ManufacturerModelName = "digital CXR phantom"
    ds.SoftwareVersions = "1"
    ds.DeviceSerialNumber = f"seed-{seed}"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDate, ds.AcquisitionTime = date, time
    _set_view(ds, spacing)
    _set_pixels(ds, stored, photometric, bits, center, width)
    return ds


def _stored(image: np.ndarray, photometric: str, bits: int, style: CXRStyle | None) -> tuple[np.ndarray, float, float]:
    """Stored values and the lung window (centre, width) of ``image``."""
    max_value = (1 << bits) - 1
    floor = (style.value_offset * (1 << (bits - BITS)) if style else VALUE_OFFSET) + 50
    stored = np.rint(image).astype(np.uint16)
    low, high = np.percentile(image[image > floor] if (image > floor).any() else image, (2, 99.5))
    center, width = float((low + high) / 2), float(max(high - low, 1.0))
    if photometric == "MONOCHROME1":
        stored = (max_value - stored).astype(np.uint16)
        center = max_value - center
    return stored, center, width


def _code(value: str, meaning: str) -> Dataset:
    """A SNOMED CT code item."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = meaning
    return item


def _set_view(ds: Dataset, spacing: float) -> None:
    """Image type, orientation, anatomy, view and the DX detector's geometry."""
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["L", "F"]
    ds.ImageLaterality = "U"
    ds.AnatomicRegionSequence = DicomSequence([_code("43799004", "Thorax")])
    ds.ViewCodeSequence = DicomSequence([_code("399348003", "postero-anterior")])
    ds.PatientPosition = ""
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
    ds.KVP = "120"
    ds.DistanceSourceToDetector = "1800"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"


def _set_pixels(ds: Dataset, stored: np.ndarray, photometric: str, bits: int, center: float, width: float) -> None:
    """Image Pixel, DX Image, Presentation LUT and VOI LUT attributes."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME2" else -1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    ds.WindowCenter = f"{center:.1f}"
    ds.WindowWidth = f"{width:.1f}"
    ds.WindowCenterWidthExplanation = "phantom lung window"
    ds.PixelData = stored.tobytes()
