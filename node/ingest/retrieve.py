"""Process a study on request: retrieve it from a source archive into the node's normal path.

A radiologist asks for a model on a past study already in the PACS (``POST
/api/studies/{uid}/process`` or ``ainode process``). The study's instances are retrieved
from a ``[[sources]]`` entry — WADO-RS with dicomweb-client, Orthanc's REST API with
orthanc-api-client, or C-GET from a DICOM archive (:mod:`node.ingest.retrieve_dimse`) — and handed one by one to the same acceptor as C-STORE and STOW-RS:
durable, recorded, then indexed, assembled and routed as if they had just arrived. Series
the node already processed (their instances are still in the spool) have their finished
jobs run again instead.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import pydicom

from ..config import DestinationConfig
from .retrieve_dimse import from_dimse
from .retrieve_errors import RetrieveError
from ..egress.credentials import basic_auth, bearer_token
from .accept import InstanceAcceptor
from .receipt import Outcome
from ..logs import log
from ..states import JobState, SeriesState
from ..store import JobStore

__all__ = ["ProcessReport", "RetrieveError", "fetch_study", "process_study"]

_logger = logging.getLogger("ainode.retrieve")


@dataclass
class ProcessReport:
    """What a process request did."""

    study_uid: str
    source: str
    stored: int = 0
    duplicate: int = 0
    refused: int = 0
    rerun_jobs: list[int] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def fetch_study(source: DestinationConfig, study_uid: str, timeout: float = 60.0) -> Iterator[bytes]:
    """The study's instances from ``source``, each as a DICOM file's bytes."""
    if source.type == "orthanc":
        yield from _from_orthanc(source, study_uid, timeout)
    elif source.type == "dicomweb":
        yield from _from_dicomweb(source, study_uid, timeout)
    elif source.type == "dimse":
        yield from from_dimse(source, study_uid, timeout, calling_ae=source.calling_ae_title)
    else:
        raise RetrieveError(f"source {source.name!r}: type {source.type!r} cannot be retrieved from")


def process_study(
    source: DestinationConfig, study_uid: str, acceptor: InstanceAcceptor, store: JobStore, timeout: float = 60.0,
    routes: Sequence[str] | None = None,
) -> ProcessReport:
    """Retrieve ``study_uid`` from ``source`` and run the matching routes on it (only ``routes``, when given).

    The filter is recorded per series before its first instance is accepted, so the
    assembler applies it however fast the series completes; a request without
    ``routes`` lifts an earlier request's filter.
    """
    report = ProcessReport(study_uid, source.name)
    filtered: set[str] = set()
    for data in fetch_study(source, study_uid, timeout):
        series_uid = _series_uid(data)
        if series_uid and series_uid not in filtered:
            store.set_route_filter(series_uid, routes)
            filtered.add(series_uid)
        receipt = acceptor.accept_part10(data, f"retrieve {source.name}")
        if not receipt.accepted:
            report.refused += 1
            report.refusals.append(str(receipt.reason))
        elif receipt.outcome is Outcome.DUPLICATE:
            report.duplicate += 1
        else:
            report.stored += 1
    if report.stored + report.duplicate == 0:
        raise RetrieveError(f"source {source.name!r} gave no usable instance of the study"
                            + (f" ({report.refused} refused: {', '.join(sorted(set(report.refusals)))})"
                               if report.refused else ""))
    for series_uid in store.series_of_study(study_uid):
        series = store.get_series(series_uid)
        if series is None or series.state is not SeriesState.ROUTED:
            continue  # new or still being assembled: the normal path runs it
        for job in store.jobs_for_series(series_uid):
            if routes is not None and job.route not in routes:
                continue
            if job.state in (JobState.DELIVERED, JobState.FAILED) and store.rerun_job(
                    job.id, f"process requested from source {source.name}"):
                report.rerun_jobs.append(job.id)
    log(_logger, logging.INFO, "study processed on request", study_uid=study_uid, source=source.name,
        stored=report.stored, duplicate=report.duplicate, refused=report.refused, rerun_jobs=report.rerun_jobs)
    return report


def _series_uid(data: bytes) -> str | None:
    """The Series Instance UID a part-10 file says it has, read leniently (the acceptor checks it)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        return str(ds.SeriesInstanceUID) if "SeriesInstanceUID" in ds else None
    except Exception:
        return None


def _from_orthanc(source: DestinationConfig, study_uid: str, timeout: float) -> Iterator[bytes]:
    from orthanc_api_client import OrthancApiClient

    auth = basic_auth(source)
    client = OrthancApiClient(source.url, user=auth[0] if auth else None, pwd=auth[1] if auth else None)
    try:
        orthanc_id = client.studies.lookup(study_uid)
    except Exception as exc:
        raise RetrieveError(f"source {source.name!r} unreachable: {type(exc).__name__}") from exc
    if orthanc_id is None:
        raise RetrieveError(f"source {source.name!r} has no study {study_uid}")
    for instance_id in client.studies.get_instances_ids(orthanc_id):
        yield client.instances.get_file(instance_id)


def _from_dicomweb(source: DestinationConfig, study_uid: str, timeout: float) -> Iterator[bytes]:
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    token, auth = bearer_token(source), basic_auth(source)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif auth:
        session.auth = auth
    client = DICOMwebClient(url=source.url, session=session, timeout=timeout)
    try:
        found = client.search_for_instances(study_instance_uid=study_uid)
    except requests.HTTPError as exc:
        raise RetrieveError(f"source {source.name!r} refused the search: HTTP {exc.response.status_code}") from exc
    except requests.RequestException as exc:
        raise RetrieveError(f"source {source.name!r} unreachable: {type(exc).__name__}") from exc
    if not found:
        raise RetrieveError(f"source {source.name!r} has no study {study_uid}")
    for item in found:
        dataset = pydicom.Dataset.from_json(item)
        retrieved = client.retrieve_instance(study_uid, str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID))
        buffer = io.BytesIO()
        retrieved.save_as(buffer, enforce_file_format=True)
        yield buffer.getvalue()
