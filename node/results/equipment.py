"""Equipment, algorithm and patient/study context shared by every result writer.

Every result object the node writes carries

- the IHE AI Results (AIR) "Processing Algorithm" item in the Contributing
  Equipment Sequence (0018,A001), naming the model, its version and a Device
  UID that identifies the exact weights;
- the Patient, General Study and Patient Study attributes of the source
  images, unchanged, with the source's Specific Character Set (0008,0005) so
  that non-ASCII names are written with the right bytes.
"""
from __future__ import annotations

import copy
import datetime

import highdicom as hd
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes

from .algorithm import AlgorithmInfo
from .checks import check_algorithm

__all__ = [
    "PATIENT_STUDY_KEYWORDS",
    "PROCESSING_ALGORITHM",
    "PROCESSING_ALGORITHM_SCHEME",
    "add_processing_algorithm",
    "add_study_and_algorithm",
    "algorithm_identification",
    "copy_character_set",
    "copy_patient_and_study",
    "declare_coding_scheme",
    "device_observer",
    "highdicom_character_set",
    "load_standard_tables",
    "set_equipment",
]

PROCESSING_ALGORITHM = hd.sr.CodedConcept(
    value="Newcode1",
    scheme_designator="99IHE",
    meaning="Processing Algorithm",
)
"""Purpose of Reference of the AI algorithm's Contributing Equipment item.

IHE Radiology AI Results (AIR), Trial Implementation, "Contributing Equipment
Sequence": the item describing the algorithm has Purpose of Reference
``(Newcode1, 99IHE, "Processing Algorithm")``. DICOM CID 7005 has no such code,
which is why :class:`highdicom.ContributingEquipment` (DCM codes only) cannot
build this item.
"""

PROCESSING_ALGORITHM_SCHEME = hd.coding_schemes.CodingSchemeIdentificationItem(
    designator="99IHE",
    name="IHE AI Results profile codes",
    responsible_organization="IHE Radiology Technical Committee",
)
"""Coding Scheme Identification item declaring the private ``99IHE`` scheme."""

PATIENT_STUDY_KEYWORDS: tuple[str, ...] = (
    # Patient Module
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientComments",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "PatientBreedDescription",
    "PatientBreedCodeSequence",
    "BreedRegistrationSequence",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    # General Study Module
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "ProcedureCodeSequence",
    # Patient Study Module
    "AdmittingDiagnosesDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientSexNeutered",
)
"""Patient, General Study and Patient Study attributes copied from the source."""

def algorithm_identification(algorithm: AlgorithmInfo) -> hd.AlgorithmIdentificationSequence:
    """Build the Algorithm Identification Sequence for ``algorithm``.

    Parameters
    ----------
    algorithm:
        Identity of the model.

    Returns
    -------
    highdicom.AlgorithmIdentificationSequence
        Algorithm Name and Version from ``algorithm``, Algorithm Family
        ``(123110, DCM, "Artificial Intelligence")`` and Algorithm Source the
        manufacturer.
    """
    check_algorithm(algorithm)
    return hd.AlgorithmIdentificationSequence(
        name=algorithm.name,
        family=codes.cid7162.ArtificialIntelligence,
        version=algorithm.version,
        source=algorithm.manufacturer,
    )


def device_observer(algorithm: AlgorithmInfo) -> hd.sr.ObserverContext:
    """The algorithm as the DEVICE observer of an SR document (TID 1004).

    Device Observer UID, Name, Manufacturer and Model Name come from ``algorithm``.
    """
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=algorithm.device_uid,
            name=algorithm.name,
            manufacturer_name=algorithm.manufacturer,
            model_name=algorithm.name,
        ),
    )


def set_equipment(ds: Dataset, algorithm: AlgorithmInfo) -> None:
    """Write the algorithm as the equipment of ``ds`` (General and Enhanced General Equipment).

    Manufacturer, Manufacturer's Model Name (name), Software Versions (version) and
    Device Serial Number (device_uid), as highdicom's constructors write them.
    """
    ds.Manufacturer = algorithm.manufacturer
    ds.ManufacturerModelName = algorithm.name
    ds.DeviceSerialNumber = algorithm.device_uid
    ds.SoftwareVersions = algorithm.version


