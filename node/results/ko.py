"""Key Object Selection documents (KOS) that point at key images of a series."""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .checks import MAX_ST, check_concept, check_source_images, uid_or_new
from .equipment import add_study_and_algorithm, device_observer, set_equipment
from .placement import Placement
from .report_document import unique_instances

__all__ = ["DOCUMENT_TITLES", "OF_INTEREST", "build_key_object_selection"]

OF_INTEREST = codes.cid7010.OfInterest
"""``(113000, DCM, "Of Interest")``, the default document title."""

DOCUMENT_TITLES: frozenset[str] = frozenset(
    getattr(codes.cid7010, keyword).value for keyword in codes.cid7010.dir()
)
"""Code values of CID 7010 "Key Object Selection Document Title" (all DCM codes)."""


def build_key_object_selection(
    key_images: Sequence[Dataset],
    placement: Placement,
    *,
    title: hd.sr.CodedConcept | Code = OF_INTEREST,
    description: str | None = None,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """Build a Key Object Selection Document referencing ``key_images``.

    The document's observer is the algorithm as a DEVICE (Device Observer UID, Name,
    Manufacturer, Model Name); it belongs to the images' study, with their patient and
    study attributes and character set, and carries the IHE AIR "Processing Algorithm"
    item in ContributingEquipmentSequence.

    Parameters
    ----------
    key_images:
        The selected images, in the order they should be listed; one study.
    placement:
        Series, Instance Number and the model that selected the images.
    title:
        Document title, a code of CID 7010 (default ``(113000, DCM, "Of Interest")``).
    description:
        Key Object Description (TEXT, at most 1024 characters): why the images were
        selected. A KOS has one description for all its references; label images
        individually in an SR instead.
    sop_instance_uid:
        UID of the new instance; a fresh UID when omitted.

    Returns
    -------
    pydicom.Dataset
        A :class:`highdicom.ko.KeyObjectSelectionDocument`.

    Raises
    ------
    TypeError
        When an argument has the wrong type.
    ValueError
        When an argument has a wrong value (the message names it), e.g. a title that
        is not in CID 7010.
    """
    check_source_images(key_images, "key_images")
    check_concept(title, "title")
    if title.scheme_designator != "DCM" or title.value not in DOCUMENT_TITLES:
        raise ValueError(
            f'Argument "title" (ConceptNameCodeSequence) must be a code of CID 7010, '
            f"got ({title.value}, {title.scheme_designator}, {title.meaning!r})."
        )
    if description is not None and (not isinstance(description, str) or not description.strip()
                                    or len(description) > MAX_ST):
        raise ValueError(
            f'Argument "description" (Key Object Description) must be a non-empty string of at most '
            f"{MAX_ST} characters."
        )
    sop_instance_uid = uid_or_new(sop_instance_uid, "sop_instance_uid")

    algorithm = placement.algorithm
    images = unique_instances(key_images)
    content = hd.ko.KeyObjectSelection(
        document_title=title,
        referenced_objects=images,
        observer_device_context=device_observer(algorithm),
        description=description,
    )
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=images,
        content=content,
        series_instance_uid=placement.series_instance_uid,
        series_number=placement.series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=placement.instance_number,
        manufacturer=algorithm.manufacturer,
    )
    kos.SeriesDescription = placement.series_description
    set_equipment(kos, algorithm)
    add_study_and_algorithm(kos, images[0], algorithm)
    return kos
