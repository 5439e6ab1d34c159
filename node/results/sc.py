"""RGB Secondary Capture overlays (heatmaps, outlines) on a source image."""
from __future__ import annotations

import copy
from typing import Any, Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence as DicomSequence

from ..dicom.frames import frame_number
from .checks import MAX_ST, check_source_images, uid_or_new
from .equipment import PATIENT_STUDY_KEYWORDS, add_processing_algorithm, copy_patient_and_study
from .placement import Placement

__all__ = ["OverlaySeries", "SOURCE_IMAGE_PURPOSE", "build_overlay_sc"]

SOURCE_IMAGE_PURPOSE = hd.sr.CodedConcept(
    value="121322",
    scheme_designator="DCM",
    meaning="Source image for image processing operation",
)
"""Purpose of Reference of the SourceImageSequence item (CID 7202)."""

_AXIS_LETTERS: tuple[tuple[str, str], ...] = (("L", "R"), ("P", "A"), ("H", "F"))
"""Patient direction letters of the +/- x, y and z axes of the patient coordinate system."""


def build_overlay_sc(
    source: Dataset,
    rgb: np.ndarray,
    placement: Placement,
    *,
    derivation_description: str | None = None,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """Build an RGB Secondary Capture of an overlay drawn on ``source``.

    The image belongs to the source's study, with its patient and study
    attributes and character set; it references ``source`` in
    SourceImageSequence (purpose "Source image for image processing
    operation"), copies BodyPartExamined and, where present, Laterality, and
    gives Pixel Spacing and Patient Orientation from the source geometry.

    Parameters
    ----------
    source:
        The single-frame image the overlay is drawn on.
    rgb:
        ``(rows, cols, 3)`` uint8 RGB pixels.
    placement:
        Series (shared by all overlays of one result series), Instance Number and
        the model (equipment attributes and the Processing Algorithm item).
    derivation_description:
        Derivation Description; ``"<series_description> by <algorithm name>
        <version>"`` when omitted.
    sop_instance_uid:
        UID of the instance; a fresh UID when omitted.

    Returns
    -------
    pydicom.Dataset
        A :class:`highdicom.sc.SCImage`.

    Raises
    ------
    TypeError, ValueError
        When an argument is wrong; the message names it.
    """
    check_source_images([source], "source")
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f'Argument "rgb" must be a numpy array, not {type(rgb).__name__}.')
    if rgb.dtype != np.uint8:
        raise TypeError(f'Argument "rgb" must have dtype uint8, not {rgb.dtype}.')
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'Argument "rgb" must have shape (rows, columns, 3), not {rgb.shape}.')
    sop_instance_uid = uid_or_new(sop_instance_uid, "sop_instance_uid")
    algorithm = placement.algorithm
    if derivation_description is None:
        derivation_description = (
            f"{placement.series_description} by {algorithm.name} {algorithm.version}"
        )
    if not isinstance(derivation_description, str) or len(derivation_description) > MAX_ST:
        raise ValueError(
            'Argument "derivation_description" (DerivationDescription) must be a string '
            f"of at most {MAX_ST} characters."
        )

    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(rgb),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        sop_instance_uid=sop_instance_uid,
        pixel_spacing=_pixel_spacing(source, rgb.shape[:2]),
        patient_orientation=_patient_orientation(source),
        laterality=_laterality(source),
        **placement.highdicom_arguments(source),
    )
    copy_patient_and_study(sc, source)
    sc.ConversionType = "WSD"
    if "BodyPartExamined" in source:
        sc.BodyPartExamined = source.BodyPartExamined
    if "Laterality" not in sc and "BodyPartExamined" not in source and "ImageLaterality" not in source:
        sc.Laterality = None  # Type 2C: empty, since without a body part it may be a paired structure
    sc.BurnedInAnnotation = "NO"
    sc.DerivationDescription = derivation_description
    sc.SourceImageSequence = DicomSequence([_source_image_item(source)])
    add_processing_algorithm(sc, algorithm)
    return sc


_PIXEL_DATA = 0x7FE00010
_SOURCE_KEYWORDS: tuple[str, ...] = (
    *PATIENT_STUDY_KEYWORDS, "SpecificCharacterSet", "Rows", "Columns", "PixelSpacing",
    "ImageOrientationPatient", "PatientOrientation", "Laterality", "ImageLaterality", "BodyPartExamined",
)
"""The source attributes an overlay's shared attributes are made from (see :class:`OverlaySeries`)."""


