"""Delivery of result objects through Orthanc's REST API (``type = "orthanc"``).

Uses ``orthanc-api-client`` (:class:`orthanc_api_client.OrthancApiClient`): each file is
posted to ``/instances`` (``Success`` and ``AlreadyStored`` both mean stored). Where the
Orthanc is 1.12 or newer, each study that received results is labelled ``ai-<model>``
so that its users can find them; older versions have no labels and are left as they are.
A retraction item (an IOCM rejection note, :mod:`node.egress.retraction`) is carried out
by deleting every instance the note references (:meth:`OrthancSender.retract`).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

from orthanc_api_client import OrthancApiClient
from orthanc_api_client import exceptions as orthanc_errors

from ..logs import log
from .credentials import CredentialError, basic_auth
from ..store.rows import ResultObject
from .delivery import DeliveryOutcome
from .retraction import referenced_instances
from .http_senders import HttpSender

__all__ = ["OrthancSender", "labels_supported", "study_label"]

_logger = logging.getLogger("ainode.egress")

_STORED = {"Success", "AlreadyStored"}
_STOP_STATUSES = {401, 403, 404}
"""HTTP statuses that concern the server or the URL, not the file: the other files are not tried."""


def study_label(model: str) -> str:
    """The Orthanc label for a model's results: ``ai-<model>``, in the characters labels allow."""
    return "ai-" + re.sub(r"[^A-Za-z0-9_-]", "-", model)


class OrthancSender(HttpSender):
    """``POST /instances`` to one Orthanc, then labels on 1.12+.

    Parameters
    ----------
    destination
        A ``type = "orthanc"`` entry (``url``; optionally ``username`` + ``password_file``).
    timeout
        Seconds any one HTTP request may take.
    """

    DESTINATION_TYPE = "an orthanc"

    def _client(self) -> OrthancApiClient:
        """A client for the destination, with its credentials (:class:`CredentialError` when unreadable)."""
        auth = basic_auth(self._destination)
        user, pwd = auth if auth is not None else (None, None)
        return OrthancApiClient(self._destination.url, user=user, pwd=pwd)

    def send(self, files: Sequence[ResultObject]) -> DeliveryOutcome:
        try:
            client = self._client()
        except CredentialError as exc:
            return DeliveryOutcome.failed(files, str(exc))
        try:
            errors: dict[str, str | None] = {}
            studies: dict[str, set[str]] = {}  # Orthanc study ID -> models whose results it received
            stop_reason: str | None = None
            for item in files:
                if stop_reason is not None:
                    errors[item.path] = stop_reason
                    continue
                error, study_id, stop_reason = self._upload(client, item)
                errors[item.path] = error
                if error is None and study_id:
                    studies.setdefault(study_id, set()).add(item.model)
            if studies:
                self._label(client, studies)
            return DeliveryOutcome(errors)
        finally:
            client.close()

    def retract(self, files: Sequence[ResultObject]) -> DeliveryOutcome:
        """Retraction items (IOCM rejection notes): delete every instance a note references.

        An instance Orthanc no longer holds counts as deleted; the note itself is not stored.
        """
        try:
            client = self._client()
        except CredentialError as exc:
            return DeliveryOutcome.failed(files, str(exc))
        try:
            return DeliveryOutcome({item.path: self._delete_referenced(client, item) for item in files})
        finally:
            client.close()

    def _delete_referenced(self, client: OrthancApiClient, item: ResultObject) -> str | None:
        """Delete the instances one rejection note references: ``None``, or why not."""
        try:
            uids = referenced_instances(item.path)
        except (OSError, ValueError, AttributeError) as exc:
            return f"rejection note unreadable: {exc!r}"
        for uid in uids:
            try:
                found = client.post("tools/lookup", data=uid, timeout=self._timeout).json()
                for resource in (r for r in found if r.get("Type") == "Instance"):
                    client.delete(f"instances/{resource['ID']}", timeout=self._timeout)
            except orthanc_errors.ResourceNotFound:
                continue  # gone already
            except (orthanc_errors.ConnectionError, orthanc_errors.TimeoutError) as exc:
                return f"Orthanc at {self._destination.url}: {exc.msg}"
            except orthanc_errors.HttpError as exc:
                if exc.http_status_code == 404:
                    continue
                return f"Orthanc answered HTTP {exc.http_status_code} to a deletion"
            except (orthanc_errors.OrthancApiException, ValueError) as exc:
                return f"Orthanc deletion failed: {exc}"
        return None

    def _upload(self, client: OrthancApiClient, item: ResultObject) -> tuple[str | None, str | None, str | None]:
        """One file: ``(error, Orthanc study ID, reason to stop)``."""
        try:
            data = Path(item.path).read_bytes()
        except OSError as exc:
            return f"result file unreadable: {exc!r}", None, None
        try:
            # post() rather than upload(): upload() has no timeout, and a hung server must not hold the outbox
            answer: Any = client.post("instances", data=data, timeout=self._timeout).json()
        except (orthanc_errors.ConnectionError, orthanc_errors.TimeoutError) as exc:
            reason = f"Orthanc at {self._destination.url}: {exc.msg}"
            return reason, None, reason
        except orthanc_errors.HttpError as exc:
            detail = exc.msg if isinstance(exc.msg, str) and exc.msg else ""  # some carry the status as msg
            reason = f"Orthanc answered HTTP {exc.http_status_code}" + (f": {detail}" if detail else "")
            return reason, None, (reason if exc.http_status_code in _STOP_STATUSES else None)
        except (orthanc_errors.OrthancApiException, ValueError) as exc:  # ValueError: a body that is not JSON
            return f"Orthanc upload failed: {exc}", None, None
        if isinstance(answer, list):  # Orthanc answers a list for archives; one file gives one item
            answer = answer[0] if len(answer) == 1 else {}
        status = answer.get("Status") if isinstance(answer, dict) else None
        if status not in _STORED:
            return f"Orthanc did not store the file (status {status!r})", None, None
        return None, answer.get("ParentStudy"), None

    def _label(self, client: OrthancApiClient, studies: dict[str, set[str]]) -> None:
        """Label each study ``ai-<model>`` where Orthanc has labels (1.12+); a failure is logged, not fatal.

        The results are stored by now: a label that cannot be set is worth a warning, not
        a second upload.
        """
        try:
            version = str(client.get("system", timeout=self._timeout).json().get("Version", ""))
        except Exception as exc:
            log(_logger, logging.WARNING, "Orthanc version unknown, studies not labelled",
                destination=self._destination.name, reason=repr(exc))
            return
        if not labels_supported(version):
            return
        for study_id, models in sorted(studies.items()):
            for model in sorted(models):
                label = study_label(model)
                try:
                    client.put(f"studies/{study_id}/labels/{label}", timeout=self._timeout)
                except Exception as exc:
                    log(_logger, logging.WARNING, "study not labelled", destination=self._destination.name,
                        orthanc_study=study_id, label=label, reason=repr(exc))


def labels_supported(version: str) -> bool:
    """Whether an Orthanc of this ``/system`` ``Version`` has labels (1.12.0 and later; ``mainline`` has)."""
    if version.startswith("mainline"):
        return True
    match = re.match(r"(\d+)\.(\d+)", version)
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (1, 12)
