"""The TID 1500 document every SR builder here fills around its measurement groups.

:func:`assemble_report` writes the device observer, Image Library, evidence, equipment,
patient/study attributes, private coding schemes and the Processing Algorithm item the
same way for every kind of group; :func:`group_arguments` gives the content every kind
of group shares (tracking, finding, sites, evaluations, measurements).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.coding import Code

from .checks import check_concept, check_evaluations, check_measurements, check_text, uid_or_new
from .equipment import add_study_and_algorithm, declare_coding_scheme, device_observer
from .placement import Placement

__all__ = [
    "GroupContent",
    "assemble_report",
    "describable_images",
    "group_arguments",
    "private_schemes",
    "unique_instances",
]

_Concept = hd.sr.CodedConcept | Code


@dataclass(frozen=True)
class GroupContent:
    """What every finding group of a report says: tracking, finding, site, evaluations, measurements.

    The base of :class:`node.results.sr.FindingGroup` and
    :class:`node.results.planar_sr.PlanarFindingGroup`, which add the images or region.

    Parameters
    ----------
    tracking_identifier:
        Human-readable Tracking Identifier (TEXT), e.g. ``"Intracranial hemorrhage"``,
        ``"Nodule 1"``.
    finding:
        Finding (``(121071, DCM, "Finding")``) of the group, e.g. SCT
        "Intracranial hemorrhage".
    tracking_uid:
        Tracking Unique Identifier; a fresh UID when omitted.
    finding_site:
        Anatomic location of the finding, e.g. SCT "Brain": a concept, or a
        :class:`highdicom.sr.FindingSite` (location, laterality, modifier).
    qualitative_evaluations:
        ``(concept name, coded value)`` pairs, e.g. (finding, SCT "Present").
    measurements:
        ``(concept name, value, UCUM unit)`` triples, e.g.
        (number of patches, 12, ``{patches}``).

    Raises
    ------
    TypeError, ValueError
        When a field is wrong; the message names it.
    """

    tracking_identifier: str
    finding: _Concept
    tracking_uid: str = field(default_factory=hd.UID)
    finding_site: hd.sr.FindingSite | _Concept | None = None
    qualitative_evaluations: Sequence[tuple[_Concept, _Concept]] = ()
    measurements: Sequence[tuple[_Concept, float, _Concept]] = ()

    def __post_init__(self) -> None:
        check_text(self.tracking_identifier, "tracking_identifier", "Tracking Identifier")
        uid_or_new(self.tracking_uid, "tracking_uid")
        check_concept(self.finding, "finding")
        check_evaluations(self.qualitative_evaluations)
        check_measurements(self.measurements)


def assemble_report(
    source_images: Sequence[Dataset],
    make_groups: Callable[[hd.sr.AlgorithmIdentification], list[Any]],
    placement: Placement,
    *,
    library: Sequence[Dataset],
    evidence: Sequence[Dataset],
    private_schemes: set[str],
    procedure_reported: _Concept,
    sop_instance_uid: str,
) -> Dataset:
    """The TID 1500 document around already validated arguments (for every SR builder here).

    ``make_groups`` turns the algorithm identification into the measurement group
    templates; the device observer, Image Library (``library``), evidence, equipment,
    patient/study attributes, private coding schemes and the Processing Algorithm item
    are filled the same way for every kind of group.
    """
    first = source_images[0]
    algorithm = placement.algorithm
    algorithm_id = hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device_observer(algorithm)),
        procedure_reported=procedure_reported,
        imaging_measurements=make_groups(algorithm_id),
        referenced_images=None,
    )
    image_library = _image_library(library)
    if image_library is not None:
        # TID 1500 row order: the Image Library comes just before Imaging Measurements
        content = report[0].ContentSequence
        content.insert(len(content) - 1, image_library[0])
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(evidence),
        content=_copied_by_pickle(report[0]),
        sop_instance_uid=sop_instance_uid,
        is_complete=True,
        is_final=False,
        is_verified=False,
        **placement.highdicom_arguments(first),
    )
    for designator in sorted(private_schemes):
        declare_coding_scheme(
            sr, hd.coding_schemes.CodingSchemeIdentificationItem(designator=designator)
        )
    add_study_and_algorithm(sr, first, algorithm)
    return sr


def group_arguments(group: GroupContent, algorithm_id: hd.sr.AlgorithmIdentification) -> dict[str, Any]:
    """The keyword arguments every highdicom measurement group template takes from ``group``."""
    site = group.finding_site
    sites = None
    if site is not None:
        sites = [site if isinstance(site, hd.sr.FindingSite) else hd.sr.FindingSite(site)]
    evaluations = [
        hd.sr.QualitativeEvaluation(name=name, value=value)
        for name, value in group.qualitative_evaluations
    ] or None
    measurements = [
        hd.sr.Measurement(name=name, value=float(value), unit=unit, algorithm_id=algorithm_id)
        for name, value, unit in group.measurements
    ] or None
    return {
        "tracking_identifier": hd.sr.TrackingIdentifier(
            uid=group.tracking_uid, identifier=group.tracking_identifier
        ),
        "finding_type": group.finding,
        "algorithm_id": algorithm_id,
        "finding_sites": sites,
        "measurements": measurements,
        "qualitative_evaluations": evaluations,
    }


def unique_instances(datasets: Sequence[Dataset]) -> list[Dataset]:
    """``datasets`` without repeated SOP Instance UIDs, first occurrence kept, order kept."""
    seen: set[str] = set()
    unique: list[Dataset] = []
    for ds in datasets:
        uid = str(ds.SOPInstanceUID)
        if uid not in seen:
            seen.add(uid)
            unique.append(ds)
    return unique


def describable_images(images: Sequence[Dataset]) -> list[Dataset]:
    """The images of ``images`` that an Image Library entry can describe.

    highdicom describes a radiograph by Patient Orientation and Imager Pixel Spacing, a
    cross-sectional image by its plane geometry and Frame of Reference; an image that
    lacks them (a CR with only Pixel Spacing, a CT without Frame of Reference UID) is
    left out of the library (it stays in the evidence) instead of failing the report.
    """
    described = []
    for ds in images:
        try:
            hd.sr.ImageLibraryEntryDescriptors(ds)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            continue
        described.append(ds)
    return described


def private_schemes(groups: Sequence[GroupContent], procedure: _Concept) -> set[str]:
    """Designators of the private coding schemes ("99...") used by the groups."""
    concepts: list[_Concept] = [procedure]
    for g in groups:
        concepts.append(g.finding)
        if isinstance(g.finding_site, (hd.sr.CodedConcept, Code)):
            concepts.append(g.finding_site)
        for name, value in g.qualitative_evaluations:
            concepts.extend((name, value))
        for name, _, unit in g.measurements:
            concepts.extend((name, unit))
    return {c.scheme_designator for c in concepts if c.scheme_designator.startswith("99")}


class _PickleCopiedContainer(hd.sr.ContainerContentItem):
    """A root content item whose deep copy is a pickle round trip (see :func:`_copied_by_pickle`)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> hd.sr.ContainerContentItem:
        self.__class__ = hd.sr.ContainerContentItem  # the copy is of highdicom's own class
        try:
            return pickle.loads(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            self.__class__ = _PickleCopiedContainer


def _copied_by_pickle(root: hd.sr.ContainerContentItem) -> hd.sr.ContainerContentItem:
    """``root``, deep-copied by a pickle round trip when highdicom copies it.

    highdicom's SR constructor deep-copies the whole content tree to parse it back into
    typed items; pydicom's element-by-element deep copy costs ~80 µs per element (0.14 to
    0.29 s for the 3,200 elements of a 40-slice head CT report), a pickle round trip a
    fifth of that, with an equal result (shared references kept, as deepcopy's memo does).
    """
    if type(root) is hd.sr.ContainerContentItem:
        root.__class__ = _PickleCopiedContainer
    return root


def _image_library(images: Sequence[Dataset]) -> hd.sr.ImageLibrary | None:
    """The Image Library (TID 1600) of ``images``, describing each image once.

    All images at once first (the common case); when one of them cannot be described,
    only those that can (see :func:`describable_images`); ``None`` when none can.
    """
    try:
        return hd.sr.ImageLibrary(images) if images else None
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        described = describable_images(images)
        return hd.sr.ImageLibrary(described) if described else None