class OverlaySeries:
    """The overlays of one result series: the first built by :func:`build_overlay_sc`, the next ones from it.

    The overlays of one series share all but their instance attributes (patient, study,
    equipment, series, geometry are the same); building each through highdicom again
    costs more than drawing it. A copy of the first overlay's attributes gets each next
    overlay's UID, Instance Number, source reference and pixels; a source that differs
    from the first in any attribute the shared ones are made from (:data:`_SOURCE_KEYWORDS`,
    the matrix of the pixels) gets a fresh build, and becomes the model for those after it.
    """

    def __init__(self, placement: Placement, *, derivation_description: str | None = None) -> None:
        self._placement = placement
        self._derivation_description = derivation_description
        self._model: Dataset | None = None
        self._model_key: tuple[Any, ...] | None = None

    def build(self, source: Dataset, rgb: np.ndarray, *, instance_number: int,
              sop_instance_uid: str | None = None) -> Dataset:
        """The overlay ``rgb`` (``(rows, cols, 3)`` uint8) drawn on ``source``, as :func:`build_overlay_sc` builds it."""
        placement = self._placement.numbered(instance_number)
        key = _shared_key(source, rgb)
        if self._model is None or key != self._model_key or self._model.file_meta.TransferSyntaxUID.is_encapsulated:
            sc = build_overlay_sc(source, rgb, placement, derivation_description=self._derivation_description,
                                  sop_instance_uid=sop_instance_uid)
            self._model, self._model_key = _without_pixels(sc), key
            return sc
        sop_instance_uid = uid_or_new(sop_instance_uid, "sop_instance_uid")
        sc = copy.deepcopy(self._model)
        sc.SOPInstanceUID = sop_instance_uid
        sc.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
        sc.InstanceNumber = instance_number
        sc.SourceImageSequence = DicomSequence([_source_image_item(source)])
        sc[_PIXEL_DATA] = DataElement(_PIXEL_DATA, "OB", np.ascontiguousarray(rgb).tobytes())
        return sc


def _shared_key(source: Dataset, rgb: np.ndarray) -> tuple[Any, ...]:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        return (None,)  # build_overlay_sc says what is wrong
    return (rgb.shape, *(repr(source.get(keyword)) for keyword in _SOURCE_KEYWORDS))


def _without_pixels(sc: Dataset) -> Dataset:
    """A deep copy of ``sc`` without its Pixel Data."""
    pixels = sc[_PIXEL_DATA]
    del sc[_PIXEL_DATA]
    try:
        return copy.deepcopy(sc)
    finally:
        sc[_PIXEL_DATA] = pixels


def _source_image_item(source: Dataset) -> Dataset:
    purpose = Dataset()
    purpose.CodeValue = SOURCE_IMAGE_PURPOSE.value
    purpose.CodingSchemeDesignator = SOURCE_IMAGE_PURPOSE.scheme_designator
    purpose.CodeMeaning = SOURCE_IMAGE_PURPOSE.meaning
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    number = frame_number(source)
    if number is not None:
        item.ReferencedFrameNumber = number
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    return item


def _pixel_spacing(source: Dataset, shape: Sequence[int]) -> tuple[float, float] | None:
    """The source's Pixel Spacing when the overlay has the source's matrix."""
    spacing = source.get("PixelSpacing")
    if spacing is None or (int(source.Rows), int(source.Columns)) != tuple(shape):
        return None
    try:
        values = (float(spacing[0]), float(spacing[1]))
    except (IndexError, TypeError, ValueError):
        return None
    return values if all(np.isfinite(v) and v > 0 for v in values) else None


def _patient_orientation(source: Dataset) -> tuple[str, str]:
    """Patient Orientation letters (dominant axis) of the row and column directions."""
    iop = source.get("ImageOrientationPatient")
    if iop is None:
        orientation = source.get("PatientOrientation")
        if orientation is not None and len(orientation) == 2:
            return (str(orientation[0])[:1], str(orientation[1])[:1])
        raise ValueError(
            'Argument "source" lacks ImageOrientationPatient and PatientOrientation; '
            "the overlay's Patient Orientation cannot be derived."
        )
    values = np.asarray(iop, dtype=float)
    return (_direction_letter(values[:3]), _direction_letter(values[3:]))


def _direction_letter(vector: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(vector)))
    positive, negative = _AXIS_LETTERS[axis]
    return positive if vector[axis] > 0 else negative


def _laterality(source: Dataset) -> str | None:
    value = source.get("Laterality") or source.get("ImageLaterality")
    if value in ("L", "R"):
        return str(value)
    return None
