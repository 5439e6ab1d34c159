"""Key Object Selection documents (KOS) that point at key images of a series."""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .algorithm import AlgorithmInfo
from .equipment import (
    _check_positive_int,
    _check_text,
    _uid_or_new,
    add_processing_algorithm,
    check_algorithm,
    check_source_images,
    copy_patient_and_study,
    unique_instances,
)

__all__ = ["DOCUMENT_TITLES", "OF_INTEREST", "build_key_object_selection"]

OF_INTEREST = codes.cid7010.OfInterest
"""``(113000, DCM, "Of Interest")``, the default document title."""

DOCUMENT_TITLES: frozenset[str] = frozenset(
    getattr(codes.cid7010, keyword).value for keyword in codes.cid7010.dir()
)
"""Code values of CID 7010 "Key Object Selection Document Title" (all DCM codes)."""

_MAX_ST = 1024


def build_key_object_selection(
    key_images: Sequence[Dataset],
    *,
    algorithm: AlgorithmInfo,
    series_number: int,
    series_description: str,
    title: hd.sr.CodedConcept | Code = OF_INTEREST,
    description: str | None = None,
    instance_number: int = 1,
    series_instance_uid: str | None = None,
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
    algorithm:
        The model that selected them.
    series_number:
        Series Number of the new series (positive).
    series_description:
        Series Description (at most 64 characters).
    title:
        Document title, a code of CID 7010 (default ``(113000, DCM, "Of Interest")``).
    description:
        Key Object Description (TEXT, at most 1024 characters): why the images were
        selected. A KOS has one description for all its references; label images
        individually in an SR instead.
    instance_number:
        Instance Number (positive).
    series_instance_uid, sop_instance_uid:
        UIDs of the new series and instance; fresh UIDs when omitted.

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
    check_algorithm(algorithm)
    if not isinstance(title, (hd.sr.CodedConcept, Code)):
        raise TypeError(f'Argument "title" must be a CodedConcept or Code, not {type(title).__name__}.')
    if title.scheme_designator != "DCM" or title.value not in DOCUMENT_TITLES:
        raise ValueError(
            f'Argument "title" (ConceptNameCodeSequence) must be a code of CID 7010, '
            f"got ({title.value}, {title.scheme_designator}, {title.meaning!r})."
        )
    if description is not None and (not isinstance(description, str) or not description.strip()
                                    or len(description) > _MAX_ST):
        raise ValueError(
            f'Argument "description" (Key Object Description) must be a non-empty string of at most '
            f"{_MAX_ST} characters."
        )
    _check_text(series_description, "series_description", "SeriesDescription")
    _check_positive_int(series_number, "series_number", "SeriesNumber")
    _check_positive_int(instance_number, "instance_number", "InstanceNumber")
    series_instance_uid = _uid_or_new(series_instance_uid, "series_instance_uid")
    sop_instance_uid = _uid_or_new(sop_instance_uid, "sop_instance_uid")

    images = unique_instances(key_images)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=algorithm.device_uid,
            name=algorithm.name,
            manufacturer_name=algorithm.manufacturer,
            model_name=algorithm.name,
        ),
    )
    content = hd.ko.KeyObjectSelection(
        document_title=title,
        referenced_objects=images,
        observer_device_context=observer,
        description=description,
    )
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=images,
        content=content,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
    )
    kos.SeriesDescription = series_description
    kos.ManufacturerModelName = algorithm.name
    kos.SoftwareVersions = algorithm.version
    kos.DeviceSerialNumber = algorithm.device_uid
    copy_patient_and_study(kos, images[0])
    add_processing_algorithm(kos, algorithm)
    return kos
