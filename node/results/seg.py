"""Binary Segmentation (SEG) result objects: one segment, or several over the same images."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..dicom.frames import frame_source
from ..logs import log
from .checks import MAX_LO, check_concept, check_source_images, check_text, uid_or_new
from .equipment import add_study_and_algorithm, algorithm_identification
from .placement import Placement

__all__ = ["SEGMENT_COLOURS", "Segment", "build_binary_seg", "build_segmentation", "segment_colour", "seg_sources"]

_logger = logging.getLogger("ainode.results")

SEGMENT_COLOURS: dict[tuple[str, str], tuple[int, int, int]] = {
    ("SCT", "50960005"): (220, 30, 30),     # Hemorrhage: red
    ("SCT", "27925004"): (255, 215, 0),     # Nodule: yellow
    ("SCT", "108369006"): (255, 120, 0),    # Neoplasm (tumour): orange
    ("SCT", "83678007"): (222, 184, 135),   # Cerebrum: tan
    ("SCT", "113305005"): (60, 180, 75),    # Cerebellum: green
    ("SCT", "119238007"): (70, 130, 220),   # Brain stem: blue
    ("SCT", "35764002"): (0, 200, 220),     # Brain ventricle: cyan
    ("SCT", "59820001"): (200, 60, 200),    # Blood vessel: magenta
}
"""sRGB colour of each Segmented Property Type (scheme, code value); written as the
segment's Recommended Display CIELab Value."""

_CATEGORY_COLOURS: dict[tuple[str, str], tuple[int, int, int]] = {
    ("SCT", "49755003"): (255, 80, 80),     # Morphologically abnormal structure: light red
    ("SCT", "91723000"): (128, 174, 128),   # Anatomical structure: grey green
}
_DEFAULT_COLOUR = (128, 128, 255)


def segment_colour(segment_type: hd.sr.CodedConcept | Code, category: hd.sr.CodedConcept | Code) -> tuple[int, int, int]:
    """The sRGB display colour of a segment: that of its type (:data:`SEGMENT_COLOURS`),
    else that of its category, else a neutral blue."""
    for concept, table in ((segment_type, SEGMENT_COLOURS), (category, _CATEGORY_COLOURS)):
        colour = table.get((str(concept.scheme_designator), str(concept.value)))
        if colour is not None:
            return colour
    return _DEFAULT_COLOUR


@dataclass(frozen=True)
class Segment:
    """What one segment of a SEG is: its label, coded property and tracking UID.

    Parameters
    ----------
    label:
        Segment Label (0062,0005), e.g. ``"Hemorrhage"``; also its Tracking ID.
    category:
        Segmented Property Category (CID 7150), e.g. SCT "Morphologically
        Abnormal Structure".
    segment_type:
        Segmented Property Type (CID 7151), e.g. SCT "Hemorrhage".
    tracking_uid:
        Tracking UID of the segment (give the SR finding group's Tracking Unique
        Identifier to link the two); a fresh UID when omitted (``None``).
    colour:
        sRGB display colour (0..255 each), written as Recommended Display CIELab
        Value; :func:`segment_colour` of the type and category when omitted.

    Raises
    ------
    TypeError
        When ``category`` or ``segment_type`` is not a coded concept.
    ValueError
        When a field has a wrong value; the message names it.
    """

    label: str
    category: hd.sr.CodedConcept | Code
    segment_type: hd.sr.CodedConcept | Code
    tracking_uid: str | None = None
    colour: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        check_text(self.label, "segment_label", "SegmentLabel")
        check_concept(self.category, "category")
        check_concept(self.segment_type, "segment_type")
        object.__setattr__(self, "tracking_uid", uid_or_new(self.tracking_uid, "tracking_uid"))
        if self.colour is None:
            object.__setattr__(self, "colour", segment_colour(self.segment_type, self.category))
        colour = tuple(self.colour)  # type: ignore[arg-type]
        if len(colour) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in colour):
            raise ValueError(f'Field "colour" (RecommendedDisplayCIELabValue) must be three integers 0..255, got {self.colour!r}.')
        object.__setattr__(self, "colour", tuple(int(v) for v in colour))


