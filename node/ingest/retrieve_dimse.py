"""Retrieve a study from a DICOM archive with C-GET (Study Root), for ``[[sources]] type = "dimse"``.

The archive sends the study's instances back over the node's own association as
C-STORE sub-operations, so no route from the archive to the node's listener is needed
(unlike C-MOVE). Each instance is written as received to a temporary file on the
spool's disk (the node points :mod:`tempfile` there), then handed on one by one.
The archive must allow the node's AE title to C-GET (Orthanc: ``DicomModalities`` or
``DicomAlwaysAllowGet``).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from pydicom import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

from ..config import DestinationConfig
from .connections import REQUESTOR_HANDLERS
from .retrieve_errors import RetrieveError

__all__ = ["from_dimse"]

_PENDING = (0xFF00, 0xFF01)
_FIRST = (
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.1.1.1", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.66.4",
    "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.5.1.4.1.1.2.2",
    "1.2.840.10008.5.1.4.1.1.4.4",
)
"""Storage classes offered first (an archive such as Orthanc stops a C-GET at the first
instance it has no context for, and 128 contexts cannot hold them all): CT, MR, CR, DX,
SC, SEG, the SRs and KOS the node writes, legacy converted enhanced CT and MR."""
_WARNING = (0x0001, 0xB000)


def from_dimse(source: DestinationConfig, study_uid: str, timeout: float = 60.0,
               calling_ae: str = "AINODE") -> Iterator[bytes]:
    """The study's instances from ``source`` by C-GET, each as a DICOM file's bytes."""
    with tempfile.TemporaryDirectory(prefix="cget-") as folder:
        received = _c_get(source, study_uid, timeout, calling_ae, Path(folder))
        if not received:
            raise RetrieveError(f"source {source.name!r} has no study {study_uid}")
        for path in received:
            yield path.read_bytes()
            path.unlink()


def _c_get(source: DestinationConfig, study_uid: str, timeout: float, calling_ae: str, folder: Path) -> list[Path]:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.maximum_pdu_size = 0
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    # the storage classes the archive may send back, as SCP role (C-GET sub-operations);
    # at most 128 presentation contexts: the query context plus 127 storage classes
    everything = [cx.abstract_syntax for cx in AllStoragePresentationContexts]
    storage = list(dict.fromkeys([*_FIRST, *everything]))[:127]
    for uid in storage:
        ae.add_requested_context(uid)
    roles = [build_role(uid, scp_role=True) for uid in storage]
    received: list[Path] = []

    def _store(event: Any) -> int:
        path = folder / f"{len(received):06d}.dcm"
        chunked = event.dataset_path  # the node's listener makes pynetdicom receive into files, process-wide
        if chunked is not None:
            shutil.move(str(chunked), path)
        else:
            path.write_bytes(event.encoded_dataset())
        received.append(path)
        return 0x0000

    assoc = ae.associate(source.host, source.port, ae_title=source.ae_title, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, _store), *REQUESTOR_HANDLERS])
    if not assoc.is_established:
        raise RetrieveError(f"source {source.name!r}: association with {source.ae_title}@{source.host}:{source.port}"
                            " refused or unreachable")
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        final = None
        for status, _identifier in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            if status is None:
                raise RetrieveError(f"source {source.name!r}: no answer to C-GET (timeout or connection lost)")
            final = int(status.Status)
        if final is not None and final not in (0x0000, *_PENDING, *_WARNING) and not received:
            raise RetrieveError(f"source {source.name!r} has no study {study_uid}, or refused to send it"
                                f" (C-GET status 0x{final:04X})")
    finally:
        assoc.release()
    return received

