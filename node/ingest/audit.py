"""The audit record of each DICOM connection: who called, from where, what was decided, what was stored.

One JSON log line (logger ``ainode.audit``, ``"audit": "association"``) when a connection
closes: calling and called AE titles, peer address, whether it came over TLS (and the
client certificate's subject common name, when one was presented), the outcome
(``accepted``, ``rejected``, or ``no_association`` for a connection that never asked,
such as a failed TLS handshake) with the reason, instances stored and bytes received.
UIDs and patient data are not part of it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

from pynetdicom.association import Association

from ..logs import audit
from ..dicom.tls import peer_common_name
from .connections import remote_address
from .titles import printable_title

__all__ = ["AssociationAudit", "AssociationOutcome"]


class AssociationOutcome(StrEnum):
    NO_ASSOCIATION = "no_association"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass
class _Record:
    peer: str
    tls: bool
    opened: float = field(default_factory=time.monotonic)
    outcome: AssociationOutcome = AssociationOutcome.NO_ASSOCIATION
    reason: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    client_cert: str | None = None
    instances: int = 0
    refused: int = 0
    bytes: int = 0


class AssociationAudit:
    """Collects what happens on each connection; writes its line when the connection closes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[Association, _Record] = {}

    def opened(self, assoc: Association, *, tls: bool) -> None:
        with self._lock:
            self._records[assoc] = _Record(remote_address(assoc), tls)

    def requested(self, assoc: Association, rejection: str | None = None) -> None:
        """The association request was answered: accepted (``rejection`` ``None``) or rejected, and why."""
        request = assoc.requestor.primitive
        with self._lock:
            record = self._records.setdefault(assoc, _Record(remote_address(assoc), False))
            record.calling_ae = printable_title(str(request.calling_ae_title))
            record.called_ae = printable_title(str(request.called_ae_title))
            record.outcome = AssociationOutcome.ACCEPTED if rejection is None else AssociationOutcome.REJECTED
            record.reason = rejection
            record.client_cert = _client_cn(assoc) if record.tls else None

    def stored(self, assoc: Association, size: int, accepted: bool) -> None:
        """One C-STORE answered: ``size`` bytes received, stored (or already held) or refused."""
        with self._lock:
            record = self._records.get(assoc)
            if record is None:
                return
            record.bytes += size
            if accepted:
                record.instances += 1
            else:
                record.refused += 1

    def closed(self, assoc: Association) -> None:
        with self._lock:
            record = self._records.pop(assoc, None)
        if record is None:
            return
        audit("association", outcome=record.outcome.value, reason=record.reason, calling_ae=record.calling_ae,
              called_ae=record.called_ae, peer=record.peer, tls=record.tls, client_cert=record.client_cert,
              instances=record.instances, refused=record.refused, bytes=record.bytes,
              seconds=round(time.monotonic() - record.opened, 3))


def _client_cn(assoc: Association) -> str | None:
    """The common name of the client certificate, when the TLS peer presented one."""
    return peer_common_name(assoc.dul.socket)