def add_processing_algorithm(
    ds: Dataset,
    algorithm: AlgorithmInfo,
    *,
    contribution_datetime: datetime.datetime | None = None,
    contribution_description: str | None = None,
) -> None:
    """Append the IHE AIR "Processing Algorithm" item to ContributingEquipmentSequence.

    Items already in the sequence (e.g. the acquisition equipment that highdicom
    copies from the source image) are kept. The ``99IHE`` coding scheme is
    declared in CodingSchemeIdentificationSequence if not already there.

    Parameters
    ----------
    ds:
        Result object to extend, in place.
    algorithm:
        Identity of the model: Manufacturer, ManufacturerModelName (name),
        SoftwareVersions (version) and DeviceUID (device_uid).
    contribution_datetime:
        When the algorithm produced the result; defaults to now (local time
        with its UTC offset).
    contribution_description:
        Free text describing the contribution; defaults to
        ``"AI inference: <name> <version>"``.

    Raises
    ------
    TypeError
        When ``ds`` is not a pydicom Dataset.
    ValueError
        When ``algorithm`` has an invalid field.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f'Argument "ds" must be a pydicom Dataset, not {type(ds).__name__}.')
    check_algorithm(algorithm)
    if contribution_datetime is None:
        contribution_datetime = datetime.datetime.now().astimezone()
    if contribution_description is None:
        contribution_description = f"AI inference: {algorithm.name} {algorithm.version}"

    purpose = Dataset()
    purpose.CodeValue = PROCESSING_ALGORITHM.value
    purpose.CodingSchemeDesignator = PROCESSING_ALGORITHM.scheme_designator
    purpose.CodeMeaning = PROCESSING_ALGORITHM.meaning

    item = Dataset()
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    item.Manufacturer = algorithm.manufacturer
    item.ManufacturerModelName = algorithm.name
    item.SoftwareVersions = algorithm.version
    item.DeviceUID = algorithm.device_uid
    item.ContributionDateTime = contribution_datetime.strftime("%Y%m%d%H%M%S.%f%z")
    item.ContributionDescription = contribution_description[:1024]

    if "ContributingEquipmentSequence" not in ds:
        ds.ContributingEquipmentSequence = DicomSequence()
    ds.ContributingEquipmentSequence.append(item)
    declare_coding_scheme(ds, PROCESSING_ALGORITHM_SCHEME)


def copy_character_set(ds: Dataset, source: Dataset) -> None:
    """Give ``ds`` the Specific Character Set of ``source``.

    Result objects carry the source's patient and study attributes unchanged,
    non-ASCII names included, so they must be encoded with the source's
    character set. When the source has none (default repertoire), ``ds`` is
    left without one too.

    Parameters
    ----------
    ds:
        Result object, modified in place.
    source:
        Source image whose character set is copied.
    """
    if "SpecificCharacterSet" in source:
        ds.SpecificCharacterSet = source.SpecificCharacterSet
    elif "SpecificCharacterSet" in ds:
        del ds.SpecificCharacterSet


def highdicom_character_set(source: Dataset) -> str | list[str] | None:
    """The source's Specific Character Set in a form highdicom's constructors accept.

    An empty first value (the default repertoire, e.g. ``\\ISO 2022 IR 87``) is valid
    DICOM but refused by highdicom; it is given as its explicit name ``ISO 2022 IR 6``.
    The result object then gets the source's value as it was (:func:`copy_character_set`).
    """
    value = source.get("SpecificCharacterSet")
    if value is None or isinstance(value, str):
        return value or None
    return [str(v) or "ISO 2022 IR 6" for v in value]


def copy_patient_and_study(ds: Dataset, source: Dataset) -> None:
    """Copy the Patient, General Study and Patient Study attributes of ``source``.

    Every keyword of :data:`PATIENT_STUDY_KEYWORDS` present in ``source`` is
    copied (deep copy) so that the result object describes the same patient and
    study byte for byte; the character set is copied too
    (:func:`copy_character_set`).

    Parameters
    ----------
    ds:
        Result object, modified in place.
    source:
        Source image of the study.
    """
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source:
            element = source[keyword]
            ds[element.tag] = copy.deepcopy(element)
    copy_character_set(ds, source)


def declare_coding_scheme(
    ds: Dataset, item: hd.coding_schemes.CodingSchemeIdentificationItem
) -> None:
    """Add ``item`` to CodingSchemeIdentificationSequence unless its designator is there."""
    existing = ds.get("CodingSchemeIdentificationSequence", [])
    if any(
        getattr(entry, "CodingSchemeDesignator", None) == item.CodingSchemeDesignator
        for entry in existing
    ):
        return
    if "CodingSchemeIdentificationSequence" not in ds:
        ds.CodingSchemeIdentificationSequence = DicomSequence()
    ds.CodingSchemeIdentificationSequence.append(item)


def load_standard_tables() -> None:
    """Load highdicom's DICOM standard tables (IODs and modules) now, not in a job.

    highdicom reads them on first use: about 0.35 s that a worker's first job (and its
    helper process's first report) would otherwise spend. Warm-up only: a failure here is
    a failure of the first job, where it is reported.
    """
    try:
        from highdicom._standard_utils import does_iod_have_pixel_data

        does_iod_have_pixel_data("1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage
    except Exception:  # another highdicom version, or a broken table: the first job meets it
        return


def add_study_and_algorithm(ds: Dataset, source: Dataset, algorithm: AlgorithmInfo) -> None:
    """What every result object takes last: the patient and study of ``source``
    (:func:`copy_patient_and_study`) and the Processing Algorithm item of ``algorithm``
    (:func:`add_processing_algorithm`); ``ds`` is modified in place."""
    copy_patient_and_study(ds, source)
    add_processing_algorithm(ds, algorithm)