def build_binary_seg(
    source_images: Sequence[Dataset],
    mask: np.ndarray,
    placement: Placement,
    *,
    segment_label: str,
    category: hd.sr.CodedConcept | Code,
    segment_type: hd.sr.CodedConcept | Code,
    sop_instance_uid: str | None = None,
    tracking_uid: str | None = None,
) -> Dataset:
    """Build a BINARY Segmentation with one segment over a series of images.

    Frame ``i`` of the segmentation pairs with ``source_images[i]``; empty frames
    are kept (one frame per source image), since viewers such as OHIF have drawn
    slices in the wrong place when empty frames were omitted.

    Parameters
    ----------
    source_images:
        Single-frame images of one series, sorted along the slice normal
        (:func:`node.packs.protocol.sort_slices`).
    mask:
        ``(n, rows, cols)`` bool array, ``n == len(source_images)`` and
        ``rows``/``cols`` those of the images.
    placement:
        Series, Instance Number and the model (Algorithm Identification of the
        segment, algorithm type AUTOMATIC; equipment attributes; the Processing
        Algorithm item).
    segment_label, category, segment_type, tracking_uid:
        The segment (see :class:`Segment`).
    sop_instance_uid:
        UID of the instance; a fresh UID when omitted.

    Returns
    -------
    pydicom.Dataset
        A :class:`highdicom.seg.Segmentation` in the study of the source images,
        with their character set and patient/study attributes.

    Raises
    ------
    TypeError, ValueError
        When an argument is wrong; the message names it.
    """
    check_source_images(source_images, "source_images")
    _check_mask(mask, source_images, "mask")
    segment = Segment(segment_label, category, segment_type, tracking_uid)
    return _segmentation(
        source_images, mask, [segment], placement,
        content_description=f"{segment_label} segmented by {placement.algorithm.name}"[:MAX_LO],
        sop_instance_uid=uid_or_new(sop_instance_uid, "sop_instance_uid"),
    )


