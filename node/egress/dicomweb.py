"""STOW-RS delivery of result objects to a ``type = "dicomweb"`` destination.

Uses ``dicomweb-client`` (:class:`dicomweb_client.DICOMwebClient`) on a ``requests``
session that carries the destination's auth. The store response (PS3.18 10.5.3) is read
per instance: an instance in the Referenced SOP Sequence is stored (a Warning Reason
too), one in the Failed SOP Sequence is not, with its Failure Reason; an HTTP error
without such details, a connection error or a timeout fails the whole request.
"""
from __future__ import annotations

import os
from typing import Sequence

import pydicom
import requests
from dicomweb_client import DICOMwebClient

from .credentials import CredentialError, basic_auth, bearer_token
from ..store.rows import ResultObject
from .delivery import DeliveryOutcome
from .http_senders import HttpSender

__all__ = ["DicomwebSender"]

_MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""Files are posted in requests of at most this many bytes (a larger file goes alone)."""

_STOP_STATUSES = {401, 403, 404, 405}
"""HTTP statuses that concern the endpoint, not the instances: later requests are not tried."""

_FAILURE_REASONS = {
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xC122: "referenced transfer syntax not supported",
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
}


class DicomwebSender(HttpSender):
    """STOW-RS to the DICOMweb root ``url`` of one destination.

    Parameters
    ----------
    destination
        A ``type = "dicomweb"`` entry (``url``; ``token_file`` or ``username`` +
        ``password_file``).
    timeout
        Seconds any one HTTP request may take (connect and read).
    """

    DESTINATION_TYPE = "a dicomweb"

    def send(self, files: Sequence[ResultObject]) -> DeliveryOutcome:
        errors: dict[str, str | None] = {}
        try:
            session = self._session()
        except CredentialError as exc:
            return DeliveryOutcome.failed(files, str(exc))
        with session:
            try:
                client = DICOMwebClient(url=self._destination.url, session=session, timeout=self._timeout)
            except ValueError as exc:
                return DeliveryOutcome.failed(files, f"DICOMweb client: {exc}")
            client.set_http_retry_params(retry=False)  # the outbox retries, with its own backoff
            stop_reason: str | None = None
            for batch in _batches(files):
                if stop_reason is not None:
                    errors.update({f.path: stop_reason for f in batch})
                    continue
                datasets = []
                for item in batch:
                    try:
                        datasets.append((item, pydicom.dcmread(item.path)))
                    except Exception as exc:
                        errors[item.path] = f"result file unreadable: {exc!r}"
                if datasets:
                    batch_errors, stop_reason = self._store(client, datasets)
                    errors.update(batch_errors)
        return DeliveryOutcome(errors)

    def _session(self) -> requests.Session:
        """A session carrying the destination's credentials, read now from their files."""
        session = requests.Session()
        token = bearer_token(self._destination)
        if token is not None:
            session.headers["Authorization"] = f"Bearer {token}"
        auth = basic_auth(self._destination)
        if auth is not None:
            session.auth = auth
        return session

    def _store(
        self, client: DICOMwebClient, datasets: list[tuple[ResultObject, pydicom.Dataset]],
    ) -> tuple[dict[str, str | None], str | None]:
        """Post one request; per path its outcome, and the reason to stop when the endpoint failed."""
        paths_by_uid = {str(ds.SOPInstanceUID): item.path for item, ds in datasets}
        try:
            response = client.store_instances([ds for _, ds in datasets])
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            reason = f"STOW-RS answered HTTP {status}" + (f" {exc.response.reason}" if exc.response is not None else "")
            details = _response_dataset(exc.response)
            if details is not None and _has_instance_details(details):
                return _per_instance(details, paths_by_uid, unmentioned=reason), None
            return {path: reason for path in paths_by_uid.values()}, (reason if status in _STOP_STATUSES else None)
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason = f"STOW-RS to {self._destination.url} failed: {_short(exc)}"
            return {path: reason for path in paths_by_uid.values()}, reason
        except (requests.RequestException, ValueError) as exc:
            reason = f"STOW-RS failed: {_short(exc)}"
            return {path: reason for path in paths_by_uid.values()}, None
        if not _has_instance_details(response):
            return {path: None for path in paths_by_uid.values()}, None  # a 2xx without details: all stored
        return _per_instance(response, paths_by_uid, unmentioned="not acknowledged in the STOW-RS response"), None


def _batches(files: Sequence[ResultObject]) -> list[list[ResultObject]]:
    """``files`` in order, cut into requests of at most :data:`_MAX_REQUEST_BYTES`."""
    batches: list[list[ResultObject]] = []
    size = 0
    for item in files:
        try:
            item_size = os.path.getsize(item.path)
        except OSError:
            item_size = 0  # reported as unreadable when read
        if not batches or (batches[-1] and size + item_size > _MAX_REQUEST_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    return batches


def _has_instance_details(response: pydicom.Dataset) -> bool:
    return "ReferencedSOPSequence" in response or "FailedSOPSequence" in response


def _per_instance(response: pydicom.Dataset, paths_by_uid: dict[str, str], unmentioned: str) -> dict[str, str | None]:
    """Map the Referenced / Failed SOP Sequences of a store response to per-path outcomes."""
    errors: dict[str, str | None] = {path: unmentioned for path in paths_by_uid.values()}
    for item in response.get("ReferencedSOPSequence", []):
        path = paths_by_uid.get(str(item.get("ReferencedSOPInstanceUID", "")))
        if path is not None:
            errors[path] = None  # stored; a Warning Reason (coercion, discarded elements) still means stored
    for item in response.get("FailedSOPSequence", []):
        path = paths_by_uid.get(str(item.get("ReferencedSOPInstanceUID", "")))
        if path is not None:
            code = item.get("FailureReason")
            if code is None:
                errors[path] = "STOW-RS failed this instance (no reason given)"
            else:
                meaning = _FAILURE_REASONS.get(int(code))
                errors[path] = f"STOW-RS failure reason 0x{int(code):04X}" + (f" ({meaning})" if meaning else "")
    return errors


def _response_dataset(response: requests.Response | None) -> pydicom.Dataset | None:
    """The DICOM JSON body of an error response, when it has one."""
    if response is None or not response.content:
        return None
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    if content_type not in ("application/dicom+json", "application/json"):
        return None
    try:
        return pydicom.Dataset.from_json(response.json())
    except Exception:
        return None


def _short(exc: BaseException) -> str:
    """An exception as one short line for the job's reason (requests' messages nest deeply)."""
    text = f"{exc.__class__.__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
