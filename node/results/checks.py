"""Validate the arguments every result builder shares, with messages naming the attribute.

Each check raises ``TypeError`` or ``ValueError`` whose message names the caller's
argument and, where there is one, the DICOM attribute it becomes.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import RE_VALID_UID

from .algorithm import AlgorithmInfo

__all__ = [
    "check_region",
    "MAX_LO",
    "MAX_ST",
    "check_algorithm",
    "check_argument_type",
    "check_concept",
    "check_evaluations",
    "check_every_finding_drawn",
    "check_evidence",
    "check_groups",
    "check_measurements",
    "check_positive_int",
    "check_source_images",
    "check_text",
    "is_valid_uid",
    "uid_or_new",
]

MAX_LO = 64
"""Most characters of a Long String (LO) value."""

MAX_ST = 1024
"""Most characters of a Short Text (ST) value."""


def check_text(value: str, argument: str, keyword: str) -> None:
    """Fail unless ``value`` is a non-empty string of at most :data:`MAX_LO` characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'Argument "{argument}" ({keyword}) must be a non-empty string.')
    if len(value) > MAX_LO:
        raise ValueError(
            f'Argument "{argument}" ({keyword}) must have at most {MAX_LO} characters, '
            f"it has {len(value)}."
        )


def check_positive_int(value: int, argument: str, keyword: str) -> None:
    """Fail unless ``value`` is an integer (not a bool) of at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'Argument "{argument}" ({keyword}) must be a positive integer, got {value!r}.')


def is_valid_uid(value: object) -> bool:
    """Whether ``value`` is a string that is a valid DICOM UID."""
    return isinstance(value, str) and len(value) <= 64 and RE_VALID_UID.match(value) is not None


def uid_or_new(value: str | None, argument: str) -> str:
    """``value`` when it is a valid UID, a fresh UID when it is ``None``; fail otherwise."""
    if value is None:
        return hd.UID()
    if not is_valid_uid(value):
        raise ValueError(f'Argument "{argument}" must be a valid UID, got {value!r}.')
    return value


def check_region(graphic_type: str | None, image: object, graphic_data: object, allowed: Sequence[str]) -> None:
    """A finding's image region: a known graphic type on a pydicom image, finite (n, 2)
    (column, row) points; nothing to check when ``graphic_type`` is ``None``."""
    if graphic_type is None:
        return
    if graphic_type not in allowed:
        raise ValueError(f'"graphic_type" must be one of {tuple(allowed)}, not {graphic_type!r}.')
    if not isinstance(image, Dataset):
        raise TypeError('A group with a region needs "image" (a pydicom Dataset).')
    data = np.asarray(graphic_data, dtype=float)
    if data.ndim != 2 or data.shape[1] != 2 or len(data) == 0 or not np.isfinite(data).all():
        raise ValueError('"graphic_data" must be finite (n, 2) (column, row) points.')


def check_concept(value: object, name: str) -> None:
    """Fail with a message naming ``name`` unless ``value`` is a coded concept."""
    if not isinstance(value, (hd.sr.CodedConcept, Code)):
        raise TypeError(f'"{name}" must be a CodedConcept or Code, not {type(value).__name__}.')


def check_algorithm(algorithm: AlgorithmInfo) -> None:
    """Check that ``algorithm`` can be written into DICOM attributes.

    Raises
    ------
    TypeError
        When ``algorithm`` is not an :class:`~node.results.algorithm.AlgorithmInfo`.
    ValueError
        When a field is empty, longer than a LO value allows (64 characters),
        or when ``device_uid`` is not a valid UID.
    """
    if not isinstance(algorithm, AlgorithmInfo):
        raise TypeError(
            'Argument "algorithm" must be an AlgorithmInfo, '
            f"not {type(algorithm).__name__}."
        )
    for field, keyword in (
        ("name", "ManufacturerModelName / AlgorithmName"),
        ("version", "SoftwareVersions / AlgorithmVersion"),
        ("manufacturer", "Manufacturer"),
    ):
        value = getattr(algorithm, field)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f'AlgorithmInfo.{field} ({keyword}) must be a non-empty string.'
            )
        if len(value) > MAX_LO:
            raise ValueError(
                f"AlgorithmInfo.{field} ({keyword}) must have at most "
                f"{MAX_LO} characters, it has {len(value)}."
            )
        if "\\" in value:
            raise ValueError(
                f'AlgorithmInfo.{field} ({keyword}) must not contain "\\".'
            )
    if not is_valid_uid(algorithm.device_uid):
        raise ValueError(
            "AlgorithmInfo.device_uid (DeviceUID) must be a valid UID, "
            f"got {algorithm.device_uid!r}."
        )


def check_source_images(source_images: Sequence[Dataset], argument: str) -> None:
    """Check that ``source_images`` is a non-empty list of images of one study.

    Parameters
    ----------
    source_images:
        Images the result object is derived from.
    argument:
        Name of the caller's argument, used in error messages.

    Raises
    ------
    TypeError
        When an item is not a pydicom Dataset.
    ValueError
        When the list is empty, an item lacks StudyInstanceUID, SOPClassUID or
        SOPInstanceUID, or the items belong to different studies.
    """
    if isinstance(source_images, Dataset) or len(source_images) == 0:
        raise ValueError(f'Argument "{argument}" must be a non-empty sequence of datasets.')
    study_uids: set[str] = set()
    for i, ds in enumerate(source_images):
        if not isinstance(ds, Dataset):
            raise TypeError(
                f'Item {i} of argument "{argument}" must be a pydicom Dataset, '
                f"not {type(ds).__name__}."
            )
        for keyword in ("StudyInstanceUID", "SOPClassUID", "SOPInstanceUID"):
            if not ds.get(keyword):
                raise ValueError(f'Item {i} of argument "{argument}" lacks {keyword}.')
        study_uids.add(str(ds.StudyInstanceUID))
    if len(study_uids) > 1:
        raise ValueError(
            f'The items of argument "{argument}" must share one StudyInstanceUID, '
            f"found {len(study_uids)}."
        )


def check_evidence(evidence: Sequence[Dataset], source_images: Sequence[Dataset]) -> None:
    """Fail unless ``evidence`` (possibly empty) are instances of the study of ``source_images``."""
    if not evidence:
        return
    check_source_images(evidence, "evidence")
    if evidence[0].StudyInstanceUID != source_images[0].StudyInstanceUID:
        raise ValueError(
            'Argument "evidence" must be in the study of "source_images" (StudyInstanceUID).'
        )


def check_evaluations(evaluations: Sequence[tuple[object, object]]) -> None:
    """Fail unless every item of ``evaluations`` is a ``(concept, coded value)`` tuple."""
    for i, pair in enumerate(evaluations):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError(
                f"Item {i} of qualitative_evaluations must be a (concept, value) tuple."
            )
        check_concept(pair[0], f"qualitative_evaluations[{i}] concept")
        check_concept(pair[1], f"qualitative_evaluations[{i}] value")


def check_measurements(measurements: Sequence[tuple[object, float, object]]) -> None:
    """Fail unless every item of ``measurements`` is a ``(concept, finite number, unit)`` tuple."""
    for i, triple in enumerate(measurements):
        if not isinstance(triple, tuple) or len(triple) != 3:
            raise TypeError(
                f"Item {i} of measurements must be a (concept, value, unit) tuple."
            )
        concept, value, unit = triple
        check_concept(concept, f"measurements[{i}] concept")
        check_concept(unit, f"measurements[{i}] unit")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(
                f"measurements[{i}] value (NumericValue) must be a finite number, got {value!r}."
            )


def check_argument_type(value: object, expected: type, argument: str) -> None:
    """Fail with a ``TypeError`` naming ``argument`` unless ``value`` is an ``expected``."""
    if not isinstance(value, expected):
        raise TypeError(f'Argument "{argument}" must be {expected.__name__}, not {type(value).__name__}.')


def check_groups(groups: Sequence[object], group_type: type) -> None:
    """Fail unless ``groups`` is a non-empty sequence of ``group_type`` (a report's finding groups)."""
    name = group_type.__name__
    if isinstance(groups, group_type) or len(groups) == 0:
        raise ValueError(f'Argument "groups" must be a non-empty sequence of {name}.')
    for i, group in enumerate(groups):
        if not isinstance(group, group_type):
            raise TypeError(f'Item {i} of argument "groups" must be a {name}.')


def check_every_finding_drawn(groups: Sequence[Any]) -> None:
    """Fail unless every finding (Tracking UID) of ``groups`` has a group with an image region.

    OHIF 3.13 stops with an error on a measurement (the groups of one Tracking UID) without
    a SCOORD; a finding with no region anywhere (an absent one) is drawn on a whole image.
    """
    drawn = {g.tracking_uid for g in groups if getattr(g, "graphic_type", None) is not None}
    for i, g in enumerate(groups):
        if g.tracking_uid not in drawn:
            raise ValueError(
                f'Group {i} ("{g.tracking_identifier}") has no image region, nor does any group with '
                "its Tracking UID: viewers (OHIF) cannot show such a finding; give it graphic_type/graphic_data."
            )