def build_segmentation(
    source_images: Sequence[Dataset],
    masks: Sequence[np.ndarray],
    segments: Sequence[Segment],
    placement: Placement,
    *,
    content_description: str,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """Build a BINARY Segmentation with one segment per mask, numbered from 1 in order.

    Parameters
    ----------
    source_images:
        Single-frame images of one series, sorted along the slice normal.
    masks:
        One ``(n, rows, cols)`` bool array per segment, as the mask of
        :func:`build_binary_seg`.
    segments:
        The segments, in the order of ``masks``.
    placement:
        Series, Instance Number and the model.
    content_description:
        Content Description (at most 64 characters).
    sop_instance_uid:
        UID of the instance; a fresh UID when omitted.

    Returns
    -------
    pydicom.Dataset
        A :class:`highdicom.seg.Segmentation`, as :func:`build_binary_seg` builds it.

    Raises
    ------
    TypeError, ValueError
        When an argument is wrong; the message names it.
    """
    check_source_images(source_images, "source_images")
    if len(segments) == 0 or len(masks) != len(segments):
        raise ValueError(
            f'Arguments "masks" and "segments" must be as long and not empty, not {len(masks)} and {len(segments)}.'
        )
    for i, (mask, segment) in enumerate(zip(masks, segments)):
        _check_mask(mask, source_images, f"masks[{i}]")
        if not isinstance(segment, Segment):
            raise TypeError(f'Item {i} of argument "segments" must be a Segment, not {type(segment).__name__}.')
    check_text(content_description, "content_description", "ContentDescription")
    return _segmentation(
        source_images, np.stack(masks, axis=-1), segments, placement,
        content_description=content_description,
        sop_instance_uid=uid_or_new(sop_instance_uid, "sop_instance_uid"),
    )


def _segmentation(
    source_images: Sequence[Dataset],
    pixels: np.ndarray,
    segments: Sequence[Segment],
    placement: Placement,
    *,
    content_description: str,
    sop_instance_uid: str,
) -> Dataset:
    """The SEG of already validated arguments; ``pixels`` is ``(n, rows, cols[, segments])``."""
    first = source_images[0]
    algorithm = placement.algorithm
    sources, pixels = seg_sources(source_images, pixels)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment.label,
            segmented_property_category=segment.category,
            segmented_property_type=segment.segment_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_identification(algorithm),
            tracking_uid=segment.tracking_uid,
            tracking_id=segment.label,
            display_color=hd.color.CIELabColor.from_rgb(*segment.colour),  # type: ignore[misc]
        )
        for number, segment in enumerate(segments, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.ascontiguousarray(pixels, dtype=bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        sop_instance_uid=sop_instance_uid,
        omit_empty_frames=False,
        content_description=content_description,
        **placement.highdicom_arguments(first),
    )
    add_study_and_algorithm(seg, first, algorithm)
    _add_nominal_plane_orientation(seg, sources[0])
    return seg


NOMINAL_ORIENTATION = ("1", "0", "0", "0", "1", "0")
"""Image Orientation (Patient) of a SEG over a projection radiograph, which has none: the
orientation cornerstone assumes for such an image (rows along x, columns along y), against
which OHIF checks the SEG's plane before it draws the mask."""


def _add_nominal_plane_orientation(seg: Dataset, source: Dataset) -> None:
    """Give a SEG without Plane Orientation (a radiograph's) the source's orientation or
    :data:`NOMINAL_ORIENTATION`: OHIF 3.13 reads it from every SEG and stops without it."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "PlaneOrientationSequence" in shared or any(
        "PlaneOrientationSequence" in frame for frame in seg.get("PerFrameFunctionalGroupsSequence", [])
    ):
        return
    orientation = Dataset()
    orientation.ImageOrientationPatient = list(source.get("ImageOrientationPatient") or NOMINAL_ORIENTATION)
    shared.PlaneOrientationSequence = [orientation]


def seg_sources(source_images: Sequence[Dataset], mask: np.ndarray) -> tuple[list[Dataset], np.ndarray]:
    """The images a SEG derives from, and the mask in their frame order.

    Frame views of one multi-frame object (:mod:`node.dicom.frames`) become that object, with
    one mask frame per source frame (frames not analysed stay empty), so that the SEG
    references the object and its frame numbers. Sources without a Frame of Reference
    UID get one derived from their series (logged), since a SEG of cross-sectional
    images needs one.
    """
    origins = [frame_source(ds) for ds in source_images]
    if any(origin is not None for origin in origins):
        parents = {id(origin.dataset): origin.dataset for origin in origins if origin is not None}
        if len(parents) != 1 or any(origin is None for origin in origins):
            raise ValueError('Argument "source_images" mixes frames of several objects; a SEG derives from one.')
        parent = next(iter(parents.values()))
        full = np.zeros((int(parent.NumberOfFrames), *mask.shape[1:]), dtype=bool)
        for origin, frame in zip(origins, mask):
            full[origin.frame_number - 1] = frame  # type: ignore[union-attr]
        sources, mask = [parent], full
    else:
        sources = list(source_images)
    if any("FrameOfReferenceUID" not in ds for ds in sources) and any("ImagePositionPatient" in ds
                                                                      or "SharedFunctionalGroupsSequence" in ds
                                                                      for ds in sources):
        derived = generate_uid(entropy_srcs=[str(sources[0].get("SeriesInstanceUID", "")), "frame-of-reference"])
        log(_logger, logging.WARNING, "source images lack FrameOfReferenceUID; the SEG carries one derived from the series",
            series_uid=str(sources[0].get("SeriesInstanceUID", "")))
        repaired = []
        for ds in sources:
            ds = _shallow_copy(ds)
            if "FrameOfReferenceUID" not in ds:
                ds.FrameOfReferenceUID = derived
            repaired.append(ds)
        sources = repaired
    return [_with_pixel_spacing(ds) for ds in sources], mask


NOMINAL_PIXEL_SPACING = ("1", "1")
"""Pixel Spacing of the SEG's Pixel Measures when the source has no usable spacing at all
(a CR with ``0\\0``): one unit per pixel, what viewers (cornerstone) assume for such an
image, so the segmentation overlays it pixel for pixel. Nothing is measured in mm on such
an image (the reports say so)."""

NOMINAL_SLICE_THICKNESS = "1"
"""Slice Thickness of the SEG's Pixel Measures when the source has none (a projection
radiograph): nominal, since a projection has no slab; highdicom needs one to read the SEG
back, and viewers ignore it for a 2D image."""


def _usable_spacing(value: object) -> bool:
    try:
        return len(value) == 2 and all(float(v) > 0 for v in value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _with_pixel_spacing(ds: Dataset) -> Dataset:
    """``ds``, or a copy with what the SEG's Pixel Measures Sequence needs from it.

    OHIF (3.13) will not open a SEG whose Shared Functional Groups lack the Pixel Measures
    Sequence, and highdicom writes one only from the source's Pixel Spacing (and reads it
    back only with a Slice Thickness). A radiograph without Pixel Spacing gets its Imager
    Pixel Spacing (the spacing at the detector, what a viewer measures with); one with
    neither (or ``0\\0``) :data:`NOMINAL_PIXEL_SPACING`; one without Slice Thickness
    :data:`NOMINAL_SLICE_THICKNESS`.
    """
    if "SharedFunctionalGroupsSequence" in ds:  # multi-frame: highdicom reads its own Pixel Measures
        return ds
    spacing_ok = _usable_spacing(ds.get("PixelSpacing"))
    if spacing_ok and "SliceThickness" in ds and ds.SliceThickness not in (None, ""):
        return ds
    imager = ds.get("ImagerPixelSpacing")
    ds = _shallow_copy(ds)
    if not spacing_ok:
        if "PixelSpacing" in ds:
            del ds.PixelSpacing  # the element is shared with the source: replace it, never change it
        ds.PixelSpacing = list(imager) if _usable_spacing(imager) else list(NOMINAL_PIXEL_SPACING)
    if ds.get("SliceThickness") in (None, ""):
        if "SliceThickness" in ds:
            del ds.SliceThickness
        ds.SliceThickness = NOMINAL_SLICE_THICKNESS
    return ds


def _shallow_copy(ds: Dataset) -> Dataset:
    """A dataset with the elements of ``ds`` (shared) whose own elements can be added and removed.

    ``copy.copy`` of a pydicom Dataset shares its element dictionary: deleting from the
    copy would delete from the source.
    """
    new = Dataset()
    new.update(ds)
    if hasattr(ds, "file_meta"):
        new.file_meta = ds.file_meta
    return new


def _check_mask(mask: np.ndarray, source_images: Sequence[Dataset], argument: str) -> None:
    if not isinstance(mask, np.ndarray):
        raise TypeError(f'Argument "{argument}" must be a numpy array, not {type(mask).__name__}.')
    if mask.dtype != bool:
        raise TypeError(f'Argument "{argument}" must have dtype bool, not {mask.dtype}.')
    if mask.ndim != 3:
        raise ValueError(
            f'Argument "{argument}" must have 3 dimensions (slices, rows, columns), not {mask.ndim}.'
        )
    if mask.shape[0] != len(source_images):
        raise ValueError(
            f'Argument "{argument}" has {mask.shape[0]} slices but "source_images" has '
            f"{len(source_images)} images."
        )
    for i, ds in enumerate(source_images):
        if (int(ds.Rows), int(ds.Columns)) != mask.shape[1:]:
            raise ValueError(
                f'Argument "{argument}" has {mask.shape[1]}x{mask.shape[2]} pixels per slice but '
                f"source image {i} has Rows x Columns {ds.Rows}x{ds.Columns}."
            )
