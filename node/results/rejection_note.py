"""IHE IOCM rejection notes: a Key Object Selection Document that withdraws instances already sent.

The note's title is ``(113001, DCM, "Rejected for Quality Reasons")`` (CID 7010); its
Current Requested Procedure Evidence Sequence lists every withdrawn instance by study,
series and SOP Instance, and its content references each of them. An archive that
implements IOCM hides or deletes what a note references; one that does not keeps the
note beside them, where a viewer shows it. Built with :func:`node.results.ko.build_key_object_selection`
(highdicom's :class:`~highdicom.ko.KeyObjectSelectionDocument`).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from .algorithm import AlgorithmInfo
from .ko import build_key_object_selection
from .placement import Placement

__all__ = ["REJECTED_FOR_QUALITY_REASONS", "REJECTION_SERIES_NUMBER", "build_rejection_note",
           "rejection_series_uid"]

REJECTED_FOR_QUALITY_REASONS = codes.cid7010.RejectedForQualityReasons
"""``(113001, DCM, "Rejected for Quality Reasons")``: the title of every note the node sends."""

REJECTION_SERIES_NUMBER = 9901
"""Series Number of the node's rejection notes (one series per study)."""


def rejection_series_uid(study_uid: str) -> str:
    """The series of the node's rejection notes in a study: the same for every note of the study."""
    return str(generate_uid(entropy_srcs=[study_uid, "ainode IOCM rejection notes"]))


def _node_algorithm() -> AlgorithmInfo:
    """The node itself as the device that writes the note."""
    try:
        node_version = version("ainode")
    except PackageNotFoundError:
        node_version = "0.0.0"
    return AlgorithmInfo(name="ainode", version=node_version,
                         device_uid=str(generate_uid(entropy_srcs=["ainode rejection notes", node_version])))


def build_rejection_note(retracted: Sequence[Dataset], description: str, *, instance_number: int = 1) -> Dataset:
    """A rejection note for ``retracted`` (the headers of delivered result objects, one study).

    Parameters
    ----------
    retracted:
        The withdrawn instances (their headers suffice; pixel data is not needed).
    description:
        Key Object Description: why they are withdrawn (at most 1024 characters).
    instance_number:
        Instance Number of the note in the study's rejection series.

    Raises
    ------
    ValueError
        When ``retracted`` is empty or spans several studies.
    """
    if not retracted:
        raise ValueError("a rejection note references at least one instance")
    placement = Placement(algorithm=_node_algorithm(), series_number=REJECTION_SERIES_NUMBER,
                          series_description="Rejected results (IOCM rejection note)",
                          instance_number=instance_number,
                          series_instance_uid=rejection_series_uid(str(retracted[0].StudyInstanceUID)))
    return build_key_object_selection(list(retracted), placement, title=REJECTED_FOR_QUALITY_REASONS,
                                      description=description[:1024])
